from __future__ import annotations

from pathlib import Path

import pytest

from spool.layout import (
    MAX_DOMAIN_LENGTH,
    NAME_MAX,
    Layout,
    check_domain,
    check_plain_name,
    domain_of_entry,
    entry_name,
    is_drop_name,
    reason_name,
)

ID = "18d3f0a1b2c3d4e5f6a7b8c9d0e1f"


def test_entry_name_round_trip() -> None:
    name = entry_name(ID, "example.com")
    assert name == f"{ID}@example.com"
    assert domain_of_entry(name) == "example.com" and name[: len(ID)] == ID


@pytest.mark.parametrize(
    "domain",
    ["a", "xn--bcher-kva.example", "mx-1.example.co.uk", "1.2.3.4", "-x.example", "a" * 200],
)
def test_accepted_domains(domain: str) -> None:
    check_domain(domain)
    assert domain_of_entry(entry_name(ID, domain)) == domain


@pytest.mark.parametrize(
    "domain",
    [
        "",
        ".example.com",
        "..",
        "Example.com",
        "bücher.example",
        "a/b",
        "a b",
        "a@b",
        "a_b.example",
        "x\x00y",
        "a" * (MAX_DOMAIN_LENGTH + 1),
    ],
)
def test_rejected_domains(domain: str) -> None:
    with pytest.raises(ValueError):
        check_domain(domain)
    with pytest.raises(ValueError):
        entry_name(ID, domain)


def test_entry_name_rejects_bad_id() -> None:
    with pytest.raises(ValueError, match="not a spool id"):
        entry_name("xyz", "example.com")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "a\0b"])
def test_check_plain_name_refuses_what_escapes_a_directory(name: str) -> None:
    with pytest.raises(ValueError, match="not a plain file name"):
        check_plain_name(name)


def test_longest_entry_name_leaves_room_for_suffix_and_reason() -> None:
    longest = entry_name(ID, "a" * MAX_DOMAIN_LENGTH)
    assert len(reason_name(longest + ".99999").encode()) <= NAME_MAX


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("msg.eml", True),
        ("MSG.EML", True),
        ("message with spaces.eml", True),
        ("réponse.eml", True),
        (".msg.eml.tmp", False),
        (".msg.eml", False),
        ("msg.eml.reason", False),
        ("notes.txt", False),  # issue #9: only *.eml is taken
        ("x.tmp", False),
        ("news.eml~", False),
        ("eml", False),
    ],
)
def test_is_drop_name(name: str, expected: bool) -> None:
    assert is_drop_name(name) is expected


def test_layout_paths() -> None:
    lay = Layout(Path("/s"))
    assert lay.incoming == Path("/s/incoming")
    assert lay.rejected == Path("/s/rejected")
    assert lay.corrupt == Path("/s/corrupt")
    assert lay.feedback == Path("/s/feedback")
    assert lay.feedback_rejected == Path("/s/feedback/rejected")
    assert lay.queue(3) == Path("/s/queue/3")
    assert lay.tmp(0) == Path("/s/tmp/0")
    with pytest.raises(ValueError):
        lay.queue(-1)


def test_all_dirs_parents_first() -> None:
    dirs = Layout(Path("/s")).all_dirs(2)
    assert dirs.index(Path("/s/queue")) < dirs.index(Path("/s/queue/1"))
    assert set(dirs) == {
        Path(p)
        for p in [
            "/s/incoming",
            "/s/rejected",
            "/s/corrupt",
            "/s/queue",
            "/s/tmp",
            "/s/queue/0",
            "/s/queue/1",
            "/s/tmp/0",
            "/s/tmp/1",
            "/s/feedback",
            "/s/feedback/rejected",
        ]
    }
    assert dirs.index(Path("/s/feedback")) < dirs.index(Path("/s/feedback/rejected"))
    with pytest.raises(ValueError):
        Layout(Path("/s")).all_dirs(0)


def test_existing_shards_only_counts_plain_numbered_dirs(tmp_path: Path) -> None:
    lay = Layout(tmp_path)
    assert lay.existing_shards(lay.queue_root) == []  # missing queue/ means none
    for name in ["0", "2", "10", "01", "x", "-1"]:
        (lay.queue_root / name).mkdir(parents=True)
    (lay.queue_root / "3").write_bytes(b"a file, not a shard")
    assert lay.existing_shards(lay.queue_root) == [0, 2, 10]
