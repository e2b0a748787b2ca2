"""engine.sendmail.options: sendmail's command line as applications write it."""

from __future__ import annotations

import pytest

from engine.sendmail.exits import Exit, Failure
from engine.sendmail.options import Invocation, Mode, parse_args


def _usage(argv: list[str]) -> str:
    with pytest.raises(Failure) as info:
        parse_args(argv)
    assert info.value.code is Exit.USAGE
    return info.value.message


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # PHP's default sendmail_path, then its additional_params (-f).
        (
            ["-t", "-i", "-fapp@example.com"],
            Invocation(extract=True, ignore_dots=True, sender="app@example.com"),
        ),
        # git send-email: -i, -f ADDR, then the recipients.
        (
            ["-i", "-f", "me@example.com", "a@x.example", "b@y.example"],
            Invocation(
                ignore_dots=True, sender="me@example.com", recipients=("a@x.example", "b@y.example")
            ),
        ),
        # Clustered flags, -oi, options after the recipients (glibc getopt permutes).
        (
            ["-ti", "a@x.example", "-oi", "-F", "Cron Daemon"],
            Invocation(
                extract=True, ignore_dots=True, full_name="Cron Daemon", recipients=("a@x.example",)
            ),
        ),
        (
            ["-r", "<bounce@example.com>", "--", "-odd@x.example"],
            Invocation(sender="bounce@example.com", recipients=("-odd@x.example",)),
        ),
        (["-f", "<>", "a@x.example"], Invocation(sender="", recipients=("a@x.example",))),
        (["-bs"], Invocation(mode=Mode.SMTP)),
        (
            ["-b", "m", "-C/etc/other.toml", "a@x.example"],
            Invocation(config="/etc/other.toml", recipients=("a@x.example",)),
        ),
    ],
)
def test_what_applications_pass(argv: list[str], expected: Invocation) -> None:
    assert parse_args(argv) == expected


def test_options_it_does_not_need_are_accepted_and_ignored() -> None:
    argv = "-oem -odb -o7 -oQ/var/x -O DeliveryMode=b -B 8BITMIME -N never -R hdrs -V id1 -L x "
    argv += "-X /tmp/log -h 5 -p smtp -G -U -m -n -v a@x.example"
    assert parse_args(argv.split()) == Invocation(recipients=("a@x.example",))


def test_usage_errors_name_the_problem() -> None:
    assert "no recipients" in _usage([])
    assert "no recipients" in _usage(["-i", "-f", "a@b.example"])
    assert "-q" in _usage(["-q"])
    assert "-bp" in _usage(["-bp"])  # mailq: not this command's job
    assert "-bi" in _usage(["-bi"])
    assert "requires argument" in _usage(["a@x.example", "-f"])
    assert "RCPT TO" in _usage(["-bs", "a@x.example"])
