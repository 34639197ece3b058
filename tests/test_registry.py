"""The one registry of named factories (encoders, extractors, face detectors)."""
import sys

import pytest

from vsearch.errors import UnknownModelError, VSearchError
from vsearch.registry import Registry

PLUGGED = Registry("widget", plugins={"late": "vsearch_test_plugin"})  # the plug-in registers into it


def test_plugin_is_imported_only_when_its_name_is_asked_for(tmp_path, monkeypatch):
    (tmp_path / "vsearch_test_plugin.py").write_text(
        "from tests.test_registry import PLUGGED\n"
        "PLUGGED.register('late')(lambda: 'made late')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "vsearch_test_plugin", raising=False)
    PLUGGED.register("early")(lambda: "made early")
    assert PLUGGED.names() == ["early", "late"] and "late" in PLUGGED and "other" not in PLUGGED
    assert PLUGGED.get("early")() == "made early" and "vsearch_test_plugin" not in sys.modules
    assert PLUGGED.get("late")() == "made late" and "vsearch_test_plugin" in sys.modules


def test_unknown_names_and_broken_plugins_are_one_line_errors():
    reg = Registry("model", UnknownModelError, plugins={"broken": "vsearch_no_such_module"})
    reg.register("a")(object)
    with pytest.raises(UnknownModelError, match=r"unknown model 'b' \(known: a, broken\)"):
        reg.get("b")
    with pytest.raises(UnknownModelError, match="model 'broken' needs a module that failed to import"):
        reg.get("broken")
    assert issubclass(UnknownModelError, VSearchError)


def test_the_registries_are_filled():
    from vsearch.encoders import ENCODERS
    from vsearch.extractors import EXTRACTORS
    from vsearch.faces.detectors import DETECTORS

    assert {"packaged", "clip", "trained"} <= set(ENCODERS.names())
    assert EXTRACTORS.names() == ["faces", "regions"]
    assert DETECTORS.names() == ["hog", "cnn", "haar"]
