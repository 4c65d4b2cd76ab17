"""The journal: msgpack records any reader can stream, written at once, fsynced within a
bounded delay, and read back up to the last complete record whatever follows it."""

from __future__ import annotations

import math
import os
import stat
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probepilot.events import Event
from probepilot.model import Dip, Finding, Move, TipState
from probepilot.store._common import atomic_write
from probepilot.store.journal import Journal, JournalError, decode_journal, plain, read_journal


def _journal_bytes(count: int = 5) -> tuple[bytes, list[int]]:
    """A journal's bytes and where each record ends."""
    data = b""
    ends = []
    for seq in range(1, count + 1):
        record = {"type": "t.x", "seq": seq, "time": 1.5 * seq, "data": {"n": seq, "s": "é"}}
        data += msgpack.packb(record, use_bin_type=True)
        ends.append(len(data))
    return data, ends


def test_records_are_plain_msgpack_maps_in_order(tmp_path: Path) -> None:
    path = tmp_path / "journal.msgpack"
    with Journal(path) as journal:
        first = journal.emit("run.started", {"run_id": "x"})
        journal.append(Event("frame.persisted", 7, {"file": "frames/a.sxm"}, time=12.5))
        journal.emit("policy.decided", {"action": Dip(depth=1e-9)})
    assert first.seq == 1 and journal.last_seq == 8
    records = list(msgpack.Unpacker(path.open("rb"), raw=False))
    assert [r["seq"] for r in records] == [1, 7, 8]
    assert records[1] == {
        "type": "frame.persisted",
        "seq": 7,
        "time": 12.5,
        "data": {"file": "frames/a.sxm"},
    }
    assert records[2]["data"]["action"] == {
        "depth": 1e-9,
        "bias": 0.0,
        "position": None,
        "kind": "dip",
    }
    contents = read_journal(path)
    assert contents.intact and [e.seq for e in contents.events] == [1, 7, 8]
    assert contents.events[1] == Event("frame.persisted", 7, {"file": "frames/a.sxm"}, 12.5)


def test_a_record_reaches_the_file_before_append_returns(tmp_path: Path) -> None:
    """No user-space buffer: a killed process loses nothing it appended (fsync is separate)."""
    path = tmp_path / "journal.msgpack"
    with Journal(path, flush_interval=1.0) as journal:
        journal.emit("a", {"x": 1})
        assert [e.type for e in read_journal(path).events] == ["a"]


def test_fsync_follows_each_record_within_the_flush_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[tuple[int, float]] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        real_fsync(fd)
        synced.append((fd, time.monotonic()))

    monkeypatch.setattr(os, "fsync", spy)
    journal = Journal(tmp_path / "journal.msgpack", flush_interval=0.2)
    fd = journal._fd
    try:
        for burst in range(3):
            appended = time.monotonic()
            for k in range(50):  # a burst: one fsync covers all of it
                journal.emit("e", {"burst": burst, "k": k})
            deadline = appended + 1.0
            while not [t for f, t in synced if f == fd and t >= appended]:
                assert time.monotonic() < deadline, "no fsync within 1 s of an append"
                time.sleep(0.01)
            first = min(t for f, t in synced if f == fd and t >= appended)
            assert first - appended <= 0.2 + 0.3  # the interval, plus slack for a slow machine
        time.sleep(0.3)
        assert journal.syncs <= 4  # batched: 150 records, about one fsync per burst
    finally:
        journal.close()
    assert synced[-1][0] == fd  # close() syncs what is left


def test_the_flusher_is_idle_when_nothing_is_appended(tmp_path: Path) -> None:
    with Journal(tmp_path / "j", flush_interval=0.05) as journal:
        time.sleep(0.2)
        assert journal.syncs == 0
        journal.emit("a")
        time.sleep(0.3)
        assert journal.syncs == 1
    names = [t.name for t in threading.enumerate()]
    assert not any(name.startswith("journal-flusher") for name in names)


