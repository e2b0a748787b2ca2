"""engine.shaping.sites: site names from MX host sets."""

from __future__ import annotations

from engine.shaping.sites import Site, domain_site, site_name


def test_equal_sets_give_equal_names_whatever_the_order() -> None:
    a = site_name(["alt1.mx-in.l.example.net", "mx-in.l.example.net"])
    b = site_name(["mx-in.l.example.net.", "ALT1.mx-in.l.example.net"])
    assert a == b == "(alt1)?.mx-in.l.example.net"
    five = ["mx-in.l.example.net"] + [f"alt{i}.mx-in.l.example.net" for i in (4, 2, 3, 1)]
    assert site_name(five) == "(alt1|alt2|alt3|alt4)?.mx-in.l.example.net"


def test_hosts_under_different_parents_are_listed() -> None:
    assert site_name(["mx2.b.test", "mx1.a.test", "mx1.b.test"]) == "mx1.a.test,(mx1|mx2).b.test"
    assert site_name(["relay.example.net"], port=587) == "relay.example.net:587"
    assert site_name(["localhost"]) == "localhost"


def test_keys_site_first_then_provider() -> None:
    assert Site("x", None).connection_keys == ("x",)
    assert Site("x", "google").connection_keys == ("x", "provider:google")
    # Receivers limit per sending IP: an egress source has its own keys.
    assert Site("x", "google", "ip1").connection_keys == ("ip1|x", "ip1|provider:google")
    assert Site("x", None, "ip1").connection_keys == ("ip1|x",)
    assert domain_site("a.test") == "domain:a.test"
