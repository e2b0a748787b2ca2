"""Issue #12 part 2: every failure of the mini internet gets its bounce category, in the
delivery log, in the DSN and in /metrics; the user's rules file comes first, and a SIGHUP
applies an edited one.

The failures: the receivers' own 550 5.1.1 and 450 replies; a scripted receiver answering
with providers' wordings (a Spamhaus block, Gmail's multi-line "does not exist" and "out of
storage space" with a per-reply id, a reply only the user's rule knows); a null MX, a
domain that does not exist, and an MX host that refuses connections.
"""

from __future__ import annotations

import email
import signal
import urllib.request
from email import policy

from prometheus_client.parser import text_string_to_metric_families

from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.scripted import Conn, standard

BLOCKED = (
    b"550 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org\r\n"
)
GONE = (
    b"550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
    b"550-5.1.1 double-checking the recipient's email address for typos or\r\n"
    b"550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser %s - gsmtp\r\n"
)
FULL = (
    b"452-4.2.2 The recipient's inbox is out of storage space. Please direct the\r\n"
    b"452 4.2.2 recipient to https://support.google.com/mail/?p=OverQuotaTemp %s - gsmtp\r\n"
)
ACME = b"550 5.7.1 acme filter says no\r\n"


def provider(conn: Conn, line: str | None) -> bytes:
    """A receiver that answers RCPT as big mailbox providers do, by local part (one
    recipient per transaction), and refuses DATA when it refused that recipient."""
    verb = "" if line is None else line.split(" ", 1)[0].upper()
    if verb == "DATA":
        rcpt = next(c for c in reversed(conn.commands) if c.upper().startswith("RCPT"))
        if provider(conn, rcpt) != standard(conn, rcpt):
            return b"554 5.5.1 Error: no valid recipients\r\n"
    if verb != "RCPT":
        return standard(conn, line)
    assert line is not None
    local = line.partition("<")[2].partition("@")[0]
    reply_id = f"41be03b00d2f7-7e8b6e2b3f1si{conn.number:07d}a{len(conn.commands)}.12".encode()
    if local.startswith("blocked"):
        return BLOCKED
    if local.startswith("gone"):
        return GONE % reply_id
    if local.startswith("full"):
        return FULL % reply_id
    if local.startswith("acme"):
        return ACME
    return standard(conn, line)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_failures_carry_their_category_in_log_dsn_and_metrics(net, volley, tmp_path) -> None:
    net.domain("dest.test")
    (sender_mx,) = net.domain("sender.test")
    big = net.scripted(provider)
    net.publish("big.test", [big.ip])
    net.dns.null_mx("nomail.test")
    net.publish("dead.test", [net.address()])  # nothing listens there: refused
    rules = tmp_path / "bounces.toml"
    rules.write_text('[[rules]]\nid = "acme"\ncategory = "ContentRelated"\ntext = "acme filter"\n')
    v = volley(
        workers=2,
        config={
            "bounce": {"rules_file": str(rules)},
            # Deferred recipients stay deferred (one retry an hour) while we look.
            "domains": {"default": {"retry_schedule": ["1h"]}},
        },
    )
    expected = {
        # rcpt: (event, category)
        "permfail-ann@dest.test": ("bounced", "InvalidRecipient"),
        "tempfail-bob@dest.test": ("deferred", "TransientFailure"),
        "blocked-cy@big.test": ("bounced", "SpamBlock"),
        "gone-di@big.test": ("bounced", "InvalidRecipient"),
        "gone-ed@big.test": ("bounced", "InvalidRecipient"),
        "full-flo@big.test": ("deferred", "QuotaIssues"),
        "acme-gil@big.test": ("bounced", "ContentRelated"),
        "hal@nomail.test": ("bounced", "BadDomain"),
        "ivy@no-such-domain.test": ("bounced", "BadDomain"),
        "jo@dead.test": ("deferred", "NoAnswerFromHost"),
        "kim@big.test": ("delivered", None),
    }
    for i, rcpt in enumerate(expected):
        v.drop(message("news@sender.test", [rcpt], seq=i))
    wait_for(
        lambda: (
            {r["rcpt"] for r in v.log() if "rcpt" in r and r["event"] != "received"}
            >= set(expected)
        ),
        timeout=30,
        message=lambda: f"{v.log()}\n{v.text_output()}",
    )
    got = {}
    for r in v.log():
        if r.get("rcpt") in expected and r["event"] != "received":
            got.setdefault(r["rcpt"], (r["event"], r.get("category")))
            if r["event"] != "delivered":
                assert r["category_rule"], r  # which rule decided, always said
    assert got == expected
    rules_of = {r["rcpt"]: r.get("category_rule") for r in v.log() if "category" in r}
    assert rules_of["acme-gil@big.test"] == "acme"  # the user's rule, before the shipped ones
    assert rules_of["jo@dead.test"] == "volley-refused"

    # The DSNs' human-readable part names each bounced recipient's category.
    bounced = {rcpt for rcpt, (event, _) in expected.items() if event == "bounced"}
    wait_for(
        lambda: len(sender_mx.messages) >= len(bounced), timeout=30, message=lambda: f"{v.log()}"
    )
    human = {}
    for dsn in sender_mx.messages:
        report = email.message_from_bytes(dsn.data, policy=policy.default)
        text = next(iter(report.iter_parts())).get_content()
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("<") and i + 1 < len(lines):
                human[line[1:].partition(">")[0]] = lines[i + 1]
    assert human == {rcpt: f"    Category: {expected[rcpt][1]}" for rcpt in bounced}

    # /metrics: failures by destination and category (the workers flush every 250 ms).
    def metric(name: str, **labels: str) -> float:
        return scrape(v.metrics_port).get((name, tuple(sorted(labels.items()))), 0.0)

    wait_for(
        lambda: metric("volley_bounced_total", domain="big.test", category="InvalidRecipient") == 2,
        timeout=10,
        message=lambda: str(scrape(v.metrics_port)),
    )
    assert metric("volley_bounced_total", domain="big.test", category="SpamBlock") == 1
    assert metric("volley_bounced_total", domain="big.test", category="ContentRelated") == 1
    assert metric("volley_bounced_total", domain="dest.test", category="InvalidRecipient") == 1
    assert metric("volley_deferred_total", domain="big.test", category="QuotaIssues") == 1
    assert metric("volley_deferred_total", domain="dead.test", category="NoAnswerFromHost") == 1
    assert metric("volley_delivered_total", domain="big.test") == 1

    # An edited rules file applies after a SIGHUP, to the next failure.
    rules.write_text('[[rules]]\nid = "acme-spam"\ncategory = "SpamContent"\ntext = "acme"\n')
    v.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: "configuration reloaded: bounce.rules" in v.text_output(),
        timeout=10,
        message=v.text_output,
    )
    v.drop(message("news@sender.test", ["acme-liz@big.test"], seq=99))
    wait_for(
        lambda: any(r.get("rcpt") == "acme-liz@big.test" for r in v.events("bounced")),
        timeout=20,
        message=lambda: f"{v.log()}",
    )
    (liz,) = [r for r in v.events("bounced") if r["rcpt"] == "acme-liz@big.test"]
    assert (liz["category"], liz["category_rule"]) == ("SpamContent", "acme-spam")
    assert v.stop() == 0
