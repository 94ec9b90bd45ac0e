"""``edgeprune compare-methods``: Edge Pruning, HAP, EAP, EAP-IG and ACDC on one graph, one table, one plot.

The arguments and their checks; the comparison itself is ``edgeprune.usecases.compare_methods``
(how each method picks its circuit is told there), the methods come from the registry
(``edgeprune.usecases.methods``), tables and plot from ``edgeprune.usecases.comparison_report``.
Without matplotlib everything but the picture is written, and the command says how to get it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from edgeprune.core.errors import EdgePruneError
from edgeprune.core.files import check_output
from edgeprune.core.options import ABLATIONS, RANKED_METHODS
from edgeprune.program_options import PROGRAM_HELP, add_program_arguments, program_options
from edgeprune.selection import add_selection_arguments, selected_programs
from edgeprune.usecases import compare_methods as cm
from edgeprune.usecases import comparison_report as report
from edgeprune.usecases.compare_methods import LM_BATCH_SIZE, LM_STEPS, parse_sparsities
from edgeprune.usecases.methods import METHODS, parse_methods


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare-methods",
        help="run Edge Pruning, HAP, EAP, EAP-IG and ACDC on one program or language-model task; table + plot",
        description="Compare circuit-discovery methods on the same graph, data and ablation: edges, sparsity, KL to "
        "the full model, agreement with its outputs, exact recovery of the ground truth with a verdict and "
        "the ROC AUC of each method's edge ranking (compiled programs) or the task's metric (--model/--task), "
        "MIB's CPR and CMD (--faithfulness), and wall and CPU time. Writes table.md, table.csv, rows.json, "
        "circuits/, scores/ and the plots (kl_vs_sparsity, roc, faithfulness) to --out; --all also writes "
        "rows.jsonl as it goes.",
    )
    p.add_argument("target", nargs="?", help=PROGRAM_HELP)
    add_selection_arguments(p, "every registered program; one combined table", "compare the methods on")
    add_program_arguments(p)  # --vocab/--max-seq-len/--causal/--compiler for one program (edgeprune.program_options)
    p.add_argument(
        "--resume",
        action="store_true",
        help="with --all/--programs: keep the rows in OUT/rows.jsonl and run only the (program, method) "
        "pairs that have none (a program whose row is an error is run again)",
    )
    lm = p.add_argument_group("language models (instead of a program)")
    lm.add_argument("--model", default=None, help="hub id or a directory saved with save_pretrained (GPT-2, Llama)")
    lm.add_argument("--task", default=None, help="ioi, ioi-t1, gt, gp, boolean-ip, boolean-fs, or a JSONL file")
    lm.add_argument(
        "--examples",
        default=None,
        metavar="N|TRAIN,VAL,TEST",
        help="examples per split of a generated task (default: the paper's sizes)",
    )
    lm.add_argument("--dtype", default=None, help="float32 (default) or bfloat16 weights")
    lm.add_argument("--device", default=None, help="cpu (default), cuda, cuda:1, ...")
    lm.add_argument(
        "--target-sparsity",
        type=float,
        default=None,
        help="fraction of edges every method removes (default 0.98, as edgeprune prune)",
    )
    lm.add_argument(
        "--batch-size", type=int, default=None, help=f"training and evaluation batch (default {LM_BATCH_SIZE})"
    )
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--sparsities", default="", help="comma-separated edge sparsities for extra rows, e.g. 0.8,0.9,0.95")
    p.add_argument(
        "--ablation", choices=ABLATIONS, default=None, help="default: zero for programs, interchange for --model"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"Edge Pruning steps (default: the recovery setting for programs; {LM_STEPS} for --model, "
        "fewer than edgeprune prune's 3000 since this compares methods on small models)",
    )
    p.add_argument(
        "--hap-keep",
        type=float,
        default=None,
        help="fraction of edges HAP's attribution keeps (default: 0.6 for programs, 0.5 for --model)",
    )
    p.add_argument(
        "--hap-method",
        choices=RANKED_METHODS,
        default=None,
        help="HAP's attribution method (default: eap-ig for programs, whose saturated blocks give EAP's "
        "gradients nothing to see; eap for --model)",
    )
    p.add_argument(
        "--hap-steps",
        type=int,
        default=None,
        help="HAP pruning steps (default: half of Edge Pruning's for programs, as Edge Pruning for --model)",
    )
    p.add_argument("--ig-steps", type=int, default=5, help="EAP-IG integration steps (default 5)")
    p.add_argument(
        "--kl-tol",
        type=float,
        default=1e-3,
        help="programs, ranked methods: smallest top-k with KL <= this times the empty circuit's KL (default 1e-3)",
    )
    p.add_argument(
        "--acdc-tau", type=float, default=1e-4, help="ACDC threshold, times the empty circuit's KL (default 1e-4)"
    )
    p.add_argument(
        "--out",
        default=None,
        help="output directory (default results/compare-methods/<target, all, or model-task>-<ablation>)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output directory")
    p.add_argument(
        "--faithfulness",
        action="store_true",
        help="also cut every method's ranking at MIB's edge budgets (0.1%%..100%%): faithfulness curves, CPR and "
        "CMD, with the circuit kept (the rest ablated) and with the circuit ablated; a faithfulness plot",
    )
    p.add_argument("--plot-format", choices=("png", "svg"), default="png", help="format of the plots (default png)")
    p.add_argument("--no-plot", action="store_true", help="skip the plots")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of the Markdown table")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


#: HAP's defaults, (programs, language models).  Programs: EAP-IG, because Tracr's saturated blocks give
#: EAP's single gradient nothing to see (on palindrome 2 of 188 edges score non-zero, and keep 0.5 drops 3
#: ground-truth edges); 0.6 of the edges, because on 13-edge graphs such as trend the last needed edge ranks
#: 8th; half the steps: measured on the library (docs/compare-methods), pruning converges sooner on the
#: kept subgraph.  Language models: the HAP setting (EAP, half the edges, Edge Pruning's schedule).
HAP_DEFAULTS = {"keep": (0.6, 0.5), "method": ("eap-ig", "eap")}


def _options(args: argparse.Namespace, lm: bool) -> cm.Options:
    if args.hap_keep is None:
        args.hap_keep = HAP_DEFAULTS["keep"][lm]
    if args.hap_method is None:
        args.hap_method = HAP_DEFAULTS["method"][lm]
    if not 0.0 < args.hap_keep <= 1.0:
        raise EdgePruneError(f"--hap-keep must lie in (0, 1], got {args.hap_keep}")
    if args.kl_tol < 0 or args.acdc_tau < 0:
        raise EdgePruneError("--kl-tol and --acdc-tau must be >= 0")
    if args.target_sparsity is not None and not 0.0 <= args.target_sparsity <= 1.0:
        raise EdgePruneError(
            f"--target-sparsity {args.target_sparsity} is not in [0, 1]; e.g. 0.98 keeps 2% of the edges"
        )
    if args.batch_size is not None and args.batch_size < 1:
        raise EdgePruneError(f"--batch-size must be at least 1, got {args.batch_size}")
    ablation = args.ablation or ("interchange" if lm else "zero")
    return cm.Options(
        parse_methods(args.methods),
        parse_sparsities(args.sparsities),
        ablation,
        args.seed,
        args.steps,
        args.hap_keep,
        args.hap_method,
        args.hap_steps,
        args.ig_steps,
        args.kl_tol,
        args.acdc_tau,
        args.target_sparsity,
        args.batch_size,
        faithfulness=args.faithfulness,
        plot_format=args.plot_format,
    )


def _check_args(args: argparse.Namespace) -> tuple[bool, bool]:
    """(language model?, several programs?) after refusing combinations that mean nothing."""
    lm = args.model is not None or args.task is not None
    many = args.all or args.programs is not None
    if lm:
        if args.model is None or args.task is None:
            raise EdgePruneError("--model and --task go together: give both, e.g. --model gpt2 --task ioi")
        if args.target or many:
            raise EdgePruneError("give either a program (or --all/--programs) or --model/--task, not both")
    else:
        if many and args.target:
            raise EdgePruneError("give either a program or --all/--programs, not both")
        if not many and not args.target:
            raise EdgePruneError(
                "name a program (see `edgeprune programs`) or a compiled model directory, pass --all, "
                "or give --model and --task for a language model"
            )
        lm_only = [
            f"--{k.replace('_', '-')}"
            for k in ("examples", "dtype", "device", "target_sparsity", "batch_size")
            if getattr(args, k) is not None
        ]
        if lm_only:
            raise EdgePruneError(f"{', '.join(lm_only)} apply to language models; add --model and --task, or drop them")
    if not many and (args.resume or args.jobs != 1):
        raise EdgePruneError("--resume and --jobs apply to several programs; add --all (or --programs a,b,c)")
    return lm, many


def run(args: argparse.Namespace) -> int:
    lm, many = _check_args(args)
    opts = _options(args, lm)
    plot_it = not args.no_plot
    if plot_it and not report.plot_available():
        print(f"compare-methods: {report.PLOT_HINT}", file=sys.stderr)
        plot_it = False
    if lm:
        from edgeprune.pruning.language_models import parse_sizes

        label = f"{Path(args.model).name or args.model}-{Path(args.task).stem}"
        out = Path(args.out or f"results/compare-methods/{label}-{opts.ablation}")
        check_output(out, overwrite=args.overwrite, resume=bool(getattr(args, "resume", False)))
        result = cm.compare_language_model(
            args.model,
            args.task,
            opts,
            out,
            plot_it,
            parse_sizes(args.examples),
            args.dtype or "float32",
            args.device or "cpu",
        )
    elif many:
        out = Path(args.out or f"results/compare-methods/all-{opts.ablation}")
        check_output(out, overwrite=args.overwrite, resume=bool(getattr(args, "resume", False)))
        result = cm.compare_programs(
            selected_programs(args),
            opts,
            out,
            args.resume,
            args.jobs,
            plot_it,
            progress=not (args.no_progress or args.json) and sys.stderr.isatty(),
        )
    else:
        stem = Path(args.target).name.replace(":", "-")
        out = Path(args.out or f"results/compare-methods/{stem}-{opts.ablation}")
        check_output(out, overwrite=args.overwrite, resume=bool(getattr(args, "resume", False)))
        result = cm.compare_program(args.target, opts, out, plot_it, program_options(args))
    if args.json:
        print(json.dumps([asdict(r) for r in result.rows]))
    else:
        print(result.text, end="")
        written = "table.md, table.csv, rows.json" + (", rows.jsonl" if many else ", circuits/")
        fmt = args.plot_format.upper()
        written += (", scores/" if not many else "") + (
            (f", {fmt}s per program" if many else f", {fmt}s") if result.plotted else ""
        )
        print(f"(written to {out}/: {written})")
    return 0
