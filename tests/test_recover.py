"""End-to-end recovery: prune, compare with the ground truth; CLI output and errors."""

from __future__ import annotations

import json

import pytest

from edgeprune.cli import main
from edgeprune.compiled.resolve import compile_registered
from tests.conftest import REFERENCE_DIR


def test_recover_xproportion_reference_json(capsys):
    code = main(["recover", str(REFERENCE_DIR / "xproportion"), "--json", "--seed", "0"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["exact"] is True and out["verdict"] == "exact"
    assert out["missing"] == [] and out["extra"] == [] and out["edges"] == 7
    assert {"steps", "seconds"} <= set(out)


def test_unknown_program_is_a_clear_error(capsys):
    code = main(["recover", "no_such_program"])
    err = capsys.readouterr().err
    assert code == 3 and "no_such_program" in err  # 3: an error, apart from 1 (a circuit that is not exact)


def test_bad_arguments(capsys):
    assert main(["recover"]) == 3
    assert main(["recover", "reverse", "--all"]) == 3
    assert main(["recover", "reverse", "--resume"]) == 3
    assert "--run-dir" in capsys.readouterr().err


def test_interrupted_recovery_resumes_to_the_same_circuit(tmp_path):
    from edgeprune.usecases.recovery import recover

    ref = recover(str(REFERENCE_DIR / "xproportion"), "zero", 1, steps=80)
    run = tmp_path / "run"
    from edgeprune.pruning.adapters.compiled import CompiledAdapter
    from edgeprune.pruning.defaults import recovery_config
    from edgeprune.pruning.train import Pruner
    from edgeprune.usecases.recovery import prepare

    model, spec, data = prepare(str(REFERENCE_DIR / "xproportion"), "zero", 1)
    config = recovery_config("xproportion", None, seed=1, steps=80, checkpoint_every=20)
    Pruner(CompiledAdapter(model), data, config).run(run, progress=False, stop_after=50)
    resumed = recover(
        str(REFERENCE_DIR / "xproportion"), "zero", 1, steps=80, run_dir=run, resume=True, checkpoint_every=20
    )
    assert resumed.circuit == ref.circuit


@pytest.mark.slow
@pytest.mark.parametrize("program", ["reverse", "xproportion"])
@pytest.mark.parametrize("seed", range(5))
def test_reference_programs_recover_exactly_zero_ablation(program, seed):
    from edgeprune.usecases.recovery import recover

    res = recover(str(REFERENCE_DIR / program), "zero", seed)
    assert res.comparison.exact, res.comparison.diff()
    assert len(res.comparison.truth) == {"reverse": 11, "xproportion": 7}[program]


@pytest.mark.slow
@pytest.mark.parametrize("program,n_edges", [("reverse", 2), ("xproportion", 3)])
def test_reference_programs_recover_exactly_interchange(program, n_edges):
    from edgeprune.usecases.recovery import recover

    res = recover(str(REFERENCE_DIR / program), "interchange", 0)
    assert res.comparison.exact, res.comparison.diff()
    assert len(res.comparison.truth) == n_edges


@pytest.mark.slow
@pytest.mark.parametrize("ablation", ["zero", "interchange"])
@pytest.mark.parametrize("program", ["hist", "length", "pair_balance", "sort_unique"])
def test_other_imported_tracr_models_recover_their_ground_truth(program, ablation):
    """recover MODEL_DIR on the rest of the Tracr reference models (interchange: same-length corruptions)."""
    from edgeprune.usecases.recovery import recover

    res = recover(str(REFERENCE_DIR / program), ablation, 0)
    assert res.comparison.exact, res.comparison.diff()


def test_recover_model_matches_recover_on_a_registered_program():
    """The in-memory path (generated programs) trains and compares exactly as the registry path does."""
    from edgeprune.programs.registry import get_program
    from edgeprune.usecases.recovery import recover, recover_model

    spec = get_program("length")
    by_name = recover("length", "zero", 0, steps=40)
    in_memory = recover_model(
        compile_registered(spec.name), spec.enumerate_inputs(), "zero", 0, 40, name="length", pruning=spec.pruning
    )
    assert in_memory.circuit == by_name.circuit and in_memory.truth == by_name.truth
    assert in_memory.layers == by_name.layers == 1 and in_memory.graph_edges == by_name.graph_edges == 13
    assert in_memory.to_dict()["graph_edges"] == 13


def test_recover_programs_subset_json_in_registry_order(capsys):
    code = main(["recover", "--programs", "hist,length", "--steps", "30", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert [r["program"] for r in out["programs"]] == ["length", "hist"]  # registry order, not argument order
    assert out["total"] == 2 and out["jobs"] == 1
    assert code == (0 if out["exact"] else 1) and out["exact"] == all(r["exact"] for r in out["programs"])
    assert sum(out["verdicts"].values()) == 2 and out["verdicts"]["exact"] == sum(r["exact"] for r in out["programs"])
    assert all(r["verdict"] in ("exact", "alternative", "not-minimal", "unfaithful") for r in out["programs"])
    for r in out["programs"]:
        assert r["layers"] == 1 and r["graph_edges"] == 13 and r["steps"] == 30
        assert "circuit" not in r  # circuits go to the report, not the table


def test_recover_all_parallel_report(tmp_path, capsys):
    report = tmp_path / "report"
    code = main(
        ["recover", "--all", "--programs", "length,hist", "--jobs", "2", "--steps", "30", "--report", str(report)]
    )
    out = capsys.readouterr().out
    assert out.index("\nlength ") < out.index("\nhist ")  # rows in registry order whatever finishes first
    results = json.loads((report / "results.json").read_text())
    assert [r["program"] for r in results["programs"]] == ["length", "hist"] and results["jobs"] == 2
    assert code == (0 if results["passed"] == 2 else 1)
    readme = (report / "README.md").read_text()
    for r in results["programs"]:
        row = next(line for line in readme.splitlines() if line.startswith(f"| {r['program']} |"))
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[1:5] == ["1", "13", str(r["truth_edges"]), str(r["edges"])]
        assert (cells[5] == "exact") == r["exact"]
        chk = r["check"]  # the checker's inputs, as the cell states them
        assert chk["mode"] in ("exhaustive", "sampled") and chk["inputs"] <= chk["budget"]
        assert cells[8] == (
            f"all {chk['inputs']}"
            if chk["mode"] == "exhaustive"
            else f"{chk['inputs']} of {chk['total']} (seed {chk['seed']})"
        )
        assert f"circuits/{r['program']}.png" in row and (report / "circuits" / f"{r['program']}.png").stat().st_size
        if not r["exact"]:  # the diff and the ground truth's picture beside the recovered one
            assert (
                cells[5].startswith(f"**{r['verdict']}**")
                and (report / "circuits" / f"{r['program']}.truth.png").is_file()
            )
        assert sorted(map(tuple, r["truth"])) == sorted(
            map(tuple, json.loads((report / "circuits" / f"{r['program']}.truth.json").read_text())["edges"])
        )


@pytest.mark.parametrize(
    "argv,message",
    [
        (["recover", "--programs", "nope"], "unknown program 'nope'"),
        (["recover", "--programs", " , "], "--programs is empty"),
        (["recover", "--all", "--jobs", "0"], "--jobs must be at least 1"),
        (["recover", "reverse", "--report", "x"], "add --all"),
        (["recover", "reverse", "--programs", "sort"], "not both"),
    ],
)
def test_recover_all_bad_flags(argv, message, capsys):
    assert main(argv) == 3
    assert message in capsys.readouterr().err


def test_checker_budget_every_input_when_few_a_stated_seeded_sample_otherwise():
    from edgeprune.verify.checker import count_inputs, input_plan

    inputs, plan = input_plan(["a", "b", "c"], 4, limit=1000)
    assert plan.mode == "exhaustive" and plan.inputs == len(inputs) == count_inputs(["a", "b", "c"], 4) == 120
    vocab = list("abcdef")
    inputs, plan = input_plan(vocab, 4, limit=300, seed=3)  # 1554 inputs: the vocab-6, length-4 case
    assert plan.mode == "sampled" and plan.inputs == len(inputs) == 300 and plan.total == 1554 and plan.seed == 3
    assert len({tuple(x) for x in inputs}) == 300 and "300 of 1554" in plan.describe()
    assert input_plan(vocab, 4, limit=300, seed=3)[0] == inputs  # seeded: the same sample every time
    assert count_inputs(vocab, 3, "distinct") == 6 + 30 + 120


def test_oracle_incremental_answers_agree_with_a_full_evaluation():
    """Memo and failing-input hints change how much is evaluated, never the answer."""
    from edgeprune.compiled.ground_truth import ground_truth
    from edgeprune.verify.checker import Oracle, check_ground_truth

    model = compile_registered("length")  # 363 inputs: every one checked
    truth = ground_truth(model, "zero")
    oracle = Oracle(model, "zero")
    assert oracle.plan.mode == "exhaustive"
    edges = set(truth.edges)
    for e in sorted(edges):
        want = not oracle.failing(edges - {e}, limit=1)
        assert oracle.sufficient(edges - {e}) == want and oracle.sufficient(edges - {e}) == want
    assert oracle.sufficient(edges) and oracle._hints  # a failing input was remembered
    report = check_ground_truth(model, truth, oracle=oracle)
    assert report.ok and report.plan is not None and "exhaustive" in report.summary()


def test_info_states_the_checker_budget(capsys):
    assert main(["info", "length"]) == 0  # vocab 3, length 5: 363 inputs
    assert "checker: exhaustive, every input (budget 1000 inputs)" in capsys.readouterr().out
    assert main(["info", "length", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["checker"] == {"mode": "exhaustive", "inputs": 363, "total": 363, "budget": 1000}
    assert main(["info", "hist"]) == 0  # vocab 4, length 5: 1364 inputs
    assert "checker: sampled, a seeded sample of 1000 of 1364 (budget 1000 inputs)" in capsys.readouterr().out
