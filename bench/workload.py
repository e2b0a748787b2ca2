"""The bench workload: N personalised messages over D skewed domains, reproducible from a seed.

Responsible for: the domain names and their shares (one domain ~35 %, three ~10 %, a long
tail), the messages themselves (MIME multipart/alternative text + html of ~5 KB, or small
text/plain bodies for scale mode), writing a drop the way a real producer does
(`.name.tmp`, then rename), and scale mode's fast path, `queue_directly`, which writes
spool entries as Volley's intake would have left them.
Not responsible for: DNS or receivers (bench.phases publishes `domain_names` with MX records),
or timing anything.

Same `Spec` -> byte-identical messages, in the same order, on any machine: everything
random comes from `random.Random(seed)`, and the Date header is fixed, not the wall clock.
Recipient addresses are unique per message (they carry the sequence number), so a
delivery log record or a receiver line maps back to exactly one drop.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

__all__ = [
    "SENDER",
    "Mail",
    "Spec",
    "domain_counts",
    "domain_names",
    "domain_shares",
    "drop_name",
    "generate",
    "queue_directly",
    "write_drop",
]

SENDER = "news@sender.test"
_DATE = "Thu, 26 Nov 2026 12:00:00 +0000"  # fixed: the workload must not depend on the clock
_WRAP = 72  # body line width; RFC 5322 §2.1.1 allows 998, mailers wrap near 78

_FIRST = ("Ada", "Bob", "Chloe", "Dmitri", "Elif", "Femi", "Grace", "Hiro", "Ines", "Jonas")
_LAST = ("Novak", "Okafor", "Silva", "Tanaka", "Weber", "Kowalski", "Haddad", "Larsen")
_WORDS = (
    "order shipping account offer weekly update your new price store member points discount "
    "delivery winter collection limited free return policy service customer thank you for "
    "being with us this season we picked items based on recent activity see details below"
).split()


@dataclass(frozen=True, slots=True)
class Spec:
    """What to generate. `size` is the target message size in bytes (headers included)."""

    messages: int = 20_000
    domains: int = 50
    seed: int = 1
    size: int = 5_000
    small: bool = False  # scale mode: ~300-byte text/plain bodies


@dataclass(frozen=True, slots=True)
class Mail:
    """One message: its envelope and its bytes (CRLF line endings, as on the wire)."""

    seq: int
    sender: str
    rcpt: str
    domain: str
    data: bytes


def domain_names(n: int) -> list[str]:
    """`n` destination domains under .test (RFC 6761: can never be a real domain)."""
    return [f"dom{i:03d}.test" for i in range(n)]


def domain_shares(n: int) -> list[float]:
    """Share of the messages per domain: 35 %, then 10 % x 3, then a 1/rank tail.

    Roughly a real B2C list: one big mailbox provider, a few mid-sized ones, and many
    small domains. With fewer than 5 domains the head shares are rescaled to sum to 1.
    """
    if n < 1:
        raise ValueError("need at least one domain")
    head = [0.35, 0.10, 0.10, 0.10][:n]
    tail_n = n - len(head)
    if tail_n == 0:
        total = sum(head)
        return [h / total for h in head]
    rest = 1.0 - sum(head)
    ranks = [1.0 / (i + 1) for i in range(tail_n)]
    norm = sum(ranks)
    return head + [rest * r / norm for r in ranks]


def domain_counts(messages: int, n: int) -> list[int]:
    """Exact messages per domain (largest remainder), summing to `messages`."""
    shares = domain_shares(n)
    raw = [messages * s for s in shares]
    counts = [int(x) for x in raw]
    left = messages - sum(counts)
    by_remainder = sorted(range(n), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in by_remainder[:left]:
        counts[i] += 1
    return counts


def drop_name(seq: int) -> str:
    return f"bench-{seq:07d}.eml"


def generate(spec: Spec) -> Iterator[Mail]:
    """The workload, message by message, in a seeded random domain order."""
    rng = random.Random(spec.seed)
    domains = domain_names(spec.domains)
    order = [
        d
        for d, c in zip(domains, domain_counts(spec.messages, spec.domains), strict=True)
        for _ in range(c)
    ]
    rng.shuffle(order)
    prose = _Prose(rng)
    for seq, domain in enumerate(order):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        rcpt = f"{first.lower()}.{last.lower()}.{seq}@{domain}"
        if spec.small:
            data = _small(spec, seq, rcpt, first)
        else:
            data = _mime(spec, rng, prose, seq, rcpt, first, last)
        yield Mail(seq, SENDER, rcpt, domain, data)


def _headers(spec: Spec, seq: int, rcpt: str, subject: str) -> list[str]:
    return [
        f"From: Store News <{SENDER}>",
        f"To: {rcpt}",
        f"Subject: {subject}",
        f"Date: {_DATE}",
        f"Message-ID: <b{spec.seed}.{seq}@sender.test>",
        "MIME-Version: 1.0",
    ]


def _small(spec: Spec, seq: int, rcpt: str, first: str) -> bytes:
    lines = [
        *_headers(spec, seq, rcpt, f"Hello {first}"),
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"Hello {first}, this is message {seq}.",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


class _Prose:
    """A seeded pool of wrapped prose lines; a message takes a run of them.

    Drawing every word with `rng.choice` cost ~500 µs per 5 KB message (10 s for the
    default workload); slicing a pre-built pool costs a few µs and still varies per message.
    """

    def __init__(self, rng: random.Random, lines: int = 4096) -> None:
        out: list[str] = []
        line: list[str] = []
        width = 0
        while len(out) < lines:
            w = rng.choice(_WORDS)
            if width + len(w) + 1 > _WRAP:
                out.append(" ".join(line))
                line, width = [], 0
            line.append(w)
            width += len(w) + 1
        self.lines = out

    def take(self, rng: random.Random, nbytes: int, fmt: str = "{}") -> list[str]:
        """Consecutive pool lines (wrapping around), formatted, of about `nbytes` bytes."""
        pool = self.lines
        i = rng.randrange(len(pool))
        out: list[str] = []
        total = 0
        while total < nbytes:
            text = fmt.format(pool[i % len(pool)])
            out.append(text)
            total += len(text) + 2
            i += 1
        return out


def _mime(
    spec: Spec, rng: random.Random, prose: _Prose, seq: int, rcpt: str, first: str, last: str
) -> bytes:
    boundary = f"=_b{spec.seed}_{seq}"
    account = rng.randrange(10**7, 10**8)
    points = rng.randrange(100, 50_000)
    head = [
        *_headers(spec, seq, rcpt, f"{first}, your weekly picks (account {account})"),
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
    ]
    text_head = [
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"Dear {first} {last},",
        f"you have {points} points on account {account}.",
        "",
    ]
    html_head = [
        f"--{boundary}",
        "Content-Type: text/html; charset=utf-8",
        "",
        f"<html><body><p>Dear {first} {last},</p>",
        f"<p>You have <b>{points}</b> points on account {account}.</p>",
    ]
    tail = ["</body></html>", f"--{boundary}--"]
    fixed = sum(len(x) + 2 for x in (*head, *text_head, *html_head, *tail))
    room = max(0, spec.size - fixed)
    text = prose.take(rng, room * 2 // 5)  # the html part carries markup: give it more
    html = prose.take(rng, room - sum(len(x) + 2 for x in text), "<p>{}</p>")
    lines = [*head, *text_head, *text, *html_head, *html, *tail]
    return ("\r\n".join(lines) + "\r\n").encode()


def write_drop(incoming: Path, name: str, data: bytes) -> None:
    """Write a drop the safe way: `.name.tmp` (ignored by Volley), then rename to `name`."""
    tmp = incoming / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.rename(tmp, incoming / name)


def queue_directly(spool_root: Path, mails: Iterable[Mail], shards: int) -> int:
    """Scale mode: put `mails` straight into the queue, as if Volley had taken them as drops.

    Entries are built by Volley's own intake code (parse_drop, wire_body, new_meta,
    split_by_domain, shard_of) and written with the spool API (`ShardQueue.add`, one segment
    per 1 000 entries), so they are what a restart finds. One shortcut, because 1 M entries
    must be written in minutes, not an hour: parse_drop runs on every 1 000th message only;
    the envelopes in between are that parse with this message's recipient, bytes and
    Message-ID swapped in. The workload differs only in those, and every full parse is
    compared with the swapped-in envelope, so a difference raises instead of passing.
    Entry ids are spaced 1 µs apart in message order, so the queue's FIFO order is the
    workload order; every entry is due at once. Returns the number of entries written.
    """
    from engine.drop import DropEnvelope, DropRejection, parse_drop
    from engine.runtime.intake import new_meta, shard_of, split_by_domain
    from engine.smtp.encode import wire_body
    from spool import NewEntry, Spool, entry_id

    spool = Spool(spool_root)
    spool.ensure(shards)
    queues = [spool.shard(k) for k in range(shards)]
    pending: list[list[NewEntry]] = [[] for _ in range(shards)]
    base_ns = time.time_ns()
    now = base_ns / 1e9
    written = 0
    template: DropEnvelope | None = None
    for m in mails:
        name = drop_name(m.seq)
        msgid = m.data.split(b"\r\nMessage-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
        env = None
        if template is not None:
            env = replace(template, recipients=(m.rcpt,), message=m.data, message_id=msgid)
        if template is None or m.seq % 1000 == 0:
            parsed = parse_drop(m.data, max_recipients=1000)
            if isinstance(parsed, DropRejection):
                raise ValueError(f"workload message {m.seq} is not a valid drop: {parsed.reason}")
            if env is not None and env != parsed:
                raise ValueError(f"message {m.seq}: shortcut envelope {env} != {parsed}")
            template = env = parsed
        assert env is not None
        body = wire_body(env.message)
        k = shard_of(name, shards)
        for domain, rcpts in split_by_domain(env.recipients).items():
            eid = entry_id(base_ns + m.seq * 1000, f"{name}@{domain}".encode())
            meta = new_meta(env, rcpts, domain, now, name)
            pending[k].append(NewEntry(eid, domain, meta, body, now))
            written += 1
        if len(pending[k]) >= 1000:
            queues[k].add(pending[k])
            pending[k] = []
    for k, items in enumerate(pending):
        if items:
            queues[k].add(items)
    for q in queues:
        q.close()
    return written
