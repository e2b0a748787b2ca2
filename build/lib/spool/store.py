"""The spool as the engine sees it: a tree of drops and per-shard queues of entries.

Responsible for: the operations on the tree laid out in `spool.layout`, each with its
durability stated in its docstring: taking and rejecting producer drops, handing out the
per-shard queue of entries that a single worker owns (`ShardQueue`, in spool.shard: one
object per shard and process), and moving entries between shards when the worker count
changes (`rehome`).

Not responsible for: what meta means, retry policy, choosing a shard for a domain, or
locking. Each `queue/<k>` and `tmp/<k>` has exactly one writer, worker k (Mailman hash
slices); incoming/ is read by whoever the engine makes the intake. `Spool.rehome` must run
while no worker runs. Never imports `engine`.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from spool import atomic
from spool.errors import CorruptEntry
from spool.layout import Layout, check_plain_name, is_drop_name
from spool.shard import EntryRef, NewEntry, ShardQueue, empty_dir, move_with_reason

__all__ = ["EntryRef", "NewEntry", "ShardQueue", "Spool"]

_REHOME_BATCH = 256  # entries per segment written into the new shard


class Spool:
    """One spool tree: the shared directories, and a `ShardQueue` per worker shard."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._layout = Layout(Path(root))
        self._shards: dict[int, ShardQueue] = {}

    @property
    def layout(self) -> Layout:
        return self._layout

    @property
    def root(self) -> Path:
        return self._layout.root

    @property
    def incoming(self) -> Path:
        return self._layout.incoming

    @property
    def rejected(self) -> Path:
        return self._layout.rejected

    @property
    def corrupt(self) -> Path:
        return self._layout.corrupt

    def ensure(self, shards: int) -> None:
        """Create every directory of a tree with `shards` worker shards (mkdir -p).

        Not fsynced: directories are created once at install or start, before any entry
        exists, and a lost directory is recreated at the next start.
        """
        for path in self._layout.all_dirs(shards):
            path.mkdir(parents=True, exist_ok=True)

    def shard(self, k: int) -> ShardQueue:
        """The queue of worker shard `k` (its directories must exist: see `ensure`).

        Always the same object for a given `k`: a shard's index and its segment numbering
        live in it, and two objects writing one directory would clash."""
        q = self._shards.get(k)
        if q is None:
            q = self._shards[k] = ShardQueue(self._layout, k)
        return q

    def incoming_names(self) -> list[str]:
        """Names of the finished drops in incoming/, sorted.

        Only `*.eml` names not starting with "." (spool.layout.is_drop_name). Sorted because
        readdir order on ext4 is hash order: sorting gives a deterministic order to take
        drops in (reproducible logs and tests), and FIFO for producers that name drops by
        time, as maildir writers do. It is cheap next to taking a drop (an open, a read and
        a share of an fsync, 100+ µs each): sorting 100k shuffled 35-character names takes
        about 40 ms here.
        """
        with os.scandir(self._layout.incoming) as it:
            names = [e.name for e in it if is_drop_name(e.name)]
        names.sort()
        return names

    def reject_drop(self, name: str, reason: str) -> str:
        """Move incoming/<name> to rejected/ with a `.reason` file beside it; return the
        final name in rejected/.

        Whatever `name` is (file, symlink, FIFO, directory) it is moved, never opened or
        followed: a symlink to /etc/passwd moves the link, the target is not touched. An
        existing rejected/<name> is never overwritten: the drop gets `name.1`, `name.2`...
        (and long names are cut so that `<final>.reason` fits NAME_MAX). Durable on
        return: the reason is written atomically, then rejected/ and incoming/ are fsynced.
        Raises FileNotFoundError if the drop is gone.
        """
        check_plain_name(name)
        return move_with_reason(self._layout.incoming / name, self._layout.rejected, name, reason)

    def consume_drops(self, names: Sequence[str]) -> None:
        """Unlink incoming/<name> for each name, then fsync incoming/ once.

        Call it only once the entries made from these drops are durable (`add` returned):
        a crash before the fsync brings the drops back, and re-taking them yields the same
        entry names (spool.ids), which `add` reports as already queued. A drop that is
        already gone is fine.
        """
        for name in names:
            check_plain_name(name)
        if not names:
            return
        # Names relative to one directory fd: building a pathlib path per drop was ~1 % of
        # all CPU in the bench (PurePath.__truediv__ + __fspath__ for 20 000 drops).
        fd = os.open(self._layout.incoming, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name in names:
                try:
                    os.unlink(name, dir_fd=fd)
                except FileNotFoundError:
                    pass
            atomic.fsync_fd(fd)
        finally:
            os.close(fd)

    def rehome(self, shards: int) -> int:
        """Move every live entry of queue/<k> for k >= `shards` into queue/<k % shards>, and
        return how many moved. For a change of worker count; run it before workers start.

        Entries keep their name, content and next attempt. The target's segments are
        durable before the retired directory is removed, so a crash leaves an entry in
        both places, never in neither; the next rehome finds it already live in the target
        and keeps the target's version (at worst a duplicate delivery, never a loss).
        Damaged segments of a retired shard go to corrupt/ with a reason, as at any start.
        Emptied queue/<k> and tmp/<k> of the retired shards are removed.
        """
        if shards < 1:
            raise ValueError(f"shards must be >= 1, not {shards}")
        layout = self._layout
        moved = 0
        for k in layout.existing_shards(layout.queue_root):
            if k < shards:
                continue
            source = self.shard(k)
            target = self.shard(k % shards)
            layout.queue(k % shards).mkdir(parents=True, exist_ok=True)
            layout.tmp(k % shards).mkdir(parents=True, exist_ok=True)
            source.recover()
            refs = source.scan()
            for i in range(0, len(refs), _REHOME_BATCH):
                batch: list[NewEntry] = []
                for ref in refs[i : i + _REHOME_BATCH]:
                    try:
                        meta, body = source.load(ref)
                    except CorruptEntry as e:
                        source.quarantine(ref, f"rehome: cannot decode spool entry: {e.reason}")
                        continue
                    batch.append(NewEntry(ref.id, ref.domain, meta, body, ref.mtime))
                before = target.count()
                target.add(batch)
                moved += target.count() - before
            source.close()
            del self._shards[k]
            shutil.rmtree(layout.queue(k))
            atomic.fsync_dir(layout.queue_root)
        for q in self._shards.values():  # the workers own them from here on
            q.close()
        self._shards.clear()
        for k in layout.existing_shards(layout.tmp_root):
            if k >= shards:
                empty_dir(layout.tmp(k))  # garbage by definition: nobody writes there now
                _remove_dir_if_empty(layout.tmp(k))
        return moved


def _remove_dir_if_empty(path: Path) -> None:
    try:
        os.rmdir(path)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
            raise
