"""Shared fixtures: the Tracr reference data (a copy ships in tests/data so a lone clone can test)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_SHARED = REPO.parent / "shared" / "tracr-reference"
REFERENCE_DIR = _SHARED if _SHARED.is_dir() else REPO / "tests" / "data" / "tracr-reference"
REFERENCE_PROGRAMS = sorted(p.name for p in REFERENCE_DIR.iterdir() if (p / "model.json").is_file())


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE_DIR

# Reproducible property tests: the same examples on every machine (set HYPOTHESIS_PROFILE=explore for fresh ones).
import os as _os

from hypothesis import settings as _settings

_settings.register_profile("repro", derandomize=True, deadline=None)
_settings.register_profile("explore", deadline=None)
_settings.load_profile(_os.environ.get("HYPOTHESIS_PROFILE", "repro"))
