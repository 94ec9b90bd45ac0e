"""Import real Tracr models: from the reference directory format, or from a live Tracr model.

The reference format (``../shared/tracr-reference/*/``) holds Haiku parameters
(``params.npz``) and the compiler's graph and layer allocation (``model.json``).
Every field is checked on load, so a damaged directory gets one message naming
the file and the field, never a traceback from the forward or the ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeprune.compiled.io import check_config, check_metadata, check_weights
from edgeprune.compiled.metadata import BlockMap, ModelMetadata, NodeInfo
from edgeprune.compiled.model import CompiledTransformer, TransformerConfig
from edgeprune.core.errors import ModelFileError

REFERENCE_FILES = ("model.json", "params.npz")
FIX = "regenerate the reference directory (tools/tracr_refs/gen.py) or copy it again"
_SCALARS = (str, int, float, bool)


def _bad(where: str, field: str, wanted: str, got: Any) -> ModelFileError:
    shown = repr(got)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ModelFileError(f"{where}: field {field!r} must be {wanted}, got {shown}; {FIX}")


def _require(d: dict, key: str, where: str, prefix: str = "") -> Any:
    if key not in d:
        raise ModelFileError(f"{where} lacks the field {prefix + key!r}; {FIX}")
    return d[key]


def _obj(d: dict, key: str, where: str, prefix: str = "") -> dict:
    v = _require(d, key, where, prefix)
    if not isinstance(v, dict):
        raise _bad(where, prefix + key, "a JSON object", v)
    return v


def _list(d: dict, key: str, where: str, prefix: str = "") -> list:
    v = _require(d, key, where, prefix)
    if not isinstance(v, list):
        raise _bad(where, prefix + key, "a list", v)
    return v


def _int(d: dict, key: str, where: str, prefix: str = "", minimum: int = 1) -> int:
    v = _require(d, key, where, prefix)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise _bad(where, prefix + key, f"an integer >= {minimum}", v)
    return v


def _bool(d: dict, key: str, where: str, prefix: str = "") -> bool:
    v = d.get(key, False)
    if not isinstance(v, bool):
        raise _bad(where, prefix + key, "true or false", v)
    return v


def _pairs(v: Any, field: str, where: str, id_first: bool) -> list[tuple[Any, int]]:
    """``[[token, id], ...]`` (or ``[[id, value], ...]``) as (value, id) pairs with integer ids."""
    if not isinstance(v, list):
        raise _bad(where, field, "a list of pairs", v)
    out = []
    for p in v:
        if not isinstance(p, list) or len(p) != 2:
            raise _bad(where, field, "a list of 2-element pairs", p)
        i, val = (p[0], p[1]) if id_first else (p[1], p[0])
        if not isinstance(i, int) or isinstance(i, bool) or not isinstance(val, _SCALARS):
            raise _bad(where, field, "pairs of an integer id and a string or number", p)
        out.append((val, i))
    return out


def haiku_shapes(config: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """The params.npz keys Tracr writes for this config, with their Haiku shapes."""
    D, HK, M = config.d_model, config.n_heads * config.key_size, config.mlp_hidden
    shapes: dict[str, tuple[int, ...]] = {
        "token_embed/embeddings": (config.vocab_size, D),
        "pos_embed/embeddings": (config.n_positions, D),
    }
    for layer in range(config.n_layers):
        pre = f"transformer/layer_{layer}"
        for hk in ("query", "key", "value"):
            shapes[f"{pre}/attn/{hk}/w"] = (D, HK)
            shapes[f"{pre}/attn/{hk}/b"] = (HK,)
        shapes[f"{pre}/attn/linear/w"] = (HK, D)
        shapes[f"{pre}/attn/linear/b"] = (D,)
        shapes[f"{pre}/mlp/linear_1/w"] = (D, M)
        shapes[f"{pre}/mlp/linear_1/b"] = (M,)
        shapes[f"{pre}/mlp/linear_2/w"] = (M, D)
        shapes[f"{pre}/mlp/linear_2/b"] = (D,)
        if config.layer_norm:
            for hk in ("attn", "mlp"):
                shapes[f"{pre}/{hk}/layer_norm/scale"] = (D,)
                shapes[f"{pre}/{hk}/layer_norm/offset"] = (D,)
    return shapes


def check_haiku_params(params: dict[str, np.ndarray], config: TransformerConfig, where: str) -> None:
    """Keys, shapes and dtypes of params.npz against model.json's config, before any reshape."""
    expected = haiku_shapes(config)
    missing = sorted(set(expected) - set(params))
    if missing:
        raise ModelFileError(
            f"{where}: parameter {missing[0]!r} is missing from params.npz ({len(missing)} missing); {FIX}"
        )
    extra = sorted(set(params) - set(expected))
    if extra:
        raise ModelFileError(
            f"{where}: params.npz holds {extra[:3]}, which model.json's config (num_layers={config.n_layers}, "
            f"layer_norm={config.layer_norm}) does not have; {FIX}"
        )
    for k, shape in expected.items():
        a = params[k]
        if not np.issubdtype(a.dtype, np.floating):
            raise ModelFileError(f"{where}: params.npz {k} has dtype {a.dtype}, expected float32; {FIX}")
        if tuple(a.shape) != shape:
            raise ModelFileError(
                f"{where}: params.npz {k} has shape {tuple(a.shape)}, model.json's config implies {shape}; {FIX}"
            )
        if not np.isfinite(a).all():
            raise ModelFileError(f"{where}: params.npz {k} holds NaN or infinite values; {FIX}")


