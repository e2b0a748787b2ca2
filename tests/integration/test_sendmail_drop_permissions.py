"""The drop group, as README "Sendmail" sets it up, with real uids: Volley runs as its
own user (umask 027, the drop group as a supplementary group), a member of the group
sends with volley-sendmail and the real `volley run` delivers what it wrote; the member
cannot list incoming/ or see the spool's other directories, cannot remove another
user's queued drop, and a user outside the group gets exit 77.

Runs as root (CI does: .ci/run), which may start processes as throwaway uids with
setpriv(1); the uids and gids below exist in no passwd or group file.  Those uids run
this environment's Python when they may (a venv made from /usr/bin/python3, as on CI),
else the system's python3.X of the same version with the venv's site-packages on
PYTHONPATH (a venv made from a pyenv Python under /root, which they cannot reach).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.net import wait_for
from tests.support.volley import REPO, Volley

VOLLEY_UID = 64101  # the `volley` service user (its primary group has the same number)
MEMBER_UID = 64102  # a user in the drop group
OTHER_MEMBER_UID = 64103
OUTSIDER_UID = 64104  # not in the drop group
DROP_GID = 64110  # `volley-drop`


SITE = sysconfig.get_paths()["purelib"]  # uvloop, msgpack, ... for a system interpreter
PYTHONPATH = os.pathsep.join([str(REPO), SITE])


def _python() -> str:
    """An interpreter the test uids may run that imports Volley (module docstring)."""
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for exe in (sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        try:
            probe = subprocess.run(
                [exe, "-c", "import engine.sendmail.main, uvloop"],
                capture_output=True,
                env=env,
                user=OUTSIDER_UID,
                group=OUTSIDER_UID,
                extra_groups=[],
            )
        except OSError:  # not found, or not executable by that uid
            continue
        if probe.returncode == 0:
            return exe
    raise AssertionError(f"no Python {version} that uid {OUTSIDER_UID} may run imports Volley")


def _as(
    uid: int, groups: list[int], argv: list[str], stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` as `uid` (primary group = uid) with supplementary `groups`."""
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        user=uid,
        group=uid,
        extra_groups=groups,
    )


# Run by another member of the drop group: prints what it could list or remove.
PEEK = """
import os, sys
for d in ("incoming", "queue", "rejected", "tmp", "corrupt"):
    try:
        os.listdir(os.path.join(sys.argv[1], d))
        print("listed", d)
    except PermissionError:
        pass
try:
    os.unlink(os.path.join(sys.argv[1], "incoming", sys.argv[2]))
    print("removed")
except PermissionError:
    pass
"""


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory every test uid can traverse (pytest's tmp_path is root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="volley-drop-group-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_drop_group_members_send_and_see_nothing(net, base: Path) -> None:
    assert os.geteuid() == 0, "this scenario starts processes as other uids: run it as root"
    x = net.domain("x.test")[0]
    root = base / "volley"
    root.mkdir()
    os.chown(root, VOLLEY_UID, VOLLEY_UID)
    # README "Sendmail": the spool reachable by the group only, incoming/ 3730.
    spool = root / "spool"
    for path, mode in ((spool, 0o710), (spool / "incoming", 0o3730)):
        path.mkdir()
        os.chown(path, VOLLEY_UID, DROP_GID)
        path.chmod(mode)
    python = _python()
    sendmail = [python, "-m", "engine.sendmail.main"]
    v = Volley(
        root,
        dns=net.dns.address,
        smtp_port=net.port,
        workers=1,
        # systemd's User=volley, SupplementaryGroups=volley-drop, UMask=0027.
        command=[
            "setpriv",
            f"--reuid={VOLLEY_UID}",
            f"--regid={VOLLEY_UID}",
            f"--groups={DROP_GID}",
            "sh",
            "-c",
            f'umask 027 && PYTHONPATH="{PYTHONPATH}" exec "$0" "$@"',
            python,
            "-m",
            "engine",
        ],
    )
    try:
        v.start()
        assert v.stop() == 0  # the spool's own directories exist now
        assert v.log_path.stat().st_uid == VOLLEY_UID  # Volley really ran as its user
        # A member sends while Volley is stopped: the drop waits in incoming/.
        got = _as(
            MEMBER_UID,
            [DROP_GID],
            [*sendmail, "-C", str(v.config_path), "-t", "-i"],
            b"From: app@sender.test\nTo: user@x.test\nSubject: s\n\nfrom a member\n",
        )
        assert got.returncode == 0, got.stderr
        [name] = os.listdir(spool / "incoming")
        st = (spool / "incoming" / name).stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (MEMBER_UID, DROP_GID, 0o640)
        # Another member can neither list incoming/ nor remove the drop it cannot see.
        peek = _as(
            OTHER_MEMBER_UID,
            [DROP_GID],
            [python, "-c", PEEK, str(spool), name],
        )
        assert (peek.returncode, peek.stdout, peek.stderr) == (0, b"", b"")
        # Outside the group: no way in, exit 77 and nothing written.
        out = _as(
            OUTSIDER_UID,
            [],
            [*sendmail, "-C", str(v.config_path), "-i", "user@x.test"],
            b"Subject: s\n\nb\n",
        )
        assert out.returncode == 77, out.stderr
        assert b"Permission denied" in out.stderr and b"drop group" in out.stderr
        assert os.listdir(spool / "incoming") == [name]
        # Volley, which owns neither the file nor its group as primary, takes it.
        v.start()
        wait_for(lambda: len(x.messages) == 1, timeout=30, message=v.text_output)
        assert x.messages[0].data.endswith(b"\r\n\r\nfrom a member\r\n")
        assert x.messages[0].mail_from == "app@sender.test"
        wait_for(lambda: os.listdir(spool / "incoming") == [], timeout=10)
        assert v.stop() == 0
    finally:
        if v.proc is not None and v.proc.poll() is None:
            v.kill()
