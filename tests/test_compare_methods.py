"""``edgeprune compare-methods`` on reverse: every method gets a row; table, CSV, JSON and PNG are written."""

from __future__ import annotations

import csv
import json

import pytest

from edgeprune.cli import main


@pytest.fixture(scope="module")
def reverse_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    rc = main(["compare-methods", "reverse", "--steps", "20", "--out", str(out)])
    return rc, out


def test_writes_table_csv_json_and_png(reverse_run):
    rc, out = reverse_run
    assert rc == 0
    with (out / "table.csv").open() as f:
        rows = list(csv.DictReader(f))
    methods = [r["method"] for r in rows]
    for m in ("ep", "hap", "eap", "eap-ig", "acdc"):
        assert m in methods
    assert len(rows) == 5  # one main row per method
    md = (out / "table.md").read_text()
    assert md.startswith("| program | method |") and "exact recoveries" in md and "HAP vs EP" in md
    png = (out / "kl_vs_sparsity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    doc = json.loads((out / "rows.json").read_text())
    assert len(doc) == len(rows)


def test_numbers_are_consistent(reverse_run):
    _, out = reverse_run
    rows = json.loads((out / "rows.json").read_text())
    for r in rows:
        assert not r["error"]
        assert r["sparsity"] == pytest.approx(1 - r["edges"] / 94)  # reverse's graph has 94 edges
        assert r["truth_edges"] == 11
        assert 0.0 <= r["agreement"] <= 1.0 and r["kl"] >= -1e-6
    acdc = next(r for r in rows if r["method"] == "acdc")
    assert acdc["exact"] and acdc["kl"] < 1e-5  # ACDC recovers reverse's ground truth under zero ablation


@pytest.mark.slow
def test_requested_sparsities_add_rows(tmp_path):
    assert main(["compare-methods", "reverse", "--methods", "eap,ep", "--steps", "20", "--sparsities", "0.9",
                 "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["method"] for r in rows] == ["eap", "eap", "ep", "ep"]  # in --methods order
    at90 = next(r for r in rows if r["method"] == "eap" and "sparsity 0.9" in r["setting"])
    assert at90["edges"] <= 9  # top 9 of 94 edges, minus dangling ones


def test_bad_arguments_exit_with_status_2(capsys):
    assert main(["compare-methods", "reverse", "--methods", "ep,magic"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["compare-methods", "reverse", "--sparsities", "1.5"]) == 2
    assert main(["compare-methods"]) == 2
