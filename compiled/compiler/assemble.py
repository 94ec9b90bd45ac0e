"""Pass 5: residual layout, weights and metadata (Tracr's ``craft_model_to_transformer`` + ``assemble``).

Residual space = all blocks' spaces joined with tokens (vocab + BOS + pad),
indices 0..max_seq_len-1 and the output space, sorted the Tracr way.  Query
weights carry W_QK (residual -> key-space coordinates) and key weights are the
plain projection onto the key space; value weights carry W_OV and the output
projection is the plain embedding of the output space, exactly as Tracr lays
them out.  Logits are divided by sqrt(key_size) in the model, as in Haiku.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from edgeprune.compiled.compiler.allocation import Layout
from edgeprune.compiled.compiler.basis_inference import value_set_for_metadata
from edgeprune.compiled.compiler.craft import MLP, AttentionHead, AttnMLPPair, Direction, from_values, join
from edgeprune.compiled.compiler.graph import ProgramGraph
from edgeprune.compiled.metadata import BlockMap, ModelMetadata, NodeInfo
from edgeprune.compiled.model import CompiledTransformer, TransformerConfig
from edgeprune.programs import rasp


def _projection(residual: list[Direction], sub: list[Direction]) -> np.ndarray:
    """(D, len(sub)) matrix selecting the sub-space's coordinates from the residual stream."""
    idx = {d: i for i, d in enumerate(residual)}
    m = np.zeros((len(residual), len(sub)))
    for j, d in enumerate(sub):
        if d in idx:
            m[idx[d], j] = 1.0
    return m


def _expr_type(expr: rasp.RASPExpr) -> str:
    if isinstance(expr, rasp.TokensType):
        return "tokens"
    if isinstance(expr, rasp.IndicesType):
        return "indices"
    return type(expr).__name__


def _predicate_name(pred: Any) -> str:
    return pred.name if isinstance(pred, rasp.Comparison) else "custom"


