"""Drop-directory intake primitives: read one file safely, parse it into an envelope.

Responsible for: the public API of engine.drop (re-exports only).
Not responsible for: listing `incoming/`, queueing, moving files to `rejected/` (the
intake, which calls `read_drop` then `parse_drop` for each listed name).
"""

from __future__ import annotations

from engine.drop.address import domain_of, validate_address
from engine.drop.parse import DropEnvelope, parse_drop
from engine.drop.read import STABLE_AGE, DropFile, DropRejection, NotReady, read_drop

__all__ = [
    "STABLE_AGE",
    "DropEnvelope",
    "DropFile",
    "DropRejection",
    "NotReady",
    "domain_of",
    "parse_drop",
    "read_drop",
    "validate_address",
]
