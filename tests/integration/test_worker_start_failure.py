"""A worker that cannot start ends `volley run` at once: exit status 1, the worker's own
error in the output, no "running" and no restart loop.  The other workers are stopped.

The failure is a natural one: a directory where shard 1's in-flight journal
(queue/1.inflight, engine.runtime.inflight) should be, which no permission (CI runs as
root) lets a worker open.  The supervisor does not read that file; only the worker does,
before it is ready.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time

from tests.support.volley import VOLLEY_SCRIPT, to_toml

TIMEOUT = 30.0  # a hang or a restart loop would run until this kills it


def test_worker_that_cannot_start_ends_volley_run_with_its_error(net, volley) -> None:
    v = volley(workers=2, start=False)
    (v.spool / "queue" / "1.inflight").mkdir(parents=True)
    v.config_path.write_text(to_toml(v.config))
    env = {k: val for k, val in os.environ.items() if k != "PYTHONPATH"}
    t0 = time.monotonic()
    done = subprocess.run(
        [VOLLEY_SCRIPT, "run", "--config", str(v.config_path)],
        cwd=v.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    took = time.monotonic() - t0
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert took < 15.0, (took, out)
    assert "volley: worker 1 could not start (exit status 1): IsADirectoryError" in out, out
    assert "1.inflight" in out.splitlines()[-1], out
    assert "running" not in out and "restarting" not in out, out
    # Worker 0 started fine and was stopped: its shard lock is free again.
    fd = os.open(v.spool / "queue" / "0.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
