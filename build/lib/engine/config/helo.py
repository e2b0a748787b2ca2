"""The EHLO name we announce: is it valid, and will receivers trust it.

Responsible for: checking `smtp.helo_name` at start and on reload.
Not responsible for: choosing the name (socket.getfqdn() by default, in settings).
"""

from __future__ import annotations

import ipaddress
import re

from engine.smtp.encode import check_helo_name
from engine.smtp.errors import LocalProtocolError

__all__ = ["helo_name_error", "helo_name_warning"]

_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def helo_name_error(name: str) -> str | None:
    """Why `name` cannot be our EHLO/HELO name (RFC 5321 §4.1.1.1: a domain, or an address
    literal such as [192.0.2.1]), or None.  Checked at start and on reload, as Postfix
    refuses to start on a bad myhostname: "mail_out.example.com" once passed and every
    connection then failed at EHLO, to every destination (issue #14, finding 8)."""
    if name.startswith("["):
        try:
            check_helo_name(name)
        except LocalProtocolError:
            return "is not a valid address literal like [192.0.2.1] or [IPv6:2001:db8::1]"
        inner = name[1:-1] if name.endswith("]") else ""
        address = inner[5:] if inner[:5].lower() == "ipv6:" else inner
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return "is not a valid address literal like [192.0.2.1] or [IPv6:2001:db8::1]"
        return None
    if len(name) > 253:
        return "is longer than 253 characters"
    labels = name.split(".")
    if any(_LDH_LABEL.fullmatch(label) is None for label in labels):
        return (
            "is not a host name: labels of letters, digits and '-' (no '_', no empty label),"
            " separated by '.'"
        )
    return None


def helo_name_warning(name: str) -> str | None:
    """A valid name that receivers will still distrust: `localhost`, or a name that is
    not fully qualified (Gmail and Microsoft score both as spam signs; RFC 5321 §4.1.1.1
    asks for the client's fully qualified domain name)."""
    if name.startswith("["):
        return None  # an address literal: valid, if unusual
    lower = name.lower()
    if lower == "localhost" or lower.startswith("localhost."):
        return f"smtp.helo_name is {name!r}: receivers expect this host's fully qualified name"
    if "." not in name:
        return f"smtp.helo_name {name!r} is not a fully qualified domain name (no dot)"
    return None
