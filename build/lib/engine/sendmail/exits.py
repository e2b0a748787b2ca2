"""volley-sendmail's exit statuses (sysexits.h) and the error that carries one.

Responsible for: the exit codes applications test for (PHP's mail() returns false and
mailx keeps dead.letter on anything but 0; some callers retry on 75), and `Failure`,
the one exception the command's modules raise for an outcome other than success, with
the one-line message printed on stderr.
Not responsible for: deciding which failure applies (each module says), printing
(engine.sendmail.main does).
"""

from __future__ import annotations

import enum

__all__ = ["Exit", "Failure"]


class Exit(enum.IntEnum):
    """The sysexits.h values volley-sendmail uses (FreeBSD/glibc <sysexits.h>)."""

    OK = 0
    USAGE = 64  # EX_USAGE: a bad option or no recipient given
    DATAERR = 65  # EX_DATAERR: the message or an address would be rejected by intake
    TEMPFAIL = 75  # EX_TEMPFAIL: try again later (disk full, spool not created yet)
    NOPERM = 77  # EX_NOPERM: not allowed to write into <spool>/incoming/
    CONFIG = 78  # EX_CONFIG: the configuration file is unreadable or invalid


class Failure(Exception):
    """The command cannot take the message: `code` is the exit status, `message` the
    line for stderr (without the program name)."""

    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
