"""Model subcommands: info, run, compile, import-tracr."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeprune.core.errors import EdgePruneError, InputError
from edgeprune.core.files import check_output
from edgeprune.program_options import PROGRAM_HELP, USER_CODE_NOTE, add_program_arguments, program_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a compiled model: layers, blocks, ground truth", epilog=USER_CODE_NOTE)
    p.add_argument("model", help=PROGRAM_HELP)
    p.add_argument("--json", action="store_true", help="print JSON")
    add_program_arguments(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("run", help="run a compiled model on tokens", epilog=USER_CODE_NOTE)
    p.add_argument("model", help=PROGRAM_HELP)
    p.add_argument("tokens", nargs="*", help="input tokens (BOS is added)")
    p.add_argument("--inputs", type=Path, help="file with one JSON list of tokens per line")
    p.add_argument("--json", action="store_true", help="one JSON line {input, output} per input")
    add_program_arguments(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("import-tracr", help="import a Tracr reference directory into a saved model")
    p.add_argument("ref_dir", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True, help="output model directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output directory")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "compile", help="compile a library program or your own program file and save it", epilog=USER_CODE_NOTE
    )
    p.add_argument(
        "program",
        help=PROGRAM_HELP.split(", a saved model")[0] + ", or your own program as "
        "path/to/file.py:function or package.module:function (loading a program file runs its code)",
    )
    p.add_argument("-o", "--out", type=Path, required=True, help="output model directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output directory")
    add_program_arguments(p)
    p.set_defaults(func=cmd_compile)


def model_info(model) -> dict:
    from edgeprune.compiled.ground_truth import ground_truth_dict
    from edgeprune.core import names
    from edgeprune.core.graph import ComputationalGraph

    c, meta = model.config, model.metadata
    heads = [
        sorted(int(h.split(".h")[1]) for h in meta.blocks.heads if h.startswith(f"a{l}.")) for l in range(c.n_layers)
    ]
    graph = ComputationalGraph(c.n_layers, c.n_heads)
    return {
        "name": meta.name,
        "source": meta.source,
        "layers": c.n_layers,
        "heads": [len(h) for h in heads],
        "head_indices": heads,
        "mlps": [1 if names.mlp(l) in meta.blocks.mlps else 0 for l in range(c.n_layers)],
        "n_heads": c.n_heads,
        "d_model": c.d_model,
        "mlp_hidden": c.mlp_hidden,
        "vocab": meta.vocab,
        "max_seq_len": meta.max_seq_len,
        "output_encoding": meta.output_encoding,
        "output_sop": meta.output_sop,
        "blocks": {"heads": meta.blocks.heads, "mlps": meta.blocks.mlps},
        "graph_edges": graph.n_edges,
        "ground_truth": ground_truth_dict(model),
        "checker": _checker_plan(model),
    }


def _checker_plan(model) -> dict:
    """The checker's input budget for this model (``verify.checker.InputPlan``): exhaustive or a seeded sample."""
    from edgeprune.verify.checker import MAX_INPUTS, count_inputs

    meta = model.metadata
    total = count_inputs(meta.vocab, meta.max_seq_len, meta.extra.get("input_constraint"))
    mode = "exhaustive" if total <= MAX_INPUTS else "sampled"
    return {"mode": mode, "inputs": min(total, MAX_INPUTS), "total": total, "budget": MAX_INPUTS}


def cmd_info(args) -> int:
    from edgeprune.compiled.resolve import resolve_model

    info = model_info(resolve_model(args.model, **program_options(args)))
    if args.json:
        print(json.dumps(info))
        return 0
    print(
        f"{info['name']} ({info['source']}): {info['layers']} layers, d_model {info['d_model']}, "
        f"{info['graph_edges']} edges in the graph, output {info['output_encoding']}"
    )
    for l in range(info["layers"]):
        hs = ", ".join(f"a{l}.h{h}={info['blocks']['heads'][f'a{l}.h{h}']}" for h in info["head_indices"][l]) or "-"
        ms = ", ".join(info["blocks"]["mlps"].get(f"m{l}", [])) or "-"
        print(f"  layer {l}: heads {hs}; mlp {ms}")
    chk = info["checker"]
    how = "every input" if chk["mode"] == "exhaustive" else f"a seeded sample of {chk['inputs']} of {chk['total']}"
    print(f"checker: {chk['mode']}, {how} (budget {chk['budget']} inputs)")
    for ablation, edges in info["ground_truth"].items():
        print(f"ground truth ({ablation}, {len(edges)} edges):")
        for w, r in edges:
            print(f"  {w} -> {r}")
    return 0


