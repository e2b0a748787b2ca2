from __future__ import annotations

import pytest

from spool.errors import CorruptEntry, SpoolError, SpoolFull


def test_corrupt_entry_carries_its_reason() -> None:
    exc = CorruptEntry("body frame: CRC mismatch")
    assert exc.reason == "body frame: CRC mismatch"
    assert str(exc) == "body frame: CRC mismatch"


def test_taxonomy_one_base_class() -> None:
    assert issubclass(CorruptEntry, SpoolError)
    assert issubclass(SpoolFull, SpoolError)
    assert not issubclass(SpoolError, OSError)  # callers catch spool errors separately
    with pytest.raises(SpoolError):
        raise SpoolFull("queue/0: No space left on device")
