"""engine.net.targets: MX sanity rules over a resolved route (pure, no DNS, no sockets)."""

from __future__ import annotations

import pytest

from engine.config import Settings, SmtpdSettings
from engine.model import RouteFailure, RouteFailureKind
from engine.net.mx import MxHost, Route
from engine.net.targets import TargetRules, is_local_address, screen_route

DEFAULT = TargetRules.from_settings(Settings(smtp_port=25, smtpd=SmtpdSettings(listen=())))
OPEN = TargetRules(ignore=(), address_limit=5, port=25, listeners=frozenset())


def route(*hosts: tuple[str, tuple[str, ...]], implicit: bool = False) -> Route:
    return Route(
        "d.example",
        tuple(MxHost(name, 10 * i, addrs) for i, (name, addrs) in enumerate(hosts)),
        implicit,
    )


def never_local(address: str) -> bool:
    raise AssertionError(f"asked about {address} with no wildcard listener")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.9.9.9",
        "0.0.0.0",
        "0.1.2.3",
        "169.254.1.1",
        "224.0.0.5",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "ff02::1",
    ],
)
def test_addresses_that_are_never_a_remote_mx_are_ignored_by_default(address: str) -> None:
    got = screen_route(route(("mx.example", (address,))), DEFAULT, never_local)
    assert isinstance(got, RouteFailure) and got.kind is RouteFailureKind.NO_ROUTE
    assert "ignore_target_hosts" in got.detail


def test_ignored_addresses_are_dropped_and_the_rest_kept() -> None:
    got = screen_route(
        route(("mx.example", ("127.0.0.1", "192.0.2.1", "2001:db8::1", "::1"))),
        DEFAULT,
        never_local,
    )
    assert isinstance(got, Route)
    assert got.hosts[0].addresses == ("192.0.2.1", "2001:db8::1")


def test_at_most_mx_address_limit_addresses_are_kept_over_all_hosts() -> None:
    hosts = [(f"mx{i}.example", (f"192.0.2.{2 * i}", f"192.0.2.{2 * i + 1}")) for i in range(50)]
    got = screen_route(route(*hosts), DEFAULT, never_local)
    assert isinstance(got, Route)
    assert [h.name for h in got.hosts] == ["mx0.example", "mx1.example", "mx2.example"]
    assert sum(len(h.addresses) for h in got.hosts) == 5  # Postfix's smtp_mx_address_limit


def listening(*listeners: tuple[str, int]) -> TargetRules:
    return TargetRules(ignore=(), address_limit=5, port=2525, listeners=frozenset(listeners))


def test_best_mx_being_our_own_listener_is_a_loop() -> None:
    got = screen_route(
        route(("mx.example", ("127.0.0.1",))), listening(("127.0.0.1", 2525)), never_local
    )
    assert isinstance(got, RouteFailure) and got.kind is RouteFailureKind.LOOP
    assert "loops back to myself" in got.detail


def test_a_listener_on_another_port_is_not_a_loop() -> None:
    rules = TargetRules(
        ignore=(), address_limit=5, port=25, listeners=frozenset({("127.0.0.1", 2525)})
    )
    assert isinstance(
        screen_route(route(("mx.example", ("127.0.0.1",))), rules, never_local), Route
    )


def test_hosts_better_than_ourselves_are_kept_and_the_rest_cut() -> None:
    r = route(
        ("primary.example", ("192.0.2.1",)),
        ("us.example", ("127.0.0.1",)),
        ("worse.example", ("192.0.2.9",)),
    )
    got = screen_route(r, listening(("127.0.0.1", 2525)), never_local)
    assert isinstance(got, Route) and [h.name for h in got.hosts] == ["primary.example"]


def test_a_wildcard_listener_loops_for_any_local_address() -> None:
    asked: list[str] = []

    def local(address: str) -> bool:
        asked.append(address)
        return address == "192.0.2.5"

    rules = listening(("0.0.0.0", 2525))
    got = screen_route(route(("mx.example", ("192.0.2.5",))), rules, local)
    assert isinstance(got, RouteFailure) and got.kind is RouteFailureKind.LOOP
    assert isinstance(screen_route(route(("mx.example", ("192.0.2.6",))), rules, local), Route)
    # "0.0.0.0" takes IPv4 only: an IPv6 address is not asked about.
    assert isinstance(screen_route(route(("mx.example", ("2001:db8::5",))), rules, local), Route)
    assert asked == ["192.0.2.5", "192.0.2.6"]


def test_rules_from_settings_take_every_listener() -> None:
    s = Settings(
        smtp_port=2525,
        smtpd=SmtpdSettings(
            listen=("localhost:2525", "[::1]:2526"), implicit_tls_listen=("127.0.0.1:4650",)
        ),
    )
    rules = TargetRules.from_settings(s)
    assert rules.listeners == {("127.0.0.1", 2525), ("::1", 2526), ("127.0.0.1", 4650)}
    assert rules.port == 2525 and rules.address_limit == 5


def test_is_local_address_probes_this_host() -> None:
    assert is_local_address("127.0.0.1") and is_local_address("127.3.4.5")
    assert not is_local_address("192.0.2.254")  # TEST-NET-1: never assigned here


# -- a configured relay's route (Route.port set) ---------------------------------------------


def relay_route(*addresses: str, port: int = 587) -> Route:
    return Route("d.example", (MxHost("smtp.relay.example", 0, addresses),), False, port)


def test_a_relay_on_loopback_is_kept_the_rest_of_ignore_target_hosts_applies() -> None:
    got = screen_route(
        relay_route("127.0.0.1", "::1", "169.254.1.1", "192.0.2.1"), DEFAULT, never_local
    )
    assert isinstance(got, Route) and got.port == 587
    assert got.hosts[0].addresses == ("127.0.0.1", "::1", "192.0.2.1")
    only_link_local = screen_route(relay_route("169.254.1.1"), DEFAULT, never_local)
    assert isinstance(only_link_local, RouteFailure)
    # An MX host on loopback is still dropped: only the operator's relay may be there.
    assert isinstance(
        screen_route(route(("mx.example", ("127.0.0.1",))), DEFAULT, never_local), RouteFailure
    )


def test_a_relay_that_is_our_listener_on_its_port_is_a_loop() -> None:
    rules = TargetRules(
        ignore=(), address_limit=5, port=25, listeners=frozenset({("127.0.0.1", 2525)})
    )
    loop = screen_route(relay_route("127.0.0.1", port=2525), rules, never_local)
    assert isinstance(loop, RouteFailure) and loop.kind is RouteFailureKind.LOOP
    assert "relay smtp.relay.example is this Volley's listener" in loop.detail
    # The same address on another port is another service (a local filter, a sidecar).
    assert isinstance(screen_route(relay_route("127.0.0.1", port=10025), rules, never_local), Route)
