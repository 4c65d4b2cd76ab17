"""The Nanonis codec: byte-exact layouts from the protocol notes, round trips of every command in
both directions (hypothesis), the compatibility rules, and malformed input."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probepilot.errors import ProtocolError
from probepilot_nanonis import codec, wire
from probepilot_nanonis.commands import COMMANDS
from probepilot_nanonis.wire import Field, Kind, Layout

NAMES = sorted(COMMANDS)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
FLOAT32 = st.floats(width=32, allow_nan=False)


def values_for(layout: Layout) -> st.SearchStrategy[dict[str, Any]]:
    """Random values for every field of ``layout``; counts follow their arrays."""
    counts: dict[str, str] = {}
    for f in layout.fields:
        if f.count:
            counts[f.count] = f.name
        for ref in f.shape or ():
            counts[ref] = f.name

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out: dict[str, Any] = {}
        rows, cols = draw(st.integers(0, 5)), draw(st.integers(0, 7))
        length = draw(st.integers(0, 9))
        for f in layout.fields:
            if f.name in counts:
                continue  # filled in from the array by the encoder
            out[f.name] = draw(_value(f, rows, cols, length))
        return out

    return build()


def _value(f: Field, rows: int, cols: int, length: int) -> st.SearchStrategy[Any]:
    if f.kind is Kind.I32:
        return st.integers(-(2**31), 2**31 - 1)
    if f.kind is Kind.U32:
        return st.integers(0, 2**32 - 1)
    if f.kind is Kind.U16:
        return st.integers(0, 2**16 - 1)
    if f.kind is Kind.F32:
        return FLOAT32
    if f.kind is Kind.F64:
        return st.floats(allow_nan=False)
    if f.kind is Kind.STR:
        return TEXT
    if f.kind is Kind.STRS:
        return st.lists(TEXT, max_size=6)
    if f.kind is Kind.I32S:
        return st.lists(st.integers(-(2**31), 2**31 - 1), min_size=length, max_size=length)
    if f.kind is Kind.F32S:
        return st.lists(FLOAT32, min_size=length, max_size=length).map(np.array)
    return st.lists(FLOAT32, min_size=rows * cols, max_size=rows * cols).map(
        lambda v: np.array(v, dtype=np.float32).reshape(rows, cols)
    )


def same(sent: dict[str, Any], got: dict[str, Any]) -> None:
    """Decoded values equal the encoded ones (floats as the wire's float32 holds them)."""
    for key, value in sent.items():
        out = got[key]
        if isinstance(value, np.ndarray) or (isinstance(value, list) and value == []):
            assert np.array_equal(np.asarray(value, np.float64), np.asarray(out, np.float64)), key
        elif isinstance(value, list) and not isinstance(value[0], str):
            assert [int(v) for v in out] == value, key
        elif isinstance(value, float):
            assert out == value or out == float(np.float32(value)), key
        else:
            assert out == value, key


# ---------------------------------------------------------------------- exact bytes


def test_the_worked_example_of_the_protocol_notes() -> None:
    request = codec.encode_request("Bias.Set", {"bias": 1.25})
    assert request.hex() == (
        "426961732e536574" + "00" * 24 + "00000004" + "0001" + "0000" + "3fa00000"
    )
    reply = codec.encode_reply(request[:32], "Bias.Set")
    assert reply.hex() == "426961732e536574" + "00" * 24 + "00000008" + "00000000" + "0" * 16


def test_reply_echoes_the_exact_request_name_field() -> None:
    raw = b"Bias.Get\x00garbage-after-the-nul\x00".ljust(32, b"\x00")
    reply = codec.encode_reply(raw, "Bias.Get", {"bias": 0.5})
    assert reply[:32] == raw
    header = codec.decode_request_header(codec.encode_request_header(raw[:32], 0))
    assert header.raw_name == raw and header.name == "Bias.Get"


def test_string_array_total_bytes_is_exact_when_sent_and_ignored_when_read() -> None:
    layout = COMMANDS["Signals.NamesGet"].reply
    body = layout.encode({"names": ["Z (m)", "Current (A)"]})
    total, count = struct.unpack_from(">ii", body)
    assert (total, count) == (4 + 5 + 4 + 11, 2)
    # Clients send different wrong totals: reading trusts the count.
    for wrong in (0, -7, 1 << 30):
        tampered = struct.pack(">i", wrong) + body[4:]
        assert layout.decode(tampered)[0]["names"] == ["Z (m)", "Current (A)"]


def test_error_reply_of_a_known_command_keeps_the_zero_filled_return_layout() -> None:
    reply = codec.encode_reply("Scan.FrameDataGrab", "Scan.FrameDataGrab", error="bad channel")
    body = reply[40:]
    # name "" (i32 0), rows 0, cols 0, no data, scan direction 0, then the error section.
    assert body[:16] == bytes(16)
    status, n = struct.unpack_from(">Ii", body, 16)
    assert (status, n, body[24:]) == (1, 11, b"bad channel")
    decoded = codec.decode_reply("Scan.FrameDataGrab", body)
    assert decoded.status == 1 and decoded.message == "bad channel"
    assert decoded.values is not None and decoded.values["data"].shape == (0, 0)


def test_unknown_command_gets_an_error_only_body_which_the_decoder_recognises() -> None:
    reply = codec.encode_unknown_reply(b"Foo.Bar", "unknown command")
    assert reply[40:] == struct.pack(">Ii", 1, 15) + b"unknown command"
    decoded = codec.decode_reply("Scan.FrameDataGrab", reply[40:])
    assert decoded == codec.Reply(None, 1, "unknown command")


def test_frames_decode_as_one_big_endian_view_without_copies() -> None:
    data = np.arange(12, dtype=">f4").reshape(3, 4)
    values = {"name": "Z (m)", "data": data, "scan_direction": 1}
    reply = codec.encode_reply("Scan.FrameDataGrab", "Scan.FrameDataGrab", values)
    got = codec.decode_reply("Scan.FrameDataGrab", reply[40:]).values
    assert got is not None
    assert got["data"].dtype == np.dtype(">f4") and got["data"].base is not None
    assert np.array_equal(got["data"], data) and (got["rows"], got["cols"]) == (3, 4)


def test_older_clients_may_leave_out_the_optional_tail_of_scan_props() -> None:
    layout = COMMANDS["Scan.PropsSet"].request
    short = struct.pack(">III", 1, 2, 1) + struct.pack(">i", 3) + b"img" + struct.pack(">i", 0)
    values = codec.decode_request("Scan.PropsSet", short)
    assert values["series"] == "img" and values["modules"] == [] and values["autopaste"] == 0
    full = layout.encode({**values, "modules": ["Z-Controller"], "autopaste": 1})
    assert codec.decode_request("Scan.PropsSet", full)["modules"] == ["Z-Controller"]


# ---------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_command_round_trips_in_both_directions(name: str, data: st.DataObject) -> None:
    cmd = COMMANDS[name]
    args = data.draw(values_for(cmd.request))
    request = codec.encode_request(name, args)
    header = codec.decode_request_header(request[:40])
    assert (header.name, header.body_size, header.send_response) == (name, len(request) - 40, True)
    same(args, codec.decode_request(name, request[40:]))

    returned = data.draw(values_for(cmd.reply))
    reply = codec.encode_reply(request[:32], name, returned)
    assert codec.decode_reply_header(reply[:40]) == (name, len(reply) - 40)
    decoded = codec.decode_reply(name, reply[40:])
    assert decoded.ok and decoded.values is not None
    same(returned, decoded.values)
    quick = codec.quick_values(name, reply[40:])
    assert quick is None or quick == decoded.values
    whole = codec.whole_reply(name, reply, len(reply))
    assert whole == (quick if cmd.reply.fixed_reply is not None else None)

    message = data.draw(TEXT)
    failed_reply = codec.encode_reply(request[:32], name, error=message or "x")
    failed = codec.decode_reply(name, failed_reply[40:])
    assert failed.status == 1 and failed.message == (message or "x")


@settings(max_examples=200, deadline=None)
@given(message=TEXT, status=st.integers(0, 2**32 - 1))
def test_error_section_round_trips(message: str, status: int) -> None:
    section = wire.encode_error(message, status)
    assert wire.decode_error(section + b"tail") == (status, message, len(section))


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(NAMES), cut=st.integers(0, 200), data=st.data())
def test_truncated_replies_raise_protocol_error_never_anything_else(
    name: str, cut: int, data: st.DataObject
) -> None:
    values = data.draw(values_for(COMMANDS[name].reply))
    body = codec.encode_reply(name, name, values)[40:]
    if cut >= len(body):
        return
    # ProtocolError is the only acceptable failure (an error-only prefix may also decode).
    with contextlib.suppress(ProtocolError):
        codec.decode_reply(name, body[:cut])


