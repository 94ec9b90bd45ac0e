"""Your own program (issue 16): a program file outside the repo compiles, shows its ground truth, runs and
recovers from the CLI and the library; library programs at another vocab; a programs directory; bad input."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import torch

from edgeprune.cli import main
from edgeprune.compiled.ground_truth import ground_truth
from edgeprune.compiled.model import RESIDUAL_AXIS
from edgeprune.programs import rasp
from edgeprune.programs.user import load_program, parse_vocab

# The README's example ("Your own program", docs/your-own-program.md): five lines.
README_EXAMPLE = '''\
from edgeprune.programs import rasp


def smaller():
    """How many tokens are smaller than the token at each position."""
    return rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT))
'''


def _file(tmp_path: Path, text: str, name: str = "my_programs.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_readme_example_is_the_docs_example():
    doc = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert README_EXAMPLE in doc
    assert len([line for line in README_EXAMPLE.splitlines() if line.strip()]) <= 5


def test_readme_example_compiles_shows_truth_runs_and_recovers_from_the_cli(tmp_path, capsys):
    ref = f"{_file(tmp_path, README_EXAMPLE)}:smaller"
    opts = ("--vocab", "1,2,3", "--max-seq-len", "4")
    rc, out, _ = _cli(capsys, "compile", ref, *opts, "-o", tmp_path / "model")
    assert rc == 0 and (tmp_path / "model" / "model.json").is_file(), out

    rc, out, _ = _cli(capsys, "info", ref, *opts, "--json")
    info = json.loads(out)
    assert rc == 0 and info["name"] == "smaller" and info["vocab"] == [1, 2, 3] and info["max_seq_len"] == 4
    assert info["output_encoding"] == "categorical"
    assert info["ground_truth"]["zero"], "a ground truth with edges"
    rc, out2, _ = _cli(capsys, "info", tmp_path / "model", "--json")  # the saved model: the same truth
    assert json.loads(out2)["ground_truth"] == info["ground_truth"]

    rc, out, _ = _cli(capsys, "run", ref, "3", "1", "2", "3", *opts)
    assert rc == 0 and out.strip() == "3 1 2 3 -> 2 0 1 2"
    rc, out, _ = _cli(capsys, "run", tmp_path / "model", "2", "2", "1")
    assert out.strip() == "2 2 1 -> 1 1 0"

    rc, out, _ = _cli(capsys, "recover", ref, *opts, "--json", "--no-progress")
    res = json.loads(out)
    assert rc == 0 and res["exact"] and res["program"] == "smaller" and res["edges"] == res["truth_edges"] > 0


def test_readme_example_recovers_through_the_library(tmp_path):
    from edgeprune.usecases.recovery import recover_program

    spec = load_program(f"{_file(tmp_path, README_EXAMPLE)}:smaller", vocab=[1, 2, 3], max_seq_len=4)
    assert spec.output_encoding == "categorical" and spec.vocab == (1, 2, 3) and spec.count_inputs() == 120
    got = recover_program(spec.build(), [1, 2, 3], 4, name="smaller")
    assert got.exact and got.verdict == "exact"
    assert got.truth_check.sufficient and not got.truth_check.unnecessary
    assert got.circuit.edges == got.truth.edges == ground_truth(got.model).edges
    assert got.model.run([[3, 1, 2]]) == [[2, 0, 1]]


def test_library_call_on_a_numerical_program_object_interchange():
    from edgeprune.usecases.recovery import recover_program

    sel = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    frac = rasp.numerical(
        rasp.Aggregate(sel, rasp.numerical(rasp.Map(lambda t: 1 if t == "a" else 0, rasp.tokens)), default=0)
    )
    got = recover_program(frac, ["a", "b"], 4, ablation="interchange", name="frac_a")
    assert got.spec.output_encoding == "numerical"
    assert got.exact, got.result.comparison.diff()


def test_parse_vocab():
    assert parse_vocab("3,1,2") == (1, 2, 3)
    assert parse_vocab("a, b,c") == ("a", "b", "c")
    assert parse_vocab("0.5,1") == (0.5, 1)
    assert set(parse_vocab('[1, "a"]')) == {1, "a"}


def test_library_program_at_another_vocab_and_length(capsys):
    rc, out, _ = _cli(capsys, "info", "sort", "--vocab", "1,2,3,4,5", "--max-seq-len", "4", "--json")
    info = json.loads(out)
    assert info["vocab"] == [1, 2, 3, 4, 5] and info["max_seq_len"] == 4
    rc, out, _ = _cli(capsys, "run", "sort", "5", "1", "5", "2", "--vocab", "1,2,3,4,5", "--max-seq-len", "4")
    assert out.strip() == "5 1 5 2 -> 1 2 5 5"


def _canon(label: str) -> str:
    """A residual label without the global id of an unnamed expression (``sequence_map_5:1.2`` -> ``sequence_map:1.2``)."""
    name, sep, value = label.partition(":")
    return re.sub(r"_\d+(?=_|$)", "", name) + sep + value


@pytest.mark.tracr
def test_compile_sort_at_vocab_1_to_5_equals_tracr_make_sort(tmp_path, capsys):
    pytest.importorskip("tracr")
    from tracr.compiler import compiling
    from tracr.compiler import lib as tlib
    from tracr.rasp import rasp as trasp

    from edgeprune.compiled.io import load_model
    from edgeprune.compiled.tracr_import import haiku_params_to_torch

    rc, out, _ = _cli(capsys, "compile", "sort", "--vocab", "1,2,3,4,5", "--max-seq-len", "5", "-o", tmp_path / "m")
    assert rc == 0, out
    ours = load_model(tmp_path / "m")
    assembled = compiling.compile_rasp_to_model(
        tlib.make_sort(trasp.tokens, trasp.tokens, max_seq_len=5, min_key=1),
        {1, 2, 3, 4, 5},
        5,
        compiler_bos="BOS",
        compiler_pad="compiler_pad",
    )
    t_labels = [_canon(str(l)) for l in assembled.residual_labels]
    o_labels = [_canon(l) for l in ours.metadata.residual_labels]
    assert len(set(t_labels)) == len(t_labels) and sorted(t_labels) == sorted(o_labels)
    perm = torch.tensor([t_labels.index(l) for l in o_labels])  # tracr's residual index of each of ours
    cfg = assembled.model_config
    assert (ours.config.n_layers, ours.config.n_heads, ours.config.mlp_hidden) == (
        cfg.num_layers,
        cfg.num_heads,
        cfg.mlp_hidden_size,
    )
    params = {f"{mod}/{p}": v for mod, d in assembled.params.items() for p, v in d.items()}
    theirs = haiku_params_to_torch({k: __import__("numpy").asarray(v) for k, v in params.items()}, ours.config, "tracr")
    enc = assembled.input_encoder.encoding_map
    tok_rows = torch.tensor([enc[t] for t, _ in ours.metadata.encoding_map])
    for key, mine in ours.named_parameters():
        ref = theirs[key].to(mine.dtype)
        if key == "token_embed":
            ref = ref.index_select(0, tok_rows)
        if key in RESIDUAL_AXIS:
            ref = ref.index_select(RESIDUAL_AXIS[key], perm)
        torch.testing.assert_close(mine, ref, atol=1e-6, rtol=1e-6, msg=lambda m, key=key: f"{key}: {m}")
    assert ours.run([[5, 3, 5, 1, 2]]) == [[1, 2, 3, 5, 5]]


THREE_PROGRAMS = {
    "counting.py": """\
        from edgeprune.programs import rasp

        def smaller():
            return rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT)), [1, 2, 3], 4

        def _helper(x):
            return x
        """,
    "maps.py": '''\
        from edgeprune.programs import rasp

        def plus_one():
            """tokens + 1"""
            return rasp.Map(lambda x: x + 1, rasp.tokens), [1, 2, 3], 4

        def frac_a():
            sel = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
            ones = rasp.numerical(rasp.Map(lambda t: 1 if t == "a" else 0, rasp.tokens))
            return rasp.numerical(rasp.Aggregate(sel, ones, default=0)), ["a", "b"], 4
        ''',
}


def test_programs_dir_runs_three_programs_with_the_report(tmp_path, capsys):
    d = tmp_path / "suite"
    d.mkdir()
    for name, text in THREE_PROGRAMS.items():
        _file(d, text, name)
    report = tmp_path / "report"
    rc, out, err = _cli(capsys, "recover", "--all", "--programs-dir", d, "--report", report, "--no-progress")
    assert rc == 0, out + err
    assert "3/3 exact" in out
    results = json.loads((report / "results.json").read_text())
    assert [r["program"] for r in results["programs"]] == ["smaller", "plus_one", "frac_a"]
    assert all(r["exact"] for r in results["programs"]) and results["total"] == 3
    readme = (report / "README.md").read_text()
    assert "--programs-dir" in readme and "3/3 programs recovered exactly" in readme
    for n in ("smaller", "plus_one", "frac_a"):
        assert f"| {n} |" in readme and (report / "circuits" / f"{n}.png").is_file()


def test_programs_dir_needs_all(tmp_path, capsys):
    rc, _, err = _cli(capsys, "recover", "--programs-dir", tmp_path)
    assert rc != 0 and "add --all" in err


# ----------------------------------------------------------------------------- bad input: exit 2, file and function named

BAD = """\
    from edgeprune.programs import rasp

    def not_a_program():
        return 42

    def mixed_compare():
        return rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT))

    def uncompilable():
        sel = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
        return rasp.numerical(rasp.Aggregate(sel, rasp.Map(lambda x: x == 1, rasp.tokens), default=0)), [1, 2], 3

    def raises():
        raise RuntimeError("boom")
    """


@pytest.mark.parametrize(
    "func, argv, needles",
    [
        ("nothing_here", [], ["has no function 'nothing_here'", "not_a_program"]),
        ("not_a_program", [], ["returned int, not a RASP program"]),
        ("mixed_compare", ["--vocab", '[1, "a"]', "--max-seq-len", "3"], ["cannot compile", "TypeError", "'<'"]),
        ("uncompilable", [], ["cannot compile", "numerical Aggregate"]),
        ("raises", [], ["calling raises() failed", "boom"]),
        ("mixed_compare", [], ["--vocab and --max-seq-len"]),
    ],
)
def test_bad_program_references_name_the_file_and_function(tmp_path, capsys, func, argv, needles):
    path = _file(tmp_path, BAD, "bad.py")
    for command in (["compile", f"{path}:{func}", *argv, "-o", tmp_path / "o"], ["info", f"{path}:{func}", *argv]):
        rc, _, err = _cli(capsys, *command)
        assert rc == 2, err
        assert f"{path}:{func}" in err, err
        for n in needles:
            assert n in err, err


def test_missing_program_file(tmp_path, capsys):
    ref = f"{tmp_path / 'nope.py'}:make_it"
    rc, _, err = _cli(capsys, "info", ref, "--vocab", "1,2")
    assert rc == 2 and ref in err and "does not exist" in err
    rc, _, err = _cli(capsys, "recover", ref, "--vocab", "1,2")
    assert rc != 0 and ref in err and "does not exist" in err  # recover's own exit status for errors


def test_model_dir_takes_no_program_options_and_runs_no_code(tmp_path, capsys):
    rc, _, _ = _cli(capsys, "compile", "length", "-o", tmp_path / "m")
    (tmp_path / "m" / "program.py").write_text("raise SystemExit('code in a model dir must never run')\n")
    rc, _, err = _cli(capsys, "info", tmp_path / "m", "--vocab", "a,b")
    assert rc == 2 and "model directory" in err
    rc, out, _ = _cli(capsys, "info", tmp_path / "m", "--json")
    assert rc == 0 and json.loads(out)["name"] == "length"


# ----------------------------------------------------------------------------- issue 13: a model dir on its own vocab


def test_saved_model_at_another_vocab_recovers_on_its_own_vocab(tmp_path, capsys):
    from edgeprune.usecases.recovery import load_target, training_inputs

    rc, _, _ = _cli(capsys, "compile", "shift_by", "--vocab", "a,b,c,d,e", "--max-seq-len", "4", "-o", tmp_path / "m")
    assert rc == 0
    model, spec, directory = load_target(str(tmp_path / "m"))
    assert spec is not None and spec.name == "shift_by"
    assert spec.vocab == ("a", "b", "c", "d", "e") and spec.max_seq_len == 4  # the model's, not the registry's
    inputs = training_inputs(model, spec, directory, 0)
    assert ["e"] in inputs and max(map(len, inputs)) == 4
    rc, out, err = _cli(capsys, "recover", tmp_path / "m", "--json", "--no-progress")
    assert rc == 0, out + err
    assert json.loads(out)["exact"]


# ----------------------------------------------------------------------------- the public API door


def test_public_api_recover_program_and_compile_overrides(tmp_path):
    import edgeprune as ep

    got = ep.recover_program(
        rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT)), [1, 2, 3], 3, name="smaller3"
    )
    assert got.exact and got.model.metadata.name == "smaller3" and got.model.metadata.max_seq_len == 3
    model = ep.compile("sort", vocab=[1, 2, 3, 4, 5, 6], max_seq_len=6)  # make_sort rebuilt for length 6
    assert model.run([[6, 1, 6, 2, 5, 1]]) == [[1, 1, 2, 5, 6, 6]]
    ref = f"{_file(tmp_path, README_EXAMPLE)}:smaller"
    assert ep.compile(ref, vocab=[1, 2], max_seq_len=3).run([[2, 1, 2]]) == [[1, 0, 1]]


@pytest.mark.tracr
def test_a_tracr_program_object_with_the_own_compiler_is_refused_with_a_hint():
    pytest.importorskip("tracr")
    from tracr.rasp import rasp as trasp

    from edgeprune.core.errors import EdgePruneError
    from edgeprune.usecases.recovery import recover_program

    with pytest.raises(EdgePruneError, match="needs --compiler tracr"):
        recover_program(trasp.Map(lambda x: x + 1, trasp.tokens), [1, 2], 3, name="inc")


@pytest.mark.tracr
def test_compiler_tracr_on_a_program_file_and_a_tracr_rasp_object(tmp_path, capsys):
    pytest.importorskip("tracr")
    from tracr.rasp import rasp as trasp

    from edgeprune.usecases.recovery import recover_program

    ref = f"{_file(tmp_path, README_EXAMPLE)}:smaller"
    opts = ("--vocab", "1,2,3", "--max-seq-len", "4")
    rc, out, _ = _cli(capsys, "info", ref, *opts, "--compiler", "tracr", "--json")
    real = json.loads(out)
    rc, out, _ = _cli(capsys, "info", ref, *opts, "--json")
    own = json.loads(out)
    assert real["source"] == "tracr" and own["source"] != "tracr"
    assert real["ground_truth"] == own["ground_truth"] and real["layers"] == own["layers"]
    rc, out, _ = _cli(capsys, "run", ref, "3", "1", "2", "3", *opts, "--compiler", "tracr")
    assert rc == 0 and out.strip() == "3 1 2 3 -> 2 0 1 2"
    got = recover_program(
        trasp.SelectorWidth(trasp.Select(trasp.tokens, trasp.tokens, trasp.Comparison.LT)),
        [1, 2, 3],
        4,
        compiler="tracr",
        name="smaller_tracr",
    )
    assert got.model.metadata.source == "tracr" and got.spec.output_encoding == "categorical"
    assert got.exact and got.truth_check.sufficient
