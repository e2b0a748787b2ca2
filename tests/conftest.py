"""Refuses to run the suite over a stale mypyc build (`make mypyc`, Makefile).

A compiled module's .so is imported instead of its .py: after an edit (or a branch
switch) without `make mypyc` again, the tests would exercise the old code. Not
responsible for building anything; without a build there is nothing to check.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def stale_builds(root: Path = ROOT) -> list[str]:
    """Compiled modules whose .py is newer than their .so, or gone."""
    stale = []
    for package in ("engine", "spool"):
        for so in sorted((root / package).rglob("*.cpython-*.so")):
            stem = so.name.split(".", 1)[0]
            if stem.endswith("__mypyc"):
                continue  # the shared runtime (engine/_mypyc__mypyc): no .py of its own
            py = so.with_name(stem + ".py")
            if not py.exists() or py.stat().st_mtime_ns > so.stat().st_mtime_ns:
                stale.append(str(py.relative_to(root)))
    return stale


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = stale_builds()
    if stale:
        raise pytest.UsageError(
            f"stale mypyc build for {', '.join(stale)}: run `make mypyc` or `make mypyc-clean`"
        )
