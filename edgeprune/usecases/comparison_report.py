"""Rendering of a method comparison: the Markdown tables, table.csv, rows.json and the KL-against-sparsity plot.

Rows come from ``edgeprune.usecases.compare_methods``; methods' order, timing
columns and plot styles come from the method registry (``edgeprune.usecases.methods``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

from edgeprune.usecases.methods import METHODS, Row

COLUMNS = (
    "program",
    "method",
    "setting",
    "edges",
    "sparsity",
    "kl",
    "agreement",
    "exact",
    "truth_edges",
    "seconds",
    "cpu_seconds",
    "metric",
    "metric_name",
)
#: what to print when the picture cannot be drawn
PLOT_HINT = "matplotlib is not installed, so no plot was drawn; pip install 'edgeprune[plot]' to get it"


def _fmt(v, key: str) -> str:
    if v is None:
        return ""
    if key == "exact":
        return "yes" if v else "no"
    if key in ("kl",):
        return f"{v:.2e}" if v >= 1e-3 or v == 0 else f"{v:.1e}"
    if key in ("sparsity", "agreement"):
        return f"{v:.3f}"
    if key == "metric":
        return f"{v:.4g}"
    if key in ("seconds", "cpu_seconds"):
        return f"{v:.1f}"
    return str(v)


def markdown_table(rows: list[Row], ablation: str) -> str:
    """One line per row; the exact/truth columns only with a ground truth, the metric column only with a task."""
    cols = [
        ("program", "program"),
        ("method", "method"),
        ("setting", "setting"),
        ("edges", "edges"),
        ("sparsity", "sparsity"),
        ("kl", f"KL ({ablation})"),
        ("agreement", "agreement"),
    ]
    names = sorted({r.metric_name for r in rows if r.metric_name})
    if names:
        cols.append(("metric", names[0] if len(names) == 1 else "metric"))
    if any(r.truth_edges is not None for r in rows) or not names:
        cols += [("exact", "exact"), ("truth_edges", "truth")]
    cols += [("seconds", "wall s"), ("cpu_seconds", "cpu s")]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if r.error:
            lines.append(f"| {r.program} | {r.method} | error: {r.error} |" + " |" * (len(cols) - 3))
            continue
        lines.append("| " + " | ".join(_fmt(getattr(r, k), k) for k, _ in cols) + " |")
    return "\n".join(lines)


def _main_rows(rows: list[Row]) -> dict[tuple[str, str], Row]:
    """The first row of each (program, method): the method's own choice, before any --sparsities rows."""
    main: dict[tuple[str, str], Row] = {}
    for r in rows:
        main.setdefault((r.program, r.method), r)
    return main


