"""``edgeprune compare-methods``: Edge Pruning, HAP, EAP, EAP-IG and ACDC on one graph, one table, one plot.

Every method runs on the engine's graph with the same ablation and data, and
every circuit is scored the same way: dangling edges dropped (``prune_dangling``),
then KL to the full model (the pruning loss: ``kl``, ``seq_kl`` for numerical
programs), agreement with the full model's decoded output (the task metric of
compiled programs: argmax at every scored position, or within 0.05 for
numerical outputs), and graph-exact comparison with the ground truth.

How each method picks its circuit without looking at the ground truth:

* ``ep``: the recovery settings (``pruning.defaults.recovery_config``);
* ``hap``: attribution (``--hap-method``, EAP by default) keeps ``--hap-keep`` of
  the edges, then the same pruning runs inside them for ``--hap-steps``;
* ``eap``, ``eap-ig``: the smallest top-k whose circuit has KL at most
  ``--kl-tol`` times the empty circuit's KL (a faithfulness target, as one
  would pick k for a real model; cutting at the ground truth's size would use
  the answer);
* ``acdc``: threshold tau = ``--acdc-tau`` times the empty circuit's KL.

``--sparsities`` adds rows at requested sparsities: ranked methods cut there,
``ep``/``hap`` train with that target.  The plot shows KL against sparsity per
method (EAP and EAP-IG as whole curves), like the paper's Figures 2 and 3.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeprune.errors import EdgePruneError

ALL_METHODS = ("ep", "hap", "eap", "eap-ig", "acdc")
RANKED = ("eap", "eap-ig")
CURVE_POINTS = 40  # sparsities at which ranked methods are drawn
COLUMNS = ("program", "method", "setting", "edges", "sparsity", "kl", "agreement", "exact", "truth_edges", "seconds",
           "cpu_seconds")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare-methods",
        help="run Edge Pruning, HAP, EAP, EAP-IG and ACDC on one program; table + plot",
        description="Compare circuit-discovery methods on the same graph, data and ablation: edges, sparsity, KL to "
                    "the full model, agreement with its outputs, exact recovery of the ground truth and wall time. "
                    "Writes table.md, table.csv, rows.json and kl_vs_sparsity.png to --out.",
    )
    p.add_argument("target", nargs="?", help="program name or compiled model directory")
    p.add_argument("--all", action="store_true", help="every registered program; one combined table")
    p.add_argument("--methods", default=",".join(ALL_METHODS), help=f"comma-separated subset of {','.join(ALL_METHODS)}")
    p.add_argument("--sparsities", default="", help="comma-separated edge sparsities for extra rows, e.g. 0.8,0.9,0.95")
    p.add_argument("--ablation", choices=("zero", "interchange"), default="zero")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="Edge Pruning steps (default: the recovery setting)")
    p.add_argument("--hap-keep", type=float, default=0.5, help="fraction of edges HAP's attribution keeps (default 0.5)")
    p.add_argument("--hap-method", choices=RANKED, default="eap", help="HAP's attribution method (default eap)")
    p.add_argument("--hap-steps", type=int, default=None, help="HAP pruning steps (default: as Edge Pruning)")
    p.add_argument("--ig-steps", type=int, default=5, help="EAP-IG integration steps (default 5)")
    p.add_argument("--kl-tol", type=float, default=1e-3,
                   help="ranked methods: smallest top-k with KL <= this times the empty circuit's KL (default 1e-3)")
    p.add_argument("--acdc-tau", type=float, default=1e-4, help="ACDC threshold, times the empty circuit's KL (default 1e-4)")
    p.add_argument("--out", default=None, help="output directory (default results/compare-methods/<target or all>)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of the Markdown table")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


# ----- rows ------------------------------------------------------------------------
@dataclass
class Row:
    program: str
    method: str
    setting: str
    edges: int | None = None
    sparsity: float | None = None
    kl: float | None = None
    agreement: float | None = None
    exact: bool | None = None
    truth_edges: int | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None
    error: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class Options:
    methods: tuple[str, ...] = ALL_METHODS
    sparsities: tuple[float, ...] = ()
    ablation: str = "zero"
    seed: int = 0
    steps: int | None = None
    hap_keep: float = 0.5
    hap_method: str = "eap"
    hap_steps: int | None = None
    ig_steps: int = 5
    kl_tol: float = 1e-3
    acdc_tau: float = 1e-4


def parse_methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    bad = [m for m in methods if m not in ALL_METHODS]
    if bad or not methods:
        raise EdgePruneError(f"unknown method(s) {bad or text!r}; choose from {', '.join(ALL_METHODS)} (comma-separated)")
    return methods


def parse_sparsities(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise EdgePruneError(f"--sparsities must be comma-separated numbers in [0, 1], got {text!r}") from exc
    bad = [s for s in values if not 0.0 <= s <= 1.0]
    if bad:
        raise EdgePruneError(f"sparsities must lie in [0, 1]; got {bad}")
    return values


class _Clock:
    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


class CompiledBench:
    """One compiled program: data, ground truth and the shared circuit scorer."""

    def __init__(self, target: str, opts: Options):
        from compiled.ground_truth import ground_truth
        from pruning.acdc import FaithfulnessEvaluator
        from pruning.adapters.compiled import CompiledAdapter
        from pruning.recovery import prepare

        self.opts = opts
        self.model, self.spec, self.data = prepare(target, opts.ablation, opts.seed)
        self.name = self.spec.name if self.spec is not None else self.model.metadata.name
        self.adapter = CompiledAdapter(self.model)
        self.graph = self.adapter.graph
        self.truth = ground_truth(self.model, opts.ablation)
        self.ev = FaithfulnessEvaluator(self.adapter, self.data, opts.ablation)
        self.empty_kl = self.ev.empty()
        self.full_out = self.ev.outputs(self.graph.allowed_mask())
        self.scored = self.adapter.loss_mask(self.data.ids, self.data.key_mask)
        self.curves: dict[str, list[tuple[float, float]]] = {}

    # ----- scoring a circuit -------------------------------------------------------
    def kl_of(self, edges) -> float:
        from pruning.attribution import circuit_mask

        return self.ev(circuit_mask(self.graph, edges))

    def row(self, method: str, setting: str, circuit, clock: _Clock, **extra) -> Row:
        import torch

        from pruning.attribution import circuit_mask
        from verify.compare import compare
        from verify.dangling import prune_dangling

        edges = sorted(prune_dangling(circuit.edges, self.graph.embeddings))
        out = self.ev.outputs(circuit_mask(self.graph, edges))
        if self.adapter.output_kind == "categorical":
            same = (out.argmax(-1) == self.full_out.argmax(-1)) | ~self.scored
        else:
            same = ((out - self.full_out).abs() <= 0.05) | ~self.scored
        agreement = float(same.all(-1).float().mean())
        kl = self.kl_of(edges)
        cmp = compare(circuit, self.truth)
        n = self.graph.n_edges
        with torch.no_grad():
            return Row(self.name, method, setting, len(edges), 1 - len(edges) / n, kl, agreement, cmp.exact,
                       len(cmp.truth), clock.wall, clock.cpu, extra=extra)

    # ----- methods -------------------------------------------------------------------
    def ep_config(self, steps: int | None, sparsity: float | None = None):
        from pruning.defaults import recovery_config

        over = {}
        if sparsity is not None:
            over = {"edge_target": sparsity, "edge_sparsity": sparsity}
        return recovery_config(self.name, getattr(self.spec, "pruning", None), ablation=self.opts.ablation,
                               seed=self.opts.seed, steps=steps, **over)

    def run_ep(self, sparsity: float | None = None) -> Row:
        from pruning.train import Pruner

        cfg = self.ep_config(self.opts.steps, sparsity)
        with _Clock() as clk:
            res = Pruner(self.adapter, self.data, cfg).run(progress=False)
        setting = f"{cfg.steps} steps" + (f", sparsity {sparsity:g}" if sparsity is not None else "")
        return self.row("ep", setting, res.circuit, clk, steps=cfg.steps)

    def run_hap(self, sparsity: float | None = None) -> Row:
        from pruning.hap import hap

        o = self.opts
        sub = None
        if sparsity is not None:  # the pruner's sparsity counts kept edges only: translate the global target
            kept = max(1, math.ceil(o.hap_keep * self.graph.n_edges))
            sub = min(1.0, max(0.0, 1.0 - (1.0 - sparsity) * self.graph.n_edges / kept))
        steps = o.hap_steps or o.steps
        cfg = self.ep_config(steps, sub)
        with _Clock() as clk:
            res = hap(self.adapter, self.data, cfg, keep_fraction=o.hap_keep, method=o.hap_method, ig_steps=o.ig_steps)
        outside = set(res.circuit.edges) - set(res.subset)
        if outside:  # the contract of HAP; a failure here is a bug, not a user error
            raise RuntimeError(f"HAP returned edges outside its kept subgraph: {sorted(outside)}")
        setting = f"{o.hap_method} keep {o.hap_keep:g}, {cfg.steps} steps" + (f", sparsity {sparsity:g}" if sparsity is not None else "")
        return self.row("hap", setting, res.circuit, clk, steps=cfg.steps, attribution_seconds=res.attribution_seconds,
                        prune_seconds=res.prune_seconds, kept=len(res.subset))

    def run_ranked(self, method: str) -> list[Row]:
        from pruning.attribution import edge_scores

        o = self.opts
        with _Clock() as clk:
            scores = edge_scores(self.adapter, self.data, method, o.ablation, "answer", steps=o.ig_steps)
            tol = o.kl_tol * self.empty_kl
            chosen = None
            for k in range(0, self.graph.n_edges + 1):
                c = scores.top_k(k)
                if self.kl_of(c.edges) <= tol:
                    chosen = (k, c)
                    break
        k, circuit = chosen if chosen is not None else (self.graph.n_edges, scores.top_k(self.graph.n_edges))
        rows = [self.row(method, f"smallest k with KL <= {o.kl_tol:g} x empty (k={k})", circuit, clk, k=k)]
        for s in o.sparsities:
            with _Clock() as c2:
                circ = scores.at_sparsity(s)
            rows.append(self.row(method, f"top-k at sparsity {s:g}", circ, c2))
        n = self.graph.n_edges
        curve = []
        for i in range(CURVE_POINTS + 1):
            kk = int(round(n * i / CURVE_POINTS))
            c = scores.top_k(kk)
            curve.append((1 - len(c) / n, self.kl_of(c.edges)))
        self.curves[method] = curve
        return rows

    def run_acdc(self) -> Row:
        from pruning.acdc import acdc

        with _Clock() as clk:
            res = acdc(self.adapter, self.data, self.opts.ablation, self.opts.acdc_tau, relative=True, evaluator=self.ev)
        return self.row("acdc", f"tau {self.opts.acdc_tau:g} x empty KL", res.circuit, clk, tested=res.tested)

    def run_all(self) -> list[Row]:
        import torch

        rows: list[Row] = []
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny models: intra-op threads only add overhead (as recover does)
        try:
            for m in self.opts.methods:
                try:
                    if m == "ep":
                        rows.append(self.run_ep())
                        rows += [self.run_ep(s) for s in self.opts.sparsities]
                    elif m == "hap":
                        rows.append(self.run_hap())
                        rows += [self.run_hap(s) for s in self.opts.sparsities]
                    elif m in RANKED:
                        rows += self.run_ranked(m)
                    elif m == "acdc":
                        rows.append(self.run_acdc())
                except EdgePruneError as exc:
                    rows.append(Row(self.name, m, "", error=str(exc)))
        finally:
            torch.set_num_threads(threads)
        return rows


# ----- output ------------------------------------------------------------------------
def _fmt(v, key: str) -> str:
    if v is None:
        return ""
    if key == "exact":
        return "yes" if v else "no"
    if key in ("kl",):
        return f"{v:.2e}" if v >= 1e-3 or v == 0 else f"{v:.1e}"
    if key in ("sparsity", "agreement"):
        return f"{v:.3f}"
    if key in ("seconds", "cpu_seconds"):
        return f"{v:.1f}"
    return str(v)


def markdown_table(rows: list[Row], ablation: str) -> str:
    head = ["program", "method", "setting", "edges", "sparsity", f"KL ({ablation})", "agreement", "exact", "truth",
            "wall s", "cpu s"]
    keys = ["program", "method", "setting", "edges", "sparsity", "kl", "agreement", "exact", "truth_edges", "seconds",
            "cpu_seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.error:
            lines.append(f"| {r.program} | {r.method} | error: {r.error} |" + " |" * (len(head) - 3))
            continue
        lines.append("| " + " | ".join(_fmt(getattr(r, k), k) for k in keys) + " |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    """Exact recoveries per method (main rows only: the first row of each method per program)."""
    seen, exact, total = set(), {}, {}
    for r in rows:
        key = (r.program, r.method)
        if key in seen:
            continue
        seen.add(key)
        total[r.method] = total.get(r.method, 0) + 1
        exact[r.method] = exact.get(r.method, 0) + bool(r.exact)
    parts = [f"{m}: {exact[m]}/{total[m]}" for m in total]
    return "exact recoveries - " + ", ".join(parts)


def hap_vs_ep(rows: list[Row]) -> str:
    """Wall time ratio and KL of HAP against Edge Pruning on the programs where both ran (main rows)."""
    main = {}
    for r in rows:
        main.setdefault((r.program, r.method), r)
    pairs = [(main[(p, "ep")], main[(p, "hap")]) for p, m in list(main) if m == "ep" and (p, "hap") in main]
    pairs = [(e, h) for e, h in pairs if not e.error and not h.error]
    if not pairs:
        return ""
    te, th = sum(e.seconds for e, _ in pairs), sum(h.seconds for _, h in pairs)
    ce, ch = sum(e.cpu_seconds for e, _ in pairs), sum(h.cpu_seconds for _, h in pairs)
    better = sum(h.kl <= e.kl + 1e-9 for e, h in pairs)
    return (f"HAP vs EP on {len(pairs)} program(s): wall {th:.1f} s vs {te:.1f} s (ratio {th / te:.2f}), "
            f"cpu {ch:.1f} s vs {ce:.1f} s (ratio {ch / ce:.2f}); HAP KL <= EP KL on {better}/{len(pairs)}; "
            f"exact: HAP {sum(bool(h.exact) for _, h in pairs)}, EP {sum(bool(e.exact) for e, _ in pairs)}")


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(COLUMNS) + ["error"])
        for r in rows:
            w.writerow([getattr(r, k) for k in COLUMNS] + [r.error])


def plot(rows: list[Row], curves: dict[str, list[tuple[float, float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1e-8
    colors = {"ep": "tab:blue", "hap": "tab:orange", "eap": "tab:green", "eap-ig": "tab:red", "acdc": "tab:purple"}
    markers = {"ep": ("o", 11), "hap": ("s", 8), "eap": ("^", 7), "eap-ig": ("v", 7), "acdc": ("x", 9)}  # overlaps stay visible
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, pts in curves.items():
        xs, ys = zip(*sorted(pts))
        ax.plot(xs, [max(y, floor) for y in ys], "-", color=colors.get(m), alpha=0.6, label=f"{m} (top-k)")
    for m in ALL_METHODS:
        pts = sorted((r.sparsity, r.kl) for r in rows if r.method == m and not r.error and r.kl is not None)
        if pts:
            xs, ys = zip(*pts)
            mk, size = markers[m]
            ax.plot(xs, [max(y, floor) for y in ys], mk + ("--" if len(pts) > 1 else ""), color=colors.get(m), label=m,
                    markersize=size, markerfacecolor="none" if m in ("ep", "hap") else colors.get(m))
    ax.set_yscale("log")
    ax.set_xlabel("edge sparsity")
    ax.set_ylabel(f"KL to the full model (floored at {floor:g})")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _save(rows: list[Row], out: Path, ablation: str, curves: dict | None, title: str, plot_it: bool) -> str:
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, ablation)
    notes = [summary(rows)]
    hv = hap_vs_ep(rows)
    if hv:
        notes.append(hv)
    text = table + "\n\n" + "\n".join(notes) + "\n"
    (out / "table.md").write_text(text)
    write_csv(rows, out / "table.csv")
    (out / "rows.json").write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    if plot_it and curves is not None:
        plot(rows, curves, out / "kl_vs_sparsity.png", title)
    return text


def _options(args: argparse.Namespace) -> Options:
    if not 0.0 < args.hap_keep <= 1.0:
        raise EdgePruneError(f"--hap-keep must lie in (0, 1], got {args.hap_keep}")
    if args.kl_tol < 0 or args.acdc_tau < 0:
        raise EdgePruneError("--kl-tol and --acdc-tau must be >= 0")
    return Options(parse_methods(args.methods), parse_sparsities(args.sparsities), args.ablation, args.seed, args.steps,
                   args.hap_keep, args.hap_method, args.hap_steps, args.ig_steps, args.kl_tol, args.acdc_tau)


def run(args: argparse.Namespace) -> int:
    if args.all and args.target:
        raise EdgePruneError("give either a program or --all, not both")
    if not args.all and not args.target:
        raise EdgePruneError("name a program (see `edgeprune programs`) or a compiled model directory, or pass --all")
    opts = _options(args)
    out = Path(args.out or f"results/compare-methods/{'all' if args.all else Path(args.target).name}-{opts.ablation}")
    if not args.all:
        bench = CompiledBench(args.target, opts)
        rows = bench.run_all()
        text = _save(rows, out, opts.ablation, bench.curves, f"{bench.name} ({opts.ablation} ablation)", not args.no_plot)
    else:
        from tqdm import tqdm

        from programs.registry import program_names

        rows = []
        out.mkdir(parents=True, exist_ok=True)
        progress = (out / "rows.jsonl").open("w")
        for name in tqdm(program_names(), desc="compare-methods --all", file=sys.stderr,
                         disable=args.no_progress or args.json or not sys.stderr.isatty()):
            try:
                bench = CompiledBench(name, opts)
                prog_rows = bench.run_all()
                if not args.no_plot:
                    (out / name).mkdir(exist_ok=True)
                    plot(prog_rows, bench.curves, out / name / "kl_vs_sparsity.png", f"{name} ({opts.ablation} ablation)")
            except EdgePruneError as exc:
                prog_rows = [Row(name, "-", "", error=str(exc))]
            rows += prog_rows
            for r in prog_rows:
                progress.write(json.dumps(asdict(r)) + "\n")
            progress.flush()
        progress.close()
        text = _save(rows, out, opts.ablation, None, "", False)
    if args.json:
        print(json.dumps([asdict(r) for r in rows]))
    else:
        print(text, end="")
        print(f"(written to {out}/: table.md, table.csv, rows.json" + ("" if args.no_plot else ", PNG") + ")")
    return 0
