"""The supervisor's listening sockets: one per worker and address, one port."""

from __future__ import annotations

import socket

import pytest

from engine.config import SmtpdSettings
from engine.smtpd.sockets import ListenError, bind_all, close_all, for_worker


def test_port_zero_binds_every_worker_to_the_same_free_port() -> None:
    bound = bind_all(SmtpdSettings(listen=("127.0.0.1:0", "[::1]:0")), workers=3)
    try:
        assert [b.setting for b in bound] == ["smtpd.listen", "smtpd.listen"]
        for b in bound:
            ports = {s.getsockname()[1] for s in b.sockets}
            assert ports == {b.port} and b.port > 0 and len(b.sockets) == 3
        assert bound[1].address == f"[::1]:{bound[1].port}"
        assert bound[0].address == f"127.0.0.1:{bound[0].port}"
        mine = for_worker(bound, 2)
        assert [s for s, _ in mine] == [bound[0].sockets[2], bound[1].sockets[2]]
        with socket.create_connection(("127.0.0.1", bound[0].port), timeout=5):
            pass  # the kernel queues it in one of the three backlogs
    finally:
        close_all(bound)
    assert all(not b.sockets for b in bound)


def test_implicit_tls_addresses_are_marked() -> None:
    settings = SmtpdSettings(listen=(), implicit_tls_listen=("localhost:0",))
    bound = bind_all(settings, workers=1)
    try:
        assert bound[0].host == "127.0.0.1" and bound[0].implicit_tls
        assert for_worker(bound, 0)[0][1] is True
    finally:
        close_all(bound)


def test_a_port_in_use_is_one_error_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = SmtpdSettings(
            listen=("127.0.0.1:0",), implicit_tls_listen=(f"127.0.0.1:{port}",)
        )
        with pytest.raises(ListenError, match=rf"smtpd\.implicit_tls_listen 127\.0\.0\.1:{port}: "):
            bind_all(settings, workers=2)