def assemble(
    graph: ProgramGraph, layout: Layout, vocab: set, max_seq_len: int, *, name: str, bos: Any, pad: Any, causal: bool
) -> CompiledTransformer:
    # ----- collect the half-layer blocks ------------------------------------------------------
    modules: list[tuple[int, str, Any]] = []  # (layer, kind, block: list of heads | combined MLP)
    for hl, labels in layout.half_layers.items():
        layer, kind = layout.module_of_half_layer[hl]
        if kind == "attn":
            heads = []
            for l in labels:
                b = graph.nodes[l].block
                heads.append(b.attn if isinstance(b, AttnMLPPair) else b)
            modules.append((layer, kind, heads))
        else:
            mlps = []
            for l in labels:
                b = graph.nodes[l].block
                mlps.append(b.mlp if isinstance(b, AttnMLPPair) else b)
            modules.append((layer, kind, MLP.combine_in_parallel(mlps)))

    # ----- residual space ----------------------------------------------------------------------
    tokens_space = from_values("tokens", set(graph.nodes["tokens"].value_set) | {bos, pad})
    indices_space = from_values("indices", range(max_seq_len))
    sink = graph.nodes[graph.sink]
    output_space = list(sink.output_basis)
    block_spaces = []
    for label in graph.nodes:
        b = graph.nodes[label].block
        if b is not None:
            block_spaces.append(b.residual_space)
    residual = join(*block_spaces, tokens_space, indices_space, output_space)
    D = len(residual)
    res_index = {d: i for i, d in enumerate(residual)}

    # ----- config ------------------------------------------------------------------------------
    all_heads: list[AttentionHead] = [h for _, k, b in modules if k == "attn" for h in b]
    all_mlps: list[MLP] = [b for _, k, b in modules if k == "mlp"]
    if all_heads:
        n_heads = max(len(b) for _, k, b in modules if k == "attn")
        key_size = max([max(h.w_qk.matrix.shape) for h in all_heads] + [max(h.w_ov.matrix.shape) for h in all_heads])
    else:
        n_heads, key_size = 1, 1
    mlp_hidden = max((len(m.fst.outputs) for m in all_mlps), default=1)
    config = TransformerConfig(
        d_model=D,
        n_layers=layout.num_layers,
        n_heads=n_heads,
        key_size=key_size,
        mlp_hidden=mlp_hidden,
        vocab_size=len(tokens_space),
        n_positions=max_seq_len + 1,
        layer_norm=False,
        causal=causal,
    )
    L, H, K, M = config.n_layers, n_heads, key_size, mlp_hidden
    W = {
        k: np.zeros(s)
        for k, s in {
            "W_Q": (L, H, D, K),
            "W_K": (L, H, D, K),
            "W_V": (L, H, D, K),
            "W_O": (L, H, K, D),
            "W_1": (L, D, M),
            "W_2": (L, M, D),
        }.items()
    }

    head_of: dict[str, tuple[int, int]] = {}
    mlp_columns: dict[str, dict[str, list[int]]] = {}
    blocks = BlockMap()
    for layer, kind, block in modules:
        if kind == "attn":
            for h, head in enumerate(block):
                ks = head.w_qk.matrix.shape[1]
                W["W_Q"][layer, h, :, :ks] = _projection(residual, head.w_qk.left) @ head.w_qk.matrix
                W["W_K"][layer, h, :, :ks] = _projection(residual, head.w_qk.right)
                vs = head.w_ov.matrix.shape[1]
                W["W_V"][layer, h, :, :vs] = _projection(residual, head.w_ov.inputs) @ head.w_ov.matrix
                W["W_O"][layer, h, :vs, :] = _projection(residual, head.w_ov.outputs).T
                head_of[head.node] = (layer, h)
                blocks.heads[f"a{layer}.h{h}"] = head.node
        else:
            hs = len(block.fst.outputs)
            W["W_1"][layer, :, :hs] = _projection(residual, block.fst.inputs) @ block.fst.matrix
            W["W_2"][layer, :hs, :] = block.snd.matrix @ _projection(residual, block.snd.outputs).T
            blocks.mlps[f"m{layer}"] = list(block.nodes)
            col = {d: i for i, d in enumerate(block.fst.outputs)}
            mlp_columns[f"m{layer}"] = {n: sorted(col[d] for d in dirs) for n, dirs in block.hidden_by_node.items()}

    # ----- embeddings --------------------------------------------------------------------------
    one = Direction("one")
    tok = np.zeros((len(tokens_space), D))
    for i, d in enumerate(tokens_space):
        tok[i, res_index[d]] = 1.0
        if one in res_index:
            tok[i, res_index[one]] = 1.0
    pos = np.zeros((max_seq_len + 1, D))
    for p in range(max_seq_len):
        pos[p + 1, res_index[Direction("indices", p)]] = 1.0

    # ----- metadata ----------------------------------------------------------------------------
    layer_of_node: dict[str, int] = {}
    for hl, labels in layout.half_layers.items():
        layer, _ = layout.module_of_half_layer[hl]
        for l in labels:
            layer_of_node.setdefault(l, layer)
    nodes: list[NodeInfo] = []
    for label, gn in graph.nodes.items():
        expr = gn.expr
        info = NodeInfo(label=label, expr_type=_expr_type(expr), operands=[c.label for c in expr.children])
        if gn.is_sop:
            info.encoding = rasp.get_encoding(expr).value
            info.value_set = value_set_for_metadata(gn)
            info.output_basis = [str(d) for d in gn.output_basis]
        if isinstance(expr, rasp.Select):
            info.predicate = _predicate_name(expr.predicate)
            info.keys, info.queries = expr.keys.label, expr.queries.label
            info.block_type = "none"
        elif isinstance(expr, (rasp.TokensType, rasp.IndicesType)):
            info.block_type = "embedding"
        elif isinstance(gn.block, AttnMLPPair):
            info.block_type = "selector_width_attn_mlp_pair"
        elif isinstance(gn.block, AttentionHead):
            info.block_type = "attention_head"
        elif isinstance(gn.block, MLP):
            info.block_type = "mlp"
        else:
            info.block_type = "none"
        if isinstance(expr, (rasp.Aggregate, rasp.SelectorWidth)):
            info.selector = expr.selector.label
        if isinstance(expr, rasp.Aggregate):
            info.sop = expr.sop.label
        if label in layer_of_node:
            info.layer = layer_of_node[label]
        if label in head_of:
            info.head = head_of[label][1]
        nodes.append(info)

    output_values = [] if rasp.is_numerical(sink.expr) else [d.value for d in output_space]
    meta = ModelMetadata(
        name=name,
        vocab=sorted(vocab, key=lambda v: Direction("tokens", v)),
        max_seq_len=max_seq_len,
        bos=bos,
        pad=pad,
        encoding_map=[(d.value, i) for i, d in enumerate(tokens_space)],
        residual_labels=[str(d) for d in residual],
        output_encoding=rasp.get_encoding(sink.expr).value,
        output_sop=graph.sink,
        output_space=[res_index[d] for d in output_space],
        output_values=output_values,
        nodes=nodes,
        blocks=blocks,
        source="edgeprune-compiler",
        extra={
            "edges": [list(e) for e in graph.edges],
            "sink": graph.sink,
            "sources": list(dict.fromkeys(graph.sources)),
            "half_layers": {str(hl): labels for hl, labels in layout.half_layers.items()},
            "mlp_hidden_columns": mlp_columns,
            "computational_depth": {l: n.depth for l, n in graph.nodes.items()},
        },
    )
    model = CompiledTransformer(config, meta)
    with torch.no_grad():
        model.token_embed.copy_(torch.from_numpy(tok))
        model.pos_embed.copy_(torch.from_numpy(pos))
        for k, v in W.items():
            getattr(model, k).copy_(torch.from_numpy(v))
    return model
