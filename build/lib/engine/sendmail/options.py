"""volley-sendmail's command line: sendmail's options -> an `Invocation` value.

Responsible for: the options applications pass to /usr/sbin/sendmail (Postfix's and
Sendmail's shared set): `-t`, recipient arguments, `-f ADDR` / `-r ADDR`, `-F NAME`,
`-i` / `-oi`, `-bm`, `-bs`, `-C FILE`; the ones it accepts and ignores (every other
`-o*`, `-B`, `-N`, `-R`, `-V`, `-O`, `-L`, `-X`, `-h`, `-p`, `-G`, `-U`, `-m`, `-n`,
`-v`); and refusing anything else with a usage error (exit 64) naming it.
Not responsible for: reading the message, checking addresses (engine.sendmail.message),
or loading the configuration (engine.sendmail.main).

Why the standard library's `getopt` and not argparse: sendmail options are classic
getopt(3) syntax - clustered flags (`-ti`), values glued to their letter (`-fme@x`,
`-oi`, `-bs`, `-CFILE`) - which `getopt.gnu_getopt` parses exactly like the glibc getopt
Postfix's sendmail uses, options after recipients included (git send-email passes
`-i -f ADDR rcpt...`, PHP appends its `sendmail_path` arguments before `-t -i`).
argparse would read `-oi` as `-o i` only by accident and cannot ignore an unknown
`-o` letter without also accepting every unknown long option.
"""

from __future__ import annotations

import enum
import getopt
from collections.abc import Sequence
from dataclasses import dataclass

from engine.sendmail.exits import Exit, Failure

__all__ = ["Invocation", "Mode", "parse_args"]

# getopt(3) letters: "x:" takes a value.  Sendmail's and Postfix's sendmail accept these;
# those not acted on below are ignored, as Postfix ignores them.
_SHORT = "B:C:F:GL:N:O:R:UV:X:b:f:h:imno:p:r:tv"
_IGNORED_WITH_VALUE = frozenset("-B -L -N -O -R -V -X -h -p".split())
_IGNORED_FLAGS = frozenset("-G -U -m -n -v".split())


class Mode(enum.Enum):
    """What the command does (`-b` letter)."""

    DELIVER = "m"  # -bm, the default: read one message from stdin
    SMTP = "s"  # -bs: an SMTP dialogue on stdin/stdout


@dataclass(frozen=True, slots=True)
class Invocation:
    mode: Mode = Mode.DELIVER
    extract: bool = False  # -t: recipients from To, Cc and Bcc (added to the arguments)
    ignore_dots: bool = False  # -i / -oi: a line holding only "." does not end the message
    sender: str | None = None  # -f / -r; "" is the null sender <>; None: not given
    full_name: str | None = None  # -F: the name in a From field volley-sendmail adds
    config: str | None = None  # -C FILE
    recipients: tuple[str, ...] = ()  # the arguments, as given (lists are split later)


def parse_args(argv: Sequence[str]) -> Invocation:
    """Parse sendmail's command line (without the program name).

    Raises:
        Failure(Exit.USAGE): an unknown option, a missing value, an unsupported mode, or
            no recipient in -bm mode without -t.
    """
    try:
        opts, args = getopt.gnu_getopt(list(argv), _SHORT)
    except getopt.GetoptError as e:
        raise Failure(Exit.USAGE, f"{e.msg} (see README, 'Sendmail')") from None
    mode = Mode.DELIVER
    extract = ignore_dots = False
    sender: str | None = None
    full_name: str | None = None
    config: str | None = None
    for opt, value in opts:
        if opt == "-t":
            extract = True
        elif opt == "-i":
            ignore_dots = True
        elif opt == "-o":
            # -oi is -i; every other sendmail.cf option (-oem, -odb, -oQ/dir, -o7 ...)
            # has no meaning here.
            ignore_dots = ignore_dots or value == "i"
        elif opt in ("-f", "-r"):
            sender = _bare(value)
        elif opt == "-F":
            full_name = value
        elif opt == "-C":
            config = value
        elif opt == "-b":
            try:
                mode = Mode(value)
            except ValueError:
                raise Failure(
                    Exit.USAGE,
                    f"-b{value}: not supported (volley-sendmail does -bm and -bs only)",
                ) from None
        elif opt in _IGNORED_WITH_VALUE or opt in _IGNORED_FLAGS:
            continue
        else:  # pragma: no cover - getopt returns only the letters of _SHORT
            raise Failure(Exit.USAGE, f"option {opt} not recognized")
    if mode is Mode.SMTP and args:
        raise Failure(Exit.USAGE, "-bs takes its recipients from RCPT TO, not arguments")
    if mode is Mode.DELIVER and not args and not extract:
        raise Failure(
            Exit.USAGE, "no recipients: give them as arguments, or -t to read To, Cc and Bcc"
        )
    return Invocation(
        mode=mode,
        extract=extract,
        ignore_dots=ignore_dots,
        sender=sender,
        full_name=full_name,
        config=config,
        recipients=tuple(args),
    )


def _bare(value: str) -> str:
    """`-f <a@b>` is `-f a@b`; `-f '<>'` and `-f ''` are the null sender."""
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    return value
