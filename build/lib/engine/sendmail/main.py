"""`volley-sendmail`: the sendmail-compatible command (console script, README "Sendmail").

Responsible for: putting the pieces together - the command line
(engine.sendmail.options), the configuration (`-C FILE`, else $VOLLEY_CONFIG, else
/etc/volley/volley.toml when it exists, else the built-in defaults, all through
engine.config.load_settings like `volley run`), one message from stdin (-bm) or an SMTP
dialogue (-bs), and the drop write - and turning every outcome into a sysexits status
with one line on stderr.
Not responsible for: any network I/O (it never talks to `volley run`: the drop waits in
incoming/ while Volley is stopped, like Postfix's maildrop), delivery, Bcc removal or
Date/Message-ID (intake does those for every drop).
"""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

from engine.config import ConfigError, Settings, load_settings
from engine.sendmail.exits import Exit, Failure
from engine.sendmail.maildrop import deposit
from engine.sendmail.message import build_drop, read_message
from engine.sendmail.options import Invocation, Mode, parse_args
from engine.sendmail.session import SmtpSession, run

__all__ = ["SYSTEM_CONFIG", "config_path", "main"]

SYSTEM_CONFIG = Path("/etc/volley/volley.toml")  # deploy/systemd/volley.service's


def config_path(option: str | None, environ: Mapping[str, str]) -> str | None:
    """The configuration file to read: -C, $VOLLEY_CONFIG, the system file, or None
    (built-in defaults: the spool is ./var/spool, as for `make run`)."""
    if option:
        return option
    if environ.get("VOLLEY_CONFIG"):
        return environ["VOLLEY_CONFIG"]
    return str(SYSTEM_CONFIG) if SYSTEM_CONFIG.is_file() else None


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    stderr: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run the command; the exit status (sysexits.h)."""
    err = stderr or sys.stderr
    try:
        inv = parse_args(sys.argv[1:] if argv is None else argv)
        path = config_path(inv.config, os.environ if environ is None else environ)
        try:
            settings = load_settings(path)
        except ConfigError as e:
            raise Failure(Exit.CONFIG, f"configuration error: {e}") from None
        if inv.mode is Mode.SMTP:
            return int(_smtp(inv, settings, stdin or sys.stdin.buffer, stdout or sys.stdout.buffer))
        message = read_message(
            stdin or sys.stdin.buffer,
            ignore_dots=inv.ignore_dots,
            max_size=settings.max_message_size,
        )
        deposit(settings.spool_path, _drop(message, inv, settings, inv.recipients))
    except Failure as f:
        print(f"volley-sendmail: {f.message}", file=err)
        return int(f.code)
    return int(Exit.OK)


def _drop(message: bytes, inv: Invocation, settings: Settings, recipients: Sequence[str]) -> bytes:
    return build_drop(
        message,
        sender=inv.sender,
        recipients=recipients,
        extract=inv.extract,
        full_name=inv.full_name,
        default_sender=f"{_login()}@{settings.helo_name}",
        max_recipients=settings.max_recipients,
        max_size=settings.max_message_size,
    ).data


def _smtp(inv: Invocation, settings: Settings, stdin: BinaryIO, stdout: BinaryIO) -> Exit:
    def deliver(message: bytes, sender: str, recipients: tuple[str, ...]) -> str:
        # The envelope is MAIL FROM / RCPT TO: -f and -t do not apply to SMTP.
        smtp = Invocation(mode=Mode.SMTP, sender=sender, full_name=inv.full_name)
        return deposit(settings.spool_path, _drop(message, smtp, settings, recipients))

    session = SmtpSession(
        settings.helo_name,
        max_size=settings.max_message_size,
        max_recipients=settings.max_recipients,
        deliver=deliver,
    )
    return run(session, stdin, stdout)


def _login() -> str:
    """The invoking user's name, as Postfix's sendmail takes it (getpwuid, not $USER)."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (containers)
        return f"uid{uid}"


if __name__ == "__main__":
    sys.exit(main())
