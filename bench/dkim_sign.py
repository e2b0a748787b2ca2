"""DKIM signing cost: µs per message and signatures per second per core.

Responsible for: signing the bench's own messages (bench/workload.py, 5 KB MIME by
default) with engine.auth.dkim's Signer — RSA-2048 and Ed25519 keys made for the run —
in this one process (one core), and printing one JSON line per key type: µs per
message (mean over `--messages`, after a warm-up), signatures per second, and the
same for dkimpy's own `dkim.sign` (pure-Python RSA, the key parsed on every call) for
comparison.  Issue #12 asks >= 1 000 RSA-2048 and >= 4 000 Ed25519 signatures/s per core.
Not responsible for: the engine's throughput with signing on (`python -m bench.run
--only volley --dkim rsa`), or asserting anything.

Usage: .venv/bin/python -m bench.dkim_sign [--messages 2000] [--size 5000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import dkim

from bench.workload import SENDER, Spec, generate
from engine.auth.dkim import Signer, load_key
from engine.auth.keygen import keygen
from engine.config import DkimDomain
from engine.smtp.encode import wire_body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--size", type=int, default=5000)
    args = ap.parse_args(argv)
    domain = SENDER.rpartition("@")[2]
    mails = [wire_body(m.data) for m in generate(Spec(messages=args.messages, size=args.size))]
    with tempfile.TemporaryDirectory(prefix="volley-dkim-") as tmp:
        for kind in ("rsa", "ed25519"):
            path = keygen(domain, kind, kind, 2048, Path(tmp))
            signer = Signer([DkimDomain(domain, kind, path)])
            for wire in mails[:100]:  # warm-up: caches, the key's first use
                signer.sign(wire)
            start = time.process_time()
            for wire in mails:
                signer.sign(wire)
            ours = (time.process_time() - start) / len(mails)
            key = load_key(path, domain, kind)
            private = path.read_bytes() if kind == "rsa" else key.private
            plain = mails[: max(50, len(mails) // 20)]  # dkimpy's RSA is ~100x slower
            start = time.process_time()
            for wire in plain:
                dkim.sign(
                    wire, kind.encode(), domain.encode(), private,
                    signature_algorithm=key.algorithm, canonicalize=(b"relaxed", b"relaxed"),
                )  # fmt: skip
            theirs = (time.process_time() - start) / len(plain)
            print(
                json.dumps(
                    {
                        "key": "rsa-2048" if kind == "rsa" else "ed25519",
                        "message_bytes": round(sum(map(len, mails)) / len(mails)),
                        "us_per_message": round(ours * 1e6),
                        "signatures_per_s": round(1 / ours),
                        "dkimpy_alone_us_per_message": round(theirs * 1e6),
                        "dkimpy_alone_signatures_per_s": round(1 / theirs),
                    }
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
