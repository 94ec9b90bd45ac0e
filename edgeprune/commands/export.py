"""``edgeprune export`` and ``edgeprune import-circuit``: circuits to and from EAP-IG's graph JSON (MIB's format).

The mapping of names, and the rule for the one ``input`` node that stands for
``tok`` and ``pos``, are in ``edgeprune.core.mib_format``.  The full graph's size
comes from ``--model`` (a compiled program or model directory, or a ``transformers``
model directory with its config.json), from ``--layers/--heads/--d-model``, or,
failing both, from the circuit's ``model`` when it names a library program.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgeprune.core import names
from edgeprune.core.circuit import Circuit
from edgeprune.core.errors import EdgePruneError
from edgeprune.core.files import check_output
from edgeprune.core.graph import ComputationalGraph

FORMATS = ("mib",)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a circuit (and edge scores) as EAP-IG's graph JSON, the MIB submission format",
        description="Write a circuit file as EAP-IG's graph JSON (cfg, nodes, edges with score and in_graph), the "
        "format MIB takes circuits in. tok and pos become EAP-IG's one input node (see --merge-inputs). "
        "Read one back with `edgeprune import-circuit`.",
    )
    p.add_argument("circuit", help="circuit JSON (as edgeprune prune, recover or compare-methods write)")
    p.add_argument("--format", choices=FORMATS, default="mib", help="output format (default mib: EAP-IG graph JSON)")
    p.add_argument("-o", "--out", required=True, help="output graph JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    _add_graph_arguments(p)
    p.add_argument(
        "--scores",
        default=None,
        help="edge-score file (compare-methods writes scores/<method>.json) for the edges' scores; "
        "default: 1 for the circuit's edges, 0 for the others",
    )
    p.add_argument(
        "--merge-inputs",
        action="store_true",
        help="export input -> X wherever tok -> X or pos -> X is in the circuit (otherwise a circuit that uses "
        "tok and pos apart is refused: EAP-IG has one input node)",
    )
    p.set_defaults(func=run_export)

    q = subparsers.add_parser(
        "import-circuit",
        help="read EAP-IG's graph JSON (MIB's format) into a circuit file",
        description="Read EAP-IG's graph JSON: the in_graph edges become a circuit file, input -> X becomes "
        "tok -> X and pos -> X (or tok alone with --embeddings tok, for rotary models).",
    )
    q.add_argument("graph", help="EAP-IG graph JSON")
    q.add_argument("-o", "--out", required=True, help="output circuit JSON")
    q.add_argument("--overwrite", action="store_true", help="replace existing output files")
    q.add_argument(
        "--embeddings",
        default="tok,pos",
        help="the target model's embedding writers that EAP-IG's input stands for (default tok,pos; tok for "
        "rotary models such as Llama)",
    )
    q.add_argument("--model-name", default="", help="the circuit's model field (default: empty)")
    q.add_argument("--scores-out", default=None, help="also write every edge's score as an edge-score file")
    q.set_defaults(func=run_import)


def _add_graph_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="the circuit's model: a library program, a compiled model directory, or a transformers model "
        "directory (config.json); default: the circuit's model field when it names a library program",
    )
    p.add_argument("--layers", type=int, default=None, help="instead of --model: number of layers")
    p.add_argument("--heads", type=int, default=None, help="instead of --model: heads per layer")
    p.add_argument("--d-model", type=int, default=None, help="instead of --model: residual width (EAP-IG's cfg)")


def _hf_graph(config: dict, name: str) -> tuple[ComputationalGraph, int]:
    if "n_layer" in config:  # GPT-2
        g = ComputationalGraph(int(config["n_layer"]), int(config["n_head"]), model=name)
        return g, int(config["n_embd"])
    if "num_hidden_layers" in config:  # Llama-like: rotary, so the token embedding alone
        h = int(config["num_attention_heads"])
        kv = int(config.get("num_key_value_heads") or h)
        g = ComputationalGraph(
            int(config["num_hidden_layers"]), h, embeddings=(names.TOK,), n_kv_heads=kv if kv != h else None, model=name
        )
        return g, int(config["hidden_size"])
    raise EdgePruneError(f"{name}/config.json is neither GPT-2's (n_layer) nor Llama's (num_hidden_layers)")


def graph_for(args: argparse.Namespace, circuit: Circuit) -> tuple[ComputationalGraph, int]:
    """The full graph and d_model the circuit lives on (see module)."""
    explicit = [args.layers, args.heads, args.d_model]
    if any(v is not None for v in explicit):
        if args.model is not None or any(v is None for v in explicit):
            raise EdgePruneError("give --layers, --heads and --d-model together, or --model instead of them")
        if min(explicit) < 1:  # type: ignore[type-var]
            raise EdgePruneError("--layers, --heads and --d-model must be at least 1")
        return ComputationalGraph(args.layers, args.heads, model=circuit.model), int(args.d_model)
    target = args.model or circuit.model
    if not target:
        raise EdgePruneError("the circuit names no model: pass --model, or --layers, --heads and --d-model")
    p = Path(target)
    if p.is_dir() and (p / "config.json").is_file():
        try:
            config = json.loads((p / "config.json").read_text(encoding="utf-8"))
            if not isinstance(config, dict):
                raise ValueError("not a JSON object")
            return _hf_graph(config, p.name)
        except (ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError) as exc:
            if isinstance(exc, EdgePruneError):
                raise
            raise EdgePruneError(
                f"{p}/config.json cannot size the graph ({type(exc).__name__}: {exc}); save the model again with "
                "save_pretrained, or pass --layers, --heads and --d-model"
            ) from None
    from edgeprune.compiled.resolve import resolve_model

    try:
        model = resolve_model(target)
    except EdgePruneError as exc:
        raise EdgePruneError(
            f"cannot find the model {target!r} to size the graph ({exc}); pass --model, or --layers, --heads "
            "and --d-model"
        ) from exc
    c = model.config
    return ComputationalGraph(c.n_layers, c.n_heads, model=model.metadata.name), int(c.d_model)


def run_export(args: argparse.Namespace) -> int:
    from edgeprune.core.mib_format import load_scores, save_mib, to_mib

    out = check_output(args.out, overwrite=args.overwrite, inputs=[args.circuit, args.scores], flag="--out")
    circuit = Circuit.load(args.circuit)
    graph, d_model = graph_for(args, circuit)
    scores = load_scores(args.scores) if args.scores else None
    data = to_mib(circuit, graph, d_model, scores, merge_inputs=args.merge_inputs)
    save_mib(data, out)
    kept = sum(e["in_graph"] for e in data["edges"].values())
    print(f"wrote {out}: {kept} of {len(data['edges'])} EAP-IG edges in the graph ({len(circuit)} circuit edges)")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from edgeprune.core.mib_format import load_mib, scores_to_dict

    embeddings = tuple(e.strip() for e in args.embeddings.split(",") if e.strip())
    out = check_output(args.out, overwrite=args.overwrite, inputs=[args.graph], flag="--out")
    if args.scores_out:
        check_output(args.scores_out, overwrite=args.overwrite, inputs=[args.graph, args.out], flag="--scores-out")
    read = load_mib(args.graph, embeddings, args.model_name)
    read.circuit.save(out)
    if args.scores_out:
        doc = scores_to_dict(read.scores, args.model_name, {"source": "EAP-IG graph JSON", "graph": str(args.graph)})
        Path(args.scores_out).write_text(json.dumps(doc) + "\n")
    print(f"wrote {out}: {len(read.circuit)} edges of {read.graph.n_edges}", file=sys.stdout)
    return 0
