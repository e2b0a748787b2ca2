"""An independent DKIM verifier for the suite: mailauth (Node.js) against the test DNS.

Responsible for: `publish_key` (a key's TXT record in the mini internet's DNS) and
`mailauth_verify` (run tests/support/node/dkim_verify.mjs on a received message and
return each signature's result), so scenarios check Volley's signatures with code that
shares nothing with dkimpy.  mailauth, not Perl's Mail::DKIM: Debian 12's Mail::DKIM
(1.20230212) does not know Ed25519 ("unsupported algorithm ed25519-sha256").
Not responsible for: signing (engine.auth.dkim) or installing Node.js and mailauth
(.ci/need-test-peers does: Debian's nodejs and npm, then `npm ci` in tests/support/node).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from engine.auth.dkim import DkimKey
from tests.support.dns_server import DnsServer

__all__ = ["SignatureResult", "mailauth_verify", "publish_key"]

_SCRIPT = Path(__file__).parent / "node" / "dkim_verify.mjs"


@dataclass(frozen=True)
class SignatureResult:
    domain: str
    selector: str
    algorithm: str
    result: str  # "pass", "neutral" (body hash mismatch), "fail", ...


def publish_key(dns: DnsServer, key: DkimKey) -> None:
    kind = "rsa" if key.algorithm == b"rsa-sha256" else "ed25519"
    value = f"v=DKIM1; k={kind}; p={key.public}"
    strings = [value[i : i + 255] for i in range(0, len(value), 255)]
    dns.add_txt(f"{key.selector}._domainkey.{key.domain}", strings)


def mailauth_verify(message: bytes, dns: DnsServer) -> list[SignatureResult]:
    ip, port = dns.address.rsplit(":", 1)
    got = subprocess.run(
        ["node", str(_SCRIPT), ip, port],
        input=message,
        capture_output=True,
        timeout=60,
        check=True,
    )
    out = []
    for line in got.stdout.decode().splitlines():
        domain, selector, algorithm, result = line.split(" ", 3)
        out.append(SignatureResult(domain, selector, algorithm, result))
    return out
