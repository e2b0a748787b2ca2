"""engine.telemetry.top: `volley top` frames from recorded /metrics text, and its loop."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

import pytest
from prometheus_client import start_http_server

from engine import cli
from engine.telemetry import top
from engine.telemetry.export import Exporter
from engine.telemetry.metrics import Tally
from tests.support.net import free_port

# Two scrapes of a 2-worker instance, 2 s apart (trimmed: HELP/TYPE of a few families,
# no _created series), while gmail.test's backlog drains and slow.test defers.
BEFORE = """\
# HELP volley_received_total Recipients taken from drop files into the queue.
# TYPE volley_received_total counter
volley_received_total{domain="other"} 3.0
volley_received_total{domain="gmail.test"} 5000.0
volley_received_total{domain="slow.test"} 40.0
volley_delivered_total{domain="other"} 3.0
volley_delivered_total{domain="gmail.test"} 3000.0
volley_delivered_total{domain="slow.test"} 0.0
volley_deferred_total{domain="other"} 0.0
volley_deferred_total{domain="gmail.test"} 10.0
volley_deferred_total{domain="slow.test"} 40.0
volley_bounced_total{domain="other"} 0.0
volley_bounced_total{domain="gmail.test"} 20.0
volley_bounced_total{domain="slow.test"} 0.0
volley_expired_total{domain="other"} 0.0
volley_dns_lookups_total{result="hit"} 90.0
volley_dns_lookups_total{result="miss"} 10.0
volley_dns_lookups_total{result="failure"} 0.0
volley_worker_restarts_total 1.0
volley_queue_entries{state="ready"} 1900.0
volley_queue_entries{state="waiting"} 40.0
volley_queue_entries{state="inflight"} 60.0
volley_queue_depth{domain="other"} 0.0
volley_queue_depth{domain="gmail.test"} 1960.0
volley_queue_depth{domain="slow.test"} 40.0
volley_queue_oldest_age_seconds{domain="other"} 0.0
volley_queue_oldest_age_seconds{domain="_all"} 3725.0
volley_queue_oldest_age_seconds{domain="gmail.test"} 95.0
volley_queue_oldest_age_seconds{domain="slow.test"} 3725.0
volley_connections_open{domain="other"} 0.0
volley_connections_open{domain="gmail.test"} 20.0
volley_connections_idle{domain="other"} 0.0
volley_connections_idle{domain="gmail.test"} 2.0
volley_intake_paused{reason="disk_full"} 0.0
volley_workers_alive 2.0
volley_spool_bytes 8.589934592e+09
volley_spool_free_bytes 2.147483648e+09
volley_spool_capacity_bytes 1.073741824e+10
# HELP volley_build_info Volley version.
# TYPE volley_build_info gauge
volley_build_info{version="0.1.0"} 1.0
"""


def with_values(text: str, changes: dict[str, float]) -> str:
    """`text` with the given series' values replaced."""
    out = []
    for line in text.splitlines():
        series = line.rpartition(" ")[0]
        out.append(f"{series} {changes[series]}" if series in changes else line)
    return "\n".join(out) + "\n"


AFTER = with_values(
    BEFORE,
    {
        'volley_delivered_total{domain="gmail.test"}': 3400,
        'volley_deferred_total{domain="gmail.test"}': 14,
        'volley_deferred_total{domain="slow.test"}': 42,
        'volley_bounced_total{domain="gmail.test"}': 22,
        'volley_queue_entries{state="ready"}': 1500,
        'volley_queue_depth{domain="gmail.test"}': 1560,
    },
)


def test_parse_and_query_a_scrape() -> None:
    s = top.parse(BEFORE)
    assert s.total("volley_delivered_total") == 3003
    assert s.total("volley_delivered_total", domain="gmail.test") == 3000
    assert s.by("volley_queue_entries", "state") == {
        "ready": 1900,
        "waiting": 40,
        "inflight": 60,
    }
    assert s.label("volley_build_info", "version") == "0.1.0"
    assert s.label("volley_nothing", "version") is None


def test_frame_with_rates_progress_and_destinations() -> None:
    lines = top.render(top.parse(AFTER), top.parse(BEFORE), 2.0, peak=4000.0, source="URL")
    assert lines[0] == "volley top  URL  version 0.1.0  workers 2 alive, 1 restarts"
    assert lines[1] == (
        "sending     received 0.0   delivered 200.0   deferred 3.0   bounced 1.0   expired 0.0"
        "   (per second, last 2.0 s)"
    )
    assert (
        lines[2] == "queue       1,600 entries: 1,500 ready, 40 waiting, 60 in flight; oldest 1h02m"
    )
    # 400 fewer entries in 2 s: 200/s, 1 600 left -> 8 s; 2 400 of the peak 4 000 done.
    assert lines[3] == "draining    [##############..........] 1,600 left, 200.0/s, ETA 8s"
    assert lines[4] == (
        "connections 20 open, 2 idle   DNS cache hits 90 %   "
        "spool 2.0 GiB free of 10.0 GiB (80 % used)"
    )
    assert lines[5] == ""
    header, *rows = lines[6:]
    assert header.split() == [
        "destination", "queue", "open", "idle", "delivered/s", "deferred/s", "bounced/s",
        "deferral", "oldest",
    ]  # fmt: skip
    assert [r.split()[0] for r in rows] == ["gmail.test", "slow.test"]  # "other" is idle
    assert rows[0].split() == "gmail.test 1,560 20 2 200.0 2.0 1.0 1 % 1m35s".split()
    assert rows[1].split() == "slow.test 40 0 0 0.0 1.0 0.0 100 % 1h02m".split()


