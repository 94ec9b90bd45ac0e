"""RASP programs as PyTorch transformers that carry their ground-truth circuit."""

from edgeprune.compiled.metadata import BlockMap, ModelMetadata, NodeInfo
from edgeprune.compiled.model import CompiledTransformer, TransformerConfig

__all__ = ["BlockMap", "CompiledTransformer", "ModelMetadata", "NodeInfo", "TransformerConfig"]
