"""The shipped Dockerfile read as data, for the tests that check or rebuild its layout.

Responsible for: `instructions()`: (INSTRUCTION, arguments) of deploy/Dockerfile in order,
continuation lines joined, comments dropped.
Not responsible for: building images (no Docker engine runs in CI).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DOCKERFILE", "instructions"]

DOCKERFILE = Path(__file__).resolve().parents[2] / "deploy" / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out
