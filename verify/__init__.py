"""Ground truth versus recovered circuits: names, circuits, checks and comparisons."""
