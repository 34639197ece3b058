# Two entry points: `make demo` (install + index a folder + search it) and `make test`.
# The demo installs the product with torch (it exports its models to ONNX on first use); the tests
# add the dev extras (every extra, pytest, playwright, ...). `make install-core` builds the torch-free
# core install in .venv-core, which runs models that `vsearch models export DIR` wrote.
PY ?= python3
VENV := .venv
CORE_VENV := .venv-core
# text in photos: without its opencv-python requirement (pyproject.toml says why)
OCR_ENGINE := rapidocr-onnxruntime==1.4.4

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(VENV)/bin/pip install -q -e '.[torch]' 2>&1 | grep -v 'is ignored: it is neither' || true
	$(VENV)/bin/pip install -q --no-deps $(OCR_ENGINE)
	$(VENV)/bin/python -c "import vsearch, faiss, torch, open_clip"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[dev]' 2>&1 | grep -v 'is ignored: it is neither' || true
	touch $@

# the core install alone (`pip install .`: its own requirements, nothing else)
$(CORE_VENV)/.installed: pyproject.toml
	$(PY) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(CORE_VENV)/bin/pip install -q -e . 2>&1 | grep -v 'is ignored: it is neither' || true
	$(CORE_VENV)/bin/pip install -q --no-deps $(OCR_ENGINE)
	$(CORE_VENV)/bin/python -c "import vsearch, faiss, onnxruntime, dlib"
	touch $@

.PHONY: install install-dev install-core demo test test-core device-wheels
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
install-core: $(CORE_VENV)/.installed

demo: install
	$(VENV)/bin/python scripts/sample_photos.py samples
	$(VENV)/bin/vsearch index samples --db .vsearch
	$(VENV)/bin/vsearch search "a cat" --db .vsearch -k 3

test: install-dev
	$(VENV)/bin/python -m pytest

# the core install's commands against the full install's, with models the full install exports
test-core: install-dev install-core
	models=$$(mktemp -d) && $(VENV)/bin/vsearch models export "$$models" && \
	VSEARCH_CORE_PYTHON=$(CURDIR)/$(CORE_VENV)/bin/python VSEARCH_CORE_MODELS="$$models" \
	$(VENV)/bin/python -m pytest tests/core_install -q; status=$$?; rm -rf "$$models"; exit $$status

# .whl/: wheels the offline GPU machine lacks (Python 3.12), carried with the checkout
device-wheels:
	scripts/device_wheels.sh
