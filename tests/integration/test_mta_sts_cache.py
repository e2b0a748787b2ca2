"""The MTA-STS policy cache (RFC 8461 §3.3) across `volley run` restarts: a new TXT id
makes Volley fetch the policy again; with the policy host down, the cached policy stays
in force (never "no policy", which would let the mail go to an MX host it excludes).

Three MX hosts, preferences 10, 20, 30: without a policy mail goes to mx1, so where it
goes shows which policy was applied."""

from __future__ import annotations

from tests.support.crash import metric, restart
from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.receiver import Receiver
from tests.support.sts_server import PolicyServer, policy_text, publish_sts, tls_domain
from tests.support.tls_certs import LocalCA

DOMAIN = "cached.test"


def test_new_id_refetches_and_a_down_policy_host_keeps_the_cached_policy(net, volley) -> None:
    ca = LocalCA()
    mx1, mx2, mx3 = tls_domain(net, ca, DOMAIN, 3)
    server = PolicyServer(net.address(), ca, [DOMAIN]).start()
    try:
        server.publish(DOMAIN, policy_text("enforce", [f"mx2.{DOMAIN}"]))
        publish_sts(net.dns, DOMAIN, server, "1")
        v = volley(
            workers=1,
            config={
                "smtp": {"tls_ca_file": str(ca.cert_path)},
                "dns": {"mta_sts_port": server.port},
            },
        )

        def send(i: int, at: Receiver) -> None:
            v.drop(message("news@sender.test", [f"u{i}@{DOMAIN}"], seq=i))
            wait_for(
                lambda: any(m.rcpt_tos == (f"u{i}@{DOMAIN}",) for m in at.messages),
                timeout=30,
                message=lambda: f"{v.log()}",
            )

        send(1, mx2)  # policy id 1: mx2 only
        assert v.stop() == 0

        # A new policy under a new id, seen at the next start: fetched again.
        server.publish(DOMAIN, policy_text("enforce", [f"mx3.{DOMAIN}"]))
        publish_sts(net.dns, DOMAIN, server, "2")
        restart(v)
        send(2, mx3)
        assert server.request_count(DOMAIN) == 2
        assert v.stop() == 0

        # The policy host is down and the id changed again: the fetch fails, and the
        # cached policy (id 2: mx3 only) still applies after the restart.
        server.stop()
        publish_sts(net.dns, DOMAIN, server, "3")
        restart(v)
        send(3, mx3)
        wait_for(
            lambda: (
                (
                    metric(
                        v.metrics_port,
                        "volley_mta_sts_results_total",
                        mode="enforce",
                        result="policy_fetch_error",
                    )
                    or 0
                )
                >= 1
            ),
            timeout=10,
        )
        assert mx1.messages == [] and len(mx2.messages) == 1 and len(mx3.messages) == 2
        assert v.count("deferred") == 0
        assert v.stop() == 0
    finally:
        server.stop()
