"""Random small compiled transformers for property tests of the pruning engine."""

from __future__ import annotations

import torch

from edgeprune.compiled.metadata import ModelMetadata
from edgeprune.compiled.model import CompiledTransformer, TransformerConfig, param_shapes


def random_model(
    seed: int,
    n_layers: int = 2,
    n_heads: int = 2,
    d_model: int = 8,
    layer_norm: bool = False,
    categorical: bool = True,
    name: str = "random",
) -> CompiledTransformer:
    """A CompiledTransformer with random weights (vocab a, b, c) built by hand."""
    g = torch.Generator().manual_seed(seed)
    vocab = ["a", "b", "c"]
    config = TransformerConfig(
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        key_size=4,
        mlp_hidden=6,
        vocab_size=5,
        n_positions=5,
        layer_norm=layer_norm,
    )
    meta = ModelMetadata(
        name=name,
        vocab=vocab,
        max_seq_len=4,
        bos="BOS",
        pad="PAD",
        encoding_map=[("a", 0), ("b", 1), ("c", 2), ("BOS", 3), ("PAD", 4)],
        residual_labels=[f"r{i}" for i in range(d_model)],
        output_encoding="categorical" if categorical else "numerical",
        output_sop="out",
        output_space=[0, 1, 2] if categorical else [0],
        output_values=vocab if categorical else [],
    )
    model = CompiledTransformer(config, meta)
    with torch.no_grad():
        for pname, shape in param_shapes(config).items():
            t = torch.randn(shape, generator=g) * 0.5
            if pname.endswith("_w"):
                t = 1 + 0.1 * t
            getattr(model, pname).copy_(t)
    return model
