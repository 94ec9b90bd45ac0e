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
    "auc",
    "cpr",
    "cmd",
    "verdict",
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
    if key in ("sparsity", "agreement", "auc", "cpr", "cmd"):
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
    if any(r.verdict for r in rows):
        cols.append(("verdict", "verdict"))
    if any(r.auc is not None for r in rows):
        cols.append(("auc", "AUC"))
    if any(r.cpr is not None for r in rows):
        cols += [("cpr", "CPR"), ("cmd", "CMD")]
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


def verdict_summary(rows: list[Row]) -> str:
    """Verdict counts per method (main rows; an error row counts as ``error``), the verdicts that occur."""
    from edgeprune.usecases.report import VERDICT_ORDER

    main = _main_rows(rows)
    if not any(r.verdict for r in main.values()):
        return ""
    programs = list(dict.fromkeys(r.program for r in rows))
    parts = []
    for m in [m for m in METHODS if any(r.method == m for r in rows)]:
        counts = dict.fromkeys(VERDICT_ORDER, 0)
        for p in programs:
            r = main.get((p, m))
            if r is None and (p, "-") not in main:
                continue
            v = "error" if r is None or r.error else (r.verdict or "unjudged")
            counts[v] = counts.get(v, 0) + 1
        parts.append(f"{m}: " + ", ".join(f"{k} {n}" for k, n in counts.items() if n))
    return "verdicts - " + "; ".join(parts)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def score_summary(rows: list[Row]) -> str:
    """Mean ROC AUC (and mean CPR/CMD with --faithfulness) per method over the programs' main rows."""
    main = _main_rows(rows)
    parts = []
    for m in [m for m in METHODS if any(r.method == m for r in rows)]:
        got = [r for (_, mm), r in main.items() if mm == m and not r.error]
        bits = []
        for key, label in (("auc", "AUC"), ("cpr", "CPR"), ("cmd", "CMD")):
            vals = [getattr(r, key) for r in got if getattr(r, key) is not None]
            if vals:
                bits.append(f"{label} {_fmt(_mean(vals), key)}")
        if bits:
            parts.append(f"{m}: " + " ".join(bits))
    if not parts:
        return ""
    return f"mean over {len({p for p, _ in main if p != '-'})} program(s) - " + "; ".join(parts)


def score_table(rows: list[Row], key: str = "auc", label: str = "AUC") -> str:
    """One line per program, each method's ``key`` (AUC, CPR or CMD) side by side; then their mean and sum."""
    main = _main_rows(rows)
    if not any(getattr(r, key) is not None for r in main.values()):
        return ""
    programs = [p for p in dict.fromkeys(r.program for r in rows)]
    methods = [m for m in METHODS if any(r.method == m for r in rows)]
    head = ["program"] + [f"{m} {label}" for m in methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    got: dict[str, list[float]] = {m: [] for m in methods}
    for p in programs:
        cells = []
        for m in methods:
            r = main.get((p, m))
            v = None if r is None or r.error else getattr(r, key)
            if v is not None:
                got[m].append(v)
            cells.append(_fmt(v, key) if v is not None else ("error" if r is not None and r.error else ""))
        lines.append("| " + " | ".join([p, *cells]) + " |")
    for name, fn in (("mean", _mean), ("sum", lambda v: sum(v) if v else None)):
        cells = [f"**{_fmt(fn(got[m]), key)}** ({len(got[m])})" if got[m] else "" for m in methods]
        lines.append("| " + " | ".join([f"**{name}**", *cells]) + " |")
    return "\n".join(lines)


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


def plot_roc(rows: list[Row], path: Path, title: str) -> bool:
    """ROC curves of every method's ranking on one program (main rows' ``extra["roc"]``); False when none."""
    curves = [(m, r) for (_, m), r in _main_rows(rows).items() if r.extra.get("roc") and m in METHODS]
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    for m, r in curves:
        xs, ys = zip(*r.extra["roc"])
        st = METHODS[m].style
        auc = "" if r.auc is None else f" (AUC {r.auc:.3f})"
        ax.plot(xs, ys, "-", color=st.color, label=f"{m}{auc}", marker=st.marker, markersize=3, alpha=0.8)
    ax.set_xlabel("false-positive rate (non-truth edges kept)")
    ax.set_ylabel("true-positive rate (ground-truth edges kept)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_faithfulness(rows: list[Row], path: Path, title: str) -> bool:
    """Normalized faithfulness against the MIB edge budget, per method, both ablation modes; False when none."""
    curves = [(m, r) for (_, m), r in _main_rows(rows).items() if r.extra.get("faithfulness") and m in METHODS]
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, mode, what in zip(axes, ("complement", "circuit"), ("circuit kept, rest ablated", "circuit ablated")):
        for m, r in curves:
            c = r.extra["faithfulness"].get(mode)
            if not c:
                continue
            st = METHODS[m].style
            ys = [float("nan") if v is None else v for v in c["f"]]
            ax.plot(
                [100 * b for b in c["budgets"]],
                ys,
                "-" + st.marker,
                color=st.color,
                label=f"{m} (CPR {c['cpr']:.3f}, CMD {c['cmd']:.3f})",
            )
        ax.set_xscale("log")
        ax.axhline(1.0, color="grey", linestyle=":")
        ax.set_xlabel("circuit: % of the graph's edges (log axis)")
        ax.set_title(f"{mode}: {what}", fontsize=9)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("normalized faithfulness f")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


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


def try_plots(rows: list[Row], out: Path, title: str, fmt: str = "png") -> bool:
    """KL against sparsity, and (when the rows have them) ROC curves and faithfulness curves, as ``fmt``
    (png or svg) in ``out``; False when matplotlib is not installed."""
    if not plot_available():
        return False
    out.mkdir(parents=True, exist_ok=True)
    plot(rows, out / f"kl_vs_sparsity.{fmt}", title)
    plot_roc(rows, out / f"roc.{fmt}", f"ROC against the ground truth: {title}")
    plot_faithfulness(rows, out / f"faithfulness.{fmt}", f"faithfulness at MIB's edge budgets: {title}")
    return True


def render(rows: list[Row], ablation: str, notes: list[str] | None = None, per_program: bool = False) -> str:
    """table.md: the per-program tables (several programs), the row table, then notes and summaries."""
    parts = [program_table(rows)] if per_program else []
    if per_program:
        parts += [t for t in (score_table(rows), score_table(rows, "cpr", "CPR"), score_table(rows, "cmd", "CMD")) if t]
    parts.append(markdown_table(rows, ablation))
    extra = [summary(rows), verdict_summary(rows), score_summary(rows), hap_vs_ep(rows)]
    lines = [x for x in [*(notes or []), *extra] if x]
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
