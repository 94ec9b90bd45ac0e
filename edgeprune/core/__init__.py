"""The shared vocabulary every layer speaks: errors, node/edge names, circuits, the dangling rule, the graph."""
