"""Shared fixtures: the Tracr reference data (a copy ships in tests/data so a lone clone can test)."""

from __future__ import annotations

import os as _os
from pathlib import Path

import pytest
from hypothesis import settings as _settings

REPO = Path(__file__).resolve().parents[1]
_SHARED = REPO.parent / "shared" / "tracr-reference"
REFERENCE_DIR = _SHARED if _SHARED.is_dir() else REPO / "tests" / "data" / "tracr-reference"
REFERENCE_PROGRAMS = sorted(p.name for p in REFERENCE_DIR.iterdir() if (p / "model.json").is_file())


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE_DIR


# Reproducible property tests: the same examples on every machine (set HYPOTHESIS_PROFILE=explore for fresh ones).

_settings.register_profile("repro", derandomize=True, deadline=None)
_settings.register_profile("explore", deadline=None)
_settings.load_profile(_os.environ.get("HYPOTHESIS_PROFILE", "repro"))


# A test skipped because a package is missing is a test that never ran. With
# EDGEPRUNE_NO_SKIPS=1 (set by .ci/run, which installs every extra) any skip fails the run.
_SKIPPED: list[str] = []


# Tests marked ``counts`` print the counts the README and docs quote; their output is repeated
# in the run's summary, so a CI log shows them without ``-s``.
_COUNTS: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(f"{report.nodeid}: {report.longrepr[-1] if isinstance(report.longrepr, tuple) else ''}")
    if report.when == "call" and "counts" in report.keywords:
        _COUNTS.extend(text.strip() for name, text in report.sections if name == "Captured stdout call")


def pytest_terminal_summary(terminalreporter):
    if _COUNTS:
        terminalreporter.section("counts")
        for text in _COUNTS:
            terminalreporter.write_line(text)


def pytest_sessionfinish(session, exitstatus):
    if _os.environ.get("EDGEPRUNE_NO_SKIPS") == "1" and _SKIPPED:
        print("\nEDGEPRUNE_NO_SKIPS=1 and these tests were skipped (a skipped test never ran):")
        for line in _SKIPPED:
            print(f"  {line}")
        session.exitstatus = 1
