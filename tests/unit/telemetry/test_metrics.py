"""engine.telemetry.metrics: worker tallies, the supervisor's exporter, bounded domains."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import msgpack
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.drop import DropRejection, parse_drop, read_drop
from engine.telemetry.catalog import COUNTERS, GAUGES, HISTOGRAMS, OTHER, REJECT_CLASSES
from engine.telemetry.export import Exporter, TopDomains
from engine.telemetry.metrics import (
    CheckedTally,
    Tally,
    counter_key,
    reject_class,
    reply_key,
    reply_labels,
)

REPO = Path(__file__).resolve().parents[3]
Sample = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(e: Exporter) -> Sample:
    out: Sample = {}
    for fam in text_string_to_metric_families(generate_latest(e.registry).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def val(sample: Sample, name: str, **labels: str) -> float | None:
    return sample.get((name, tuple(sorted(labels.items()))))


def names_with(sample: Sample, name: str) -> set[str]:
    return {dict(lbl).get("domain", "") for (n, lbl) in sample if n == name}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# -- the worker side --------------------------------------------------------------------------
def test_tally_sends_counter_deltas_and_resets_them() -> None:
    t = Tally()
    t.inc("volley_received", "a.test", n=3)
    t.inc("volley_received", "a.test")
    t.inc("volley_dsns")
    counts, gauges, hists = t.drain()
    assert sorted(counts) == [["volley_dsns", [], 1], ["volley_received", ["a.test"], 4]]
    assert (gauges, hists) == ([], [])
    assert t.drain()[0] == []  # deltas: nothing new since the last drain


def test_tally_gauges_persist_until_cleared_by_family() -> None:
    t = Tally()
    t.set("volley_queue_entries", 5, "ready")
    t.set("volley_queue_depth", 2, "a.test")
    t.set("volley_queue_depth", 7, "b.test")
    assert len(t.drain()[1]) == 3
    assert len(t.drain()[1]) == 3  # the whole state every time
    t.clear_gauges("volley_queue_depth")
    t.set("volley_queue_depth", 1, "b.test")
    assert sorted(t.drain()[1]) == [
        ["volley_queue_depth", ["b.test"], 1],
        ["volley_queue_entries", ["ready"], 5],
    ]


def test_tally_histogram_buckets_are_le_and_deltas() -> None:
    t = Tally()
    bounds = HISTOGRAMS["volley_smtp_transaction_seconds"].buckets
    t.observe("volley_smtp_transaction_seconds", 0.001)  # exactly on a bound: that bucket
    t.observe("volley_smtp_transaction_seconds", 0.0011)  # just above: the next one
    t.observe("volley_smtp_transaction_seconds", 500.0)  # above the last bound: +Inf
    ((name, labels, counts, total, n),) = t.drain()[2]
    assert (name, labels, n) == ("volley_smtp_transaction_seconds", [], 3)
    assert len(counts) == len(bounds) + 1
    assert counts[0] == 1 and counts[1] == 1 and counts[-1] == 1 and sum(counts) == 3
    assert total == pytest.approx(500.0021)
    assert t.drain()[2] == []


def test_checked_tally_rejects_what_breaks_the_contract() -> None:
    t = CheckedTally()
    with pytest.raises(ValueError, match="unknown counter 'volley_connection_reuses'"):
        t.inc("volley_connection_reuses")
    with pytest.raises(
        ValueError, match=r"volley_smtp_replies takes labels \('code', 'enhanced'\)"
    ):
        t.inc("volley_smtp_replies", "250")
    with pytest.raises(ValueError, match="volley_queue_depth"):
        t.set("volley_queue_depth", 1)
    with pytest.raises(ValueError, match="unknown histogram"):
        t.observe("volley_latency", 1.0)
    with pytest.raises(ValueError, match="unknown gauge"):
        t.clear_gauges("volley_queue_dept")
    t.inc("volley_smtp_replies", "250", "2.0")
    assert t.drain()[0] == [["volley_smtp_replies", ["250", "2.0"], 1]]


# -- the supervisor side ----------------------------------------------------------------------
def test_counts_from_workers_add_up_exactly_through_msgpack() -> None:
    e = Exporter(top_domains=10)
    for worker in (0, 1):
        t = Tally()
        for _ in range(1000):
            t.inc("volley_delivered", "a.test")
        t.inc("volley_connections", "reused", n=7)
        msg = msgpack.unpackb(msgpack.packb(["metrics", *t.drain()]), raw=False)
        e.apply(worker, msg[1], msg[2], msg[3])
    s = scrape(e)
    assert val(s, "volley_delivered_total", domain="a.test") == 2000
    assert val(s, "volley_connections_total", result="reused") == 14
    assert val(s, "volley_connections_total", result="failed") == 0  # exists from the start


def test_gauges_combine_over_live_workers_and_vanish_with_a_dead_one() -> None:
    e = Exporter(top_domains=10)
    e.apply(
        0, [], [["volley_queue_depth", ["a.test"], 3], ["volley_intake_paused", ["disk_full"], 0]]
    )
    e.apply(
        1, [], [["volley_queue_depth", ["a.test"], 4], ["volley_intake_paused", ["disk_full"], 1]]
    )
    e.apply(0, [], [["volley_queue_oldest_age_seconds", ["a.test"], 30.0]])  # replaces w0's state
    e.apply(2, [], [["volley_queue_oldest_age_seconds", ["a.test"], 90.0]])
    s = scrape(e)
    assert val(s, "volley_queue_depth", domain="a.test") == 4  # w1 only: w0 no longer says 3
    assert val(s, "volley_intake_paused", reason="disk_full") == 1  # max
    assert val(s, "volley_queue_oldest_age_seconds", domain="a.test") == 90  # max
    assert val(s, "volley_queue_oldest_age_seconds", domain="_all") == 90
    e.worker_gone(2)
    e.worker_gone(1)
    s = scrape(e)
    assert val(s, "volley_queue_oldest_age_seconds", domain="a.test") == 30
    assert val(s, "volley_queue_depth", domain="a.test") is None
    assert val(s, "volley_queue_depth", domain=OTHER) == 0  # the baseline stays
    assert val(s, "volley_intake_paused", reason="disk_full") == 0


def test_histograms_accumulate_bucket_deltas() -> None:
    e = Exporter(top_domains=10)
    for worker, value in ((0, 0.3), (1, 4.0), (0, 0.3)):
        t = Tally()
        t.observe("volley_delivery_latency_seconds", value, "a.test")
        e.apply(worker, *t.drain())
    s = scrape(e)
    name = "volley_delivery_latency_seconds"
    assert val(s, f"{name}_bucket", domain="a.test", le="0.25") == 0
    assert val(s, f"{name}_bucket", domain="a.test", le="0.5") == 2
    assert val(s, f"{name}_bucket", domain="a.test", le="5.0") == 3
    assert val(s, f"{name}_bucket", domain="a.test", le="+Inf") == 3
    assert val(s, f"{name}_count", domain="a.test") == 3
    assert val(s, f"{name}_sum", domain="a.test") == pytest.approx(4.6)
    assert val(s, "volley_smtp_transaction_seconds_count") == 0


def test_supervisor_numbers() -> None:
    e = Exporter(top_domains=10, version="1.2.3")
    e.count("volley_worker_restarts")
    e.count("volley_quarantined", "poison", n=2)
    e.workers_alive.set(4)
    e.set_spool_usage(100, 300, 400)
    s = scrape(e)
    assert val(s, "volley_worker_restarts_total") == 1
    assert val(s, "volley_quarantined_total", reason="poison") == 2
    assert val(s, "volley_workers_alive") == 4
    assert (val(s, "volley_spool_bytes"), val(s, "volley_spool_free_bytes")) == (100, 300)
    assert val(s, "volley_spool_capacity_bytes") == 400
    assert val(s, "volley_build_info", version="1.2.3") == 1


def test_egress_quota_gauges_are_the_whole_set_each_time() -> None:
    e = Exporter(top_domains=10)
    e.set_egress_quota([("ip1", 150, 50), ("ip2", 0, 400)])
    e.set_egress_quota([("ip1", 200, 0)])  # ip2 is warmed up: its series go
    s = scrape(e)
    assert (
        val(s, "volley_egress_quota_used", source="ip1"),
        val(s, "volley_egress_quota_left", source="ip1"),
    ) == (200, 0)
    assert val(s, "volley_egress_quota_used", source="ip2") is None
    e.apply(0, [["volley_egress_messages", ["ip1"], 7]], [])
    assert val(scrape(e), "volley_egress_messages_total", source="ip1") == 7


def test_a_workers_bad_entries_are_dropped_and_reported_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    e = Exporter(top_domains=10)
    bad_counters = [
        ["volley_connection_reuses", [], 1],  # an old name
        ["volley_smtp_replies", ["250"], 1],  # a label missing
        ["volley_dsns", [], -1],  # counters only go up
        ["volley_dsns"],  # malformed
        ["volley_dsns", [], 2],  # fine
    ]
    bad_gauges = [["volley_queue_depth", [], 1], ["volley_queue_entries", ["ready"], "x"]]
    bad_hists = [["volley_smtp_transaction_seconds", [], [1, 2], 0.1, 3]]
    for _ in range(2):
        e.apply(3, bad_counters, bad_gauges, bad_hists)
    s = scrape(e)
    assert val(s, "volley_dsns_total") == 4
    assert val(s, "volley_queue_entries", state="ready") == 0
    assert val(s, "volley_smtp_transaction_seconds_count") == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 7  # each problem once, though applied twice
    assert all(line.startswith("volley: metrics from worker 3: ignored: ") for line in err)
    assert any("unknown counter 'volley_connection_reuses'" in line for line in err)


# -- bounded destinations ---------------------------------------------------------------------
def test_domains_beyond_the_top_n_are_counted_as_other() -> None:
    e = Exporter(top_domains=2, clock=Clock())
    for d in ("a.test", "b.test", "c.test"):
        e.apply(0, [["volley_received", [d], 1], ["volley_delivered", [d], 1]], [])
    e.apply(0, [], [["volley_connections_open", ["c.test"], 2]])
    s = scrape(e)
    assert names_with(s, "volley_delivered_total") == {"a.test", "b.test", OTHER}
    assert val(s, "volley_delivered_total", domain=OTHER) == 1
    assert val(s, "volley_connections_open", domain=OTHER) == 2
    # Admission creates every outcome series of the domain, so ratios always match.
    assert val(s, "volley_bounced_total", domain="a.test", category="Uncategorized") == 0
    assert val(s, "volley_expired_total", domain="b.test", category="Uncategorized") == 0


def test_rerank_moves_a_grown_domain_in_and_removes_the_loser() -> None:
    clock = Clock()
    e = Exporter(top_domains=2, clock=clock, rerank_every=30.0)
    e.apply(0, [["volley_received", ["a.test"], 5], ["volley_received", ["b.test"], 1]], [])
    e.apply(0, [["volley_received", ["c.test"], 50]], [])  # no free place: counted as other
    e.apply(1, [], [["volley_queue_depth", ["b.test"], 9]])  # worker 1 sends nothing more
    clock.t += 29.0
    e.apply(0, [], [])
    assert e.top.members == {"a.test", "b.test"}  # not due yet
    e.apply(0, [["volley_deferred", ["b.test", "SpamBlock"], 2]], [])  # b, before it leaves
    clock.t += 1.0
    e.apply(0, [["volley_bounced", ["b.test", "BadDomain"], 1],
                ["volley_bounced", ["c.test", "InvalidRecipient"], 1]], [])  # fmt: skip
    assert e.top.members == {"a.test", "c.test"}
    s = scrape(e)
    assert names_with(s, "volley_received_total") == {"a.test", "c.test", OTHER}
    assert val(s, "volley_received_total", domain=OTHER) == 50  # c's, before it had a place
    assert val(s, "volley_received_total", domain="c.test") == 0  # a fresh series
    assert val(s, "volley_bounced_total", domain="c.test", category="InvalidRecipient") == 1
    assert val(s, "volley_bounced_total", domain=OTHER, category="BadDomain") == 1  # b's, later
    # Every series of b went, whatever its category (its SpamBlock deferrals included).
    for name in ("volley_deferred_total", "volley_bounced_total", "volley_received_total"):
        assert "b.test" not in names_with(s, name), name
    # b's gauge, sent before it left, is folded into "other" at scrape time.
    assert val(s, "volley_queue_depth", domain="b.test") is None
    assert val(s, "volley_queue_depth", domain=OTHER) == 9


def test_top_domains_ranking_rules() -> None:
    top = TopDomains(2, every=30.0, half_life=600.0)
    assert top.label(OTHER) == OTHER and top.label("_all") == OTHER  # reserved, never admitted
    assert top.label("a.test") == "a.test" and top.label("b.test") == "b.test"
    assert top.label("x.test") == OTHER  # full
    top.add_volume("c.test", 10)
    assert top.rerank(0.0) == {"b.test"}  # a and b tie at 0: the name decides
    assert top.members == {"a.test", "c.test"}
    top.add_volume("b.test", 8)
    assert top.rerank(600.0) == {"a.test"}  # one half-life: c 5, b 4, a 0
    assert top.rerank(1200.0) == set()  # c 2.5, b 2
    top.add_volume("a.test", 3)
    assert top.rerank(1200.0) == {"b.test"}  # a 3 > c 2.5 > b 2
    assert top.is_due(1229.0) is False and top.is_due(1230.0) is True


def test_top_domains_ties_keep_the_incumbent() -> None:
    top = TopDomains(1)
    assert top.label("x.test") == "x.test"
    top.add_volume("w.test", 5)  # "w" sorts before "x", but x holds the place
    top.add_volume("x.test", 5)
    assert top.rerank(0.0) == set() and top.members == {"x.test"}
    assert TopDomains(0).label("a.test") == OTHER


def test_domain_is_the_first_label_of_domain_labelled_counters() -> None:
    """Admission and remove() on a domain leaving the top set rely on it; the other
    labels of such a counter are bounded sets (a failure's bounce category)."""
    for name, spec in COUNTERS.items():
        if "domain" in spec.labels:
            assert spec.labels[0] == "domain", name
            assert spec.labels in (("domain",), ("domain", "category")), name
            assert len(spec.admit) == len(spec.labels) - 1, name


# -- the contract -----------------------------------------------------------------------------
def test_every_metric_has_help_and_is_documented() -> None:
    doc = (REPO / "docs" / "metrics.md").read_text()
    families = list(text_string_to_metric_families(generate_latest(Exporter().registry).decode()))
    suffix = {"counter": "_total", "info": "_info"}
    for fam in families:
        if fam.name.endswith("_created"):  # prometheus-client's own, one per counter series
            continue
        assert fam.name.startswith("volley_"), fam.name
        assert len(fam.documentation) > 10, fam.name
        full = fam.name + suffix.get(fam.type, "")
        assert f"`{full}`" in doc, f"{full} missing from docs/metrics.md"
    assert set(COUNTERS) | set(GAUGES) | set(HISTOGRAMS) <= {f.name for f in families}


@pytest.mark.parametrize(
    ("code", "enhanced", "labels"),
    [(550, "5.1.1", ("550", "5.1")), (250, None, ("250", "none")), (421, "4.7.0", ("421", "4.7"))],
)
def test_reply_labels(code: int, enhanced: str | None, labels: tuple[str, str]) -> None:
    assert reply_labels(code, enhanced) == labels
    assert reply_key(code, enhanced) == ("volley_smtp_replies", labels)
    assert reply_key(code, enhanced) is reply_key(code, enhanced)  # built once


def test_bump_with_prebuilt_keys_counts_like_inc() -> None:
    a, b = Tally(), CheckedTally()
    for t in (a, b):
        t.inc("volley_connections", "reused")
        t.bump(counter_key("volley_connections", "reused"), 2)
        t.bump(counter_key("volley_transactions"))
        t.bump(reply_key(550, "5.1.1"))
        t.inc("volley_smtp_replies", "550", "5.1")
    expected = [
        ["volley_connections", ["reused"], 3],
        ["volley_transactions", [], 1],
        ["volley_smtp_replies", ["550", "5.1"], 2],
    ]
    assert a.drain()[0] == expected
    assert b.drain()[0] == expected
    with pytest.raises(ValueError, match="volley_connections takes labels"):
        b.bump(counter_key("volley_connections"))


# -- drop rejection classes, from engine.drop's own reason texts ------------------------------
def _parse_reason(data: bytes, max_recipients: int = 10) -> str:
    got = parse_drop(data, max_recipients=max_recipients)
    assert isinstance(got, DropRejection), got
    return got.reason


def _read_reason(tmp_path: Path, name: str, max_size: int = 1000) -> str:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        got = read_drop(fd, name, max_size=max_size, use_lease=False, now=lambda: 1e12)
    finally:
        os.close(fd)
    assert isinstance(got, DropRejection), got
    return got.reason


def test_reject_class_of_every_reason_engine_drop_gives(tmp_path: Path) -> None:
    (tmp_path / "target.eml").write_bytes(b"x")
    os.symlink(tmp_path / "target.eml", tmp_path / "link.eml")
    os.mkfifo(tmp_path / "fifo.eml")
    (tmp_path / "big.eml").write_bytes(b"x" * 2000)
    (tmp_path / "empty.eml").write_bytes(b"")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.eml"))
    sock.close()
    head = b"From: a@sender.test\r\nSubject: s\r\n"
    cases = {
        "symlink": [_read_reason(tmp_path, "link.eml")],
        "not_regular": [_read_reason(tmp_path, "fifo.eml"), _read_reason(tmp_path, "sock.eml")],
        "too_big": [_read_reason(tmp_path, "big.eml")],
        "empty": [_read_reason(tmp_path, "empty.eml"), _parse_reason(b"")],
        "no_recipients": [_parse_reason(head + b"\r\nbody\r\n")],
        "too_many_recipients": [
            _parse_reason(head + b"To: x@d.test, y@d.test\r\n\r\nb\r\n", max_recipients=1)
        ],
        "bad_address": [
            _parse_reason(head + b"To: not an address@@d.test\r\n\r\nb\r\n"),
            _parse_reason(b"Subject: s\r\nTo: x@d.test\r\n\r\nb\r\n"),  # no sender
            _parse_reason(b"From: a@s.test\r\nTo: (x@d.test\r\n\r\nb\r\n"),
        ],
        "bad_headers": [
            _parse_reason(b"\r\nbody\r\n"),
            _parse_reason(head + b"To: x@d.test\rY\r\n\r\nb\r\n"),
            _parse_reason(head + b"To: x@d.test\r\n\x01bad\r\n\r\nb\r\n"),
            _parse_reason(b"not a header line\r\n\r\nb\r\n"),
        ],
        "unparseable": [_parse_reason(head + b"\x00\r\n\r\nb\r\n")],
        "other": [_read_reason(tmp_path, "..")],
    }
    assert set(cases) == set(REJECT_CLASSES)
    for cls, reasons in cases.items():
        for reason in reasons:
            assert reject_class(reason) == cls, reason
