"""demo.world: the destinations plan, and the world up on loopback."""

from __future__ import annotations

import smtplib

import pytest

from demo.world import SENDER, Kind, World, plan
from tests.support.net import wait_for


def test_plan_has_every_kind_and_distinct_test_domains() -> None:
    dests = plan(36)
    names = [d.domain for d in dests]
    assert len(names) == len(set(names)) and all(n.endswith(".test") for n in names)
    assert {d.kind for d in dests} == set(Kind)
    assert sum(1 for d in dests if d.kind is Kind.ACCEPT) == 36
    with pytest.raises(ValueError):
        plan(0)


def test_world_publishes_receivers_only_on_loopback() -> None:
    world = World(plan(2), outage=0.2)
    try:
        world.start()
        assert set(world.mailboxes) == {
            d.domain for d in world.destinations if d.kind is not Kind.TYPO
        } | {SENDER.partition("@")[2]}
        ips = [rx.ip for rxs in world.mailboxes.values() for rx in rxs]
        assert all(ip.startswith("127.") for ip in ips)
        primary, backup = world.mailboxes["twomx.test"]
        assert not primary.is_running and backup.is_running
        (sleepy,) = world.mailboxes["sleepy.test"]
        wait_for(lambda: sleepy.is_running, timeout=10, message="sleepy.test never woke")
        with smtplib.SMTP(sleepy.ip, world.smtp_port, timeout=10) as s:
            s.sendmail(SENDER, ["bob@sleepy.test"], b"Subject: hi\r\n\r\nhi\r\n")
        assert world.received()["sleepy.test"] == ["bob@sleepy.test"]
    finally:
        world.stop()
