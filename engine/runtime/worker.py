"""One worker process: a uvloop event loop that owns spool shard k.

Responsible for: wiring one shard's pipeline — intake (drops -> entries; the SMTP
listener's messages: engine.runtime.listener), the work queue,
MX resolution (an aiodns resolver created here, inside this process's loop), connection
tasks, outcomes, the delivery log and metric flushes — and the process's life: lock the
shard, recover, scan, run, drain on request, exit.
Not responsible for: other shards, cross-process limits (asks the supervisor for leases),
restarting itself (the supervisor does), or the suppression list (engine.suppress.agent:
read here by intake, written by the supervisor).

Started by the supervisor as `python -m engine.runtime.worker --shard K --fd FD`; the
first message on the control socket is the configuration.  If that socket closes (the
supervisor died) the worker stops at once, so a new supervisor never runs two workers on
one shard; the shard lock (flock on queue/<k>.lock) enforces the same on the filesystem.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import functools
import os
import random
import signal
import socket
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from engine.clock import Clock, SystemClock
from engine.config import Settings, from_dict
from engine.feedback.service import feedback_task
from engine.net.dns import AiodnsClient
from engine.net.mx import MxResolver
from engine.runtime.control import Control
from engine.runtime.delivery import Deliverer
from engine.runtime.gauges import set_domain_gauges, set_entry_gauges
from engine.runtime.inflight import InflightJournal
from engine.runtime.intake import IntakeBatch, Pickup, interrupted_take, take_batch
from engine.runtime.ipc import Channel, Message, open_channel
from engine.runtime.listener import SmtpListener
from engine.runtime.outcome import Outcomes
from engine.runtime.peers import Arbitrated, CountingResolver
from engine.runtime.startup import load_queue
from engine.runtime.tlsguard import sts_resolver
from engine.runtime.writebehind import WriteBehind
from engine.sched.queue import WorkQueue
from engine.suppress.agent import SuppressionAgent
from engine.telemetry.eventlog import EventLog
from engine.telemetry.metrics import Tally, reject_class
from spool import EntryRef, ShardQueue, Spool

__all__ = ["main"]

METRICS_INTERVAL = 0.25  # seconds: what a worker killed with -9 can lose of its counts
DOMAIN_GAUGES_EVERY = 4  # per-domain gauges go out every 4th flush (1 s): they are big
OLDEST_REFRESH = 5.0  # seconds between exact recomputations of the oldest-entry ages
# Metric flushes between two sweeps of idle per-destination state (40 x 250 ms = 10 s):
# a sweep is O(known domains); what stays between sweeps is the domains of the last 10 s.
FORGET_EVERY = 40


class Worker:
    def __init__(
        self,
        settings: Settings,
        shard_no: int,
        channel: Channel,
        clock: Clock,
        *,
        predecessor_crashed: bool = False,
        listen: Sequence[tuple[socket.socket, bool]] = (),
    ) -> None:
        self.s = settings
        self.predecessor_crashed = predecessor_crashed
        self.k = shard_no
        self.channel = channel
        self.clock = clock
        self.rng = random.Random()
        self.spool = Spool(settings.spool_path)
        self.shard: ShardQueue = self.spool.shard(shard_no)
        self.queue = WorkQueue()
        self.tally = Tally()
        self.behind = WriteBehind()
        self.log = EventLog(settings.log_path, shard_no, writer=self.behind.append)
        self.shared = Arbitrated(channel, self.tally)
        self._kick = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused: str | None = None  # why intake is paused (disk full), if it is
        self._flushes = 0
        self._oldest_at = 0.0
        journal_path = self.spool.root / "queue" / f"{shard_no}.inflight"
        self.crashed_in_flight = InflightJournal.read(journal_path)
        self.journal = InflightJournal(journal_path)
        self.dns = AiodnsClient(
            list(settings.dns_nameservers) if settings.dns_nameservers else None,
            timeout=settings.dns_timeout / 2,
            tries=2,
            deadline=settings.dns_timeout,
        )
        mx = MxResolver(
            self.dns, clock=clock.monotonic, rng=self.rng, negative_ttl=settings.dns_negative_ttl
        )
        self.sts = (
            sts_resolver(lambda: self.s, self.dns, self.tally, clock.wall)
            if settings.mta_sts
            else None
        )
        shard = self.shard
        self.suppression = SuppressionAgent(
            settings, channel.send, self.log, self.tally, clock.wall
        )

        def remove(ref: EntryRef) -> None:
            self.behind.submit(lambda: shard.remove(ref))

        self.outcomes = Outcomes(
            settings,
            shard,
            self.queue,
            self.log,
            self.tally,
            self.rng,
            remove=remove,
            settle=self.behind.wait,
            feed=self.suppression.feed.observe,
        )
        self.deliverer = Deliverer(
            settings=settings,
            shard=self.shard,
            queue=self.queue,
            resolver=CountingResolver(mx, self.tally),
            leases=self.shared.leases,
            rates=self.shared.rates,
            feed=self.shared.shaping,
            quota=self.shared.quota,
            outcomes=self.outcomes,
            tally=self.tally,
            clock=clock,
            rng=self.rng,
            kick=self._kick.set,
            journal=self.journal,
            sts=self.sts,
        )
        self.smtpd = SmtpListener(
            settings,
            shard,
            self.queue,
            self.log,
            self.tally,
            self._kick.set,
            channel,
            listen,
            gate=self.suppression.gate,  # the suppression check and List-Unsubscribe, as for drops
        )
        self.control = Control(
            shard_no=shard_no,
            queue=self.queue,
            shard=shard,
            outcomes=self.outcomes,
            log=self.log,
            tally=self.tally,
            clock=clock,
            send=channel.send,
            spawn=self._spawn,
            kick=self._kick.set,
            contend=self.deliverer.contend,
            remove=remove,
            settle=self.behind.wait,
        )

    # -- control messages ------------------------------------------------------------
    def on_message(self, msg: Message) -> None:
        kind = msg[0]
        if self.shared.on_message(msg):
            pass
        elif kind == "contend":
            self.deliverer.contend(msg[1])
        elif kind == "drain":
            self.drain()
        elif kind in ("suspensions", "directive"):
            self.control.on_message(msg)
        elif kind == "reload":
            self.reconfigure(from_dict(msg[1]))
        elif kind == "suppressed":
            self.suppression.on_message(msg)
        elif kind == "smtpd_admit":
            self.smtpd.on_message(msg)

    def reconfigure(self, settings: Settings) -> None:
        """SIGHUP (engine.runtime.reload decided what changes): policies, limits and SMTP
        settings apply to what starts from now on; open connections finish as they are.
        The delivery log is reopened (a new log.path, or a rotation's rename)."""
        self.s = settings
        self.deliverer.reconfigure(settings)
        self.outcomes.reconfigure(settings)
        self.suppression.reconfigure(settings)
        self.smtpd.reconfigure(settings)
        self.log.flush()
        self.behind.wait()  # the write-behind thread still holds the old file
        self.log.reopen(settings.log_path)
        self._kick.set()  # a raised max_connections may start connections now

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """A task the drain waits for (drain_timeout) like a connection's."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def drain(self) -> None:
        self.deliverer.drain()
        self._stop.set()
        self._kick.set()

    # -- main ---------------------------------------------------------------------------
    async def run(self) -> None:
        self.shard.recover()
        now = self.clock.wall()
        for final, reason in self.shard.quarantined:
            self.log.add("quarantined", now, reason=reason, file=final)
            self.tally.inc("volley_quarantined", "corrupt")
        interrupted = interrupted_take(self.spool, self.k)
        if interrupted:
            # Before anything is delivered: see take_batch.
            gate = self.suppression.gate
            self._apply_batch(
                take_batch(
                    self.spool, self.shard, self.k, self.s, now, noted=interrupted, gate=gate
                ),
                now,
            )
        crashed = self.crashed_in_flight if self.predecessor_crashed else set()
        load_queue(
            self.shard,
            self.queue,
            now,
            crashed=crashed,
            quarantine=functools.partial(self.outcomes.quarantine, queued=False),
            log=self.log,
        )
        await self.smtpd.start()
        self.channel.send("ready")
        self.control.started()
        loops = [
            asyncio.create_task(self._intake_loop(), name="intake"),
            asyncio.create_task(self._dispatch_loop(), name="dispatch"),
            asyncio.create_task(self._flush_loop(), name="flush"),
        ]
        # Worker 0 also turns <spool>/feedback/ into log records (engine.feedback.service),
        # and the mail to the unsubscribe mailto: address into suppressions.
        feedback = feedback_task(
            self.k,
            self.spool.root,
            self.log,
            self.tally,
            self.behind.submit,
            self.clock.wall,
            on_report=self.suppression.on_report,
            mailto=self.suppression.gate.mailto,
            classifier=self.s.bounce.classifier,
        )
        if feedback is not None:
            loops.append(asyncio.create_task(feedback, name="feedback"))
        await self._stop.wait()
        await self.smtpd.close(self.s.drain_timeout)  # 421 to idle sessions, commits done
        for t in loops:
            t.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        if self._tasks:
            _, still = await asyncio.wait(self._tasks, timeout=self.s.drain_timeout)
            for t in still:
                t.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        self._flush_metrics()
        self.log.flush()
        self.behind.close()
        self.shard.close()
        self.log.close()
        self.suppression.close()
        self.journal.close()
        if self.sts is not None:
            await self.sts.close()  # before the DNS client its lookups use
        await self.dns.close()

    async def _intake_loop(self) -> None:
        loop = asyncio.get_running_loop()
        pickup = Pickup(self.spool, self.k, self.s)
        while True:
            if pickup.idle(self.clock.wall()):
                await asyncio.sleep(self.s.intake_interval)
                continue
            try:
                batch: IntakeBatch = await loop.run_in_executor(
                    None,
                    functools.partial(take_batch, gate=self.suppression.gate),
                    self.spool,
                    self.shard,
                    self.k,
                    self.s,
                    self.clock.wall(),
                    pickup,
                )
            except Exception as e:  # e.g. incoming/ unreadable: say so, keep trying
                self.log.add("intake_error", self.clock.wall(), error=f"{type(e).__name__}: {e}")
                self.log.flush()
                await asyncio.sleep(1.0)
                continue
            now = self.clock.wall()
            self._apply_batch(batch, now)
            if batch.full and self._paused is None:
                # Once per episode: the drops stay in incoming/, delivery goes on.
                self._paused = batch.full
                self.log.add("intake_paused", now, reason=f"disk full: {batch.full}")
                self.tally.inc("volley_intake_pauses", "disk_full")
            elif not batch.full and self._paused is not None and (batch.taken or batch.rejected):
                self._paused = None
                self.log.add("intake_resumed", now)
            self.tally.set("volley_intake_paused", 1.0 if self._paused else 0.0, "disk_full")
            self.log.flush()
            if batch.taken:
                self._kick.set()
            if batch.full:
                await asyncio.sleep(1.0)  # wait for space; drops stay in incoming/
            elif not batch.more:
                await asyncio.sleep(self.s.intake_interval)

    def _apply_batch(self, batch: IntakeBatch, now: float) -> None:
        self.suppression.record(batch, now)
        for name, reason in batch.rejected:
            self.log.add("rejected", now, drop=name, reason=reason)
            self.tally.inc("volley_drops_rejected", reject_class(reason))
        for t in batch.taken:
            if self.queue.add(t.ref, t.ref.mtime, now):
                for rcpt in t.recipients:
                    self.log.add(
                        "received",
                        now,
                        id=t.ref.id,
                        msgid=t.message_id,
                        sender=t.sender,
                        rcpt=rcpt,
                        domain=t.ref.domain,
                        drop=t.drop,
                    )
                self.tally.inc("volley_received", t.ref.domain, n=len(t.recipients))

    async def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            self._kick.clear()
            now = self.clock.wall()
            for domain in self.queue.release_due(now):
                self.deliverer.work_arrived(domain)
            for domain in self.queue.ready_domains():
                policy = self.s.policy(domain)
                self.deliverer.work_arrived(domain)
                # max_connections is per (egress source, site): k sources, k times as many
                most = policy.max_connections * self.deliverer.egress.fanout(domain)
                n = self.queue.connections_wanted(domain, most, policy.max_messages_per_connection)
                for _ in range(n):
                    self.queue.domain(domain).connections += 1
                    task = asyncio.create_task(self.deliverer.run_connection(domain))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            nxt = self.queue.next_due()
            timeout = 1.0 if nxt is None else min(1.0, max(0.0, nxt - self.clock.wall()))
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
            # arrives as the inner wait completes (gh-86296), and drain does exactly that.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._kick.wait()

    async def _flush_loop(self) -> None:
        flushes = 0
        while True:
            await asyncio.sleep(METRICS_INTERVAL)
            self._flush_metrics()
            flushes += 1
            if flushes % FORGET_EVERY == 0:
                self.deliverer.forget(self.queue.forget_idle_domains(self.clock.wall()))

    def _flush_metrics(self) -> None:
        t = self.tally
        set_entry_gauges(t, self.queue)
        self._flushes += 1
        if self._flushes % DOMAIN_GAUGES_EVERY == 1:
            now = self.clock.wall()
            if now - self._oldest_at >= OLDEST_REFRESH:
                self.queue.refresh_oldest()
                self._oldest_at = now
            set_domain_gauges(t, self.queue, self.deliverer, now)
        self.shared.shaping.flush(self.clock.monotonic())
        counts, gauges, histograms = t.drain()
        self.channel.send("metrics", counts, gauges, histograms)
        self.suppression.flush()
        self.log.flush()


def lock_shard(spool: Spool, k: int) -> int:
    """Hold queue/<k>.lock for the life of the process: one worker per shard, ever."""
    fd = os.open(spool.root / "queue" / f"{k}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # blocks while a previous owner is still exiting
    return fd


async def amain(k: int, sock: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    config: asyncio.Future[dict[str, Any]] = loop.create_future()
    worker: Worker | None = None

    # A drain can arrive before the worker exists (a stop right after start: config and
    # drain in one read); remember it rather than drop it.  So too the operator
    # suspensions sent right after the config, and directives: replayed once it exists.
    early_drain = asyncio.Event()
    early: list[Message] = []
    start_info: dict[str, Any] = {}

    def on_message(msg: Message) -> None:
        if msg[0] == "config":
            if not config.done():
                config.set_result(msg[1])
                start_info.update(msg[2] if len(msg) > 2 else {})
        elif worker is not None:
            worker.on_message(msg)
        elif msg[0] == "drain":
            early_drain.set()
        elif msg[0] in ("suspensions", "directive", "reload"):
            early.append(msg)

    def on_close() -> None:
        early_drain.set()
        if not config.done():
            config.set_exception(ConnectionError("control socket closed"))
        if worker is not None:
            worker.drain()

    channel = await open_channel(sock, on_message, on_close)
    try:
        settings = from_dict(await config)
    except ConnectionError:
        return 1  # the supervisor went away before sending the configuration
    crashed = bool(start_info.get("predecessor_crashed"))
    spool = Spool(settings.spool_path)
    lock_fd = await loop.run_in_executor(None, lock_shard, spool, k)
    # The listener's sockets, bound by the supervisor (engine.smtpd.sockets): [fd, implicit TLS].
    listen = [(socket.socket(fileno=fd), bool(tls)) for fd, tls in start_info.get("smtpd", [])]
    worker = Worker(settings, k, channel, SystemClock(), predecessor_crashed=crashed, listen=listen)
    for msg in early:
        worker.on_message(msg)
    for sig in (signal.SIGTERM, signal.SIGINT):
        # The supervisor drains us over the socket; a signal straight to a worker
        # (e.g. Ctrl-C reaching the whole process group) must not cut a transaction.
        loop.add_signal_handler(sig, lambda: None)
    if early_drain.is_set():
        worker.drain()
    await worker.run()
    os.close(lock_fd)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="volley-worker")
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--fd", type=int, required=True)
    args = p.parse_args(argv)
    sock = socket.socket(fileno=args.fd)
    import uvloop  # only the worker process imports uvloop (house layering rule)

    return uvloop.run(amain(args.shard, sock))


if __name__ == "__main__":
    sys.exit(main())
