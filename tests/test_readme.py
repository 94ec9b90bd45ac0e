"""The README's library example runs as written (in a scratch directory)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- readme-example[^>]*-->\s*```python\n(.*?)```", text, flags=re.S)
    return blocks


def test_readme_has_a_library_example():
    blocks = readme_examples()
    assert blocks, "README.md lost its library example (a ```python block after <!-- readme-example -->)"
    assert "import edgeprune" in blocks[0]


def test_readme_library_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for block in readme_examples():
        exec(compile(block, str(README), "exec"), {"__name__": "readme_example"})
    assert (tmp_path / "length-circuit.json").is_file()
    assert "exact match" in capsys.readouterr().out


def test_import_edgeprune_is_lazy_and_complete():
    import edgeprune

    for name in edgeprune.__all__:
        assert getattr(edgeprune, name) is not None
    try:
        edgeprune.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("unknown attribute did not raise")