@settings(max_examples=300, deadline=None)
@given(junk=st.binary(max_size=80), name=st.sampled_from(NAMES))
def test_garbage_never_crashes_the_decoders(junk: bytes, name: str) -> None:
    for decode in (codec.decode_reply, codec.decode_request):
        with contextlib.suppress(ProtocolError):
            decode(name, junk)


def test_negative_and_oversized_counts_are_rejected_before_allocating() -> None:
    body = struct.pack(">ii", 1 << 30, 1 << 30)  # rows x cols = 2^60 floats
    bad = struct.pack(">i", 0) + body + b"\0" * 8
    with pytest.raises(ProtocolError, match=r"needs \d+ bytes"):
        COMMANDS["Scan.FrameDataGrab"].reply.decode(bad)
    with pytest.raises(ProtocolError, match="negative count"):
        COMMANDS["Scan.BufferGet"].reply.decode(struct.pack(">i", -1))


def test_the_whole_reply_fast_path_declines_anything_unusual() -> None:
    good = codec.encode_reply("Bias.Get", "Bias.Get", {"bias": 0.5})
    assert codec.whole_reply("Bias.Get", good, len(good)) == {"bias": 0.5}
    assert codec.whole_reply("Bias.Get", good, len(good) - 1) is None  # incomplete
    other = codec.encode_reply("Current.Get", "Current.Get", {"current": 0.5})
    assert codec.whole_reply("Bias.Get", other, len(other)) is None  # another command's
    failed = codec.encode_reply("Bias.Get", "Bias.Get", error="x")
    assert codec.whole_reply("Bias.Get", failed, len(failed)) is None  # has an error
    assert codec.whole_reply("Signals.NamesGet", good, len(good)) is None  # not scalars
