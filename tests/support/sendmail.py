"""Run the installed `volley-sendmail` console script, as applications do, in tests.

Responsible for: the path of the script in this environment's bin/ (where `pip install`
put it, beside `volley`), running it with a message on stdin, optionally as another
uid/gid (tests of the drop group), and a tiny MTA-less helper that points a program's
"sendmail" at it: `sendmail_wrapper` writes an executable shell script that adds `-C
CONFIG` (s-nail and PHP take a program path and their own arguments, not ours).
Not responsible for: starting Volley (tests.support.volley) or receivers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

SENDMAIL = str(Path(sys.executable).parent / "volley-sendmail")


def sendmail(
    config: Path | None,
    *args: str,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
    user: int | None = None,
    group: int | None = None,
    extra_groups: Sequence[int] | None = None,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[bytes]:
    """`volley-sendmail [-C config] ARGS` with `stdin`; never raises on a failure status."""
    argv = [SENDMAIL, *(["-C", str(config)] if config is not None else []), *args]
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        user=user,
        group=group,
        extra_groups=extra_groups,
    )


def sendmail_wrapper(directory: Path, config: Path) -> Path:
    """An executable `sendmail` in `directory` that runs volley-sendmail with `-C config`
    and every argument it was given (what an admin's /usr/sbin/sendmail link does with
    the config in /etc/volley/volley.toml)."""
    path = directory / "sendmail"
    path.write_text(f'#!/bin/sh\nexec "{SENDMAIL}" -C "{config}" "$@"\n')
    path.chmod(0o755)
    return path
