"""Import real Tracr models: from the reference directory format, or from a live Tracr model.

The reference format (``../shared/tracr-reference/*/``) holds Haiku parameters
(``params.npz``) and the compiler's graph and layer allocation (``model.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeprune.compiled.metadata import BlockMap, ModelMetadata, NodeInfo
from edgeprune.compiled.model import CompiledTransformer, TransformerConfig, param_shapes
from edgeprune.core.errors import ModelFileError

REFERENCE_FILES = ("model.json", "params.npz")


def _require(d: dict, key: str, where: str) -> Any:
    if key not in d:
        raise ModelFileError(f"{where} lacks the field {key!r}; regenerate the reference directory")
    return d[key]


def haiku_params_to_torch(
    params: dict[str, np.ndarray], config: TransformerConfig, where: str
) -> dict[str, torch.Tensor]:
    """Map Tracr's Haiku parameter names and layouts to this project's per-head tensors."""
    L, H, K = config.n_layers, config.n_heads, config.key_size
    out: dict[str, torch.Tensor] = {}

    def get(key: str) -> np.ndarray:
        if key not in params:
            raise ModelFileError(f"{where}: parameter {key!r} is missing from params.npz")
        return np.array(params[key], dtype=np.float32)  # a writable copy (jax arrays are read-only)

    out["token_embed"] = torch.from_numpy(get("token_embed/embeddings"))
    out["pos_embed"] = torch.from_numpy(get("pos_embed/embeddings"))
    per_layer: dict[str, list] = {
        k: [] for k in ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O", "b_O", "W_1", "b_1", "W_2", "b_2")
    }
    for layer in range(L):
        pre = f"transformer/layer_{layer}"
        for mat, hk in (("Q", "query"), ("K", "key"), ("V", "value")):
            w = get(f"{pre}/attn/{hk}/w")  # (D, H*K)
            b = get(f"{pre}/attn/{hk}/b")
            per_layer[f"W_{mat}"].append(w.reshape(w.shape[0], H, K).transpose(1, 0, 2))
            per_layer[f"b_{mat}"].append(b.reshape(H, K))
        wo = get(f"{pre}/attn/linear/w")  # (H*K, D)
        per_layer["W_O"].append(wo.reshape(H, K, wo.shape[1]))
        per_layer["b_O"].append(get(f"{pre}/attn/linear/b"))
        per_layer["W_1"].append(get(f"{pre}/mlp/linear_1/w"))
        per_layer["b_1"].append(get(f"{pre}/mlp/linear_1/b"))
        per_layer["W_2"].append(get(f"{pre}/mlp/linear_2/w"))
        per_layer["b_2"].append(get(f"{pre}/mlp/linear_2/b"))
    for k, v in per_layer.items():
        out[k] = torch.from_numpy(np.stack(v))
    if config.layer_norm:
        for which, hk in (("attn", "attn"), ("mlp", "mlp")):
            out[f"ln_{which}_w"] = torch.from_numpy(
                np.stack([get(f"transformer/layer_{l}/{hk}/layer_norm/scale") for l in range(L)])
            )
            out[f"ln_{which}_b"] = torch.from_numpy(
                np.stack([get(f"transformer/layer_{l}/{hk}/layer_norm/offset") for l in range(L)])
            )
    expected = param_shapes(config)
    for k, tensor in out.items():
        if tuple(tensor.shape) != expected[k]:
            raise ModelFileError(
                f"{where}: parameter {k} has shape {tuple(tensor.shape)}, the config implies {expected[k]}"
            )
    return out


def _nodes_from_reference(nodes: list[dict]) -> list[NodeInfo]:
    out = []
    for n in nodes:
        info = NodeInfo.from_dict(n)
        info.operands = list(n.get("operands") or [])
        out.append(info)
    return out


def _blocks_from_layers(layers: list[dict]) -> BlockMap:
    blocks = BlockMap()
    for lay in layers:
        layer = int(lay["layer"])
        for h in lay.get("heads", []):
            blocks.heads[f"a{layer}.h{int(h['head'])}"] = h["node"]
        mlp_nodes = [m["node"] for m in lay.get("mlp_nodes", [])]
        if mlp_nodes:
            blocks.mlps[f"m{layer}"] = mlp_nodes
    return blocks


def load_reference_dir(ref_dir: str | Path) -> tuple[CompiledTransformer, dict]:
    """Read a Tracr reference directory; returns the model and the raw model.json."""
    ref = Path(ref_dir)
    if not ref.is_dir():
        raise ModelFileError(
            f"{ref} is not a directory; pass a Tracr reference folder such as ../shared/tracr-reference/reverse"
        )
    if (ref / "FAILED.txt").exists():
        raise ModelFileError(f"{ref} records a failed Tracr compile (FAILED.txt); there is no model to import")
    missing = [f for f in REFERENCE_FILES if not (ref / f).is_file()]
    if missing:
        raise ModelFileError(f"reference directory {ref} is incomplete: missing {', '.join(missing)}")
    try:
        raw = json.loads((ref / "model.json").read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{ref}/model.json is not valid JSON: {exc}") from exc
    where = f"{ref}/model.json"
    cfg = _require(raw, "model_config", where)
    enc = _require(raw, "input_encoder", where)
    residual_labels = _require(raw, "residual_labels", where)
    try:
        with np.load(ref / "params.npz", allow_pickle=False) as z:
            params = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile / value errors from a damaged archive
        raise ModelFileError(f"{ref}/params.npz cannot be read ({exc}); regenerate it") from exc
    d_model = int(_require(raw, "d_model", where))
    if len(residual_labels) != d_model:
        raise ModelFileError(f"{where}: {len(residual_labels)} residual labels but d_model={d_model}")
    mlp_hidden = int(cfg["mlp_hidden_size"])
    config = TransformerConfig(
        d_model=d_model,
        n_layers=int(cfg["num_layers"]),
        n_heads=int(cfg["num_heads"]),
        key_size=int(cfg["key_size"]),
        mlp_hidden=mlp_hidden,
        vocab_size=len(enc["encoding_map"]),
        n_positions=int(enc["max_input_len_including_bos"]),
        layer_norm=bool(cfg.get("layer_norm", False)),
        causal=bool(cfg.get("causal", False)),
    )
    tensors = haiku_params_to_torch(params, config, str(ref))
    out_enc = _require(raw, "output_encoder", where)
    output_values = [] if out_enc["type"] == "numerical" else [v for _, v in sorted(out_enc["decoding_map"])]
    meta = ModelMetadata(
        name=raw.get("program", ref.name),
        vocab=list(_require(raw, "vocab", where)),
        max_seq_len=int(_require(raw, "max_seq_len", where)),
        bos=enc["bos_token"],
        pad=enc["pad_token"],
        encoding_map=[(t, int(i)) for t, i in enc["encoding_map"]],
        residual_labels=list(residual_labels),
        output_encoding=out_enc["type"],
        output_sop=raw.get("output_sop", ""),
        output_space=[int(i) for i in _require(raw, "output_space_residual_indices", where)],
        output_values=output_values,
        nodes=_nodes_from_reference(_require(raw, "nodes", where)),
        blocks=_blocks_from_layers(_require(raw, "layers", where)),
        source="tracr-reference",
        extra={
            "construction": raw.get("construction", ""),
            "description": raw.get("description", ""),
            "input_constraint": _input_constraint(ref),
        },
    )
    model = CompiledTransformer(config, meta)
    with torch.no_grad():
        for k, v in tensors.items():
            getattr(model, k).copy_(v)
    return model, raw


def _input_constraint(ref: Path) -> str | None:
    """The reference samples say when a program is only defined on distinct tokens (sort_unique)."""
    p = ref / "samples.json"
    if not p.is_file():
        return None
    try:
        sampling = json.loads(p.read_text()).get("sampling", "")
    except json.JSONDecodeError:
        return None
    return "distinct" if "distinct tokens" in sampling else None


def load_reference_samples(ref_dir: str | Path) -> list[dict]:
    p = Path(ref_dir) / "samples.json"
    if not p.is_file():
        raise ModelFileError(f"{ref_dir} has no samples.json")
    return json.loads(p.read_text())["samples"]


def from_tracr_model(
    assembled: Any, program: Any, vocab: set, max_seq_len: int, name: str = "tracr-model"
) -> CompiledTransformer:
    """Convert a live Tracr ``AssembledTransformerModel`` (needs the optional ``tracr`` extra).

    ``program`` is the RASP program it was compiled from: Tracr's assembled model
    drops the graph, so the graph is rebuilt with Tracr's own passes.
    """
    try:
        from tracr.compiler import basis_inference, rasp_to_graph  # type: ignore
        from tracr.compiler import nodes as tnodes
        from tracr.rasp import rasp as trasp  # type: ignore
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ModelFileError("the tracr package is not installed: pip install -e '.[tracr]'") from exc
    from edgeprune.compiled.tracr_live import metadata_from_live_tracr

    return metadata_from_live_tracr(
        assembled, program, vocab, max_seq_len, name, trasp, tnodes, rasp_to_graph, basis_inference
    )
