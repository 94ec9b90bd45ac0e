"""The info / run / import-tracr commands, through the real entry point."""

from __future__ import annotations

import json

import pytest

from edgeprune.cli import main


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(map(str, argv)))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_json_on_reference(capsys, reference_dir):
    code, out, _ = run_cli(capsys, "info", reference_dir / "reverse", "--json")
    info = json.loads(out)
    assert code == 0
    assert info["layers"] == 4 and info["d_model"] == 41
    assert info["heads"] == [1, 0, 0, 1] and info["mlps"] == [1, 1, 1, 0]
    assert ["m2", "a3.h0.q"] in info["ground_truth"]["zero"]
    assert info["ground_truth"]["interchange"] == [["tok", "a3.h0.v"], ["a3.h0", "out"]]
    assert info["graph_edges"] == 94


def test_run_tokens_json(capsys, reference_dir):
    code, out, _ = run_cli(capsys, "run", reference_dir / "reverse", "1", "2", "3", "--json")
    assert code == 0
    assert json.loads(out) == {"input": [1, 2, 3], "output": [3, 2, 1]}


def test_run_inputs_file_numbers_as_numbers(capsys, tmp_path, reference_dir):
    f = tmp_path / "in.jsonl"
    f.write_text('["x", "y"]\n["w", "x", "x"]\n')
    code, out, _ = run_cli(capsys, "run", reference_dir / "xproportion", "--inputs", f, "--json")
    rows = [json.loads(l) for l in out.splitlines()]
    assert code == 0 and [r["input"] for r in rows] == [["x", "y"], ["w", "x", "x"]]
    assert rows[0]["output"] == pytest.approx([1.0, 0.5], abs=1e-5)
    assert rows[1]["output"] == pytest.approx([0.0, 0.5, 2 / 3], abs=1e-5)
    assert all(isinstance(v, float) for r in rows for v in r["output"])


def test_import_then_run_saved_model(capsys, tmp_path, reference_dir):
    code, _, _ = run_cli(capsys, "import-tracr", reference_dir / "sort_unique", "-o", tmp_path / "m")
    assert code == 0 and (tmp_path / "m" / "weights.safetensors").is_file()
    saved = json.loads((tmp_path / "m" / "model.json").read_text())
    assert "ground_truth" in saved
    code, out, _ = run_cli(capsys, "run", tmp_path / "m", "3", "1", "2", "--json")
    assert json.loads(out)["output"] == [1, 2, 3]


def test_bad_token_is_a_clear_error(capsys, reference_dir):
    code, _, err = run_cli(capsys, "run", reference_dir / "reverse", "1", "9")
    assert code == 2 and "not in the vocab" in err


def test_too_long_is_a_clear_error(capsys, reference_dir):
    code, _, err = run_cli(capsys, "run", reference_dir / "reverse", *"123123")
    assert code == 2 and "max_seq_len" in err


def test_malformed_inputs_file(capsys, tmp_path, reference_dir):
    f = tmp_path / "in.jsonl"
    f.write_text("1 2 3\n")
    code, _, err = run_cli(capsys, "run", reference_dir / "reverse", "--inputs", f)
    assert code == 2 and "not a JSON list" in err


def test_incomplete_reference_dir_is_a_clear_error(capsys, tmp_path):
    (tmp_path / "model.json").write_text("{}")
    code, _, err = run_cli(capsys, "info", tmp_path)
    assert code == 2 and "incomplete" in err
