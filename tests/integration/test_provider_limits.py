"""A provider's limits are shared by all its sites: two sites (different MX hosts) of
one provider — matched by MX suffix, here a provider the user adds in [providers] —
together never get more than provider_max_connections, and each connection carries at
most the provider's max_messages_per_connection."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for


def test_sites_of_one_provider_share_its_connections(net, volley) -> None:
    rx = net.receiver()  # both sites' MX hosts are this one receiver: it sees the sum
    for site in ("mx1", "mx2"):
        net.dns.add_a(f"{site}.mail.prov.test", [rx.ip])
    net.dns.add_mx("a.test", [(10, "mx1.mail.prov.test")])
    net.dns.add_mx("b.test", [(10, "mx2.mail.prov.test")])
    v = volley(
        workers=2,
        config={
            "providers": {
                "prov": {
                    "mx_suffixes": [".mail.prov.test"],
                    "provider_max_connections": 2,
                    "max_messages_per_connection": 5,
                }
            },
        },
    )
    n = 150
    for i in range(n):
        for domain in ("a.test", "b.test"):
            v.drop(message("news@sender.test", [f"u{i}@{domain}"], seq=i))
    wait_for(lambda: len(rx.messages) >= 2 * n, timeout=120, message=lambda: repr(rx))
    assert rx.peak_connections == 2, rx.peak_connections
    assert max(rx.transactions_per_connection.values()) <= 5
    assert v.stop() == 0