def _read_inputs(path: Path) -> list[tuple[int, list]]:
    """(line number, tokens) per non-blank line, so a bad token or length is reported by its line."""
    if not path.is_file():
        raise InputError(f"inputs file {path} does not exist")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}:{bad_line}: byte 0x{data[exc.start]:02x} is not UTF-8 text; save the file as UTF-8"
        ) from None
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            seq = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise InputError(
                f"{path}:{i}: not a JSON list of tokens ({exc}); write one list per line, e.g. [1, 2, 3]"
            ) from None
        if not isinstance(seq, list):
            raise InputError(f"{path}:{i}: expected a JSON list of tokens, got {type(seq).__name__}")
        out.append((i, seq))
    if not out:
        raise InputError(f"inputs file {path} has no inputs; write one JSON list of tokens per line, e.g. [1, 2, 3]")
    return out


def cmd_run(args) -> int:
    from edgeprune.compiled.resolve import resolve_model

    model = resolve_model(args.model, **program_options(args))
    if args.inputs and args.tokens:
        raise EdgePruneError("give either tokens or --inputs FILE, not both")
    lines = _read_inputs(args.inputs) if args.inputs else [(0, args.tokens)]
    inputs = []
    for lineno, seq in lines:
        try:
            inputs.append([_coerce(model, t) for t in seq])
            model.metadata.encode(inputs[-1])  # unknown token or too long: named with its line below
        except InputError as exc:
            raise InputError(f"{args.inputs}:{lineno}: {exc}" if args.inputs else str(exc)) from None
    outputs = model.run(inputs)
    for seq, out in zip(inputs, outputs):
        if args.json:
            print(json.dumps({"input": seq, "output": out}))
        else:
            print(" ".join(map(str, seq)), "->", " ".join(map(str, out)))
    return 0


def _coerce(model, token):
    value = model.metadata.coerce_token(token)
    if value is None:
        raise InputError(
            f"token {token!r} is not in the vocab of {model.metadata.name}; allowed: {sorted(map(str, model.metadata.vocab))}"
        )
    return value


def cmd_import(args) -> int:
    from edgeprune.compiled.ground_truth import ground_truth_dict
    from edgeprune.compiled.io import save_model
    from edgeprune.compiled.tracr_import import load_reference_dir

    check_output(args.out, overwrite=args.overwrite, inputs=[args.ref_dir], flag="-o")
    model, _ = load_reference_dir(args.ref_dir)
    save_model(model, args.out, ground_truth=ground_truth_dict(model))
    print(f"imported {args.ref_dir} -> {args.out}")
    return 0


def cmd_compile(args) -> int:
    from edgeprune.compiled.ground_truth import ground_truth_dict
    from edgeprune.compiled.io import save_model
    from edgeprune.compiled.resolve import compile_spec, program_spec_for

    if Path(args.program).is_dir():
        raise EdgePruneError(f"{args.program} is a directory; compile takes a program name or file.py:function")
    program_file = args.program.split(":", 1)[0] if args.program.count(":") == 1 else None
    check_output(
        args.out,
        overwrite=args.overwrite,
        flag="-o",
        inputs=[program_file if program_file and Path(program_file).exists() else None],
    )
    opts = program_options(args)
    spec = program_spec_for(args.program, opts["vocab"], opts["max_seq_len"])
    model = compile_spec(spec, compiler=opts["compiler"], causal=opts["causal"])
    save_model(model, args.out, ground_truth=ground_truth_dict(model))
    print(f"compiled {args.program} -> {args.out}")
    return 0
