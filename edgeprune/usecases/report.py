"""The recovery report: a Markdown table over programs, a circuit picture per program, and ``results.json``.

Why a directory rather than one file: each row links its circuit picture (and,
when recovery was not exact, the ground truth's picture beside it), so a reader
sees at a glance what the engine found, and ``results.json`` keeps the same
numbers for tools.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeprune.core import names
from edgeprune.core.circuit import Circuit
from edgeprune.core.errors import EdgePruneError

CIRCUITS = "circuits"
MAX_LISTED = 6  # edges listed per side in a row's diff; the rest is counted


def _edges(items: Sequence[Sequence[str]]) -> str:
    shown = ", ".join(f"`{names.edge_str((e[0], e[1]))}`" for e in items[:MAX_LISTED])
    more = len(items) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


VERDICT_ORDER = ("exact", "alternative", "not-minimal", "unfaithful", "error")


def row_verdict(row: dict) -> str:
    """A row's verdict (``verify.verdict``); rows from before verdicts fall back to exact / unjudged."""
    if "error" in row:
        return "error"
    return row.get("verdict") or ("exact" if row.get("exact") else "unjudged")


def verdict_counts(rows: Sequence[dict]) -> dict[str, int]:
    """How many rows got each verdict, in a fixed order (every verdict listed, zeros included)."""
    counts = {v: 0 for v in VERDICT_ORDER}
    for r in rows:
        v = row_verdict(r)
        counts[v] = counts.get(v, 0) + 1
    return counts


def result_cell(row: dict) -> str:
    """``exact``, or the diff: missing (in the truth, not recovered) and extra (recovered, not in the truth)."""
    if "error" in row:
        return "**error**: " + row["error"].replace("|", "\\|").replace("\n", " ")
    if row["exact"]:
        return "exact"
    parts = [f"**{row_verdict(row)}**"]
    if row.get("missing"):
        parts.append(f"missing {len(row['missing'])}: {_edges(row['missing'])}")
    if row.get("extra"):
        parts.append(f"extra {len(row['extra'])}: {_edges(row['extra'])}")
    return "; ".join(parts)


def check_cell(row: dict) -> str:
    """The checker's inputs for a row: ``all N`` (exhaustive) or ``N of M`` (a seeded sample)."""
    plan = row.get("check") or {}
    if plan.get("mode") == "exhaustive":
        return f"all {plan.get('inputs')}"
    if plan.get("mode") == "sampled":
        return f"{plan.get('inputs')} of {plan.get('total')} (seed {plan.get('seed')})"
    return str(plan.get("inputs", ""))


def _draw(row: dict, directory: Path, fmt: str) -> list[str]:
    """Pictures for one row (relative paths): the recovered circuit, and the ground truth when they differ."""
    from edgeprune.verify.draw import draw_circuit

    name = row["program"]
    circuits = directory / CIRCUITS
    circuits.mkdir(parents=True, exist_ok=True)
    circuit = Circuit([tuple(e) for e in row.get("circuit", [])], model=name)
    truth = Circuit([tuple(e) for e in row.get("truth", [])], model=name)
    circuit.save(circuits / f"{name}.json")
    truth.save(circuits / f"{name}.truth.json")
    label = "exact" if row["exact"] else f"{len(row['missing'])} missing, {len(row['extra'])} extra"
    links = [f"{CIRCUITS}/{name}.{fmt}"]
    draw_circuit(circuit, directory / links[0], title=f"{name}: recovered circuit, {len(circuit)} edges ({label})")
    if not row["exact"]:
        links.append(f"{CIRCUITS}/{name}.truth.{fmt}")
        draw_circuit(truth, directory / links[1], title=f"{name}: ground truth, {len(truth)} edges")
    return links


def write_report(
    rows: Sequence[dict], directory: str | Path, meta: dict[str, Any], fmt: str = "png", draw: bool = True
) -> Path:
    """Write ``README.md``, ``results.json`` and ``circuits/`` to ``directory``; returns the README path.

    ``rows`` are ``edgeprune.usecases.recovery.summary_row`` dicts (or ``{"program", "exact": False, "error"}``), in the
    order the table should show; ``meta`` holds the run's settings (ablation, seed, jobs, wall_seconds, command).
    """
    if fmt not in ("png", "svg"):
        raise EdgePruneError(f"unknown picture format {fmt!r}; use png or svg")
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise EdgePruneError(f"report directory {out} is a file; give a directory path (it is created if missing)")
    out.mkdir(parents=True, exist_ok=True)
    passed = sum(1 for r in rows if r.get("exact"))
    counts = verdict_counts(rows)
    lines = [
        "# Recovery report",
        "",
        f"Produced by `{meta.get('command', 'edgeprune recover --all --report DIR')}`: "
        f"**{passed}/{len(rows)} programs recovered exactly** under {meta.get('ablation', 'zero')} ablation "
        f"(seed {meta.get('seed', 0)}), in {meta.get('wall_seconds', 0):.0f} s wall time "
        f"with {meta.get('jobs', 1)} worker process(es).",
        "",
        "Verdicts: " + ", ".join(f"{k} **{n}**" for k, n in counts.items()) + ". *exact*: the ground truth; "
        "*alternative*: differs from it but is sufficient with every edge necessary on every input (another "
        "minimal circuit); *not-minimal*: sufficient, some edge unneeded; *unfaithful*: not sufficient.",
        "",
        "Columns: *layers* of the compiled model; *model edges*, the edges of its computational graph that "
        "pruning chooses from; *truth* and *recovered*, the edges of the ground-truth and the recovered circuit "
        "(dangling edges removed from both by the rule of `verify/dangling.py`); *steps* of training; *seconds* "
        "for compile, data, pruning and comparison; *checked on*, the inputs the checker judged the verdict on: "
        "*all N* when the program has at most the budget's inputs (exhaustive), else *N of M*, a seeded sample "
        "(`verify.checker.InputPlan`). A row that is not exact lists the missing edges (in the "
        "ground truth, not recovered) and the extra ones (recovered, not in the ground truth), and links the "
        "ground truth's picture beside the recovered one. `results.json` holds the same numbers and every "
        "circuit's edges.",
        "",
        "| program | layers | model edges | truth | recovered | result | steps | seconds | checked on | circuit |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for row in rows:
        name = row["program"]
        if "error" in row:
            lines.append(f"| {name} | | | | | {result_cell(row)} | | | | |")
            continue
        links = _draw(row, out, fmt) if draw else []
        pictures = " ".join(f"[{'truth' if '.truth.' in p else 'recovered'}]({p})" for p in links)
        seconds = row.get("total_seconds", row.get("seconds", 0))
        lines.append(
            f"| {name} | {row.get('layers', '')} | {row.get('graph_edges', '')} | {row['truth_edges']} | "
            f"{row['edges']} | {result_cell(row)} | {row['steps']} | {seconds:.1f} | {check_cell(row)} | {pictures} |"
        )
    (out / "README.md").write_text("\n".join(lines) + "\n")
    results = {**meta, "passed": passed, "total": len(rows), "verdicts": counts, "programs": list(rows)}
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return out / "README.md"
