"""Imports point one way: core <- programs <- compiled <- pruning <- verify <- use cases <- CLI.

Every ``import`` in every module is read from the source (deferred imports inside
functions included), so an upward import or a cycle between layers fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Folder in the repository -> the package it is installed as.
FOLDERS = {
    "edgeprune": "edgeprune",
    "programs": "edgeprune.programs",
    "compiled": "edgeprune.compiled",
    "pruning": "edgeprune.pruning",
    "verify": "edgeprune.verify",
}

# Lowest first. A module may import its own layer or any layer below it.
LAYERS = [
    "edgeprune.core",
    "edgeprune.programs",
    "edgeprune.compiled",
    "edgeprune.pruning",
    "edgeprune.verify",
    "edgeprune.usecases",
    "edgeprune",  # the public API and the command line
]


def layer_of(module: str) -> int:
    """Index in LAYERS of the most specific layer prefix of ``module``."""
    best = -1
    best_len = -1
    for index, prefix in enumerate(LAYERS):
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
            best, best_len = index, len(prefix)
    if best < 0:
        raise AssertionError(f"{module} belongs to no layer; add it to LAYERS")
    return best


def project_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if folder == "edgeprune" and parts and parts[0] in {"programs", "compiled", "pruning", "verify"}:
                continue
            modules[name] = path
    return modules


def imported_names(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported edgeprune module) for each import statement of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "edgeprune"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "edgeprune":
                continue
            # `from edgeprune.core import names` imports the module edgeprune.core.names.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.append((node.lineno, candidate if _is_module(candidate) else target))
    return found


def _is_module(name: str) -> bool:
    return name in project_modules_cached()


_CACHE: dict[str, Path] = {}


def project_modules_cached() -> dict[str, Path]:
    if not _CACHE:
        _CACHE.update(project_modules())
    return _CACHE


def upward_imports() -> list[str]:
    problems = []
    for module, path in project_modules_cached().items():
        own = layer_of(module)
        for line, target in imported_names(module, path):
            if layer_of(target) > own:
                problems.append(
                    f"{path.relative_to(ROOT)}:{line}: {module} ({LAYERS[own]}) imports {target} ({LAYERS[layer_of(target)]})"
                )
    return problems


def test_every_module_belongs_to_a_layer():
    for module in project_modules_cached():
        layer_of(module)


def test_imports_point_down_only():
    problems = upward_imports()
    assert not problems, "imports that point up a layer:\n" + "\n".join(problems)


def test_the_checker_would_catch_an_upward_import(tmp_path, monkeypatch):
    """The rule above is not vacuous: a core module importing the engine is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from edgeprune.pruning.train import Pruner\n", encoding="utf-8")
    found = imported_names("edgeprune.core.bad", bad)
    assert found == [(1, "edgeprune.pruning.train")]
    assert layer_of(found[0][1]) > layer_of("edgeprune.core.bad")


@pytest.mark.parametrize("package", ["programs", "compiled", "pruning", "verify"])
def test_no_module_imports_the_old_top_level_names(package):
    for path in project_modules_cached().values():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                assert node.module.split(".")[0] != package, (
                    f"{path}: import from top-level {package!r}; use edgeprune.{package}"
                )
            if isinstance(node, ast.Import):
                for a in node.names:
                    assert a.name.split(".")[0] != package, f"{path}: import {a.name}; use edgeprune.{package}"
