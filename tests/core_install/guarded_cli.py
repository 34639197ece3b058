"""The vsearch command line behind an import guard, for the core install's tests.

Any attempt to import torch or a library built on it (a probe with ``importlib.util.find_spec``
aside) is written to ``$VSEARCH_IMPORT_GUARD_LOG`` with its stack and fails; at exit, such a module
found in ``sys.modules`` is written there too. The tests fail when the log exists.
"""
from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import os
import sys
import traceback

FORBIDDEN = ("torch", "torchvision", "open_clip", "timm", "transformers", "sentence_transformers",
             "pytorch_metric_learning")
LOG = os.environ["VSEARCH_IMPORT_GUARD_LOG"]


def _record(text: str) -> None:
    with open(LOG, "a") as fh:
        fh.write(text + "\n")


class TorchGuard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in FORBIDDEN:
            return None
        stack = traceback.extract_stack()
        if any(f.name == "find_spec" and f.filename in ("<frozen importlib.util>", importlib.util.__file__)
               for f in stack):
            return None  # asking whether it is installed is not importing it
        _record(f"pid {os.getpid()} imported {name}:\n" + "".join(traceback.format_list(stack)))
        raise ImportError(f"import guard: {name} must not be imported on the core install")


def _check_modules() -> None:
    found = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
    if found:
        _record(f"pid {os.getpid()} exited with {found} loaded")


sys.meta_path.insert(0, TorchGuard())
atexit.register(_check_modules)

if __name__ == "__main__":
    import cli

    sys.argv[0] = "vsearch"
    cli.app()