def haiku_params_to_torch(
    params: dict[str, np.ndarray], config: TransformerConfig, where: str
) -> dict[str, torch.Tensor]:
    """Map Tracr's Haiku parameter names and layouts to this project's per-head tensors."""
    check_haiku_params(params, config, where)
    L, H, K = config.n_layers, config.n_heads, config.key_size
    out: dict[str, torch.Tensor] = {}

    def get(key: str) -> np.ndarray:
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
    check_weights(out, config, where, FIX)
    return out


def _nodes_from_reference(nodes: list, where: str) -> list[NodeInfo]:
    out = []
    for i, n in enumerate(nodes):
        if not isinstance(n, dict):
            raise _bad(where, f"nodes[{i}]", "a JSON object", n)
        for key in ("label", "expr_type"):
            if not isinstance(n.get(key), str):
                raise _bad(where, f"nodes[{i}].{key}", "a string", n.get(key))
        for key in ("operands", "value_set", "output_basis"):
            if n.get(key) is not None and not isinstance(n[key], list):
                raise _bad(where, f"nodes[{i}].{key}", "a list", n[key])
        info = NodeInfo.from_dict(n)
        info.operands = list(n.get("operands") or [])
        info.output_basis = list(n.get("output_basis") or [])
        out.append(info)
    return out


def _blocks_from_layers(layers: list, config: TransformerConfig, where: str) -> BlockMap:
    blocks = BlockMap()
    for i, lay in enumerate(layers):
        field = f"layers[{i}]"
        if not isinstance(lay, dict):
            raise _bad(where, field, "a JSON object", lay)
        layer = _int(lay, "layer", where, f"{field}.", minimum=0)
        if layer >= config.n_layers:
            raise _bad(where, f"{field}.layer", f"a layer index below num_layers={config.n_layers}", layer)
        heads = lay.get("heads", [])
        mlps = lay.get("mlp_nodes", [])
        if not isinstance(heads, list) or not isinstance(mlps, list):
            raise _bad(where, f"{field}.heads/mlp_nodes", "lists", lay)
        for j, h in enumerate(heads):
            if not isinstance(h, dict):
                raise _bad(where, f"{field}.heads[{j}]", "a JSON object", h)
            head = _int(h, "head", where, f"{field}.heads[{j}].", minimum=0)
            if head >= config.n_heads:
                raise _bad(where, f"{field}.heads[{j}].head", f"a head index below num_heads={config.n_heads}", head)
            blocks.heads[f"a{layer}.h{head}"] = _require(h, "node", where, f"{field}.heads[{j}].")
        mlp_nodes = []
        for j, m in enumerate(mlps):
            if not isinstance(m, dict):
                raise _bad(where, f"{field}.mlp_nodes[{j}]", "a JSON object", m)
            mlp_nodes.append(_require(m, "node", where, f"{field}.mlp_nodes[{j}]."))
        if mlp_nodes:
            blocks.mlps[f"m{layer}"] = mlp_nodes
    return blocks


