"""The one edge-pruning engine: graph, masks, disentangled forward, objective, loop."""
