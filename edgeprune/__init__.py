"""edgeprune: Edge Pruning circuit discovery with a Tracr-centric verification suite."""

__version__ = "0.1.0"