def _read_model_json(ref: Path) -> dict:
    where = f"{ref}/model.json"
    try:
        raw = json.loads((ref / "model.json").read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{where} is not UTF-8 text ({exc}); {FIX}") from exc
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelFileError(f"{where} must hold a JSON object, not {type(raw).__name__}; {FIX}")
    return raw


def _read_params(ref: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(ref / "params.npz", allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile / value errors from a damaged archive, or pickled (object) arrays
        raise ModelFileError(f"{ref}/params.npz cannot be read ({exc}); {FIX}") from exc


def _config_from(raw: dict, n_tokens: int, where: str) -> TransformerConfig:
    cfg = _obj(raw, "model_config", where)
    enc = _obj(raw, "input_encoder", where)
    config = TransformerConfig(
        d_model=_int(raw, "d_model", where),
        n_layers=_int(cfg, "num_layers", where, "model_config."),
        n_heads=_int(cfg, "num_heads", where, "model_config."),
        key_size=_int(cfg, "key_size", where, "model_config."),
        mlp_hidden=_int(cfg, "mlp_hidden_size", where, "model_config."),
        vocab_size=n_tokens,
        n_positions=_int(enc, "max_input_len_including_bos", where, "input_encoder."),
        layer_norm=_bool(cfg, "layer_norm", where, "model_config."),
        causal=_bool(cfg, "causal", where, "model_config."),
    )
    check_config(config, where)
    return config


def _output_fields(raw: dict, d_model: int, where: str) -> tuple[str, list[int], list[Any]]:
    """output_encoder.type, output_space_residual_indices and the decoded values, cross-checked."""
    out_enc = _obj(raw, "output_encoder", where)
    kind = _require(out_enc, "type", where, "output_encoder.")
    if kind not in ("categorical", "numerical"):
        raise _bad(where, "output_encoder.type", "'categorical' or 'numerical'", kind)
    if "output_encoding" in raw and raw["output_encoding"] != kind:
        raise _bad(where, "output_encoding", f"the same as output_encoder.type ({kind!r})", raw["output_encoding"])
    space = _list(raw, "output_space_residual_indices", where)
    if not space or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < d_model for i in space):
        raise _bad(
            where, "output_space_residual_indices", f"a non-empty list of residual indices 0..{d_model - 1}", space
        )
    if len(set(space)) != len(space):
        raise _bad(where, "output_space_residual_indices", "distinct indices", space)
    labels = raw["residual_labels"]
    if "output_space_labels" in raw and raw["output_space_labels"] != [labels[i] for i in space]:
        raise _bad(
            where,
            "output_space_labels",
            f"the residual labels at output_space_residual_indices ({[labels[i] for i in space][:4]})",
            raw["output_space_labels"],
        )
    if kind == "numerical":
        if len(space) != 1:
            raise _bad(where, "output_space_residual_indices", "one index for a numerical output", space)
        if out_enc.get("decoding_map") is not None:
            raise _bad(where, "output_encoder.decoding_map", "null for a numerical output", out_enc["decoding_map"])
        return kind, space, []
    pairs = _pairs(
        _require(out_enc, "decoding_map", where, "output_encoder."), "output_encoder.decoding_map", where, True
    )
    ids = sorted(i for _, i in pairs)
    if ids != list(range(len(space))):
        raise _bad(
            where,
            "output_encoder.decoding_map",
            f"ids 0..{len(space) - 1}, one per output direction ({len(space)})",
            ids,
        )
    return kind, space, [v for v, _ in sorted(pairs, key=lambda p: p[1])]


def _encoder_fields(raw: dict, where: str) -> tuple[list[Any], Any, Any, list[tuple[Any, int]]]:
    """vocab, BOS, pad and the encoding map, consistent with each other."""
    enc = _obj(raw, "input_encoder", where)
    vocab = _list(raw, "vocab", where)
    if not vocab or not all(isinstance(t, _SCALARS) for t in vocab) or len(set(vocab)) != len(vocab):
        raise _bad(where, "vocab", "a non-empty list of distinct strings or numbers", vocab)
    emap = _pairs(_require(enc, "encoding_map", where, "input_encoder."), "input_encoder.encoding_map", where, False)
    table = dict(emap)
    bos = _require(enc, "bos_token", where, "input_encoder.")
    pad = _require(enc, "pad_token", where, "input_encoder.")
    for name, tok in (("bos", bos), ("pad", pad)):
        if not isinstance(tok, _SCALARS) or tok not in table or tok in vocab:
            raise _bad(where, f"input_encoder.{name}_token", "a token of the encoding map outside the vocab", tok)
        if f"{name}_id" in enc and enc[f"{name}_id"] != table[tok]:
            raise _bad(
                where, f"input_encoder.{name}_id", f"the encoding map's id of {tok!r} ({table[tok]})", enc[f"{name}_id"]
            )
    if bos == pad:
        raise _bad(where, "input_encoder.pad_token", "a token other than the BOS token", pad)
    if len(table) != len(emap) or set(table) != set(vocab) | {bos, pad}:
        raise _bad(
            where, "input_encoder.encoding_map", "each vocab token, BOS and pad exactly once", [t for t, _ in emap]
        )
    ids = sorted(i for _, i in emap)
    if ids != list(range(len(emap))):
        raise _bad(where, "input_encoder.encoding_map", f"ids 0..{len(emap) - 1}, each once", ids)
    max_seq_len = _int(raw, "max_seq_len", where)
    if enc.get("max_input_len_including_bos") != max_seq_len + 1:
        raise _bad(
            where,
            "input_encoder.max_input_len_including_bos",
            f"max_seq_len + 1 = {max_seq_len + 1}",
            enc.get("max_input_len_including_bos"),
        )
    return vocab, bos, pad, emap


def _check_declared_params(raw: dict, params: dict[str, np.ndarray], where: str) -> None:
    """model.json's own ``params`` listing (key -> shape), when present, must describe params.npz."""
    declared = raw.get("params")
    if declared is None:
        return
    if not isinstance(declared, dict):
        raise _bad(where, "params", "a JSON object of parameter shapes", declared)
    actual = {k: list(v.shape) for k, v in params.items()}
    if declared != actual:
        diff = sorted(k for k in set(declared) | set(actual) if declared.get(k) != actual.get(k))
        raise ModelFileError(
            f"{where}: field 'params' disagrees with params.npz at {diff[:3]}; the two files are from "
            f"different compiles; {FIX}"
        )


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
    raw = _read_model_json(ref)
    where = f"{ref}/model.json"
    residual_labels = _list(raw, "residual_labels", where)
    if not all(isinstance(lab, str) for lab in residual_labels) or len(set(residual_labels)) != len(residual_labels):
        raise _bad(where, "residual_labels", "a list of distinct strings", residual_labels)
    d_model = _int(raw, "d_model", where)
    if len(residual_labels) != d_model:
        raise ModelFileError(f"{where}: {len(residual_labels)} residual labels but d_model={d_model}; {FIX}")
    vocab, bos, pad, emap = _encoder_fields(raw, where)
    config = _config_from(raw, len(emap), where)
    kind, space, output_values = _output_fields(raw, d_model, where)
    params = _read_params(ref)
    _check_declared_params(raw, params, where)
    tensors = haiku_params_to_torch(params, config, str(ref / "params.npz"))
    for key in ("program", "output_sop", "construction", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise _bad(where, key, "a string", raw[key])
    meta = ModelMetadata(
        name=raw.get("program", ref.name),
        vocab=list(vocab),
        max_seq_len=config.n_positions - 1,
        bos=bos,
        pad=pad,
        encoding_map=emap,
        residual_labels=list(residual_labels),
        output_encoding=kind,
        output_sop=raw.get("output_sop", ""),
        output_space=space,
        output_values=output_values,
        nodes=_nodes_from_reference(_list(raw, "nodes", where), where),
        blocks=_blocks_from_layers(_list(raw, "layers", where), config, where),
        source="tracr-reference",
        extra={
            "construction": raw.get("construction", ""),
            "description": raw.get("description", ""),
            "input_constraint": _input_constraint(ref),
        },
    )
    check_metadata(meta, config, where)
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
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{p} is not valid UTF-8 JSON ({exc}); {FIX}, or delete samples.json") from exc
    sampling = doc.get("sampling", "") if isinstance(doc, dict) else ""
    return "distinct" if isinstance(sampling, str) and "distinct tokens" in sampling else None


def load_reference_samples(ref_dir: str | Path) -> list[dict]:
    p = Path(ref_dir) / "samples.json"
    if not p.is_file():
        raise ModelFileError(f"{ref_dir} has no samples.json")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{p} is not valid UTF-8 JSON ({exc}); {FIX}") from exc
    samples = doc.get("samples") if isinstance(doc, dict) else None
    if not isinstance(samples, list):
        raise ModelFileError(f"{p} lacks a 'samples' list; {FIX}")
    return samples


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
