"""The CLI's side of the admin API: find it and its token from the settings, call it.

Responsible for: the API's URL from `admin.listen` (a wildcard bind is reached on
loopback), reading the token file, one JSON call, and turning every failure into one line
an operator can act on (`AdminError`): Volley not running, the API turned off, the token
unreadable (another user) or refused.
Not responsible for: what the commands print (engine.admin.commands).

Proxies are ignored on purpose: urllib would otherwise send the request, bearer token
included, to whatever `http_proxy` names, and the API is on this host.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from engine.admin.server import split_listen
from engine.admin.service import ACTION_TIMEOUT
from engine.admin.token import TokenError, read_token
from engine.config import Settings

__all__ = ["AdminClient", "AdminError", "api_url"]

# The server answers within its own timeouts (ACTION_TIMEOUT at most, plus its margin);
# wait a little longer so the caller hears the server's answer, not a client timeout.
TIMEOUT = ACTION_TIMEOUT + 30.0
_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class AdminError(Exception):
    """A call failed; the message is one line for the operator."""


def api_url(listen: str) -> str:
    """http://host:port for an `admin.listen` value (wildcards reached on loopback)."""
    host, port = split_listen(listen)
    host = _WILDCARD.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class AdminClient:
    def __init__(self, base: str, token: str, *, timeout: float = TIMEOUT) -> None:
        self.base = base
        self._token = token
        self._timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @classmethod
    def from_settings(cls, settings: Settings) -> AdminClient:
        if not settings.admin_listen:
            raise AdminError("the admin API is off (admin.listen is empty in the configuration)")
        path = settings.admin_token_path
        try:
            token = read_token(path)
        except FileNotFoundError:
            raise AdminError(
                f"no admin token at {path}: Volley creates it when it starts; is `volley run` "
                "running with this --config/--spool?"
            ) from None
        except PermissionError:
            raise AdminError(
                f"cannot read the admin token {path}: permission denied; run this as the user "
                "who runs Volley"
            ) from None
        except (OSError, TokenError) as e:
            raise AdminError(f"admin token {path}: {e}") from None
        return cls(api_url(settings.admin_listen), token)

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One API call; the decoded JSON answer of a 2xx, else AdminError."""
        url = self.base + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(req, timeout=self._timeout) as resp:
                got = json.load(resp)
        except urllib.error.HTTPError as e:
            with e:
                detail = _error_text(e.read())
            if e.code == 401:
                raise AdminError(
                    f"the admin API at {self.base} refused the token ({detail}): is this the "
                    "configuration of the Volley that runs there?"
                ) from None
            raise AdminError(f"{detail} (HTTP {e.code})") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, TimeoutError):
                raise AdminError(
                    f"no answer from the admin API at {self.base} within {self._timeout:g}s"
                ) from None
            if isinstance(reason, ConnectionRefusedError):
                raise AdminError(
                    f"cannot reach the admin API at {self.base} (connection refused): is "
                    "`volley run` running with this --config/--spool?"
                ) from None
            raise AdminError(f"cannot reach the admin API at {self.base}: {reason}") from None
        except TimeoutError:
            raise AdminError(
                f"no answer from the admin API at {self.base} within {self._timeout:g}s"
            ) from None
        except (OSError, ValueError) as e:
            raise AdminError(f"admin API at {self.base}: {e}") from None
        if not isinstance(got, dict):
            raise AdminError(f"admin API at {self.base}: unexpected answer {got!r}")
        return got


def _error_text(data: bytes) -> str:
    try:
        got = json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace").strip()[:200] or "no detail"
    if isinstance(got, dict) and isinstance(got.get("error"), str):
        return str(got["error"])
    return str(got)[:200]
