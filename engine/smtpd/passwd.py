"""`volley passwd USER --config FILE`: add a listener user or change its password.

Responsible for: the command's arguments, reading the password (from stdin: one line when
it is a pipe, `echo "$PW" | volley passwd alice`; asked twice without echo when it is a
terminal), and writing it, hashed, into `smtpd.users_file` (engine.smtpd.auth: scrypt,
atomic replace, mode 0600).  A running Volley sees the change at the next AUTH.
Not responsible for: the file format or hashing (engine.smtpd.auth), reading the
configuration (engine.cli).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from engine.config import Settings
from engine.smtpd.auth import UsersFileError, check_username, set_password

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "passwd",
        help="add an SMTP listener user or change its password (password on stdin)",
    )
    p.add_argument("user", metavar="USER")
    p.add_argument("--config", help="TOML configuration file (for smtpd.users_file)")
    p.set_defaults(spool=None)


def _read_password() -> bytes | None:
    if sys.stdin.isatty():
        first = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != first:
            print("volley passwd: the two passwords differ", file=sys.stderr)
            return None
        return first.encode("utf-8")
    line = sys.stdin.buffer.readline()
    return line.rstrip(b"\r\n")


def run(args: argparse.Namespace, settings: Settings) -> int:
    path = settings.smtpd.users_file
    if path is None:
        where = f" in {args.config}" if args.config else " (no --config given)"
        print(f"volley passwd: smtpd.users_file is not set{where}", file=sys.stderr)
        return 2
    why = check_username(args.user)
    if why is not None:
        print(f"volley passwd: {args.user!r}: {why}", file=sys.stderr)
        return 2
    password = _read_password()
    if password is None:
        return 1
    if not password:
        print("volley passwd: empty password refused", file=sys.stderr)
        return 2
    try:
        new = set_password(path, args.user, password)
    except (OSError, UsersFileError) as e:
        print(f"volley passwd: {path}: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
        return 1
    print(f"volley passwd: {'added' if new else 'changed the password of'} {args.user} in {path}")
    return 0