def program_table(rows: list[Row]) -> str:
    """--all: one line per program (truth size, each method's edges / exact, EP and HAP CPU time), exact counts last."""
    main = _main_rows(rows)
    programs = list(dict.fromkeys(r.program for r in rows))
    methods = [m for m in METHODS if any(r.method == m for r in rows)]
    timed = [m for m in methods if METHODS[m].trained]
    head = ["program", "truth"] + [f"{m} edges / exact" for m in methods] + [f"{m.upper()} cpu s" for m in timed]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    exact = {m: 0 for m in methods}
    total = {m: 0 for m in methods}
    for p in programs:
        broken = main.get((p, "-"))
        truth = next((r.truth_edges for r in rows if r.program == p and r.truth_edges is not None), None)
        cells, times = [], []
        for m in methods:
            r = main.get((p, m))
            if r is None and broken is None:
                cells.append("")
                continue
            total[m] += 1
            if r is None or r.error:
                cells.append("error")
                continue
            exact[m] += bool(r.exact)
            cells.append(f"{r.edges} / {_fmt(r.exact, 'exact') or '?'}")
        for m in timed:
            r = main.get((p, m))
            times.append("" if r is None or r.error else _fmt(r.cpu_seconds, "cpu_seconds"))
        lines.append("| " + " | ".join([p, "" if truth is None else str(truth)] + cells + times) + " |")
    last = ["**exact**", ""] + [f"**{exact[m]}/{total[m]}**" for m in methods] + [""] * len(timed)
    lines.append("| " + " | ".join(last) + " |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    """Exact recoveries per method (main rows only: the first row of each method per program)."""
    if all(r.exact is None for r in rows):
        return ""  # no ground truth (a language model): nothing to count
    exact: dict[str, int] = {}
    total: dict[str, int] = {}
    for (_, method), r in _main_rows(rows).items():
        total[method] = total.get(method, 0) + 1
        exact[method] = exact.get(method, 0) + bool(r.exact)
    parts = [f"{m}: {exact[m]}/{total[m]}" for m in total]
    return "exact recoveries - " + ", ".join(parts)


def hap_vs_ep(rows: list[Row]) -> str:
    """Wall time ratio and KL of HAP against Edge Pruning on the programs where both ran (main rows)."""
    main = _main_rows(rows)
    pairs = [(main[(p, "ep")], main[(p, "hap")]) for p, m in list(main) if m == "ep" and (p, "hap") in main]
    pairs = [(e, h) for e, h in pairs if not e.error and not h.error]
    if not pairs:
        return ""
    te, th = sum(e.seconds or 0.0 for e, _ in pairs), sum(h.seconds or 0.0 for _, h in pairs)  # set on rows
    ce, ch = sum(e.cpu_seconds or 0.0 for e, _ in pairs), sum(h.cpu_seconds or 0.0 for _, h in pairs)  # without errors
    better = sum((h.kl or 0.0) <= (e.kl or 0.0) + 1e-9 for e, h in pairs)
    text = (
        f"HAP vs EP on {len(pairs)} program(s): wall {th:.1f} s vs {te:.1f} s (ratio {th / max(te, 1e-9):.2f}), "
        f"cpu {ch:.1f} s vs {ce:.1f} s (ratio {ch / max(ce, 1e-9):.2f}); HAP KL <= EP KL on {better}/{len(pairs)}"
    )
    if any(e.exact is not None for e, _ in pairs):
        text += f"; exact: HAP {sum(bool(h.exact) for _, h in pairs)}, EP {sum(bool(e.exact) for e, _ in pairs)}"
    return text


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(COLUMNS) + ["error"])
        for r in rows:
            w.writerow([getattr(r, k) for k in COLUMNS] + [r.error])


def plot(rows: list[Row], path: Path, title: str) -> None:
    """KL against sparsity; ranked methods' whole top-k curves come from their main rows (``extra["curve"]``).

    Needs matplotlib (the ``plot`` extra): ImportError without it (see :func:`try_plot`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1e-8
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, entry in METHODS.items():
        if not entry.curve:
            continue
        pts = next((r.extra["curve"] for r in rows if r.method == m and r.extra.get("curve")), None)
        if pts:
            xs, ys = zip(*sorted(map(tuple, pts)))
            ax.plot(xs, [max(y, floor) for y in ys], "-", color=entry.style.color, alpha=0.6, label=f"{m} (top-k)")
    for m, entry in METHODS.items():
        pts = sorted((r.sparsity, r.kl) for r in rows if r.method == m and not r.error and r.kl is not None)
        if pts:
            xs, ys = zip(*pts)
            st = entry.style  # sizes and hollow markers keep overlapping points visible
            ax.plot(
                xs,
                [max(y, floor) for y in ys],
                st.marker + ("--" if len(pts) > 1 else ""),
                color=st.color,
                label=m,
                markersize=st.size,
                markerfacecolor="none" if st.hollow else st.color,
            )
    ax.set_yscale("log")
    ax.set_xlabel("edge sparsity")
    ax.set_ylabel(f"KL to the full model (floored at {floor:g})")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_available() -> bool:
    """Whether matplotlib can be imported (the ``plot`` extra); without it, say ``PLOT_HINT``."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def try_plot(rows: list[Row], path: Path, title: str) -> bool:
    """:func:`plot`, or False when matplotlib is not installed (the caller says how to get it: ``PLOT_HINT``)."""
    if not plot_available():
        return False
    plot(rows, path, title)
    return True


def render(rows: list[Row], ablation: str, notes: list[str] | None = None, per_program: bool = False) -> str:
    """table.md: the per-program table (several programs), the row table, then notes and summaries."""
    parts = [program_table(rows)] if per_program else []
    parts.append(markdown_table(rows, ablation))
    lines = [x for x in [*(notes or []), summary(rows), hap_vs_ep(rows)] if x]
    return "\n\n".join(parts) + "\n\n" + "\n".join(lines) + "\n"


def write_tables(
    rows: list[Row], out: Path, ablation: str, notes: list[str] | None = None, per_program: bool = False
) -> str:
    """table.md, table.csv and rows.json in ``out``; returns table.md's text."""
    out.mkdir(parents=True, exist_ok=True)
    text = render(rows, ablation, notes, per_program)
    (out / "table.md").write_text(text)
    write_csv(rows, out / "table.csv")
    (out / "rows.json").write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    return text
