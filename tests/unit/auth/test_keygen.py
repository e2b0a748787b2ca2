"""engine.auth.keygen: `volley dkim keygen` writes a usable key (0600, never over an
existing one) and prints the record to publish and the table to configure."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from engine.auth.dkim import DkimError, load_key
from engine.cli import main


@pytest.mark.parametrize(
    ("kind", "algorithm"), [("rsa", b"rsa-sha256"), ("ed25519", b"ed25519-sha256")]
)
def test_keygen_writes_a_private_key_and_prints_its_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, algorithm: bytes
) -> None:
    assert (
        main(["dkim", "keygen", "Example.COM.", "s2026", "--type", kind, "--dir", str(tmp_path)])
        == 0
    )
    path = tmp_path / "example.com.s2026.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_key(path, "example.com", "s2026")
    assert key.algorithm == algorithm
    out = capsys.readouterr().out
    assert key.dns_record() in out
    assert '[dkim."example.com"]\nselector = "s2026"' in out


def test_keygen_never_replaces_a_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["dkim", "keygen", "example.com", "s1", "--type", "ed25519", "--dir", str(tmp_path)]
    assert main(args) == 0
    before = (tmp_path / "example.com.s1.pem").read_bytes()
    assert main(args) == 1
    assert "exists: choose a new selector" in capsys.readouterr().err
    assert (tmp_path / "example.com.s1.pem").read_bytes() == before


def test_rsa_sizes_outside_1024_8192_are_refused(tmp_path: Path) -> None:
    from engine.auth.keygen import keygen

    with pytest.raises(DkimError, match="1024-8192"):
        keygen("example.com", "s1", "rsa", 512, tmp_path)
    assert not list(tmp_path.iterdir())