def test_misuse_is_refused_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "journal.msgpack"
    journal = Journal(path)
    journal.emit("a")
    with pytest.raises(ValueError, match="does not follow 1"):
        journal.append(Event("b", 1))
    with pytest.raises(ValueError, match="cannot go into the journal"):
        journal.emit("c", {"thing": object()})
    with pytest.raises(ValueError, match="non-empty string"):
        journal.append(Event("", 5))
    journal.close()
    journal.close()  # idempotent
    with pytest.raises(JournalError, match="closed"):
        journal.emit("d")
    assert [e.type for e in read_journal(path).events] == ["a"]
    with pytest.raises(JournalError, match="cannot create the journal"):
        Journal(path)  # a journal is written once: never appended to after a crash
    with pytest.raises(ValueError, match="flush_interval"):
        Journal(tmp_path / "other", flush_interval=2.0)


def test_plain_turns_model_values_into_msgpack_data() -> None:
    finding = Finding("dt", "double_tip", np.float64(0.75), {"offset_x": 1e-10}, lines=(1, 2))
    assert plain({"f": finding, "state": TipState.GOOD, "a": np.arange(3), "p": Path("x/y")}) == {
        "f": {
            "analyzer": "dt",
            "kind": "double_tip",
            "confidence": 0.75,
            "values": {"offset_x": 1e-10},
            "lines": [1, 2],
            "message": "",
        },
        "state": "good",
        "a": [0, 1, 2],
        "p": "x/y",
    }
    assert plain(Move(1e-9, 2e-9)) == {"x": 1e-9, "y": 2e-9, "kind": "move"}


@pytest.mark.parametrize("cut", range(1, 30))
def test_a_torn_last_record_is_reported_not_raised(cut: int) -> None:
    data, ends = _journal_bytes()
    size = ends[-1] - ends[-2]
    assert cut < size
    contents = decode_journal(data[: ends[-2] + cut])
    assert [e.seq for e in contents.events] == [1, 2, 3, 4]
    assert contents.tail is not None and not contents.intact
    assert (contents.tail.offset, contents.tail.size) == (ends[-2], cut)
    assert "cut short" in str(contents.tail)


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        (b"\x00" * 64, "int where an event map"),  # a power cut can leave zeroed blocks
        (b"\xc1garbage", "not msgpack"),
        (msgpack.packb({"type": "x", "seq": 2, "time": 1.0, "data": {}}), "does not follow 5"),
        (msgpack.packb({"type": "x", "seq": 9, "time": "noon", "data": {}}), "has no time"),
        (msgpack.packb({"seq": 9, "time": 1.0, "data": {}}), "no event type"),
        (msgpack.packb([1, 2, 3]), "list where an event map"),
        (b"\xdb\xff\xff\xff\xff", "cut short"),  # a string claiming 4 GiB: no allocation
    ],
)
def test_damage_after_the_last_good_record_is_reported(tail: bytes, reason: str) -> None:
    data, ends = _journal_bytes()
    contents = decode_journal(data + tail)
    assert len(contents.events) == 5
    assert contents.tail is not None
    assert contents.tail.offset == ends[-1] and contents.tail.size == len(tail)
    assert reason in contents.tail.reason


def test_an_empty_journal_is_intact_and_empty(tmp_path: Path) -> None:
    (tmp_path / "j").write_bytes(b"")
    contents = read_journal(tmp_path / "j")
    assert contents.events == [] and contents.intact


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 5))
def test_any_bytes_after_good_records_parse_up_to_them(junk: bytes, keep: int) -> None:
    data, ends = _journal_bytes()
    prefix = data[: ends[keep - 1]] if keep else b""
    contents = decode_journal(prefix + junk)
    assert [e.seq for e in contents.events][:keep] == list(range(1, keep + 1))
    assert contents.intact == (contents.tail is None)
    if contents.tail is not None:
        assert contents.tail.offset + contents.tail.size == len(prefix + junk)
    assert not any(math.isnan(e.time) for e in contents.events)


def test_atomic_write_fsyncs_the_folder_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        kinds.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write(tmp_path / "a.bin", b"data")
    assert kinds == ["file", "dir"]
    assert (tmp_path / "a.bin").read_bytes() == b"data"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
