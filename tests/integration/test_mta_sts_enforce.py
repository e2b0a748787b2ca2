"""MTA-STS `mode: enforce` (RFC 8461 §5.1): mail goes only to MX hosts the policy lists,
over TLS verified for the MX name; a policy that lists none of them defers the mail with
a reason naming the policy, and no MX host gets a connection."""

from __future__ import annotations

from tests.support.crash import metric
from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.sts_server import PolicyServer, policy_text, publish_sts, tls_domain
from tests.support.tls_certs import LocalCA
from tests.support.volley import Volley


def _config(ca: LocalCA, server: PolicyServer) -> dict[str, object]:
    return {
        "smtp": {"tls_ca_file": str(ca.cert_path)},
        "dns": {"mta_sts_port": server.port},
    }


def _count(v: Volley, name: str, **labels: str) -> float:
    return metric(v.metrics_port, name, **labels) or 0.0


def test_only_the_listed_mx_host_gets_the_mail_over_verified_tls(net, volley) -> None:
    ca = LocalCA()
    mx1, mx2 = tls_domain(net, ca, "sts.test", 2)
    with PolicyServer(net.address(), ca, ["sts.test"]) as server:
        server.publish("sts.test", policy_text("enforce", ["mx2.sts.test"]))
        publish_sts(net.dns, "sts.test", server, "20260101")
        v = volley(workers=1, config=_config(ca, server))
        for i in range(3):
            v.drop(message("news@sender.test", [f"u{i}@sts.test"], seq=i))
        wait_for(lambda: v.count("delivered") == 3, timeout=30, message=lambda: f"{v.log()}")
        assert [m.tls for m in mx2.messages] == [True, True, True]
        # mx1 is the better preference, and takes mail without a policy: never contacted
        assert mx1.connections_total == 0 and mx1.messages == []
        assert {r["mx"] for r in v.events("delivered")} == {"mx2.sts.test"}
        assert server.request_count("sts.test") == 1  # fetched once, then cached
        wait_for(  # workers flush their counts every 250 ms
            lambda: (
                _count(v, "volley_mta_sts_results_total", mode="enforce", result="success")
                and _count(v, "volley_mta_sts_results_total", mode="enforce", result="mx_mismatch")
                and _count(v, "volley_tls_sessions_total", policy="verify", result="ok")
            ),
            timeout=10,
        )
        assert v.stop() == 0


def test_a_policy_listing_no_mx_host_defers_and_connects_nowhere(net, volley) -> None:
    ca = LocalCA()
    mx1, mx2 = tls_domain(net, ca, "nomatch.test", 2)
    with PolicyServer(net.address(), ca, ["nomatch.test"]) as server:
        server.publish("nomatch.test", policy_text("enforce", ["*.provider.example"]))
        publish_sts(net.dns, "nomatch.test", server, "1")
        v = volley(workers=1, config=_config(ca, server))
        v.drop(message("news@sender.test", ["a@nomatch.test"]))
        wait_for(lambda: v.count("deferred") >= 2, timeout=30, message=lambda: f"{v.log()}")
        deferred = next(v.events("deferred"))
        assert deferred["enhanced"] == "4.7.5"
        assert (
            "MTA-STS policy of nomatch.test (mode enforce) lists none of its MX hosts"
            in (deferred["text"])
        )
        assert mx1.connections_total == 0 and mx2.connections_total == 0
        assert v.count("delivered") == 0 and v.count("bounced") == 0
        assert v.stop() == 0
