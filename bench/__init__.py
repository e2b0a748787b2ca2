"""Volley's benchmark harness: Volley side by side with Postfix and the raw SMTP limit.

Responsible for: generating a reproducible workload, starting the destination side (a DNS
server and fast SMTP receivers on 127.0.0.x), running Volley, a private Postfix instance
and `smtp-source` against it, and measuring them the same way (bench/README.md).
Not responsible for: making anything fast (engine/ is), or asserting on speed: CI runs a
small smoke version that only checks the harness works (tests/integration/test_bench_smoke.py).

Entry point: `python -m bench.run` (`make bench`). Everything listens on loopback only.
"""
