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
from edgeprune.core.errors import ModelFileError


def _label(direction: Any) -> str:
    return direction.name if direction.value is None else f"{direction.name}:{direction.value}"


def _json_value(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def metadata_from_live_tracr(assembled, program, vocab, max_seq_len, name, trasp, tnodes, rasp_to_graph, basis_inference):
    cfg = assembled.model_config
    params = {f"{mod}/{p}": np.asarray(v) for mod, d in assembled.params.items() for p, v in d.items()}
    labels = [str(l) for l in assembled.residual_labels]
    enc = assembled.input_encoder
    config = TransformerConfig(
        d_model=len(labels), n_layers=cfg.num_layers, n_heads=cfg.num_heads, key_size=cfg.key_size,
        mlp_hidden=cfg.mlp_hidden_size, vocab_size=len(enc.encoding_map), n_positions=max_seq_len + 1,
        layer_norm=bool(cfg.layer_norm), causal=bool(cfg.causal),
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
            info.value_set = sorted((_json_value(v) for v in data.get(tnodes.VALUE_SET, [])), key=str)
            info.output_basis = [_label(d) for d in data.get(tnodes.OUTPUT_BASIS, [])]
        if isinstance(expr, trasp.Select):
            info.predicate = expr.predicate.name
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
    dec = getattr(assembled.output_encoder, "decoding_map", None) if categorical else None
    meta = ModelMetadata(
        name=name, vocab=sorted(vocab, key=str), max_seq_len=max_seq_len,
        bos=enc.bos_token, pad=enc.pad_token,
        encoding_map=sorted(enc.encoding_map.items(), key=lambda kv: kv[1]),
        residual_labels=labels, output_encoding=out_node.encoding, output_sop=program.label,
        output_space=out_space, output_values=[dec[i] for i in range(len(dec))] if dec else [],
        nodes=nodes, blocks=blocks, source="tracr",
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
        found = sorted({owner[labels[i]] for i in written if labels[i] in owner})
        if found:
            blocks.mlps[f"m{layer}"] = found
    for n in nodes:
        for key, val in blocks.heads.items():
            if val == n.label:
                n.layer, n.head = int(key[1:].split(".")[0]), int(key.split(".h")[1])
    return blocks
