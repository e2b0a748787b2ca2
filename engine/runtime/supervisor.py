"""The supervisor: the `volley run` process that starts, watches and stops the workers.

Responsible for: preparing the spool (directories; moving entries of shards that no
longer exist after a change of `workers`), binding the SMTP listener's sockets and
handing each worker its own (engine.smtpd.sockets), counting listener sessions per client
address across workers (engine.smtpd.clients), starting N worker processes, restarting one
that dies (with backoff), arbitrating connection slots and send rates per site across
them (engine.runtime.arbiter), exporting every worker's metrics on one /metrics endpoint, hosting
queue control (engine.admin: the admin API, operator suspensions, directives routed to
the workers), the suppression list's one writer and the unsubscribe endpoint
(engine.suppress.runner), and a clean stop on SIGTERM/SIGINT: workers drain, then the
supervisor exits 0.
Not responsible for: any mail handling; it never touches a message (Postfix master(8)).

Workers are fresh interpreters (`python -P -m engine.runtime.worker`, engine.runtime.spawn:
never importing from the working directory), not forks of this process: forking from
inside a running event loop duplicates its epoll state and buffered writes
(python/asyncio#347), and a worker's aiodns resolver and sockets must be created in the
worker anyway.

Start-up: "running" is printed once every worker has said "ready" (its queue is scanned
and it takes drops).  A worker that exits before it is ready during start-up is not
restarted: `volley run` prints its error and exits 1 (a worker that cannot start would
only fail again, and a restart loop under "running" hides it).  After start-up a worker
that dies is restarted with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import start_http_server

from engine.admin.runner import Admin, AdminStartError
from engine.config import ConfigError, Settings, helo_name_warning, parse_address
from engine.runtime.arbiter import Arbiter
from engine.runtime.ipc import Channel, Message, open_channel
from engine.runtime.listener import startup_problem
from engine.runtime.reload import plan_reload
from engine.runtime.shaping_service import ShapingService
from engine.runtime.spawn import StderrTail, relay, worker_argv
from engine.runtime.warmup import QuotaDbError, WarmupQuota
from engine.smtpd.clients import ClientTable
from engine.smtpd.sockets import ListenError, Listening, bind_all, close_all, for_worker
from engine.suppress.runner import Suppression, SuppressStartError
from engine.telemetry.eventlog import repair_tail
from engine.telemetry.export import Exporter
from spool import Spool
from spool.instance import SpoolInUse, lock_instance

__all__ = ["Supervisor", "run"]

RESTART_MIN = 0.5  # seconds before restarting a worker that died
RESTART_MAX = 30.0  # backoff doubles up to this
HEALTHY_AFTER = 30.0  # a worker that ran this long resets the backoff
READY_NOTICE = 30.0  # seconds between "still waiting for worker k" notices at start-up
SPOOL_SAMPLE_INTERVAL = 5.0  # seconds between statvfs samples of the spool filesystem


@dataclass(slots=True)
class WorkerHandle:
    k: int
    proc: asyncio.subprocess.Process | None = None
    channel: Channel | None = None
    started: float = 0.0
    backoff: float = RESTART_MIN
    restarts: int = 0
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)
    ready: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    stderr: StderrTail = field(default_factory=StderrTail, repr=False)
    relay: asyncio.Task[None] | None = field(default=None, repr=False)


def _nothing() -> None:
    """A worker's channel closing is reported by its process exit (_watch)."""


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        version: str = "0",
        reload: Callable[[], Settings] | None = None,
    ) -> None:
        """`reload()` reads the configuration again (SIGHUP); raises ConfigError."""
        self.s = settings
        self._reload = reload
        self._stop_now = asyncio.Event()  # a second SIGINT/SIGTERM: do not wait for drains
        self._stop_asked = 0.0
        self.spool = Spool(settings.spool_path)
        self.arbiter = Arbiter(self._send)
        self.exporter = Exporter(top_domains=settings.metrics_top_domains, version=version)
        self.workers: dict[int, WorkerHandle] = {}
        self.stopping = asyncio.Event()
        self.starting = True  # until every worker of the first start is ready
        self.start_failed: list[WorkerHandle] = []  # exited before "ready" during start-up
        self._start_failure = asyncio.Event()
        self.admin: Admin | None = None
        self.suppression: Suppression | None = None
        self.shaping: ShapingService | None = None
        self.smtpd: list[Listening] = []  # the listener's sockets, per address and worker
        self.clients = ClientTable()  # the listener's sessions per client address
        self.warmup = WarmupQuota(self.arbiter, self.exporter)

    async def run(self) -> int:
        """Own the spool (one instance per spool), run until stopped; the exit status."""
        try:
            lock = lock_instance(self.s.spool_path)
        except SpoolInUse as e:
            print(f"volley: {e}", file=sys.stderr, flush=True)
            return 1
        try:
            return await self._run()
        finally:
            close_all(self.smtpd)
            os.close(lock)

    async def _run(self) -> int:
        warning = helo_name_warning(self.s.helo_name)
        if warning:
            print(f"volley: warning: {warning}", file=sys.stderr, flush=True)
        host, port = parse_address(self.s.metrics_listen, names=frozenset({"localhost"}))
        try:
            start_http_server(port, addr=host, registry=self.exporter.registry)
        except OSError as e:
            print(f"volley: metrics.listen {self.s.metrics_listen}: {e.strerror}", file=sys.stderr)
            return 2
        problem = startup_problem(self.s)
        if problem is not None:
            print(f"volley: {problem}", file=sys.stderr)
            return 2
        try:
            self.smtpd = bind_all(self.s.smtpd, self.s.workers)
        except ListenError as e:
            print(f"volley: {e}", file=sys.stderr)
            return 2
        self.spool.ensure(self.s.workers)
        cut = repair_tail(self.s.log_path)
        if cut:
            print(
                f"volley: removed a torn last line ({cut} bytes) from {self.s.log_path}",
                file=sys.stderr,
            )
        moved = self.spool.rehome(self.s.workers)
        if moved:
            print(f"volley: moved {moved} entries from retired shards", file=sys.stderr)
        try:
            self.warmup.open(self.s)
        except QuotaDbError as e:
            print(f"volley: {e}", file=sys.stderr)
            return 2
        try:
            self.suppression = await Suppression.open(self.s, self.exporter.count)
            self.admin = Admin.open(
                self.s,
                self.exporter,
                send=self._send,
                live=self._live,
                routes=self.suppression.routes(),
            )
        except (AdminStartError, SuppressStartError) as e:
            print(f"volley: {e}", file=sys.stderr)
            if self.suppression is not None:
                await self.suppression.close()
            return 2
        self.shaping = ShapingService.open(
            self.s, self.exporter, self._broadcast, self.arbiter.in_use
        )
        shaping_ticks = asyncio.create_task(self.shaping.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        for k in range(self.s.workers):
            h = self.workers[k] = WorkerHandle(k)
            await self._start(h)
        if not await self._started():
            self.stopping.set()  # the other workers' exits are no crash to restart
            await self._stop_all()
            await self._close_services()
            return 1 if self.start_failed else 0
        self.starting = False
        smtp = ", ".join(f"{b.address}{' (TLS)' if b.implicit_tls else ''}" for b in self.smtpd)
        print(
            f"volley: running {self.s.workers} workers; spool {self.s.spool_path}, "
            f"metrics http://{self.s.metrics_listen}/metrics"
            + (f", SMTP on {smtp}" if smtp else ""),
            file=sys.stderr,
            flush=True,
        )
        sampler = asyncio.create_task(self._sample_spool())
        await self.stopping.wait()
        sampler.cancel()
        shaping_ticks.cancel()
        await self._stop_all()
        await self._close_services()
        if self._stop_asked:
            took = time.monotonic() - self._stop_asked
            print(f"volley: stopped ({took:.1f} s after the stop was asked)", file=sys.stderr)
        return 0

    async def _close_services(self) -> None:
        if self.shaping is not None:
            self.shaping.close()
        self.warmup.close()
        if self.admin is not None:
            await self.admin.close()
        if self.suppression is not None:
            await self.suppression.close()

    # -- signals ---------------------------------------------------------------------------
    def _on_stop_signal(self, name: str) -> None:
        """SIGINT/SIGTERM: drain (in-flight transactions finish); a second one: at once."""
        if not self.stopping.is_set():
            self._stop_asked = time.monotonic()
            inflight = int(self.exporter.gauge_sum("volley_queue_entries", "inflight"))
            print(
                f"volley: {name}: stopping; the workers finish their {inflight} entries in "
                f"flight (at most {self.s.drain_timeout:g} s); {name} again stops at once "
                "(in-flight mail stays queued)",
                file=sys.stderr,
                flush=True,
            )
            self.stopping.set()
        elif not self._stop_now.is_set():
            print(
                f"volley: {name} again: stopping at once; mail in flight stays queued and is "
                "sent after the next start",
                file=sys.stderr,
                flush=True,
            )
            self._stop_now.set()

    def _on_hup(self) -> None:
        """SIGHUP: read the configuration again; apply what can change while running
        (engine.runtime.reload), refuse a configuration that does not validate."""
        if self._reload is None or self.stopping.is_set():
            return
        try:
            new = self._reload()
        except ConfigError as e:
            print(
                f"volley: SIGHUP: reload refused, the running configuration stays: {e}",
                file=sys.stderr,
                flush=True,
            )
            return
        try:
            plan = plan_reload(self.s, new)
        except ConfigError as e:  # e.g. a certificate removed under implicit_tls_listen
            print(
                f"volley: SIGHUP: reload refused, the running configuration stays: {e}",
                file=sys.stderr,
                flush=True,
            )
            return
        self.s = plan.settings
        for h in self.workers.values():
            if h.channel is not None:
                h.channel.send("reload", self.s.to_dict())
        if self.admin is not None:
            self.admin.service.reopen_log(self.s.log_path)
        if self.suppression is not None:
            self.suppression.reconfigure(self.s)
        if self.shaping is not None:
            self.shaping.reconfigure(self.s)
            self.shaping.reopen_log()
        try:
            self.warmup.open(self.s)
        except QuotaDbError as e:  # the quota is then counted in memory only
            print(f"volley: SIGHUP: {e}", file=sys.stderr, flush=True)
        applied = ", ".join(plan.applied) if plan.applied else "nothing changed"
        print(f"volley: SIGHUP: configuration reloaded: {applied}", file=sys.stderr, flush=True)
        if plan.at_restart:
            print(
                f"volley: SIGHUP: {', '.join(plan.at_restart)} changed too: "
                "applies at the next start",
                file=sys.stderr,
                flush=True,
            )
        warning = helo_name_warning(self.s.helo_name)
        if warning and "smtp.helo_name" in plan.applied:
            print(f"volley: warning: {warning}", file=sys.stderr, flush=True)

    async def _sample_spool(self) -> None:
        """Spool filesystem usage for the "disk over 90 %" alert, and the warm-up quota
        gauges (a new UTC day starts afresh), every 5 s."""
        while True:
            self.warmup.gauges()
            st = os.statvfs(self.s.spool_path)
            total = st.f_blocks * st.f_frsize
            free = st.f_bavail * st.f_frsize
            self.exporter.set_spool_usage(total - st.f_bfree * st.f_frsize, free, total)
            await asyncio.sleep(SPOOL_SAMPLE_INTERVAL)

    async def _started(self) -> bool:
        """Wait until every worker has said "ready": True.  False when one exited before
        it was ready (reported here) or a stop was asked for meanwhile.

        No time limit: a worker scanning a huge queue is slow, not broken, and "running"
        before it is ready would be untrue; a notice every READY_NOTICE s says who is late.
        """
        ready = asyncio.ensure_future(
            asyncio.gather(*(h.ready.wait() for h in self.workers.values()))
        )
        failed = asyncio.create_task(self._start_failure.wait())
        stop = asyncio.create_task(self.stopping.wait())
        waited = 0.0
        try:
            while True:
                done, _ = await asyncio.wait(
                    (ready, failed, stop), timeout=READY_NOTICE, return_when=asyncio.FIRST_COMPLETED
                )
                if failed in done:
                    for h in self.start_failed:
                        code = h.proc.returncode if h.proc is not None else None
                        why = h.stderr.error() or "no error output"
                        print(
                            f"volley: worker {h.k} could not start (exit status {code}): {why}",
                            file=sys.stderr,
                            flush=True,
                        )
                    return False
                if stop in done:
                    return False
                if ready in done:
                    return True
                waited += READY_NOTICE
                late = [h.k for h in self.workers.values() if not h.ready.is_set()]
                print(
                    f"volley: still waiting for worker(s) {', '.join(map(str, late))} to "
                    f"finish the start-up scan of their queues ({waited:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            for t in (ready, failed, stop):
                t.cancel()
            await asyncio.gather(ready, failed, stop, return_exceptions=True)

    # -- worker processes ------------------------------------------------------------
    async def _start(self, h: WorkerHandle, *, predecessor_crashed: bool = False) -> None:
        parent, child = socket.socketpair()
        listen = for_worker(self.smtpd, h.k)
        try:
            h.proc = await asyncio.create_subprocess_exec(
                *worker_argv(h.k, child.fileno()),
                pass_fds=(child.fileno(), *(sock.fileno() for sock, _ in listen)),
                start_new_session=True,  # Ctrl-C goes to us; we drain the workers
                stderr=asyncio.subprocess.PIPE,  # relayed; its tail reports a failed start
            )
        finally:
            child.close()
        assert h.proc.stderr is not None
        h.stderr = StderrTail()
        h.relay = asyncio.create_task(
            relay(h.proc.stderr, h.stderr, getattr(sys.stderr, "buffer", None))
        )
        h.channel = await open_channel(parent, functools.partial(self._on_message, h.k), _nothing)
        start_info = {
            "predecessor_crashed": predecessor_crashed,
            "smtpd": [[sock.fileno(), tls] for sock, tls in listen],
        }
        h.channel.send("config", self.s.to_dict(), start_info)
        if self.admin is not None:
            h.channel.send("suspensions", self.admin.service.suspension_message())
        if self.shaping is not None:
            h.channel.send(*self.shaping.table_message())
        h.started = time.monotonic()
        self._set_alive()
        h.watcher = asyncio.create_task(self._watch(h))

    async def _watch(self, h: WorkerHandle) -> None:
        assert h.proc is not None
        code = await h.proc.wait()
        if h.relay is not None:  # the rest of its stderr: the tail must hold its error
            await asyncio.wait((h.relay,), timeout=1.0)
        self._worker_gone(h)
        if self.stopping.is_set():
            return
        if self.starting and not h.ready.is_set():
            self.start_failed.append(h)
            self._start_failure.set()
            return
        print(
            f"volley: worker {h.k} exited with status {code}; restarting",
            file=sys.stderr,
            flush=True,
        )
        if time.monotonic() - h.started > HEALTHY_AFTER:
            h.backoff = RESTART_MIN
        delay, h.backoff = h.backoff, min(RESTART_MAX, h.backoff * 2)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self.stopping.wait()
        if not self.stopping.is_set():
            h.restarts += 1
            self.exporter.count("volley_worker_restarts")
            # It died while we lived: the new worker counts a crash against what its
            # predecessor was delivering (poison-message quarantine).
            await self._start(h, predecessor_crashed=True)

    def _worker_gone(self, h: WorkerHandle) -> None:
        if h.channel is not None:
            h.channel.close()
            h.channel = None
        self.arbiter.worker_gone(h.k)
        self.clients.drop_worker(h.k)
        if self.admin is not None:
            self.admin.service.worker_gone(h.k)
        self.exporter.worker_gone(h.k)
        self._set_alive()

    def _set_alive(self) -> None:
        alive = sum(
            1 for h in self.workers.values() if h.proc is not None and h.proc.returncode is None
        )
        self.exporter.workers_alive.set(alive)

    async def _stop_all(self) -> None:
        for h in self.workers.values():
            if h.channel is not None:
                h.channel.send("drain")
        procs = [h.proc for h in self.workers.values() if h.proc is not None]
        waits = [asyncio.create_task(p.wait()) for p in procs]
        if waits:
            # Every worker gone, or a second SIGINT/SIGTERM, or the drain's time is up.
            exited: asyncio.Future[Any] = asyncio.gather(*waits)
            now: asyncio.Future[Any] = asyncio.ensure_future(self._stop_now.wait())
            await asyncio.wait(
                {exited, now},
                timeout=self.s.drain_timeout + 5.0,
                return_when=asyncio.FIRST_COMPLETED,
            )
            now.cancel()
            for p in procs:
                if p.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()  # in-flight mail stays queued: at-least-once
            await exited
        watchers = [h.watcher for h in self.workers.values() if h.watcher is not None]
        await asyncio.gather(*watchers, return_exceptions=True)

    # -- control messages ------------------------------------------------------------
    def _live(self) -> list[int]:
        return [k for k, h in self.workers.items() if h.channel is not None]

    def _broadcast(self, *msg: object) -> None:
        for h in self.workers.values():
            if h.channel is not None:
                h.channel.send(*msg)

    def _send(self, k: int, *msg: object) -> None:
        h = self.workers.get(k)
        if h is not None and h.channel is not None:
            h.channel.send(*msg)

    def _on_message(self, k: int, msg: Message) -> None:
        kind = msg[0]
        if kind in Arbiter.KINDS:
            self.arbiter.on_message(k, msg)
            if kind in ("quota", "quota_back"):
                self.warmup.gauges()
        elif kind == "shaping" and self.shaping is not None:
            self.shaping.on_report(msg)
        elif kind == "metrics":
            self.exporter.apply(k, msg[1], msg[2], msg[3])
        elif kind == "smtpd_open":
            _, req, client, limit = msg
            self._send(k, "smtpd_admit", req, self.clients.open(client, k, int(limit)))
        elif kind == "smtpd_close":
            self.clients.close(msg[1], k)
        elif kind == "ready":
            self.workers[k].ready.set()
        elif kind == "reply" and self.admin is not None:
            self.admin.service.on_reply(k, msg[1], msg[2])
        elif self.suppression is not None:
            self.suppression.on_message(msg, functools.partial(self._send, k))


def run(
    settings: Settings, version: str = "0", reload: Callable[[], Settings] | None = None
) -> int:
    import uvloop

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return uvloop.run(Supervisor(settings, version, reload).run())
