"""Convert a live Tracr ``AssembledTransformerModel`` (optional ``tracr`` extra) into a CompiledTransformer.

Tracr's assembled model keeps weights, residual labels and encoders but drops
the RASP graph; the graph is rebuilt with Tracr's own passes from the program,
and each block is matched to the program node whose directions it writes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from edgeprune.compiled.metadata import BlockMap, ModelMetadata, NodeInfo
from edgeprune.compiled.model import CompiledTransformer, TransformerConfig
from edgeprune.compiled.tracr_import import haiku_params_to_torch
from edgeprune.core.errors import CompileError, ModelFileError


def _label(direction: Any) -> str:
    return direction.name if direction.value is None else f"{direction.name}:{direction.value}"


def _block_type(expr: Any, trasp: Any) -> str:
    """The kind of block that computes ``expr`` (named as the own compiler's metadata names it)."""
    if isinstance(expr, (trasp.TokensType, trasp.IndicesType)):
        return "embedding"
    if isinstance(expr, trasp.SelectorWidth):
        return "selector_width_attn_mlp_pair"
    if isinstance(expr, trasp.Aggregate):
        return "attention_head"
    if isinstance(expr, (trasp.Map, trasp.SequenceMap)):
        return "mlp"
    return "none"


def metadata_from_live_tracr(
    assembled, program, vocab, max_seq_len, name, trasp, tnodes, rasp_to_graph, basis_inference
):
    cfg = assembled.model_config
    params = {f"{mod}/{p}": np.asarray(v) for mod, d in assembled.params.items() for p, v in d.items()}
    labels = [str(l) for l in assembled.residual_labels]
    enc = assembled.input_encoder
    config = TransformerConfig(
        d_model=len(labels),
        n_layers=cfg.num_layers,
        n_heads=cfg.num_heads,
        key_size=cfg.key_size,
        mlp_hidden=cfg.mlp_hidden_size,
        vocab_size=len(enc.encoding_map),
        n_positions=max_seq_len + 1,
        layer_norm=bool(cfg.layer_norm),
        causal=bool(cfg.causal),
    )
    tensors = haiku_params_to_torch(params, config, name)

    extracted = rasp_to_graph.extract_rasp_graph(program)
    basis_inference.infer_bases(extracted.graph, extracted.sink, set(vocab), max_seq_len)
    nodes: list[NodeInfo] = []
    for label, data in extracted.graph.nodes(data=True):
        expr = data[tnodes.EXPR]
        kind = type(expr).__name__
        if expr is trasp.tokens:
            kind = "tokens"
        elif expr is trasp.indices:
            kind = "indices"
        info = NodeInfo(label=label, expr_type=kind, operands=[c.label for c in expr.children])
        if isinstance(expr, trasp.SOp):
            info.encoding = trasp.get_encoding(expr).name.lower()
            basis = data.get(tnodes.OUTPUT_BASIS, [])
            # the own compiler's convention: categorical values in basis order, numerical ones sorted
            if trasp.is_categorical(expr):
                info.value_set = [d.value for d in basis]
            else:
                info.value_set = sorted(data.get(tnodes.VALUE_SET, []))
            info.output_basis = [_label(d) for d in basis]
        info.block_type = _block_type(expr, trasp)
        if isinstance(expr, trasp.Select):
            pred = expr.predicate
            info.predicate = pred.name if isinstance(pred, trasp.Comparison) else "custom"
            info.keys, info.queries = expr.keys.label, expr.queries.label
        if isinstance(expr, trasp.Aggregate):
            info.selector, info.sop = expr.selector.label, expr.sop.label
        if isinstance(expr, trasp.SelectorWidth):
            info.selector = expr.selector.label
        nodes.append(info)

    blocks = _match_blocks(tensors, labels, nodes, config)
    out_node = next(n for n in nodes if n.label == program.label)
    out_space = [labels.index(l) for l in out_node.output_basis]
    categorical = out_node.encoding == "categorical"
    # Tracr's CategoricalEncoder keeps only ``encoding_map`` (value -> index in the output space).
    output_values: list = []
    if categorical:
        emap = getattr(assembled.output_encoder, "encoding_map", None)
        if emap is None:
            raise ModelFileError(
                f"the Tracr model {name!r} has a categorical output but no output encoder encoding_map"
            )
        output_values = [v for v, _ in sorted(emap.items(), key=lambda kv: kv[1])]
    meta = ModelMetadata(
        name=name,
        vocab=sorted(vocab, key=str),
        max_seq_len=max_seq_len,
        bos=enc.bos_token,
        pad=enc.pad_token,
        encoding_map=sorted(enc.encoding_map.items(), key=lambda kv: kv[1]),
        residual_labels=labels,
        output_encoding=out_node.encoding,
        output_sop=program.label,
        output_space=out_space,
        output_values=output_values,
        nodes=nodes,
        blocks=blocks,
        source="tracr",
    )
    model = CompiledTransformer(config, meta)
    with torch.no_grad():
        for k, v in tensors.items():
            getattr(model, k).copy_(v)
    return model


def _match_blocks(tensors, labels, nodes, config) -> BlockMap:
    """Assign each head / MLP the program nodes whose directions its output weights write."""
    owner = {}
    for n in nodes:
        for l in n.output_basis:
            owner[l] = n.label
        if n.expr_type == "SelectorWidth":
            owner[f"{n.label}_selector_width_attn_output"] = n.label
    blocks = BlockMap()
    for layer in range(config.n_layers):
        for h in range(config.n_heads):
            written = torch.nonzero(tensors["W_O"][layer, h].abs().amax(0) > 0).flatten().tolist()
            found = {owner[labels[i]] for i in written if labels[i] in owner}
            if len(found) > 1:
                raise ModelFileError(f"head a{layer}.h{h} writes directions of several nodes {sorted(found)}")
            if found:
                blocks.heads[f"a{layer}.h{h}"] = found.pop()
        written = torch.nonzero(tensors["W_2"][layer].abs().amax(0) > 0).flatten().tolist()
        found_mlp = {owner[labels[i]] for i in written if labels[i] in owner}
        if found_mlp:  # in graph order, as Tracr's graph (and the own compiler) lists a layer's MLPs
            blocks.mlps[f"m{layer}"] = [n.label for n in nodes if n.label in found_mlp]
    for n in nodes:
        for key, val in blocks.heads.items():
            if val == n.label:
                n.layer, n.head = int(key[1:].split(".")[0]), int(key.split(".h")[1])
        for key, owners in blocks.mlps.items():  # an MLP-only node; a SelectorWidth keeps its head's layer
            if n.label in owners and n.layer is None:
                n.layer = int(key[1:])
    return blocks


# ----------------------------------------------------------------------------- compiling with real Tracr

_TRACR_HINT = "install the optional Tracr extra: pip install -e '.[tracr]'"


def _import_tracr():
    try:
        from tracr.compiler import compiling  # type: ignore
        from tracr.rasp import rasp as trasp  # type: ignore
    except ImportError as exc:
        raise CompileError(
            f"compiling with real Tracr needs the tracr package, which is not installed; {_TRACR_HINT}"
        ) from exc
    return compiling, trasp


def to_tracr_rasp(program: Any, trasp: Any) -> Any:
    """Translate an ``edgeprune.programs.rasp`` expression node for node into ``tracr.rasp``.

    Names and encodings are carried over; no simplification is redone (the
    expression is already simplified), so the graph is the same graph.
    A ``tracr.rasp`` expression is returned as is.
    """
    from edgeprune.programs import rasp as ours

    if isinstance(program, trasp.RASPExpr):
        return program
    memo: dict[int, Any] = {}

    def conv(e: Any) -> Any:
        if id(e) in memo:
            return memo[id(e)]
        if isinstance(e, ours.TokensType):
            t = trasp.tokens
        elif isinstance(e, ours.IndicesType):
            t = trasp.indices
        elif isinstance(e, ours.LengthType):
            t = trasp.length
        elif isinstance(e, ours.LinearSequenceMap):
            t = trasp.LinearSequenceMap(conv(e.fst), conv(e.snd), e.fst_fac, e.snd_fac)
        elif isinstance(e, ours.SequenceMap):
            t = trasp.SequenceMap(e.f, conv(e.fst), conv(e.snd))
        elif isinstance(e, ours.Map):
            t = trasp.Map(e.f, conv(e.inner), simplify=False)
        elif isinstance(e, ours.Full):
            t = trasp.Full(e.fill)
        elif isinstance(e, ours.ConstantSOp):
            t = trasp.ConstantSOp(e.value, e.check_length)
        elif isinstance(e, ours.Select):
            pred = e.predicate
            if isinstance(pred, ours.Comparison):
                pred = trasp.Comparison[pred.name]
            t = trasp.Select(conv(e.keys), conv(e.queries), pred)
        elif isinstance(e, ours.ConstantSelector):
            t = trasp.ConstantSelector(e.value, e.check_length)
        elif isinstance(e, ours.SelectorAnd):
            t = trasp.SelectorAnd(conv(e.fst), conv(e.snd))
        elif isinstance(e, ours.SelectorOr):
            t = trasp.SelectorOr(conv(e.fst), conv(e.snd))
        elif isinstance(e, ours.SelectorNot):
            t = trasp.SelectorNot(conv(e.inner))
        elif isinstance(e, ours.SelectorWidth):
            t = trasp.SelectorWidth(conv(e.selector))
        elif isinstance(e, ours.Aggregate):
            t = trasp.Aggregate(conv(e.selector), conv(e.sop), default=e.default)
        else:
            raise CompileError(f"cannot translate {type(e).__name__} to tracr.rasp")
        if not isinstance(e, (ours.TokensType, ours.IndicesType, ours.LengthType)):
            ann = dict(e.annotations)
            if "encoding" in ann:
                ann["encoding"] = trasp.Encoding[ann["encoding"].name]
            t = trasp.annotate(t, **ann)
            _same_id(t, e)
        memo[id(e)] = t
        return t

    return conv(program)


def _same_id(theirs: Any, ours: Any) -> None:
    """Give the Tracr expression the own expression's id, so labels (``name_id``) and hence the
    converted model's residual labels and node names equal the own compiler's whatever either
    module's id counter has reached (ids are drawn when a label is first read).  Tracr keeps
    the id in a cached property; where a version does not, labels keep Tracr's own ids."""
    import functools

    if isinstance(getattr(type(theirs), "unique_id", None), functools.cached_property):
        theirs.__dict__["unique_id"] = ours.unique_id


def compile_with_tracr(
    program: Any,
    vocab: Any,
    max_seq_len: int,
    *,
    causal: bool = False,
    name: str | None = None,
    compiler_bos: Any = "BOS",
    compiler_pad: Any = "compiler_pad",
    mlp_exactness: float = 100,
) -> CompiledTransformer:
    """Compile ``program`` with real Tracr and convert it into a CompiledTransformer.

    ``program`` is an ``edgeprune.programs.rasp`` or a ``tracr.rasp`` expression.
    The model carries the same metadata (source "tracr") as the own compiler's;
    ``model.program`` is the program as given. Tracr's refusals become CompileError.
    """
    compiling, trasp = _import_tracr()
    from tracr.compiler import basis_inference, rasp_to_graph  # type: ignore
    from tracr.compiler import nodes as tnodes

    vocab_set = set(vocab)
    if not isinstance(max_seq_len, int) or isinstance(max_seq_len, bool) or max_seq_len < 1:
        raise CompileError(f"max_seq_len must be a positive integer, got {max_seq_len!r}")
    if not vocab_set:
        raise CompileError("the vocab is empty, so tokens has an empty value set; pass the program's input tokens")
    tprogram = to_tracr_rasp(program, trasp)
    try:
        assembled = compiling.compile_rasp_to_model(
            tprogram,
            vocab_set,
            max_seq_len,
            causal=causal,
            compiler_bos=compiler_bos,
            compiler_pad=compiler_pad,
            mlp_exactness=mlp_exactness,
        )
    except Exception as exc:  # Tracr raises NotImplementedError, ValueError, KeyError, ... on unsupported programs
        raise CompileError(
            f"Tracr cannot compile {getattr(tprogram, 'label', program)!r}: {type(exc).__name__}: {exc}"
        ) from exc
    model = metadata_from_live_tracr(
        assembled,
        tprogram,
        vocab_set,
        max_seq_len,
        name or tprogram.label,
        trasp,
        tnodes,
        rasp_to_graph,
        basis_inference,
    )
    model.program = program
    model.tracr_program = tprogram
    model.assembled = assembled
    return model
