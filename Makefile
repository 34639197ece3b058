# Two entry points: `make demo` (install + index a folder + search it) and `make test`.
# The demo installs the product only; the tests add the dev extras (pytest, ray, playwright, ...).
PY ?= python3
VENV := .venv

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(VENV)/bin/pip install -q -e . 2>&1 | grep -v 'is ignored: it is neither' || true
	$(VENV)/bin/python -c "import vsearch, faiss, torch, open_clip"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[dev]' 2>&1 | grep -v 'is ignored: it is neither' || true
	touch $@

.PHONY: install install-dev demo test device-wheels
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/python scripts/sample_photos.py samples
	$(VENV)/bin/vsearch index samples --db .vsearch
	$(VENV)/bin/vsearch search "a cat" --db .vsearch -k 3

test: install-dev
	$(VENV)/bin/python -m pytest

# .whl/: wheels the offline GPU machine lacks (Python 3.12), carried with the checkout
device-wheels:
	scripts/device_wheels.sh
