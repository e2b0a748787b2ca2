"""Fixtures shared by the receiver tests: a free port on both test addresses and a running
Receiver on the first."""

from collections.abc import Iterator

import pytest

from tests.support.net import free_port
from tests.support.receiver import Receiver
from tests.support.receiver_probe import IP, IP2


@pytest.fixture
def port() -> int:
    return free_port([IP, IP2])


@pytest.fixture
def rx(port: int) -> Iterator[Receiver]:
    with Receiver(IP, port, name="mx.dst.test") as receiver:
        yield receiver