def test_first_frame_shows_totals() -> None:
    lines = top.render(top.parse(BEFORE), None, 0.0)
    assert lines[1].startswith("sending     received 5,043   delivered 3,003   deferred 50")
    assert lines[1].endswith("(totals since start)")
    assert not any(line.startswith(("draining", "growing")) for line in lines)
    assert "delivered " in lines[5] and "delivered/s" not in lines[5]
    assert lines[6].split()[:5] == ["gmail.test", "1,960", "20", "2", "3,000"]


def test_growing_queue_restart_and_paused_intake() -> None:
    grown = with_values(
        BEFORE,
        {
            'volley_queue_entries{state="ready"}': 2300,
            'volley_intake_paused{reason="disk_full"}': 1,
        },
    )
    lines = top.render(top.parse(grown), top.parse(BEFORE), 4.0)
    assert "growing     +100.0 entries/s" in lines
    assert "INTAKE      paused: disk_full" in lines
    # The engine restarted: counters below the previous scrape count from zero.
    restarted = with_values(BEFORE, {'volley_delivered_total{domain="gmail.test"}': 8})
    lines = top.render(top.parse(restarted), top.parse(BEFORE), 2.0)
    assert "delivered 5.5" in lines[1]  # 8 + 3 (other) since the restart, over 2 s


def test_many_destinations_are_cut_to_the_rows_given() -> None:
    text = "".join(f'volley_queue_depth{{domain="d{i:02d}.test"}} {100 - i}\n' for i in range(30))
    lines = top.render(top.parse(text), None, 0.0, rows=5)
    table = lines[lines.index("") + 1 :]
    assert [r.split()[0] for r in table[1:6]] == [f"d{i:02d}.test" for i in range(5)]
    assert table[6] == "... 25 more"


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("127.0.0.1:9108", "http://127.0.0.1:9108/metrics"),
        ("0.0.0.0:9108", "http://127.0.0.1:9108/metrics"),
        ("[::]:9108", "http://[::1]:9108/metrics"),
        ("[::1]:9200", "http://[::1]:9200/metrics"),
        (":9108", "http://127.0.0.1:9108/metrics"),
    ],
)
def test_metrics_url(listen: str, url: str) -> None:
    assert top.metrics_url(listen) == url


@pytest.fixture
def served() -> Iterator[tuple[str, Exporter]]:
    """A live /metrics of an Exporter on loopback (what `volley run` serves)."""
    e = Exporter(top_domains=5, version="9.9")
    t = Tally()
    t.inc("volley_received", "a.test", n=7)
    t.set("volley_queue_depth", 7, "a.test")
    t.set("volley_queue_entries", 7, "ready")
    e.apply(0, *t.drain())
    port = free_port(["127.0.0.1"])
    server, thread = start_http_server(port, addr="127.0.0.1", registry=e.registry)
    yield f"http://127.0.0.1:{port}/metrics", e
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_once_prints_one_plain_frame(served: tuple[str, Exporter]) -> None:
    url, _ = served
    out = io.StringIO()
    assert top.run(url, once=True, out=out) == 0
    text = out.getvalue()
    assert "\x1b" not in text
    assert text.startswith(f"volley top  {url}  version 9.9")
    assert "queue       7 entries: 7 ready" in text
    assert any(line.split()[:2] == ["a.test", "7"] for line in text.splitlines())


def test_cli_top_once(served: tuple[str, Exporter], capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = served
    assert cli.main(["top", "--url", url, "--once"]) == 0
    assert "version 9.9" in capsys.readouterr().out


def test_unreachable_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        assert top.run(f"http://127.0.0.1:{port}/metrics", once=True, out=io.StringIO()) == 1
    assert "volley top: cannot read" in capsys.readouterr().err


def test_live_loop_redraws_with_rates(served: tuple[str, Exporter]) -> None:
    url, e = served
    out = io.StringIO()
    times = iter([10.0, 12.0])
    frames = 0

    def fake_sleep(seconds: float) -> None:
        nonlocal frames
        assert seconds == 1.5
        frames += 1
        if frames == 2:
            raise KeyboardInterrupt
        e.apply(0, [["volley_delivered", ["a.test"], 4]], [["volley_queue_entries", ["ready"], 3]])

    assert top.run(url, interval=1.5, out=out, clock=lambda: next(times), sleep=fake_sleep) == 0
    first, second = out.getvalue().split(top.CLEAR)[1:]
    assert "totals since start" in first
    assert "delivered 2.0" in second  # 4 in 2 s
    assert "3 left, 2.0/s, ETA 1s" in second  # 7 -> 3 entries in 2 s
