"""How many listener sessions each client address has open, over all workers.

Responsible for: the per-client-address concurrent connection limit
(`smtpd.max_connections_per_client`), kept by the supervisor, which every worker asks
before greeting a client outside relay_networks (Postfix's anvil(8) does this for its
smtpd processes); forgetting a worker's sessions when it dies.
Not responsible for: asking (engine.runtime.listener.ClientGate), exempting trusted
clients (engine.smtpd.server), or refusing (the session sends 421).

Pure: no I/O.
"""

from __future__ import annotations

__all__ = ["ClientTable"]


class ClientTable:
    def __init__(self) -> None:
        self._open: dict[str, dict[int, int]] = {}  # client -> worker -> sessions

    def count(self, client: str) -> int:
        return sum(self._open.get(client, {}).values())

    def open(self, client: str, worker: int, limit: int) -> bool:
        """Count one more session of `client` on `worker` if that stays within `limit`."""
        if self.count(client) >= limit:
            return False
        per = self._open.setdefault(client, {})
        per[worker] = per.get(worker, 0) + 1
        return True

    def close(self, client: str, worker: int) -> None:
        per = self._open.get(client)
        if per is None or worker not in per:
            return
        per[worker] -= 1
        if per[worker] <= 0:
            del per[worker]
        if not per:
            del self._open[client]

    def drop_worker(self, worker: int) -> None:
        """The worker is gone, and with it every session it had."""
        for client in list(self._open):
            per = self._open[client]
            per.pop(worker, None)
            if not per:
                del self._open[client]

    def __len__(self) -> int:
        return len(self._open)
