"""Where things live under the spool root, and what an entry's file name looks like.

Responsible for: the directory names, the paths of shard directories, and the entry name
grammar `<id>@<domain>` (build, validate, parse), which names entries inside segments, in
the removal journal, in corrupt/ and in logs. Like Postfix's mail_queue.c, this is the
one place that knows the shape of the tree:

    incoming/      producers drop *.eml here; names starting with "." are in-progress writes
    rejected/      drops that could not be taken, each with <name>.reason beside it
    corrupt/       entries (or whole segments) that failed to decode, each with <name>.reason
    queue/<k>/     entries owned by worker shard k, in segments (spool.shard, spool.segment)
    tmp/<k>/       shard k's temporary files (emptied at worker start)
    feedback/      messages that came back to a bounce domain (DSNs, complaints), each one
                   file until processed; feedback/rejected/ keeps the unreadable ones
                   with <name>.reason (the engine's feedback package reads and writes them)

Not responsible for: any I/O beyond listing the shard numbers that exist (`store` and
`atomic` do the reading, writing and moving), or for deciding which shard owns a domain.

Invariants: an entry name is pure ASCII from `[0-9a-f@a-z.-]`, never starts with ".", never
contains "/", and leaves room for a collision suffix plus ".reason" within NAME_MAX (255
bytes), so it is safe to use verbatim in every directory of the tree.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from spool.ids import ID_LENGTH, is_entry_id

__all__ = [
    "CORRUPT",
    "DROP_SUFFIX",
    "FEEDBACK",
    "INCOMING",
    "MAX_DOMAIN_LENGTH",
    "NAME_MAX",
    "QUEUE",
    "REASON_SUFFIX",
    "REJECTED",
    "TMP",
    "EntryRef",
    "Layout",
    "check_domain",
    "check_plain_name",
    "domain_of_entry",
    "entry_name",
    "is_drop_name",
    "reason_name",
]

INCOMING = "incoming"
REJECTED = "rejected"
CORRUPT = "corrupt"
QUEUE = "queue"
TMP = "tmp"
FEEDBACK = "feedback"
REASON_SUFFIX = ".reason"

# Linux NAME_MAX (ext4, xfs, tmpfs) in bytes.
NAME_MAX = 255

# DNS allows 253 characters, but `<29-char id>@` + 253 + ".reason" is 290 bytes, over
# NAME_MAX. 200 leaves 18 bytes for a collision suffix and ".reason" when the entry is
# quarantined; real destination domains are far shorter (the longest in public suffix
# registries are under 70 characters).
MAX_DOMAIN_LENGTH = 200

_DOMAIN_RE = re.compile(r"[a-z0-9-][a-z0-9.-]*")
_SHARD_RE = re.compile(r"0|[1-9][0-9]*")


def check_domain(domain: str) -> None:
    """Raise ValueError unless `domain` is safe as the domain half of an entry name.

    The engine passes the lower-case ASCII (IDNA) form; anything outside `[a-z0-9.-]`, a
    leading ".", an empty name or one over MAX_DOMAIN_LENGTH is refused, so an entry name
    can never be a dot file, a path or too long for the file system.
    """
    if not 0 < len(domain) <= MAX_DOMAIN_LENGTH:
        raise ValueError(f"domain length must be 1..{MAX_DOMAIN_LENGTH}: {domain!r}")
    if _DOMAIN_RE.fullmatch(domain) is None:
        raise ValueError(
            f"domain must be lower-case ASCII [a-z0-9.-], not starting with '.': {domain!r}"
        )


def entry_name(entry_id: str, domain: str) -> str:
    """Return `<id>@<domain>`, raising ValueError if either half is malformed."""
    if not is_entry_id(entry_id):
        raise ValueError(f"not a spool id: {entry_id!r}")
    check_domain(domain)
    return f"{entry_id}@{domain}"


@dataclass(frozen=True, slots=True)
class EntryRef:
    """A queued entry: its name `<id>@<domain>`, its domain, and the next attempt time it
    had when this ref was made (epoch seconds). `id` is derived from the name rather than
    stored: with 1 M entries queued a second string per entry cost ~80 MB."""

    name: str
    domain: str
    mtime: float

    @property
    def id(self) -> str:
        return self.name[:ID_LENGTH]


def domain_of_entry(name: str) -> str:
    """The destination domain of an entry name `<id>@<domain>` (a name this spool made:
    a slice, no validation; the hot paths ask it per entry)."""
    return name[ID_LENGTH + 1 :]


def check_plain_name(name: str) -> None:
    """Refuse names that would escape their directory (ValueError)."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"not a plain file name: {name!r}")


DROP_SUFFIX = ".eml"


def is_drop_name(name: str) -> bool:
    """True if `name` in incoming/ is a finished drop to take: `*.eml` (any case), not
    starting with ".".

    Names starting with "." are writes in progress (writers create `.name.tmp` and
    rename).  Anything else (`notes.txt`, `x.tmp`, an editor's backup `news.eml~`) is
    left alone: it was once taken and sent although the README says `*.eml`.
    """
    return not name.startswith(".") and name[-4:].lower() == DROP_SUFFIX


def reason_name(name: str) -> str:
    """Name of the text file that explains why `name` was rejected or quarantined."""
    return name + REASON_SUFFIX


@dataclass(frozen=True, slots=True)
class Layout:
    """The paths of one spool tree (pure: building one touches no disk)."""

    root: Path

    @property
    def incoming(self) -> Path:
        return self.root / INCOMING

    @property
    def rejected(self) -> Path:
        return self.root / REJECTED

    @property
    def corrupt(self) -> Path:
        return self.root / CORRUPT

    @property
    def feedback(self) -> Path:
        return self.root / FEEDBACK

    @property
    def feedback_rejected(self) -> Path:
        return self.root / FEEDBACK / REJECTED

    @property
    def queue_root(self) -> Path:
        return self.root / QUEUE

    @property
    def tmp_root(self) -> Path:
        return self.root / TMP

    def queue(self, shard: int) -> Path:
        """queue/<shard>: the entries owned by worker shard `shard`."""
        return self.queue_root / _shard_dir(shard)

    def tmp(self, shard: int) -> Path:
        """tmp/<shard>: where shard `shard` writes files before moving them into place."""
        return self.tmp_root / _shard_dir(shard)

    def all_dirs(self, shards: int) -> list[Path]:
        """Every directory of a tree with `shards` worker shards, parents first."""
        if shards < 1:
            raise ValueError(f"shards must be >= 1, not {shards}")
        dirs = [self.incoming, self.rejected, self.corrupt, self.queue_root, self.tmp_root]
        dirs += [self.feedback, self.feedback_rejected]
        dirs += [self.queue(k) for k in range(shards)]
        dirs += [self.tmp(k) for k in range(shards)]
        return dirs

    def existing_shards(self, top: Path) -> list[int]:
        """Shard numbers that have a directory under `top` (queue/ or tmp/), ascending.

        Names that are not plain decimal numbers ("01", "x", files) are ignored: they are
        not ours. A missing `top` means no shards.
        """
        try:
            entries = list(os.scandir(top))
        except FileNotFoundError:
            return []
        shards = [
            int(e.name)
            for e in entries
            if _SHARD_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
        ]
        return sorted(shards)


def _shard_dir(shard: int) -> str:
    if shard < 0:
        raise ValueError(f"shard must be >= 0, not {shard}")
    return str(shard)
