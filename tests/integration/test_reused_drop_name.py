"""Issue #14, finding 6: a second, different drop under a used name is a new message.

Entry ids were derived from the drop's name, inode, size and mtime; a second `news.eml`
with the same size and mtime (as `cp -p`, `rsync -t` or tar produce) on a reused inode
was unlinked as "already queued" and lost without a log line.  Now every drop gets new
ids (only a worker finishing its own interrupted batch reuses the ids it noted).
"""

from __future__ import annotations

import os

from tests.support.internet import message
from tests.support.net import wait_for

MTIME_NS = 1_700_000_000_000_000_000


def test_two_drops_with_one_name_and_the_same_metadata_are_both_sent(net, volley) -> None:
    (rx,) = net.domain("list.test")
    v = volley(workers=1)
    first = message("news@sender.test", ["ann@list.test"], subject="issue 1")
    second = message("news@sender.test", ["ann@list.test"], subject="issue 2")
    assert len(first) == len(second)
    incoming = v.spool / "incoming"
    drop = incoming / "news.eml"
    for data in (first, second):
        tmp = incoming / ".news.eml.tmp"
        tmp.write_bytes(data)
        os.utime(tmp, ns=(MTIME_NS, MTIME_NS))  # what `cp -p` keeps
        os.rename(tmp, drop)
        wait_for(lambda: not drop.exists(), timeout=20, message=v.log)
    wait_for(lambda: len(rx.messages) == 2, timeout=20, message=v.log)
    subjects = sorted(b"issue 2" in m.data for m in rx.messages)
    assert subjects == [False, True]
    wait_for(lambda: v.count("delivered") == 2, timeout=10, message=v.log)  # the log lags
    assert v.count("received") == 2
    assert v.stop() == 0
