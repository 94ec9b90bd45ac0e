"""``edgeprune compare-methods`` on compiled programs: every method gets a row; table, CSV, JSON and PNG are written;
several programs go to rows.jsonl, which ``--resume`` continues and ``--jobs`` fills from worker processes."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict

import pytest

from edgeprune.cli import main
from edgeprune.usecases.compare_methods import read_rows, registry_order
from edgeprune.usecases.comparison_report import program_table
from edgeprune.usecases.methods import Row


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
    hap = next(r for r in rows if r["method"] == "hap")
    assert hap["extra"]["prune_seconds"] >= 0 and hap["extra"]["attribution_seconds"] >= 0
    # program defaults: EAP-IG keeps ceil(0.6 x 94) edges and pruning runs half of Edge Pruning's 20 steps
    assert hap["extra"]["kept"] == 57 and hap["extra"]["steps"] == 10 and hap["setting"].startswith("eap-ig keep 0.6")
    eap = next(r for r in rows if r["method"] == "eap")
    assert len(eap["extra"]["curve"]) == 41  # the top-k curve travels with the row, so plots can be redrawn from rows


def test_circuits_are_written_as_scored(reverse_run):
    _, out = reverse_run
    rows = {r["method"]: r for r in json.loads((out / "rows.json").read_text())}
    for m, r in rows.items():
        doc = json.loads((out / "circuits" / f"{m}.json").read_text())
        assert len(doc["edges"]) == r["edges"] and doc["meta"]["method"] == m


@pytest.mark.slow
def test_requested_sparsities_add_rows(tmp_path):
    assert (
        main(
            [
                "compare-methods",
                "reverse",
                "--methods",
                "eap,ep",
                "--steps",
                "20",
                "--sparsities",
                "0.9",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["method"] for r in rows] == ["eap", "eap", "ep", "ep"]  # in --methods order
    at90 = next(r for r in rows if r["method"] == "eap" and "sparsity 0.9" in r["setting"])
    assert at90["edges"] <= 9  # top 9 of 94 edges, minus dangling ones


@pytest.mark.parametrize(
    "argv, message",
    [
        (["reverse", "--methods", "ep,magic"], "unknown method"),
        (["reverse", "--sparsities", "1.5"], "sparsities must lie in [0, 1]"),
        ([], "name a program"),
        (["reverse", "--all"], "not both"),
        (["reverse", "--resume"], "--resume and --jobs apply to several programs"),
        (["reverse", "--jobs", "2"], "--resume and --jobs apply to several programs"),
        (["--all", "--jobs", "0"], "--jobs must be at least 1"),
        (["--programs", "reverse,nonesuch"], "nonesuch"),
        (["reverse", "--examples", "8"], "--examples apply to language models"),
        (["reverse", "--model", "gpt2", "--task", "ioi"], "not both"),
        (["--model", "gpt2"], "--model and --task go together"),
        (["--task", "ioi"], "--model and --task go together"),
    ],
)
def test_bad_arguments_exit_with_status_2(argv, message, capsys, tmp_path):
    assert main(["compare-methods", *argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jobs_then_resume_runs_only_missing_methods(tmp_path, capsys):
    """Two workers write rows.jsonl in completion order; --resume adds eap-ig and keeps the rest."""
    base = ["compare-methods", "--programs", "hist,length", "--no-plot", "--out", str(tmp_path)]
    assert main([*base, "--methods", "acdc,eap", "--jobs", "2"]) == 0
    first = _jsonl(tmp_path / "rows.jsonl")
    assert sorted((r["program"], r["method"]) for r in first) == [
        ("hist", "acdc"),
        ("hist", "eap"),
        ("length", "acdc"),
        ("length", "eap"),
    ]
    capsys.readouterr()
    assert main([*base, "--methods", "eap,eap-ig,acdc", "--resume"]) == 0
    assert "4 row(s) kept" in capsys.readouterr().err
    lines = _jsonl(tmp_path / "rows.jsonl")
    assert lines[:4] == first and sorted((r["program"], r["method"]) for r in lines[4:]) == [
        ("hist", "eap-ig"),
        ("length", "eap-ig"),
    ]
    rows = json.loads((tmp_path / "rows.json").read_text())  # registry order (length first), then method order
    assert [(r["program"], r["method"]) for r in rows] == [
        ("length", "eap"),
        ("length", "eap-ig"),
        ("length", "acdc"),
        ("hist", "eap"),
        ("hist", "eap-ig"),
        ("hist", "acdc"),
    ]
    md = (tmp_path / "table.md").read_text()
    assert md.startswith("| program | truth | eap edges / exact | eap-ig edges / exact | acdc edges / exact |")
    assert (
        "| length | 4 | 4 / yes | 4 / yes | 4 / yes |" in md and "| **exact** |  | **2/2** | **2/2** | **2/2** |" in md
    )
    assert "| program | method | setting |" in md and "exact recoveries - eap: 2/2, eap-ig: 2/2, acdc: 2/2" in md
    with (tmp_path / "table.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 6


def test_resume_reruns_failed_programs_and_reads_older_rows(tmp_path, capsys):
    """An error row of method "-" means the program never ran: it runs again and its error leaves the tables.
    Rows written before the metric columns existed are read as they are; a line cut short is skipped."""
    old_hist = {
        k: v
        for k, v in asdict(
            Row("hist", "eap", "older run", edges=999, sparsity=0.1, kl=0.0, agreement=1.0, exact=False, truth_edges=6)
        ).items()
        if k not in ("metric", "metric_name")
    }
    broken = asdict(Row("length", "-", "", error="RuntimeError: went wrong"))
    (tmp_path / "rows.jsonl").write_text(
        json.dumps(old_hist) + "\n" + json.dumps(broken) + "\n" + '{"program": "hist", "meth'
    )
    argv = [
        "compare-methods",
        "--programs",
        "length,hist",
        "--methods",
        "eap",
        "--no-plot",
        "--resume",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    assert "skipped 1 unreadable line" in capsys.readouterr().err
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [(r["program"], r["method"], r["edges"]) for r in rows] == [("length", "eap", 4), ("hist", "eap", 999)]
    assert len(read_rows(tmp_path / "rows.jsonl")) == 3  # the old two plus length's new row, appended
    assert main(argv[:-2] + ["--ablation", "interchange", "--out", str(tmp_path)]) == 2
    assert "were made with --ablation zero" in capsys.readouterr().err


def test_program_table_counts_errors_against_the_method():
    rows = registry_order(
        [
            Row("hist", "acdc", "", edges=6, exact=True, truth_edges=6, cpu_seconds=0.1),
            Row("reverse", "ep", "", edges=11, exact=True, truth_edges=11, cpu_seconds=20.0),
            Row("reverse", "ep", "sparsity 0.9", edges=6, exact=False, truth_edges=11, cpu_seconds=19.0),
            Row("reverse", "acdc", "", edges=12, exact=False, truth_edges=11, cpu_seconds=0.5),
            Row("hist", "ep", "", error="no data"),
            Row("length", "-", "", error="no model"),
        ]
    )
    assert [r.program for r in rows] == ["reverse", "reverse", "reverse", "length", "hist", "hist"]
    assert program_table(rows).splitlines()[2:] == [
        "| reverse | 11 | 11 / yes | 12 / no | 20.0 |",
        "| length |  | error | error |  |",
        "| hist | 6 | error | 6 / yes |  |",
        "| **exact** |  | **1/3** | **1/3** |  |",
    ]
