"""Use cases above the engine: recovery, method comparison, reports, worker pools."""
