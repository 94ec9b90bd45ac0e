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
    rc = main(["compare-methods", "reverse", "--steps", "20", "--faithfulness", "--out", str(out)])
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


def test_every_method_has_an_auc_a_verdict_and_mib_scores(reverse_run):
    """ROC AUC of each ranking against the ground truth, the verdict of each circuit, CPR/CMD (--faithfulness)."""
    from edgeprune.core.mib_format import load_scores
    from edgeprune.verify.roc import roc_curve

    _, out = reverse_run
    rows = {r["method"]: r for r in json.loads((out / "rows.json").read_text())}
    truth = {tuple(e) for e in json.loads((out / "circuits" / "acdc.json").read_text())["edges"]}  # acdc is exact
    assert rows["acdc"]["verdict"] == "exact" and len(truth) == 11
    for m, r in rows.items():
        assert 0.5 < r["auc"] <= 1.0, (m, r["auc"])  # every method ranks the truth far above chance
        assert (r["verdict"] == "exact") == r["exact"] and r["verdict"] in ("exact", "alternative", "not-minimal")
        scores = load_scores(out / "scores" / f"{m}.json")  # the ranking, as `edgeprune export --scores` reads it
        universe = [tuple(e) for e in scores] if m != "acdc" else None
        if universe is not None:
            assert len(scores) == 94
            assert roc_curve(scores, truth, universe)[2] == pytest.approx(r["auc"])  # the row's AUC is this ranking's
        f = r["extra"]["faithfulness"]
        assert set(f) == {"complement", "circuit"} and r["cpr"] == pytest.approx(f["complement"]["cpr"])
        assert 0.0 <= r["cpr"] <= 1.0 and 0.0 <= r["cmd"] <= 1.0
        assert f["complement"]["f"][-1] == pytest.approx(1.0) and f["circuit"]["f"][-1] == pytest.approx(0.0)
        assert r["extra"]["roc"][0] == [0, 0] and r["extra"]["roc"][-1] == [1, 1]
    md = (out / "table.md").read_text()
    assert "| verdict | AUC | CPR | CMD |" in md and "verdicts - ep:" in md and "mean over 1 program(s) - ep: AUC" in md
    for name in ("roc.png", "faithfulness.png"):
        png = (out / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    with (out / "table.csv").open() as f:
        assert {"auc", "cpr", "cmd", "verdict"} <= set(next(csv.reader(f)))


def test_scores_export_to_mib(reverse_run, tmp_path):
    """A method's scores/ file and circuit go to EAP-IG's graph JSON and come back with the same ranking."""
    from edgeprune.core.circuit import Circuit
    from edgeprune.core.mib_format import load_mib

    _, out = reverse_run
    target = tmp_path / "eap.mib.json"
    argv = [
        "export",
        str(out / "circuits" / "eap.json"),
        "-o",
        str(target),
        "--scores",
        str(out / "scores" / "eap.json"),
    ]
    assert main([*argv, "--merge-inputs"]) == 0
    back = load_mib(target)
    circuit = Circuit.load(out / "circuits" / "eap.json")
    assert set(circuit.edges) <= set(back.circuit.edges)  # tok/pos edges merged into input: a superset
    assert back.cfg == {"n_layers": 4, "n_heads": 1, "parallel_attn_mlp": False, "d_model": back.cfg["d_model"]}


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


def test_all_summaries_count_verdicts_and_average_aucs():
    from edgeprune.usecases.comparison_report import render, score_table, verdict_summary

    rows = registry_order(
        [
            Row("reverse", "ep", "", edges=11, exact=True, truth_edges=11, auc=1.0, verdict="exact"),
            Row("reverse", "eap", "", edges=13, exact=False, truth_edges=11, auc=0.9, verdict="not-minimal"),
            Row("length", "ep", "", edges=4, exact=False, truth_edges=4, auc=0.5, verdict="unfaithful"),
            Row("length", "eap", "", error="boom"),
        ]
    )
    assert verdict_summary(rows) == "verdicts - ep: exact 1, unfaithful 1; eap: not-minimal 1, error 1"
    assert score_table(rows).splitlines()[2:] == [
        "| reverse | 1.000 | 0.900 |",
        "| length | 0.500 | error |",
        "| **mean** | **0.750** (2) | **0.900** (1) |",
        "| **sum** | **1.500** (2) | **0.900** (1) |",
    ]
    text = render(rows, "zero", per_program=True)
    assert "| program | ep AUC | eap AUC |" in text and "mean over 2 program(s) - ep: AUC 0.750; eap: AUC 0.900" in text


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
