"""Save and load compiled models: ``weights.safetensors`` + ``model.json`` (config and metadata)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from edgeprune.compiled.metadata import ModelMetadata
from edgeprune.compiled.model import CompiledTransformer, TransformerConfig, param_shapes
from edgeprune.core.errors import ModelFileError

FORMAT = "edgeprune-compiled-model"
FORMAT_VERSION = 1


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
    expected = param_shapes(config)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ModelFileError(
            f"{d}: weights.safetensors disagrees with model.json: missing {missing or 'none'}, unexpected {extra or 'none'}"
        )
    for k, shape in expected.items():
        if tuple(tensors[k].shape) != shape:
            raise ModelFileError(
                f"{d}: weights.safetensors has {k} of shape {tuple(tensors[k].shape)} but model.json's config implies {shape}"
            )
    if len(meta.residual_labels) != config.d_model:
        raise ModelFileError(f"{d}: {len(meta.residual_labels)} residual labels but d_model={config.d_model}")
    if len(meta.encoding_map) != config.vocab_size:
        raise ModelFileError(
            f"{d}: encoding map has {len(meta.encoding_map)} tokens but vocab_size={config.vocab_size}"
        )
    model = CompiledTransformer(config, meta)
    with torch.no_grad():
        for k, v in tensors.items():
            getattr(model, k).copy_(v)
    return model
