"""The method registry: one entry per method, used by compare-methods on programs and language models alike;
no if/elif over method names left; without matplotlib compare-methods writes all but the picture and exits 0."""

from __future__ import annotations

import ast
import builtins
import json
from pathlib import Path

import pytest

from edgeprune.cli import main
from edgeprune.core.errors import EdgePruneError
from edgeprune.core.options import METHODS as METHOD_NAMES
from edgeprune.usecases import methods as reg

ROOT = Path(__file__).resolve().parent.parent
USERS = [
    "edgeprune/commands/compare_methods.py",
    "edgeprune/usecases/compare_methods.py",
    "edgeprune/usecases/comparison_report.py",
    "edgeprune/usecases/methods.py",
]


def test_one_entry_per_method_in_the_typed_order():
    assert tuple(reg.METHODS) == METHOD_NAMES == ("ep", "hap", "eap", "eap-ig", "acdc")
    for name, entry in reg.METHODS.items():
        assert entry.name == name and entry.scores and entry.cuts and callable(entry.run)
    assert [n for n, e in reg.METHODS.items() if e.trained] == ["ep", "hap"]
    assert [n for n, e in reg.METHODS.items() if e.curve] == ["eap", "eap-ig"]
    with pytest.raises(EdgePruneError, match="unknown method 'magic'; use one of ep, hap, eap, eap-ig, acdc"):
        reg.method("magic")
    assert reg.parse_methods(" EAP-ig,acdc ") == ("eap-ig", "acdc")


@pytest.mark.parametrize("path", USERS)
def test_no_if_over_method_names(path):
    """Dispatch goes through the registry: no ``if m == "ep"`` / ``elif m in ("eap", ...)`` in these modules."""
    tree = ast.parse((ROOT / path).read_text())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.If, ast.IfExp)):
            for sub in ast.walk(node.test):
                if isinstance(sub, ast.Constant) and sub.value in METHOD_NAMES:
                    bad.append(f"line {node.lineno}: {sub.value!r}")
    assert not bad, f"{path} tests method names: {bad}"


class FakeBench:
    """Records which bench hook each method calls: the registry runs methods through the Bench interface."""

    name, ablation, sparsities = "fake", "zero", (0.5, 0.9)

    def __init__(self):
        self.calls = []

    def _row(self, method, setting=""):
        return reg.Row(self.name, method, setting)

    def run_ep(self, sparsity=None):
        self.calls.append(("ep", sparsity))
        if sparsity == 0.9:
            raise EdgePruneError("no circuit at 0.9")
        return self._row("ep", str(sparsity))

    def run_hap(self, sparsity=None):
        self.calls.append(("hap", sparsity))
        return self._row("hap", str(sparsity))

    def run_ranked(self, method):
        self.calls.append((method, None))
        return [self._row(method)]

    def run_acdc(self):
        self.calls.append(("acdc", None))
        return self._row("acdc")


def test_run_methods_goes_through_the_bench_and_keeps_rows_before_an_error():
    bench = FakeBench()
    rows = reg.run_methods(bench, ("acdc", "ep", "eap-ig", "hap"))
    assert bench.calls == [
        ("acdc", None),
        ("ep", None),
        ("ep", 0.5),
        ("ep", 0.9),
        ("eap-ig", None),
        ("hap", None),
        ("hap", 0.5),
        ("hap", 0.9),
    ]
    assert [(r.method, r.setting, r.error) for r in rows] == [
        ("acdc", "", ""),
        ("ep", "None", ""),
        ("ep", "0.5", ""),
        ("ep", "", "no circuit at 0.9"),
        ("eap-ig", "", ""),
        ("hap", "None", ""),
        ("hap", "0.5", ""),
        ("hap", "0.9", ""),
    ]


@pytest.fixture
def no_matplotlib(monkeypatch):
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)


def test_without_matplotlib_everything_but_the_picture(no_matplotlib, tmp_path, capsys):
    out = tmp_path / "one"
    assert main(["compare-methods", "reverse", "--methods", "acdc,eap", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    assert "pip install 'edgeprune[plot]'" in cap.err
    assert {p.name for p in out.iterdir()} == {"table.md", "table.csv", "rows.json", "circuits", "scores"}
    assert [r["method"] for r in json.loads((out / "rows.json").read_text())] == ["acdc", "eap"]
    assert "PNG" not in cap.out.splitlines()[-1] and "table.md, table.csv, rows.json" in cap.out


def test_without_matplotlib_several_programs_draw_nothing(no_matplotlib, tmp_path, capsys):
    out = tmp_path / "many"
    assert main(["compare-methods", "--programs", "reverse", "--methods", "acdc", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    assert "pip install 'edgeprune[plot]'" in cap.err
    assert not list(out.rglob("*.png")) and (out / "rows.jsonl").exists() and (out / "table.md").exists()
