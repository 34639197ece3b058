"""The code's shape: the import contract in pyproject.toml holds, and no two files import each other.

The contract (`lint-imports`) states the layers (ARCHITECTURE.md); the cycle check below also
sees cli.py, which the contract cannot name, and counts imports inside functions, which a layer
contract allows between siblings but which still tie two files together.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vsearch", "indexer", "training")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the product (packages and cli.py)."""
    modules = {"cli": root / "cli.py"}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its file (top level, in functions,
    under TYPE_CHECKING). ``from pkg import name`` counts as importing ``pkg.name`` when that is
    a module, else ``pkg``; a package's ``__init__`` loaded on the way is not counted."""
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a function or class
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path):
    (tmp_path / "cli.py").write_text("")
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "vsearch" / "a.py").write_text("from vsearch.b import thing\n")
    (tmp_path / "vsearch" / "b.py").write_text("def thing():\n    from . import a\n")
    (tmp_path / "indexer" / "c.py").write_text("import vsearch.a\n")
    assert cycles(import_graph(project_modules(tmp_path))) == [["vsearch.a", "vsearch.b"]]


def test_no_import_cycle_between_files():
    found = cycles(import_graph(project_modules()))
    assert not found, "files that import each other: " + "; ".join(" <-> ".join(c) for c in found)


def test_nothing_in_the_packages_imports_the_cli():
    edges = import_graph(project_modules())
    assert not [name for name, targets in edges.items() if "cli" in targets]


def test_import_contract_holds():
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra")
    # a child process, so that the worktree's packages are the ones analysed whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
         "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True))"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
