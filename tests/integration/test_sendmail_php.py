"""PHP's mail(), with `sendmail_path` set to volley-sendmail (Debian's default is
`/usr/sbin/sendmail -t -i`), through the real `volley run` to a receiver; mail() returns
false when volley-sendmail refuses the message (exit 65)."""

from __future__ import annotations

import os
import shutil
import subprocess
from email import message_from_bytes, policy
from pathlib import Path

from tests.support.net import wait_for
from tests.support.sendmail import sendmail_wrapper

PHP = shutil.which("php") or "/usr/bin/php"  # .ci/install-mail-clients: php-cli

SCRIPT = r"""
$ok = mail(
    "Customer <customer@x.test>",
    "Your order #42",
    "Thank you for your order.\nIt ships tomorrow.\n",
    "From: Shop <shop@sender.test>\r\nCc: sales@x.test\r\nBcc: audit@z.test",
    "-fbounces@sender.test"
);
$bad = mail("not an address", "s", "b", "From: shop@sender.test");
echo json_encode([$ok, $bad]);
"""


def test_php_mail_sends_through_volley(net, volley, tmp_path: Path) -> None:
    x, z = net.domain("x.test")[0], net.domain("z.test")[0]
    v = volley()
    mta = sendmail_wrapper(tmp_path, v.config_path)
    got = subprocess.run(
        # -n: no php.ini, so only our sendmail_path applies.
        [PHP, "-n", "-d", f"sendmail_path={mta} -t -i", "-r", SCRIPT],
        capture_output=True,
        timeout=30,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"[true,false]"  # mail() saw exit 0, then exit 65
    wait_for(
        lambda: len(x.messages) == 1 and len(z.messages) == 1,
        timeout=30,
        message=lambda: f"{x.messages} {z.messages}\n{v.text_output()}",
    )
    [m] = x.messages
    assert sorted(m.rcpt_tos) == ["customer@x.test", "sales@x.test"]
    assert z.messages[0].rcpt_tos == ("audit@z.test",) and z.messages[0].data == m.data
    assert m.mail_from == "bounces@sender.test"  # PHP's fifth argument, -f
    msg = message_from_bytes(m.data, policy=policy.default)
    assert msg["Subject"] == "Your order #42" and msg["Bcc"] is None
    assert msg["From"].addresses[0].addr_spec == "shop@sender.test"
    # PHP ends the body with one more newline of its own.
    assert msg.get_content().rstrip() == "Thank you for your order.\r\nIt ships tomorrow."
    assert v.count("rejected") == 0  # the bad one never reached incoming/
    assert v.stop() == 0
