"""In-process CPU per message of the pure hot paths, with or without `make mypyc`.

Responsible for: timing, in this one process and with `time.process_time`, the two
pure-Python halves of a message's life that the mypyc build compiles, on the bench's own
5 KB workload (bench.workload):

  * intake: `parse_drop` (fast header scan and addresses), `wire_body`, `entry_id` and
    `spool.record.encode` of a typical meta, per message;
  * smtp: one pipelined transaction on the sans-IO `ClientProtocol` (start it, take its
    MAIL/RCPT/DATA, feed 250/250/354, take the content, feed the 250), per message.

Prints one JSON line: which modules are compiled, and for each part the best of
`--repeat` passes in µs per message (the minimum: what the code costs when no other
tenant took the core from it). Far less noisy on this shared machine than `bench.run`,
which also counts syscalls, the event loop and the other processes; not a substitute
for it (it leaves out every I/O cost). Not responsible for building or removing the
compiled modules (Makefile: `make mypyc`, `make mypyc-clean`).

Usage: .venv/bin/python -m bench.mypyc_micro [--messages 2000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from itertools import islice

import engine.drop.parse as parse_module
import engine.smtp.protocol as protocol_module
from bench.workload import Mail, Spec, generate
from engine.drop import DropEnvelope, parse_drop
from engine.smtp import ClientProtocol
from engine.smtp.encode import wire_body
from spool import record
from spool.ids import entry_id

EHLO = b"250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10240000\r\n"
ENVELOPE_OK = b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
QUEUED = b"250 2.0.0 Ok: queued as 4F1A2B3C\r\n"


def compiled() -> list[str]:
    """Which of the modules this bench exercises are extension modules (mypyc)."""
    names = (
        "engine.drop.parse",
        "engine.drop.fastparse",
        "engine.smtp.protocol",
        "engine.smtp.pipeline",
        "engine.smtp.encode",
        "spool.record",
        "spool.ids",
    )
    mods = [sys.modules[n] for n in names if n in sys.modules]
    return [m.__name__ for m in mods if (m.__file__ or "").endswith(".so")]


def intake(mails: list[Mail]) -> None:
    for m in mails:
        env = parse_drop(m.data, max_recipients=100)
        assert isinstance(env, DropEnvelope)
        body = wire_body(env.message)
        name = entry_id(1_796_000_000_000_000_000 + m.seq, b"salt")
        meta = {"sender": env.sender, "rcpts": list(env.recipients), "created": 1.0}
        record.encode({**meta, "id": name, "attempts": 0, "8bit": env.body_8bit}, body)


def smtp(bodies: list[tuple[str, bytes]]) -> None:
    p = ClientProtocol()
    p.receive_data(b"220 mx.test ESMTP\r\n")
    p.send_ehlo("client.test")
    p.receive_data(EHLO)
    for rcpt, body in bodies:
        txn = p.start_transaction("news@sender.test", [rcpt], body)
        p.data_to_send()
        p.receive_data(ENVELOPE_OK)
        p.data_to_send()
        p.receive_data(QUEUED)
        assert txn.done and txn.result is not None and txn.result.delivered


def best(run: Callable[[], None], n: int, repeat: int) -> float:
    """The fastest of `repeat` passes, in µs per message."""
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        run()
        times.append(time.process_time() - t0)
    return round(min(times) / n * 1e6, 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args(argv)
    mails = list(islice(generate(Spec()), args.messages))
    bodies = []
    for m in mails:
        env = parse_drop(m.data, max_recipients=100)
        assert isinstance(env, DropEnvelope)
        bodies.append((m.rcpt, wire_body(env.message)))
    assert parse_module and protocol_module  # imported so `compiled` sees them
    out = {
        "compiled": compiled(),
        "messages": args.messages,
        "intake_us": best(lambda: intake(mails), len(mails), args.repeat),
        "smtp_us": best(lambda: smtp(bodies), len(bodies), args.repeat),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
