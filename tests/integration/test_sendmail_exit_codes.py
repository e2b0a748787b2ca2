"""The installed volley-sendmail's exit statuses (sysexits.h) and its one stderr line,
as a calling program sees them; nothing is left in incoming/ when it fails.
(77, no permission, needs other uids: tests/integration/test_sendmail_drop_permissions.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.sendmail import sendmail
from tests.support.volley import to_toml

GOOD = b"From: app@sender.test\nSubject: s\n\nbody\n"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "spool" / "incoming").mkdir(parents=True)
    path = tmp_path / "volley.toml"
    path.write_text(to_toml({"spool": {"path": str(tmp_path / "spool")}}))
    return path


@pytest.mark.parametrize(
    ("args", "stdin", "status", "text"),
    [
        (["-t", "-i"], GOOD.replace(b"\n\n", b"\nTo: ok@x.test\n\n"), 0, ""),
        (["-bp"], b"", 64, "-bp: not supported"),
        (["-i"], GOOD, 64, "no recipients"),
        (["-i", "-X"], GOOD, 64, "requires argument"),
        (["-i", "a@[127.0.0.1]"], GOOD, 65, "address literals"),
        (["-t", "-i"], GOOD, 65, "no recipients"),
        (["-i", "ok@x.test"], b"From: a@b.example\nX: \x7f\n\n", 65, "control byte"),
    ],
)
def test_status_and_message(
    config: Path, args: list[str], stdin: bytes, status: int, text: str
) -> None:
    got = sendmail(config, *args, stdin=stdin)
    err = got.stderr.decode()
    assert got.returncode == status, err
    incoming = list((config.parent / "spool" / "incoming").iterdir())
    if status:
        assert err.startswith("volley-sendmail: ") and text in err and err.count("\n") == 1
        assert incoming == []
    else:
        assert err == "" and len(incoming) == 1


def test_spool_not_created_yet_is_75(tmp_path: Path) -> None:
    path = tmp_path / "volley.toml"
    path.write_text(to_toml({"spool": {"path": str(tmp_path / "none")}}))
    got = sendmail(path, "-i", "ok@x.test", stdin=GOOD)
    assert got.returncode == 75 and b"does not exist" in got.stderr


def test_bad_configuration_is_78_and_volley_config_is_read(tmp_path: Path) -> None:
    path = tmp_path / "volley.toml"
    path.write_text("[spool]\nnot_a_key = 1\n")
    got = sendmail(None, "-i", "ok@x.test", stdin=GOOD, env={"VOLLEY_CONFIG": str(path)})
    assert got.returncode == 78 and b"spool.not_a_key" in got.stderr
