"""The wire format: round trips of headers and arrays, and a strict decoder that turns every
malformed, truncated or wrong-version message into a ProtocolError naming the problem."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probepilot.bus import wire
from probepilot.errors import ProtocolError


def header_of(frames: list[Any]) -> dict[str, Any]:
    return msgpack.unpackb(frames[0], raw=False, strict_map_key=False, ext_hook=msgpack.ExtType)


def with_header(frames: list[Any], **changes: Any) -> list[Any]:
    header = header_of(frames)
    header.update(changes)
    return [msgpack.packb(header, use_bin_type=True), *frames[1:]]


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype="<f8").reshape(3, 4),
        np.arange(512 * 512, dtype=np.float32).reshape(512, 512),
        np.array([True, False]),
        np.arange(5, dtype=">i4"),  # big-endian travels as such
        np.zeros((0, 3), dtype=np.int16),
        np.array(2.5),  # 0-d
        (np.arange(6) + 1j).astype(np.complex64),
        np.arange(20.0).reshape(4, 5)[:, ::2],  # not contiguous: made contiguous
    ],
    ids=["f8", "f32-512", "bool", "i4-be", "empty", "0d", "c8", "strided"],
)
def test_arrays_round_trip_bit_for_bit(array: np.ndarray) -> None:
    frames = wire.encode("progress", {"line": {"x": array, "n": 3}}, seq=7, cid=42, now=12.5)
    assert len(frames) == 2  # the header, then the array's own buffer
    message = wire.decode(frames)
    assert (message.type, message.seq, message.cid, message.time) == ("progress", 7, 42, 12.5)
    received = message.body["line"]["x"]
    assert received.dtype == array.dtype and received.shape == array.shape
    assert np.array_equal(received, array)
    assert message.body["line"]["n"] == 3


def test_arrays_are_sent_from_their_own_memory_and_received_without_copy() -> None:
    array = np.arange(1000, dtype=np.float64)
    frames = wire.encode("result", {"value": array})
    assert frames[1] is array  # zero copy on the way out
    buffer = bytearray(array.tobytes())
    received = wire.decode([frames[0], buffer]).body["value"]
    assert np.shares_memory(received, np.frombuffer(buffer))  # and on the way in
    received[0] = 5.0  # writable, as a driver's arrays are
    assert buffer[:8] == np.float64(5.0).tobytes()


def test_numpy_scalars_and_nested_values_travel_as_plain_values() -> None:
    body = {"a": np.float32(1.5), "b": np.int64(3), "c": np.bool_(True), "d": [1, "x", None]}
    message = wire.decode(wire.encode("status", body))
    assert message.body == {"a": 1.5, "b": 3, "c": True, "d": [1, "x", None]}
    assert type(message.body["b"]) is int


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (np.array([object()], dtype=object), "object arrays"),
        (np.array(["a"]), "only numeric"),
        (object(), "cannot encode"),
    ],
)
def test_the_sender_refuses_what_must_not_travel(value: Any, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        wire.encode("result", {"value": value})


def test_unknown_message_types_are_refused_on_both_sides() -> None:
    with pytest.raises(ProtocolError, match="unknown type"):
        wire.encode("launch", {})
    frames = with_header(wire.encode("ping", {}), t="launch")
    with pytest.raises(ProtocolError, match="unknown message type 'launch'"):
        wire.decode(frames)
    with pytest.raises(ProtocolError, match="unexpected 'ping' message"):
        wire.decode(wire.encode("ping", {}), expect={"call"})


VALID = wire.encode("call", {"m": "scan", "a": [np.ones((2, 3))]}, seq=1, cid=1)


@pytest.mark.parametrize(
    ("frames", "problem"),
    [
        ([], "empty message"),
        ([b""], "not valid msgpack"),
        ([VALID[0][:-3], VALID[1]], "not valid msgpack"),  # header cut short
        ([VALID[0] + b"\x00", VALID[1]], "not valid msgpack"),  # trailing bytes
        ([VALID[0]], "1 arrays are described but 0 buffers"),  # buffer missing
        ([*VALID, b"extra"], "but 2 buffers"),
        ([VALID[0], bytes(VALID[1])[:-1]], "needs 48 bytes but the buffer has 47"),
        ([msgpack.packb([1, 2])], "header is a list"),
        ([msgpack.packb({"t": "ping"})], "no protocol version"),
        (with_header(VALID, v=2), "protocol version 2, but this probepilot speaks version 1"),
        (with_header(VALID, v="1"), "protocol version '1'"),
        (with_header(VALID, x=1), "unknown x"),
        (with_header(VALID, s=-1), "sequence number -1"),
        (with_header(VALID, c=True), "correlation id True"),
        (with_header(VALID, ts=float("nan")), "timestamp nan"),
        (with_header(VALID, a=[["|O8", [2, 3]]]), "dtype '|O8' refused"),
        (with_header(VALID, a=[["<U4", [2, 3]]]), "refused"),
        (with_header(VALID, a=[["V8", [2, 3]]]), "refused"),
        (with_header(VALID, a=[["<f8", [2, -3]]]), "is not a list"),
        (with_header(VALID, a=[["<f8", "2x3"]]), "is not a list"),
        (with_header(VALID, a=[["<f8", [48]]]), "needs 384 bytes"),
        (with_header(VALID, b=[1]), "body is a list"),
        (with_header(VALID, b={"m": "scan"}), "array 0 is sent but not referenced"),
        (
            with_header(VALID, b={"a": msgpack.ExtType(1, b"\x00\x00\x00\x07")}),
            "reference to array 7",
        ),
        (
            with_header(
                VALID,
                b={
                    "a": msgpack.ExtType(1, b"\x00\x00\x00\x00"),
                    "b": msgpack.ExtType(1, b"\0" * 4),
                },
            ),
            "referenced twice",
        ),
        (with_header(VALID, b={"a": msgpack.ExtType(9, b"x")}), "unknown msgpack extension"),
        (with_header(VALID, b={"a": msgpack.Timestamp(1, 0)}), "Timestamp value is not allowed"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_malformed_messages_are_refused_with_what_was_wrong(
    frames: list[Any], problem: str
) -> None:
    with pytest.raises(ProtocolError, match=problem):
        wire.decode(frames)


def test_deep_nesting_is_refused() -> None:
    value: Any = 1
    for _ in range(wire.MAX_DEPTH + 5):
        value = [value]
    with pytest.raises(ProtocolError, match="nested deeper"):
        wire.decode(wire.encode("status", {"x": value}))


def test_field_of_names_the_bad_field() -> None:
    message = wire.decode(wire.encode("cancel", {"target": "seven", "flag": True}))
    with pytest.raises(ProtocolError, match="'target' is 'seven', expected int"):
        wire.field_of(message, "target", int)
    with pytest.raises(ProtocolError, match="expected int"):
        wire.field_of(message, "flag", int)  # a bool is not an int here


# ---------------------------------------------------------------------------- fuzz

frame_bytes = st.binary(max_size=300)


@settings(max_examples=300, deadline=None)
@given(st.lists(frame_bytes, max_size=4))
def test_random_bytes_only_ever_raise_protocol_error(frames: list[bytes]) -> None:
    with contextlib.suppress(ProtocolError):  # and nothing else
        wire.decode(frames)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=6)),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=4) | st.integers(-5, 5), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    header=st.dictionaries(
        st.sampled_from(["v", "t", "s", "c", "ts", "a", "b", "zz"]), msgpack_values, max_size=8
    ),
    buffers=st.lists(st.binary(max_size=64), max_size=3),
)
def test_random_headers_only_ever_raise_protocol_error(
    header: dict[str, Any], buffers: list[bytes]
) -> None:
    frames = [msgpack.packb(header, use_bin_type=True), *buffers]
    try:
        message = wire.decode(frames)
    except ProtocolError:
        return
    assert message.type in wire.MESSAGE_TYPES


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, len(VALID[0]) - 1), flip=st.integers(0, len(VALID[0]) - 1))
def test_truncated_or_corrupted_valid_messages_never_raise_anything_else(
    cut: int, flip: int
) -> None:
    header = bytearray(VALID[0])
    header[flip] ^= 0xFF
    for frames in ([VALID[0][:cut], VALID[1]], [bytes(header), VALID[1]]):
        with contextlib.suppress(ProtocolError):  # and nothing else
            wire.decode(frames)
