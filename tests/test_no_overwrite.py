"""Nothing is overwritten without consent: each data-loss case refuses with a message naming --overwrite."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edgeprune.cli import main

REFERENCE = Path(__file__).resolve().parent / "data" / "tracr-reference"


def _digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_compile_refuses_an_existing_model_dir(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["compile", "length", "-o", str(out)]) == 0
    before = _digest(out)
    assert main(["compile", "length", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and str(out) in err and "Traceback" not in err
    assert _digest(out) == before
    assert main(["compile", "length", "-o", str(out), "--overwrite"]) == 0


def test_import_tracr_never_writes_into_its_reference(tmp_path, capsys):
    ref = tmp_path / "ref"
    ref.mkdir()
    src = next(p for p in sorted(REFERENCE.iterdir()) if p.is_dir())
    for f in src.iterdir():
        (ref / f.name).write_bytes(f.read_bytes())
    before = _digest(ref)
    for extra in ([], ["--overwrite"]):
        assert main(["import-tracr", str(ref), "-o", str(ref), *extra]) == 2
        assert "input" in capsys.readouterr().err
    assert _digest(ref) == before
    out = tmp_path / "out"
    assert main(["import-tracr", str(ref), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["import-tracr", str(ref), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_draw_refuses_to_replace_a_picture(tmp_path, capsys):
    pic = tmp_path / "p.png"
    pic.write_bytes(b"keep me")
    assert main(["draw", str(tmp_path / "missing.json"), "-o", str(pic)]) == 2
    assert "--overwrite" in capsys.readouterr().err and pic.read_bytes() == b"keep me"


def test_recover_report_refuses_a_non_empty_dir(tmp_path, capsys):
    report = tmp_path / "r"
    report.mkdir()
    (report / "README.md").write_text("old results")
    assert main(["recover", "--programs", "length", "--report", str(report)]) == 3  # recover: 3 is its error status
    assert "--overwrite" in capsys.readouterr().err
    assert (report / "README.md").read_text() == "old results"


def test_prune_out_refuses_a_finished_run(tmp_path, capsys):
    pytest.importorskip("transformers")
    from tests.hf_helpers import save_model, task_tokenizer, tiny_gpt2

    tok = task_tokenizer()
    model = save_model(tiny_gpt2(len(tok)), tok, tmp_path / "gpt2")
    out = tmp_path / "run"
    args = [
        "prune",
        "--model",
        str(model),
        "--task",
        "ioi",
        "--examples",
        "12,4,6",
        "--steps",
        "4",
        "--batch-size",
        "6",
        "--target-sparsity",
        "0.5",
        "--out",
        str(out),
        "--no-progress",
        "--json",
    ]
    assert main(args) == 0
    before = _digest(out)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "--resume" in err
    assert _digest(out) == before
    assert main(args + ["--out", str(model)]) == 2  # never into its own input
    assert _digest(out) == before
