"""The one edge-pruning engine: graph, masks, disentangled forward, objective, loop.

Modules, one concept each:

* ``graph``          writers, readers, allowed edges and their names
* ``hard_concrete``  hard-concrete gates (edge masks on allowed edges only, node masks on writers)
* ``adapter``        what a model family provides (``ModelAdapter``); ``adapters/`` holds the families
* ``disentangled``   the masked forward: per reader group one contraction over stacked writer deltas
* ``objective``      faithfulness losses, Lagrangian sparsity term, schedules, NaN check
* ``threshold``      deterministic masks -> binary circuit by threshold bisection
* ``train``          ``Pruner``/``prune``: AdamW loop, checkpoints (safetensors + JSON), resume, metrics
* ``data``           padded clean inputs and same-length corruptions of a compiled program
* ``defaults``       settings that recover compiled programs without tuning
* ``recovery``       compile/load -> prune -> compare with the ground truth (``edgeprune recover``)
"""
