"""Networking helpers for tests: picking a shared free port, and waiting for a condition.

Responsible for:
  * `free_port(ips)`: one TCP port that is bindable right now on every given loopback IP, so
    several test receivers (127.0.0.2, 127.0.0.3, ...) can share the single destination port
    Volley's config allows (`smtp.port`).
  * `wait_for` / `async_wait_for`: poll a predicate until it is truthy or a deadline passes.
    This is how every test waits for something; tests never sleep a fixed time, because on a
    loaded 2-core machine any fixed time is either too short (flaky) or too long (slow).

Not responsible for:
  * Keeping the port reserved. Nothing can: between `free_port()` returning and the caller
    binding, another process may take it. Ports are drawn at random from a wide range so
    that two test processes rarely collide.
  * Starting servers (tests.support.receiver) or talking to anything off loopback.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

PORT_RANGE = (20000, 60000)
_MAX_PORT_TRIES = 200

# Where Linux draws ephemeral (client-side) ports from; the default range is 32768-60999.
# A listening port inside it can collide with an outgoing connection's source port bound to
# the same loopback IP (Volley binds source IPs), so ports below it are preferred.
_EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


def _ephemeral_range() -> tuple[int, int] | None:
    try:
        with open(_EPHEMERAL_RANGE_FILE) as f:
            low, high = f.read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return None


def _candidate_ports() -> list[int]:
    """Ports of PORT_RANGE outside the kernel's ephemeral range, or all of them if none is."""
    low, high = PORT_RANGE
    ports = range(low, high + 1)
    eph = _ephemeral_range()
    if eph is None:
        return list(ports)
    outside = [p for p in ports if not eph[0] <= p <= eph[1]]
    return outside or list(ports)


def _bindable(ip: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # asyncio's create_server sets SO_REUSEADDR, so test the bind the server will do:
        # a port whose old connections sit in TIME_WAIT is still usable for it.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def free_port(ips: Sequence[str], *, rng: random.Random | None = None) -> int:
    """Return a TCP port that is bindable right now on every IP in `ips`.

    Args:
        ips: loopback addresses the caller will listen on with this one port.
        rng: source of randomness (tests pass a seeded one); defaults to a fresh Random.

    Raises:
        ValueError: `ips` is empty.
        RuntimeError: no port in PORT_RANGE was free on all IPs after 200 random tries.
    """
    if not ips:
        raise ValueError("free_port needs at least one IP")
    rng = rng or random.Random()
    candidates = _candidate_ports()
    for _ in range(_MAX_PORT_TRIES):
        port = rng.choice(candidates)
        if all(_bindable(ip, port) for ip in ips):
            return port
    raise RuntimeError(f"no port free on all of {list(ips)} after {_MAX_PORT_TRIES} tries")


def _render(message: str | Callable[[], str]) -> str:
    return message() if callable(message) else message


def _timeout_error(
    timeout: float, last: object, message: str | Callable[[], str]
) -> AssertionError:
    text = _render(message)
    detail = f": {text}" if text else ""
    return AssertionError(f"condition not met within {timeout:g}s (last value {last!r}){detail}")


def wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.02,
    message: str | Callable[[], str] = "",
) -> T:
    """Call `predicate` every `interval` seconds until it returns a truthy value; return it.

    The predicate is always called once more at the deadline, so a slow machine that
    overshoots the last interval does not fail a condition that has become true.

    Args:
        predicate: a cheap, side-effect-free check (e.g. `lambda: len(rx.messages) == 10`).
        timeout: seconds until giving up.
        interval: seconds between calls.
        message: text for the failure, or a callable producing it at failure time (so the
            message can show live state, e.g. what the receiver has recorded so far).

    Raises:
        AssertionError: the predicate stayed falsy for `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout_error(timeout, value, message)
        time.sleep(min(interval, remaining))


async def async_wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.02,
    message: str | Callable[[], str] = "",
) -> T:
    """`wait_for` for async tests: same contract, but yields to the event loop between calls
    so the code under test keeps running."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout_error(timeout, value, message)
        await asyncio.sleep(min(interval, remaining))
