"""Save and load compiled models: ``weights.safetensors`` + ``model.json`` (config and metadata)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from edgeprune.compiled.metadata import ModelMetadata
from edgeprune.compiled.model import CompiledTransformer, TransformerConfig, param_shapes
from edgeprune.core.errors import ModelFileError

FORMAT = "edgeprune-compiled-model"
FORMAT_VERSION = 1

_SCALARS = (str, int, float, bool)
_HEAD = re.compile(r"a(\d+)\.h(\d+)")
_MLP = re.compile(r"m(\d+)")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_config(config: TransformerConfig, where: str) -> None:
    """Sizes must be positive integers before any tensor is shaped from them (else numpy/torch errors)."""
    for name in ("d_model", "n_layers", "n_heads", "key_size", "mlp_hidden", "vocab_size", "n_positions"):
        v = getattr(config, name)
        if not _is_int(v) or v < 1:
            raise ModelFileError(
                f"{where}: config field {name!r} must be a positive integer, got {v!r}; regenerate the model"
            )
    for name in ("layer_norm", "causal"):
        if not isinstance(getattr(config, name), bool):
            raise ModelFileError(f"{where}: config field {name!r} must be true or false; regenerate the model")


def _check_node(n: Any, labels: set[str], residual: set[str], where: str) -> None:
    field = f"node {n.label!r}"
    if n.encoding not in (None, "categorical", "numerical"):
        raise ModelFileError(f"{where}: {field} has encoding {n.encoding!r}; expected categorical, numerical or null")
    if not isinstance(n.operands, list) or not all(isinstance(o, str) for o in n.operands):
        raise ModelFileError(f"{where}: {field}: 'operands' must be a list of node labels")
    refs = list(n.operands) + [x for x in (n.keys, n.queries, n.selector, n.sop) if x is not None]
    for r in refs:
        if not isinstance(r, str) or r not in labels:
            raise ModelFileError(f"{where}: {field} refers to {r!r}, which is not a node of the graph")
    for name in ("predicate", "block_type", "expr_type"):
        if getattr(n, name) is not None and not isinstance(getattr(n, name), str):
            raise ModelFileError(f"{where}: {field}: {name!r} must be a string")
    for name in ("layer", "head"):
        v = getattr(n, name)
        if v is not None and (not _is_int(v) or v < 0):
            raise ModelFileError(f"{where}: {field}: {name!r} must be a non-negative integer or null, got {v!r}")
    if n.value_set is not None and not isinstance(n.value_set, list):
        raise ModelFileError(f"{where}: {field}: 'value_set' must be a list")
    if not isinstance(n.output_basis, list) or not all(isinstance(b, str) for b in n.output_basis):
        raise ModelFileError(f"{where}: {field}: 'output_basis' must be a list of residual labels")
    unknown = [b for b in n.output_basis if b not in residual]
    if unknown:
        raise ModelFileError(f"{where}: {field} writes {unknown[:3]}, which are not residual labels")


def check_metadata(meta: ModelMetadata, config: TransformerConfig, where: str) -> None:
    """Every metadata field the model and the ground truth use, checked against the config and itself.

    One clear error here instead of an IndexError/TypeError deep in the forward or the ground truth.
    """
    fix = "regenerate the model (edgeprune compile / import-tracr)"
    if not isinstance(meta.name, str):
        raise ModelFileError(f"{where}: 'name' must be a string")
    labels = meta.residual_labels
    if not all(isinstance(lab, str) for lab in labels):
        raise ModelFileError(f"{where}: 'residual_labels' must be strings; {fix}")
    if len(labels) != config.d_model:
        raise ModelFileError(f"{where}: {len(labels)} residual labels but d_model={config.d_model}; {fix}")
    if len(set(labels)) != len(labels):
        dup = sorted({lab for lab in labels if labels.count(lab) > 1})
        raise ModelFileError(f"{where}: residual labels repeat {dup[:3]}; {fix}")
    if not meta.vocab or not all(isinstance(t, _SCALARS) for t in meta.vocab):
        raise ModelFileError(f"{where}: 'vocab' must be a non-empty list of strings or numbers; {fix}")
    if len(set(meta.vocab)) != len(meta.vocab):
        raise ModelFileError(f"{where}: 'vocab' lists a token twice; {fix}")
    for name in ("bos", "pad"):
        if not isinstance(getattr(meta, name), _SCALARS):
            raise ModelFileError(f"{where}: {name!r} must be a string or number; {fix}")
    if not _is_int(meta.max_seq_len) or meta.max_seq_len + 1 != config.n_positions:
        raise ModelFileError(
            f"{where}: max_seq_len={meta.max_seq_len!r} but the model has {config.n_positions} positions "
            f"(max_seq_len + 1 for BOS); {fix}"
        )
    tokens = [t for t, _ in meta.encoding_map]
    ids = [i for _, i in meta.encoding_map]
    if not all(isinstance(t, _SCALARS) for t in tokens):
        raise ModelFileError(f"{where}: the encoding map's tokens must be strings or numbers; {fix}")
    if sorted(ids) != list(range(config.vocab_size)):
        raise ModelFileError(
            f"{where}: the encoding map's ids {sorted(ids)} must be 0..{config.vocab_size - 1}, each once "
            f"(vocab_size={config.vocab_size}); {fix}"
        )
    if len(set(tokens)) != len(tokens) or set(tokens) != set(meta.vocab) | {meta.bos, meta.pad}:
        raise ModelFileError(
            f"{where}: the encoding map's tokens {sorted(map(str, tokens))} must be the vocab plus BOS "
            f"{meta.bos!r} and pad {meta.pad!r}, each once; {fix}"
        )
    if meta.bos == meta.pad:
        raise ModelFileError(f"{where}: BOS and pad are the same token {meta.bos!r}; {fix}")
    if meta.output_encoding not in ("categorical", "numerical"):
        raise ModelFileError(
            f"{where}: output encoding {meta.output_encoding!r} is neither 'categorical' nor 'numerical'; {fix}"
        )
    space = meta.output_space
    if not space or not all(_is_int(i) and 0 <= i < config.d_model for i in space):
        raise ModelFileError(
            f"{where}: output space {space} must be residual indices in 0..{config.d_model - 1}; {fix}"
        )
    if len(set(space)) != len(space):
        raise ModelFileError(f"{where}: output space {space} repeats an index; {fix}")
    if meta.output_encoding == "numerical" and len(space) != 1:
        raise ModelFileError(f"{where}: a numerical output reads one residual direction, not {len(space)}; {fix}")
    if meta.output_encoding == "categorical" and len(meta.output_values) != len(space):
        raise ModelFileError(
            f"{where}: {len(meta.output_values)} output values for {len(space)} output directions; {fix}"
        )
    if not isinstance(meta.extra, dict):
        raise ModelFileError(f"{where}: 'extra' must be a JSON object; {fix}")
    if not isinstance(meta.output_sop, str):
        raise ModelFileError(f"{where}: 'output_sop' must be a string; {fix}")
    node_labels = [n.label for n in meta.nodes]
    if not all(isinstance(lab, str) for lab in node_labels) or len(set(node_labels)) != len(node_labels):
        raise ModelFileError(f"{where}: node labels must be distinct strings; {fix}")
    known, residual = set(node_labels), set(labels)
    for n in meta.nodes:
        _check_node(n, known, residual, where)
    for comp, node in meta.blocks.heads.items():
        m = _HEAD.fullmatch(comp) if isinstance(comp, str) else None
        if not m or int(m[1]) >= config.n_layers or int(m[2]) >= config.n_heads:
            raise ModelFileError(
                f"{where}: block {comp!r} is not a head a<layer>.h<head> of this {config.n_layers}-layer, "
                f"{config.n_heads}-head model; {fix}"
            )
        if not isinstance(node, str) or node not in known:
            raise ModelFileError(f"{where}: head {comp} computes {node!r}, which is not a node of the graph; {fix}")
    for comp, nodes in meta.blocks.mlps.items():
        m = _MLP.fullmatch(comp) if isinstance(comp, str) else None
        if not m or int(m[1]) >= config.n_layers:
            raise ModelFileError(
                f"{where}: block {comp!r} is not an MLP m<layer> of this {config.n_layers}-layer model; {fix}"
            )
        if not isinstance(nodes, list) or not all(isinstance(x, str) and x in known for x in nodes):
            raise ModelFileError(f"{where}: MLP {comp} must list node labels of the graph, got {nodes!r}; {fix}")


def check_weights(tensors: dict[str, torch.Tensor], config: TransformerConfig, where: str, fix: str) -> None:
    """Names, shapes, a float dtype and finite values: anything else would be cast or broadcast silently."""
    expected = param_shapes(config)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ModelFileError(
            f"{where}: the weights disagree with the config: missing {missing or 'none'}, "
            f"unexpected {extra or 'none'}; {fix}"
        )
    for k, shape in expected.items():
        t = tensors[k]
        if tuple(t.shape) != shape:
            raise ModelFileError(f"{where}: {k} has shape {tuple(t.shape)} but the config implies {shape}; {fix}")
        if not t.is_floating_point():
            raise ModelFileError(f"{where}: {k} has dtype {t.dtype}, expected a float dtype (float32); {fix}")
        if not bool(torch.isfinite(t).all()):
            raise ModelFileError(f"{where}: {k} holds NaN or infinite values; {fix}")


def is_model_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / "model.json").is_file() and (p / "weights.safetensors").is_file()


def save_model(model: CompiledTransformer, out_dir: str | Path, ground_truth: dict | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.named_parameters()}
    save_file(tensors, str(out / "weights.safetensors"))
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "metadata": model.metadata.to_dict(),
    }
    if ground_truth is not None:
        doc["ground_truth"] = ground_truth
    (out / "model.json").write_text(json.dumps(doc, indent=1))
    return out


def load_model(model_dir: str | Path) -> CompiledTransformer:
    d = Path(model_dir)
    if not d.is_dir():
        raise ModelFileError(f"model directory {d} does not exist")
    for f in ("model.json", "weights.safetensors"):
        if not (d / f).is_file():
            raise ModelFileError(
                f"model directory {d} lacks {f}; save it with `edgeprune compile` or `edgeprune import-tracr`"
            )
    try:
        doc = json.loads((d / "model.json").read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ModelFileError(
            f"{d}/model.json is not UTF-8 text ({exc}); save the model again with "
            "`edgeprune compile` or `edgeprune import-tracr`"
        ) from exc
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{d}/model.json is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ModelFileError(f"{d}/model.json must hold a JSON object, not {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise ModelFileError(f"{d}/model.json is not an {FORMAT} file (format={doc.get('format')!r})")
    try:
        config = TransformerConfig(**doc["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{d}/model.json has a malformed config (field 'config': {exc}); save the model again"
        ) from exc
    check_config(config, f"{d}/model.json")
    metadata = doc.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{d}/model.json: field 'metadata' must be a JSON object; save the model again")
    try:
        meta = ModelMetadata.from_dict(metadata)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ModelFileError(
            f"{d}/model.json has a malformed field 'metadata' ({type(exc).__name__}: {exc}); "
            "save the model again with `edgeprune compile` or `edgeprune import-tracr`"
        ) from exc
    try:
        tensors = load_file(str(d / "weights.safetensors"))
    except Exception as exc:  # safetensors' own error types: truncated or corrupt file
        raise ModelFileError(
            f"{d}/weights.safetensors is not a readable safetensors file (truncated or corrupt: "
            f"{exc}); save the model again"
        ) from exc
    check_weights(tensors, config, f"{d}/weights.safetensors", "save the model again")
    check_metadata(meta, config, f"{d}/model.json")
    model = CompiledTransformer(config, meta)
    with torch.no_grad():
        for k, v in tensors.items():
            getattr(model, k).copy_(v)
    return model
