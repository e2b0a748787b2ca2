"""engine.net.wire: its per-command table (the transport behaviour is driven end to end
through real sockets in test_session.py)."""

from __future__ import annotations

from engine.model import SmtpTimeouts
from engine.net.wire import XFER
from engine.smtp import Command


def test_every_command_has_a_phase_and_a_timeout_field() -> None:
    # A reply can be due for any command; a missing row would be a KeyError in a timer.
    assert set(XFER) == set(Command)
    fields = set(SmtpTimeouts.__dataclass_fields__)
    assert {field for _, field in XFER.values()} <= fields
    assert XFER[Command.END_OF_DATA][1] == "data_done"  # not one timeout for the whole DATA
