"""End-to-end recovery: prune, compare with the ground truth; CLI output and errors."""

from __future__ import annotations

import json

import pytest

from edgeprune.cli import main
from tests.conftest import REFERENCE_DIR


def test_recover_xproportion_reference_json(capsys):
    code = main(["recover", str(REFERENCE_DIR / "xproportion"), "--json", "--seed", "0"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["exact"] is True
    assert out["missing"] == [] and out["extra"] == [] and out["edges"] == 7
    assert {"steps", "seconds"} <= set(out)


def test_unknown_program_is_a_clear_error(capsys):
    code = main(["recover", "no_such_program"])
    err = capsys.readouterr().err
    assert code == 2 and "no_such_program" in err


def test_bad_arguments(capsys):
    assert main(["recover"]) == 2
    assert main(["recover", "reverse", "--all"]) == 2
    assert main(["recover", "reverse", "--resume"]) == 2
    assert "--run-dir" in capsys.readouterr().err


def test_interrupted_recovery_resumes_to_the_same_circuit(tmp_path):
    from pruning.recovery import recover

    ref = recover(str(REFERENCE_DIR / "xproportion"), "zero", 1, steps=80)
    run = tmp_path / "run"
    from pruning.recovery import prepare
    from pruning.defaults import recovery_config
    from pruning.adapters.compiled import CompiledAdapter
    from pruning.train import Pruner

    model, spec, data = prepare(str(REFERENCE_DIR / "xproportion"), "zero", 1)
    config = recovery_config("xproportion", None, seed=1, steps=80, checkpoint_every=20)
    Pruner(CompiledAdapter(model), data, config).run(run, progress=False, stop_after=50)
    resumed = recover(str(REFERENCE_DIR / "xproportion"), "zero", 1, steps=80, run_dir=run, resume=True,
                      checkpoint_every=20)
    assert resumed.circuit == ref.circuit


@pytest.mark.slow
@pytest.mark.parametrize("program", ["reverse", "xproportion"])
@pytest.mark.parametrize("seed", range(5))
def test_reference_programs_recover_exactly_zero_ablation(program, seed):
    from pruning.recovery import recover

    res = recover(str(REFERENCE_DIR / program), "zero", seed)
    assert res.comparison.exact, res.comparison.diff()
    assert len(res.comparison.truth) == {"reverse": 11, "xproportion": 7}[program]


@pytest.mark.slow
@pytest.mark.parametrize("program,n_edges", [("reverse", 2), ("xproportion", 3)])
def test_reference_programs_recover_exactly_interchange(program, n_edges):
    from pruning.recovery import recover

    res = recover(str(REFERENCE_DIR / program), "interchange", 0)
    assert res.comparison.exact, res.comparison.diff()
    assert len(res.comparison.truth) == n_edges
