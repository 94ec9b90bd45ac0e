"""``edgeprune compare-methods --model --task`` on a tiny random GPT-2 saved locally: one row per method, every
method cut at the target sparsity, rows scored as ``edgeprune evaluate`` scores the circuit files, HAP inside its
kept subgraph.  A few steps each, so the file runs in seconds."""

from __future__ import annotations

import csv
import json
import math

import pytest

pytest.importorskip("transformers")

from edgeprune.cli import main  # noqa: E402
from edgeprune.usecases.compare_methods import LMBench, Options  # noqa: E402
from tests.hf_helpers import save_model, task_tokenizer, tiny_gpt2  # noqa: E402

EXAMPLES = "8,4,4"
N_EDGES = 137  # 2 layers, 4 heads


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tok = task_tokenizer()
    return save_model(tiny_gpt2(len(tok)), tok, tmp_path_factory.mktemp("lm") / "gpt2")


@pytest.fixture(scope="module")
def ioi_run(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp-lm")
    rc = main(
        [
            "compare-methods",
            "--model",
            str(model_dir),
            "--task",
            "ioi",
            "--examples",
            EXAMPLES,
            "--steps",
            "5",
            "--target-sparsity",
            "0.8",
            "--batch-size",
            "8",
            "--faithfulness",
            "--plot-format",
            "svg",
            "--out",
            str(out),
        ]
    )
    return rc, out


def test_one_row_per_method_at_the_target_sparsity(ioi_run):
    rc, out = ioi_run
    assert rc == 0
    rows = json.loads((out / "rows.json").read_text())
    assert [r["method"] for r in rows] == ["ep", "hap", "eap", "eap-ig", "acdc"]
    for r in rows:
        assert not r["error"], r
        assert r["program"] == "gpt2:ioi" and r["metric_name"] == "logit_diff"
        assert r["exact"] is None and r["truth_edges"] is None  # no ground truth for a language model
        assert math.isfinite(r["kl"]) and r["kl"] >= 0 and math.isfinite(r["metric"])
        assert r["sparsity"] == pytest.approx(1 - r["edges"] / N_EDGES)
        assert set(r["extra"]["metrics"]) == {"kl", "logit_diff", "exact_match", "accuracy"}
        assert r["agreement"] == r["extra"]["metrics"]["exact_match"]
        if r["method"] != "acdc":  # ACDC's tau decides its size
            assert abs(r["sparsity"] - 0.8) <= 0.01
    hap = rows[1]
    assert hap["edges"] <= hap["extra"]["kept"] == math.ceil(0.5 * N_EDGES)
    assert hap["extra"]["prune_seconds"] >= 0 and hap["extra"]["attribution_seconds"] >= 0


def test_table_names_the_task_metric(ioi_run):
    _, out = ioi_run
    md = (out / "table.md").read_text()
    assert md.startswith(
        "| program | method | setting | edges | sparsity | KL (interchange) | agreement | logit_diff |"
    )
    assert "| exact |" not in md and "exact recoveries" not in md
    assert "circuits scored on the test split (4 examples)" in md and "HAP vs EP" in md
    with (out / "table.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["metric_name"] for r in rows] == ["logit_diff"] * 5
    assert b"<svg" in (out / "kl_vs_sparsity.svg").read_bytes()[:2000]


def test_faithfulness_cpr_and_cmd_per_method(ioi_run):
    """--faithfulness on a language model: every method's ranking cut at MIB's budgets, the task's metric
    normalized between the empty circuit and the full model; no ROC (there is no ground truth)."""
    from edgeprune.usecases.faithfulness import MIB_BUDGETS, cpr_cmd

    _, out = ioi_run
    rows = json.loads((out / "rows.json").read_text())
    for r in rows:
        assert r["auc"] is None and r["verdict"] == ""
        kept = r["extra"]["faithfulness"]["complement"]
        assert kept["budgets"] == pytest.approx(list(MIB_BUDGETS)) and kept["k"][-1] == N_EDGES
        assert kept["f"][-1] == pytest.approx(1.0, abs=1e-4)
        assert (r["cpr"], r["cmd"]) == pytest.approx(cpr_cmd(kept["budgets"], kept["f"]))
    md = (out / "table.md").read_text()
    assert "| CPR | CMD |" in md and "CPR" in md.split("mean over 1 program(s)")[1]
    assert b"<svg" in (out / "faithfulness.svg").read_bytes()[:2000] and not (out / "roc.svg").exists()


def test_rows_match_edgeprune_evaluate_of_the_circuit_files(ioi_run, model_dir, capsys):
    _, out = ioi_run
    rows = {r["method"]: r for r in json.loads((out / "rows.json").read_text())}
    capsys.readouterr()
    for m in ("ep", "acdc"):
        assert (
            main(
                [
                    "evaluate",
                    "--model",
                    str(model_dir),
                    "--task",
                    "ioi",
                    "--examples",
                    EXAMPLES,
                    "--circuit",
                    str(out / "circuits" / f"{m}.json"),
                    "--json",
                ]
            )
            == 0
        )
        doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert doc["edges"] == rows[m]["edges"]
        assert doc["circuit"]["kl"] == pytest.approx(rows[m]["kl"], rel=1e-4, abs=1e-6)
        assert doc["circuit"]["logit_diff"] == pytest.approx(rows[m]["metric"], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_hap_stays_inside_its_subset(model_dir, keep):
    """With keep 0.1 the subgraph (14 edges) is smaller than the target's 27: HAP keeps at most all of it."""
    opts = Options(methods=("hap",), ablation="interchange", steps=5, hap_keep=keep, target_sparsity=0.8, batch_size=8)
    bench = LMBench(str(model_dir), "ioi", opts, sizes=(8, 4, 4))
    row = bench.run_hap()
    edges, subset = set(map(tuple, bench.circuits["hap"].edges)), set(map(tuple, bench.subsets["hap"]))
    assert edges <= subset and len(subset) == math.ceil(keep * N_EDGES)
    assert row.edges == len(edges) == min(round(0.2 * N_EDGES), len(subset))


def test_greater_than_reports_probability_difference(model_dir, tmp_path):
    assert (
        main(
            [
                "compare-methods",
                "--model",
                str(model_dir),
                "--task",
                "gt",
                "--examples",
                EXAMPLES,
                "--methods",
                "eap,acdc",
                "--target-sparsity",
                "0.9",
                "--no-plot",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["method"] for r in rows] == ["eap", "acdc"]
    assert all(r["metric_name"] == "prob_diff" and r["agreement"] is None and math.isfinite(r["kl"]) for r in rows)
    assert rows[0]["edges"] == round(0.1 * N_EDGES)


def test_lm_options_are_checked(model_dir, tmp_path, capsys):
    base = ["compare-methods", "--model", str(model_dir), "--task", "ioi", "--out", str(tmp_path)]
    assert main([*base, "--target-sparsity", "1.5"]) == 2
    assert "--target-sparsity 1.5 is not in [0, 1]" in capsys.readouterr().err
    assert main([*base, "--examples", "two"]) == 2
    assert "--examples 'two'" in capsys.readouterr().err
    assert main([*base, "--all"]) == 2
    assert "not both" in capsys.readouterr().err
