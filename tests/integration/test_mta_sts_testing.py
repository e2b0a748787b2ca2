"""MTA-STS `mode: testing` (RFC 8461 §5.1): mail is delivered as usual, to an MX host
whose certificate does not verify too, and what enforce would have refused is counted in
volley_mta_sts_results_total{mode="testing"} (TLSRPT-style)."""

from __future__ import annotations

from tests.support.crash import metric
from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.sts_server import PolicyServer, policy_text, publish_sts, tls_domain
from tests.support.tls_certs import LocalCA


def test_a_bad_certificate_is_counted_and_the_mail_still_goes(net, volley) -> None:
    ca = LocalCA()
    (mx1,) = tls_domain(net, ca, "trial.test", 1, names={1: "mx.wrong-name.test"})
    with PolicyServer(net.address(), ca, ["trial.test"]) as server:
        server.publish("trial.test", policy_text("testing", ["mx1.trial.test"]))
        publish_sts(net.dns, "trial.test", server, "7")
        v = volley(
            workers=1,
            config={
                "smtp": {"tls_ca_file": str(ca.cert_path)},
                "dns": {"mta_sts_port": server.port},
            },
        )
        v.drop(message("news@sender.test", ["a@trial.test"]))
        wait_for(lambda: v.count("delivered") == 1, timeout=30, message=lambda: f"{v.log()}")
        assert [m.tls for m in mx1.messages] == [True]  # as usual: opportunistic TLS
        assert v.count("deferred") == 0
        port = v.metrics_port

        def counted(name: str, **labels: str) -> float:
            return metric(port, name, **labels) or 0.0

        wait_for(
            lambda: (
                counted("volley_mta_sts_results_total", mode="testing", result="cert_invalid") == 1
            ),
            timeout=10,
        )
        assert counted("volley_mta_sts_results_total", mode="testing", result="success") == 0
        assert counted("volley_tls_sessions_total", policy="verify", result="verify_failed") == 1
        assert counted("volley_tls_sessions_total", policy="opportunistic", result="ok") == 1
        assert server.request_count("trial.test") == 1
        assert v.stop() == 0
