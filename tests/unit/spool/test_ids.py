from __future__ import annotations

import pytest

from spool.ids import ID_LENGTH, entry_id, id_time, is_entry_id, random_salt

T = 1_795_704_371_153_755_046  # an mtime_ns from this machine


def test_shape_time_prefix_and_hash() -> None:
    i = entry_id(T, b"salt")
    assert len(i) == ID_LENGTH == 29
    assert i[:13] == f"{T // 1000:013x}"
    assert is_entry_id(i)


def test_deterministic_for_same_time_and_salt() -> None:
    assert entry_id(T, b"drop-1|42|5000") == entry_id(T, b"drop-1|42|5000")


def test_salt_changes_only_the_hash_part() -> None:
    a, b = entry_id(T, b"a"), entry_id(T, b"b")
    assert a[:13] == b[:13]
    assert a[13:] != b[13:]


def test_name_order_is_time_order() -> None:
    times = [0, 1000, 2000, 10**9, T, T + 1000, 16**13 * 1000 - 1]
    ids = [entry_id(t, b"z" * (n + 1)) for n, t in enumerate(times)]
    assert sorted(ids) == ids


def test_sub_microsecond_differences_do_not_change_the_time_prefix() -> None:
    assert entry_id(T, b"x") == entry_id(T - T % 1000 + 999, b"x")


def test_id_time_reads_back_microseconds() -> None:
    assert id_time(entry_id(T, b"x")) == pytest.approx((T // 1000) / 1e6, abs=1e-6)
    assert id_time(entry_id(0, b"x")) == 0.0


@pytest.mark.parametrize("bad", [-1, -1000, 16**13 * 1000])
def test_time_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        entry_id(bad, b"x")


@pytest.mark.parametrize(
    "text", ["", "0" * 19, "0" * 21, "0" * 19 + "G", "0" * 19 + "A", "0" * 19 + " "]
)
def test_is_entry_id_rejects(text: str) -> None:
    assert not is_entry_id(text)
    with pytest.raises(ValueError):
        id_time(text)


def test_random_salt() -> None:
    a, b = random_salt(), random_salt()
    assert len(a) == 16
    assert a != b
