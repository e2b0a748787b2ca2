"""engine.sendmail.main: configuration lookup, modes and exit statuses, in process.

The console script itself, run by real programs (s-nail, PHP), is tested end to end in
tests/integration/test_sendmail_*.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from engine.drop.parse import DropEnvelope, parse_drop
from engine.sendmail import main as main_module
from engine.sendmail.main import config_path, main


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    (tmp_path / "spool" / "incoming").mkdir(parents=True)
    return tmp_path / "spool"


@pytest.fixture
def config(tmp_path: Path, spool: Path) -> Path:
    path = tmp_path / "volley.toml"
    path.write_text(
        f'[spool]\npath = "{spool}"\nmax_recipients = 3\n[smtp]\nhelo_name = "mta.example.com"\n'
    )
    return path


def _run(
    argv: list[str], stdin: bytes = b"", env: dict[str, str] | None = None
) -> tuple[int, bytes, str]:
    out, err = io.BytesIO(), io.StringIO()
    code = main(argv, stdin=io.BytesIO(stdin), stdout=out, stderr=err, environ=env or {})
    return code, out.getvalue(), err.getvalue()


def _drops(spool: Path) -> list[DropEnvelope]:
    out = []
    for path in sorted((spool / "incoming").iterdir()):
        env = parse_drop(path.read_bytes(), max_recipients=100)
        assert isinstance(env, DropEnvelope), env
        out.append(env)
    return out


def test_config_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = tmp_path / "etc-volley.toml"
    monkeypatch.setattr(main_module, "SYSTEM_CONFIG", system)
    assert config_path(None, {}) is None  # built-in defaults
    system.write_text("")
    assert config_path(None, {}) == str(system)
    assert config_path(None, {"VOLLEY_CONFIG": "/env.toml"}) == "/env.toml"
    assert config_path("/c.toml", {"VOLLEY_CONFIG": "/env.toml"}) == "/c.toml"


def test_t_i_writes_one_drop_with_its_envelope(config: Path, spool: Path) -> None:
    msg = b"From: a@s.example\nTo: t@x.example\nBcc: b@y.example\nSubject: s\n\n.\nbody\n"
    code, _, err = _run(["-C", str(config), "-t", "-i"], msg)
    assert (code, err) == (0, "")
    [env] = _drops(spool)
    assert env.sender == "a@s.example" and env.recipients == ("t@x.example", "b@y.example")
    assert env.message.endswith(b"\r\n\r\n.\r\nbody\r\n")  # -i: the lone dot is content


def test_volley_config_from_the_environment(config: Path, spool: Path) -> None:
    code, _, _ = _run(["r@x.example"], b"Subject: s\n\nb\n", {"VOLLEY_CONFIG": str(config)})
    assert code == 0
    [env] = _drops(spool)
    assert env.sender.endswith("@mta.example.com")  # the login name @ smtp.helo_name


def test_bs_one_drop_per_accepted_message(config: Path, spool: Path) -> None:
    script = b"EHLO c\r\n"
    for n in (1, 2):
        script += b"MAIL FROM:<s@s.example>\r\nRCPT TO:<r%d@x.example>\r\nDATA\r\n" % n
        script += b"Subject: %d\r\n\r\n..dot\r\n.\r\n" % n
    code, out, _ = _run(["-bs", "-C", str(config)], script + b"QUIT\r\n")
    assert code == 0 and out.count(b"250 2.0.0 Ok: queued as sendmail-") == 2
    envs = _drops(spool)
    assert sorted(e.recipients for e in envs) == [("r1@x.example",), ("r2@x.example",)]
    assert all(e.message.endswith(b"\r\n\r\n.dot\r\n") for e in envs)


@pytest.mark.parametrize(
    ("argv", "stdin", "code", "text"),
    [
        (["-q"], b"", 64, "-q"),
        ([], b"", 64, "no recipients"),
        (["bad"], b"Subject: s\n\nb\n", 65, "invalid recipient"),
        (["a@x.example"], b"From: a@b.example\nSubject: \x00\n\nb\n", 65, "NUL byte"),
        (
            ["-t"],
            b"From: a@b.example\nTo: 1@x.example, 2@x.example, 3@x.example, 4@x.example\n\n",
            65,
            "too many recipients",
        ),
    ],
)
def test_exit_statuses(
    config: Path, argv: list[str], stdin: bytes, code: int, text: str, spool: Path
) -> None:
    got, _, err = _run(["-C", str(config), *argv], stdin)
    assert got == code and err.startswith("volley-sendmail: ") and text in err
    assert err.count("\n") == 1  # one line
    assert list((spool / "incoming").iterdir()) == []


def test_no_spool_yet_is_75(tmp_path: Path) -> None:
    cfg = tmp_path / "v.toml"
    cfg.write_text(f'[spool]\npath = "{tmp_path / "nowhere"}"\n')
    code, _, err = _run(["-C", str(cfg), "a@x.example"], b"Subject: s\n\nb\n")
    assert code == 75 and "does not exist" in err


def test_a_bad_configuration_is_78_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "v.toml"
    cfg.write_text("[spool]\nmax_recipients = 0\n")
    code, _, err = _run(["-C", str(cfg), "a@x.example"], b"x")
    assert code == 78 and "spool.max_recipients" in err
    code, _, err = _run(["-C", str(tmp_path / "missing.toml"), "a@x.example"], b"x")
    assert code == 78 and "cannot read config file" in err
