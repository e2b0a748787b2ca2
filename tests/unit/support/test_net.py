"""Tests for tests.support.net: free_port, wait_for, async_wait_for."""

from __future__ import annotations

import asyncio
import random
import socket
import time

import pytest

from tests.support import net
from tests.support.net import PORT_RANGE, async_wait_for, free_port, wait_for

IPS = ["127.0.0.2", "127.0.0.3"]


def listen(ip: str, port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen()
    return s


def test_free_port_is_bindable_on_every_ip() -> None:
    port = free_port(IPS)
    assert PORT_RANGE[0] <= port <= PORT_RANGE[1]
    socks = [listen(ip, port) for ip in IPS]  # raises if it was not free
    for s in socks:
        s.close()


def test_free_port_skips_a_port_taken_on_any_one_ip() -> None:
    candidates = net._candidate_ports()
    # The port a Random(seed) draws first; find a seed whose first pick is free right now.
    for seed in range(100):
        first = random.Random(seed).choice(candidates)
        try:
            taken = listen(IPS[1], first)  # taken on the second IP only
        except OSError:
            continue
        break
    else:
        raise AssertionError("no free candidate port among 100 seeds")
    with taken:
        port = free_port(IPS, rng=random.Random(seed))
        assert port != first
        for s in [listen(ip, port) for ip in IPS]:
            s.close()


def test_free_port_prefers_ports_outside_the_ephemeral_range() -> None:
    eph = net._ephemeral_range()
    assert eph is not None  # Linux always has the file
    ports = {free_port(["127.0.0.2"], rng=random.Random(i)) for i in range(20)}
    assert not any(eph[0] <= p <= eph[1] for p in ports)


def test_free_port_needs_an_ip() -> None:
    with pytest.raises(ValueError):
        free_port([])


def test_wait_for_returns_the_first_truthy_value() -> None:
    calls = iter([0, None, "", 7, 8])
    assert wait_for(lambda: next(calls), timeout=10, interval=0.001) == 7


def test_wait_for_times_out_with_live_message() -> None:
    state = {"seen": 0}

    def predicate() -> int:
        state["seen"] += 1
        return 0

    started = time.monotonic()
    with pytest.raises(AssertionError) as info:
        wait_for(predicate, timeout=0.1, message=lambda: f"polled {state['seen']} times")
    assert time.monotonic() - started >= 0.1
    text = str(info.value)
    assert "within 0.1s" in text
    assert "last value 0" in text
    # The message was rendered at failure time, after every poll, so it shows the final count.
    assert f"polled {state['seen']} times" in text
    assert state["seen"] >= 2


def test_wait_for_plain_string_message() -> None:
    with pytest.raises(AssertionError, match="receiver got nothing"):
        wait_for(lambda: False, timeout=0.01, message="receiver got nothing")


async def test_async_wait_for_lets_the_loop_run() -> None:
    done = asyncio.Event()
    asyncio.get_running_loop().call_soon(done.set)
    assert await async_wait_for(done.is_set, timeout=10) is True


async def test_async_wait_for_times_out_with_message() -> None:
    with pytest.raises(AssertionError, match="still nothing"):
        await async_wait_for(lambda: [], timeout=0.05, message=lambda: "still nothing")
