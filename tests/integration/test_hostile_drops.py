"""Hostile drops through the real process: each is moved to rejected/ with a reason, no
worker crashes, nothing is followed or mailed that should not be, and good mail still flows.

The drops: a symlink to /etc/passwd (the link moves; the target is never read or sent), a
FIFO (never opened: opening one blocks), a directory named like a drop, a file over
`spool.max_message_size`, binary garbage, NUL bytes, no header section, 10 000 recipients,
a 1 MB header line, invalid UTF-8 in a header, CR or LF inside an X-Receiver or a header
address that would inject an SMTP command line if passed through, addresses over
RFC 5321's length limits, and file names with spaces, non-ASCII characters and bytes that
are not UTF-8 at all. Good messages with such names, and one dropped after all the rest,
are delivered.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from tests.support.crash import metric
from tests.support.internet import message
from tests.support.net import wait_for

MAX_SIZE = 2 * 1024 * 1024
LONG_PATH = b"p" * 64 + b"@" + b".".join([b"d" * 60] * 3) + b".ok.test"
INJECTED = [f"injected-{k}@ok.test" for k in ("cr", "lf", "crlf", "fold")]


def _hostile() -> dict[str, tuple[bytes, str]]:
    """name -> (content, a word its rejection reason must contain)."""
    rng = random.Random(3)
    xs = "X-Sender: a@sender.test\r\n"
    frm = b"From: a@sender.test\r\n"
    return {
        "too big.eml": (
            message("a@sender.test", ["big@ok.test"], body="y" * 78 * (MAX_SIZE // 78 + 10)),
            "max_message_size",
        ),
        "garbage.eml": (bytes(rng.randrange(1, 256) for _ in range(8192)), ""),
        "nul.eml": (b"From: a@sender.test\r\nTo: nul@ok.test\r\n\r\nbo\0dy\r\n", "NUL"),
        "no-header.eml": (b"\r\nTo: nohdr@ok.test\r\n\r\nbody\r\n", "no header section"),
        "many.eml": (
            (xs + "".join(f"X-Receiver: m{i}@ok.test\r\n" for i in range(10_000))).encode()
            + frm
            + b"\r\nbody\r\n",
            "too many recipients",
        ),
        "long-line.eml": (
            frm + b"To: long@ok.test\r\nSubject: " + b"s" * (1 << 20) + b"\r\n\r\nbody\r\n",
            "998",
        ),
        "bad-utf8.eml": (
            frm + b"To: utf@ok.test\r\nSubject: caf\xe9 \xff\xfe\r\n\r\nbody\r\n",
            "UTF-8",
        ),
        "cr-x-receiver.eml": (
            (xs + "X-Receiver: <evil-cr@ok.test>\rRCPT TO:<injected-cr@ok.test>\r\n").encode()
            + frm
            + b"\r\nbody\r\n",
            "CR",
        ),
        "lf-x-receiver.eml": (
            (xs + "X-Receiver: <evil-lf@ok.test>\nRCPT TO:<injected-lf@ok.test>\r\n").encode()
            + frm
            + b"\r\nbody\r\n",
            "",
        ),
        "crlf-to.eml": (
            frm + b'To: "x\r\nRCPT TO:<injected-crlf@ok.test>" <evil-crlf@ok.test>\r\n\r\nbody\r\n',
            "",
        ),
        "folded-to.eml": (
            frm + b"To: <evil-fold@ok.test\r\n RCPT TO:<injected-fold@ok.test>>\r\n\r\nbody\r\n",
            "",
        ),
        "long-local.eml": (frm + b"To: " + b"l" * 65 + b"@ok.test\r\n\r\nbody\r\n", "64"),
        # 64 + 1 + 3 * 61 + 7 = 255 octets: the path <...> is 257, one over RFC 5321's 256.
        "long-path.eml": (frm + b"To: " + LONG_PATH + b"\r\n\r\nbody\r\n", "256"),
        "bad n\u00e4me \u2713.eml": (b"\r\nno header\r\n", "no header section"),
        os.fsdecode(b"bad-\xff\xfe.eml"): (b"\r\nno header\r\n", "no header section"),
    }


def test_hostile_drops_are_rejected_and_mail_flows(net, volley) -> None:
    (rx,) = net.domain("ok.test")
    v = volley(workers=2, config={"spool": {"max_message_size": MAX_SIZE}})
    incoming, rejected = v.spool / "incoming", v.spool / "rejected"
    hostile = _hostile()
    for name, (data, _) in hostile.items():
        v.drop(data, name=name)
    os.symlink("/etc/passwd", incoming / "passwd-link.eml")
    os.mkfifo(incoming / "fifo.eml")
    os.mkdir(incoming / "x.eml")
    kinds = {"passwd-link.eml": "symbolic link", "fifo.eml": "FIFO", "x.eml": "directory"}
    good = {
        "good n\u00e4me \u2713.eml": "good-unicode-name@ok.test",
        os.fsdecode(b"good-\xfe.eml"): "good-bytes-name@ok.test",
    }
    for i, (name, rcpt) in enumerate(good.items()):
        v.drop(message("a@sender.test", [rcpt], seq=i), name=name)
    bad = {**{n: why for n, (_, why) in hostile.items()}, **kinds}
    wait_for(  # the .reason file is written right after the move: wait for it
        lambda: all(os.path.lexists(rejected / f"{n}.reason") for n in bad),
        timeout=30,
        message=lambda: f"{sorted(os.listdir(rejected))}\n{v.text_output()}",
    )
    # A normal message dropped after all of them is still delivered.
    v.drop(message("a@sender.test", ["after@ok.test"], seq=99), name="zz-after.eml")
    wanted = [*good.values(), "after@ok.test"]
    wait_for(
        lambda: all(rx.delivered_to(r) for r in wanted),
        timeout=30,
        message=lambda: (
            f"still in incoming/: {v.incoming()}; received {rx.messages}\n"
            f"{v.log()[-5:]}\n{v.text_output()}"
        ),
    )

    for name, why in bad.items():
        reason = (rejected / f"{name}.reason").read_text(errors="replace")
        assert reason.strip(), name
        assert why in reason, (name, reason)
    assert os.path.islink(rejected / "passwd-link.eml")
    assert os.readlink(rejected / "passwd-link.eml") == "/etc/passwd"
    assert (rejected / "x.eml").is_dir()
    assert v.incoming() == []
    # Only the good messages were sent; nothing else reached an SMTP command line.
    assert sorted(r for m in rx.messages for r in m.rcpt_tos) == sorted(wanted)
    for addr in INJECTED + [f"evil-{k}@ok.test" for k in ("cr", "lf", "crlf", "fold")]:
        assert rx.rcpt_attempts(addr) == 0, addr
    passwd = Path("/etc/passwd").read_bytes().split(b"\n")[0]
    assert passwd and not any(passwd in m.data for m in rx.messages)
    # Every rejection is in the log, and no worker ever crashed.
    logged = {r["drop"] for r in v.events("rejected")}
    assert logged == set(bad), set(bad) ^ logged
    assert "exited" not in v.text_output(), v.text_output()
    assert (metric(v.metrics_port, "volley_worker_restarts_total") or 0) == 0
    assert v.stop() == 0
