"""Fixtures of tests/unit/net/test_session.py shared with the other session-level tests
(test_relay.py): the loop choice (`run`), aiosmtpd servers on 127.0.0.77 (`start_mx`) and
a throw-away certificate (`tls_cert`)."""

from tests.unit.net.test_session import run, start_mx, tls_cert

__all__ = ["run", "start_mx", "tls_cert"]
