"""The supervisor's warm-up quota: where it is kept and what /metrics says of it.

Responsible for: opening `<spool>/egress.db` (engine.runtime.egressdb) once some egress
source has a warm-up schedule (at start, and at a reload that adds one) and handing it to
the arbiter, which grants the quota; setting the quota gauges (used and left today per
source in warm-up); closing the file.
Not responsible for: granting (engine.runtime.arbiter over engine.shaping.quota) or the
schedule (engine.shaping.egress).
"""

from __future__ import annotations

import time

from engine.config import Settings
from engine.runtime.arbiter import Arbiter
from engine.runtime.egressdb import QuotaDb, QuotaDbError
from engine.shaping.egress import quota_rows
from engine.telemetry.export import Exporter

__all__ = ["QuotaDbError", "WarmupQuota"]


class WarmupQuota:
    def __init__(self, arbiter: Arbiter, exporter: Exporter) -> None:
        self._arbiter = arbiter
        self._exporter = exporter
        self._s: Settings | None = None
        self.db: QuotaDb | None = None  # <spool>/egress.db, once a source warms up

    def open(self, settings: Settings) -> None:
        """The quota survives restarts once a source has a warm-up schedule; without one
        no file is made.  Raises QuotaDbError (the caller says it in one line)."""
        self._s = settings
        if self.db is None and any(s.warmup for s in settings.egress.sources.values()):
            self.db = QuotaDb.open(settings.spool_path, time.time())
            self._arbiter.quota = self.db
        self.gauges()

    def gauges(self) -> None:
        if self._s is None:
            return
        rows = quota_rows(self._s.egress, self._arbiter.quota.used, time.time())
        self._exporter.set_egress_quota((r.source, r.used, r.left) for r in rows)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
