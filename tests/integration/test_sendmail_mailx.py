"""A real mailx client - Debian's s-nail, with its `mta` set to a `sendmail` link made
by update-alternatives as README "Sendmail" says (in a private --altdir/--admindir
here, so the system's /usr/sbin/sendmail is untouched), the configuration found through
$VOLLEY_CONFIG - sends through the real `volley run` to the mini internet's receivers.

s-nail runs its MTA as `sendmail -i [-F NAME -f ADDR] -- RECIPIENTS...` with To, Cc and
Bcc as arguments and no Bcc field in the message; without `-r` the message has no From
and volley-sendmail adds one (login@smtp.helo_name).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from email import message_from_bytes, policy
from pathlib import Path

from tests.support.net import wait_for
from tests.support.sendmail import SENDMAIL

SNAIL = shutil.which("s-nail") or "/usr/bin/s-nail"  # .ci/install-mail-clients


def _alternatives_link(root: Path) -> Path:
    """README "Sendmail": update-alternatives --install <link> sendmail volley-sendmail 50."""
    link = root / "sbin" / "sendmail"
    for d in ("alternatives", "admin", "sbin"):
        (root / d).mkdir()
    private = ["--altdir", str(root / "alternatives"), "--admindir", str(root / "admin")]
    subprocess.run(
        [
            "update-alternatives",
            "--quiet",
            *private,
            "--install",
            str(link),
            "sendmail",
            SENDMAIL,
            "50",
        ],
        check=True,
        capture_output=True,
    )
    assert link.is_symlink() and link.resolve() == Path(SENDMAIL).resolve()
    return link


def _mailx(mta: Path, home: Path, config: Path, *args: str, body: bytes) -> None:
    got = subprocess.run(
        # -:/ : no system or user resource files; nosave: no dead.letter.
        [SNAIL, "-:/", f"-Smta={mta}", "-Snosave", "-Sexpandaddr", *args],
        input=body,
        capture_output=True,
        timeout=30,
        env={**os.environ, "HOME": str(home), "MAILRC": "/dev/null", "VOLLEY_CONFIG": str(config)},
    )
    assert got.returncode == 0, got.stderr.decode(errors="replace")


def test_s_nail_sends_through_volley(net, volley, tmp_path: Path) -> None:
    x, z = net.domain("x.test")[0], net.domain("z.test")[0]
    v = volley()
    mta = _alternatives_link(tmp_path)
    _mailx(
        mta,
        tmp_path,
        v.config_path,
        "-s",
        "Grüße from mailx",
        "-r",
        "Mail Robot <robot@sender.test>",
        "-c",
        "cc@x.test",
        "-b",
        "secret@z.test",
        "to@x.test",
        body=b"Hello from s-nail.\nSecond line.\n",
    )
    _mailx(mta, tmp_path, v.config_path, "-s", "no from", "plain@x.test", body=b"cron output\n")
    wait_for(
        lambda: len(x.messages) == 2 and len(z.messages) == 1,
        timeout=30,
        message=lambda: f"{x.messages} {z.messages}\n{v.text_output()}",
    )
    first = next(m for m in x.messages if "to@x.test" in m.rcpt_tos)
    assert sorted(first.rcpt_tos) == ["cc@x.test", "to@x.test"]
    assert first.mail_from == "robot@sender.test"
    assert z.messages[0].rcpt_tos == ("secret@z.test",)
    assert z.messages[0].data == first.data and b"secret" not in first.data
    msg = message_from_bytes(first.data, policy=policy.default)
    assert msg["Subject"] == "Grüße from mailx"
    assert msg["From"].addresses[0].addr_spec == "robot@sender.test"
    assert msg.get_content() == "Hello from s-nail.\r\nSecond line.\r\n"  # CRLF on the wire
    second = x.delivered_to("plain@x.test")[0]
    added = message_from_bytes(second.data, policy=policy.default)
    login = added["From"].addresses[0].addr_spec
    assert login.endswith("@volley.test") and second.mail_from == login
    assert added["Message-ID"] is not None and added["Date"] is not None
    assert v.stop() == 0
