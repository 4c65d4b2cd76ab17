"""Encode and decode whole Nanonis messages, both directions, for every command in the table.

Pure functions (no sockets), used by the driver (encode requests, decode replies) and by the
virtual Nanonis (decode requests, encode replies). The wire rules they enforce, from
``nanonis-protocol.md``:

* a reply echoes the request's exact 32-byte name field;
* the error section is always last: ``uint32 status``, ``int32 n``, ``n`` bytes;
* a reply to a *known* command that fails still carries every return value, zero-filled,
  before the error section (clients parse the return layout first); only an *unknown* command
  gets an error-only body;
* a reply is built as one ``bytes`` (header + body) so the server can send it in one write.

Values are mappings by field name (see :mod:`probepilot_nanonis.commands`); count fields may be
left out when encoding.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

from probepilot.errors import ProtocolError
from probepilot_nanonis.commands import COMMANDS, Command
from probepilot_nanonis.wire import (
    HEADER_SIZE,
    NAME_SIZE,
    OK_BODY,
    RequestHeader,
    decode_error,
    decode_reply_header,
    decode_request_header,
    encode_error,
    encode_reply_header,
    encode_request_header,
)

__all__ = [
    "COMMANDS",
    "HEADER_SIZE",
    "Reply",
    "RequestHeader",
    "command",
    "decode_reply",
    "decode_reply_header",
    "decode_request",
    "decode_request_header",
    "encode_reply",
    "encode_request",
    "encode_unknown_reply",
    "name_field",
    "quick_values",
    "whole_reply",
]


def command(name: str) -> Command:
    """The table entry of ``name``; :class:`ProtocolError` for a command not in the table."""
    try:
        return COMMANDS[name]
    except KeyError:
        raise ProtocolError(
            f"unknown Nanonis command {name!r}",
            hint="see probepilot_nanonis.commands for the commands this codec knows",
        ) from None


# ---------------------------------------------------------------------- client side


@functools.cache
def name_field(name: str) -> bytes:
    """The 32-byte name field of ``name`` (what a reply to it must echo)."""
    return name.encode("ascii").ljust(NAME_SIZE, b"\0")


def encode_request(
    name: str, values: Mapping[str, Any] | None = None, *, send_response: bool = True
) -> bytes:
    """Header and body of a request for ``name``."""
    if not values and send_response and name in _BARE:
        return _BARE[name]
    body = command(name).request.encode(values)
    return encode_request_header(name, len(body), send_response=send_response) + body


#: Requests without arguments, encoded once.
_BARE = {
    name: encode_request_header(name, 0) for name, cmd in COMMANDS.items() if not cmd.request.fields
}


class Reply(NamedTuple):
    """A decoded reply: return values (None for an error-only body), error status and text.
    (A named tuple: it is built for every reply, and that is the cheapest.)"""

    values: dict[str, Any] | None
    status: int
    message: str

    @property
    def ok(self) -> bool:
        return self.status == 0


def decode_reply(name: str, body: bytes | bytearray | memoryview) -> Reply:
    """The return values and error section of a reply body to ``name``.

    A body that does not fit the return layout but is a complete error section on its own (what
    a controller sends for a command it does not know) decodes as an error-only reply.
    """
    layout = command(name).reply
    fixed = layout.fixed_reply
    if fixed is not None and len(body) == fixed.size:  # scalars and an empty error section
        scalars = fixed.unpack_from(body)  # the fields, then the error status and length
        return Reply(dict(zip(layout.names, scalars, strict=False)), scalars[-2], "")
    what = f"{name} reply"
    try:
        values, offset = layout.decode(body, what=what)
        status, message, end = decode_error(body, offset, what=what)
    except ProtocolError:
        error_only = _error_only(body)
        if error_only is not None:
            return error_only
        raise
    if end != len(body):
        error_only = _error_only(body)
        if error_only is not None:
            return error_only
        raise ProtocolError(
            f"{what}: {len(body) - end} unexpected bytes after the error section "
            f"(body of {len(body)} bytes)",
            hint="the controller's reply layout differs from this driver's table "
            "(another Nanonis version?)",
        )
    return Reply(values, status, message)


def quick_values(name: str, body: bytes | bytearray) -> dict[str, Any] | None:
    """The values of a successful reply made only of scalars, or None when the reply is anything
    else (then use :func:`decode_reply`). The hot path of every getter: one ``unpack_from``."""
    layout = COMMANDS[name].reply
    fixed = layout.fixed_reply
    if fixed is None or len(body) != fixed.size:
        return None
    values = fixed.unpack_from(body)
    if values[-2]:  # the error status
        return None
    names = layout.names
    return {names[0]: values[0]} if len(names) == 1 else dict(zip(names, values, strict=False))


#: Whole replies (header, scalars, empty error section) of commands that return only scalars.
_WHOLE = {
    name: struct.Struct(">32siI" + cmd.reply.fixed_reply.format[1:])
    for name, cmd in COMMANDS.items()
    if cmd.reply.fixed_reply is not None
}


def whole_reply(name: str, buf: bytes | bytearray, size: int) -> dict[str, Any] | None:
    """The values of a successful, scalar-only reply to ``name`` that fills ``buf[:size]``
    exactly (header included), or None for any other reply. The driver's hot path."""
    whole = _WHOLE.get(name)
    if whole is None or size != whole.size:
        return None
    fields = whole.unpack_from(buf)
    if fields[0] != name_field(name) or fields[1] != size - HEADER_SIZE or fields[-2]:
        return None
    names = COMMANDS[name].reply.names
    if len(names) == 1:
        return {names[0]: fields[3]}
    return dict(zip(names, fields[3:], strict=False))


def _error_only(body: bytes | bytearray | memoryview) -> Reply | None:
    try:
        status, message, end = decode_error(body)
    except ProtocolError:
        return None
    if end != len(body) or status == 0:
        return None
    return Reply(None, status, message)


# ---------------------------------------------------------------------- server side


def decode_request(name: str, body: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The arguments of a request body. Trailing bytes are ignored (clients of other versions
    send extra arguments); a short body raises :class:`ProtocolError`."""
    values, _ = command(name).request.decode(body, what=f"{name} request")
    return values


def encode_reply(
    raw_name: bytes | str,
    name: str,
    values: Mapping[str, Any] | None = None,
    *,
    error: str = "",
) -> bytes:
    """Header and body of the reply to ``name``, echoing ``raw_name`` (the request's 32-byte name
    field, exactly as received).

    With ``error``, or without ``values`` for a command that returns some, the return values are
    zero-filled and the error section carries ``error`` (status 1).
    """
    layout = command(name).reply
    if not layout.fields:
        body = encode_error(error) if error else OK_BODY
    elif layout.fixed_reply is not None and values is not None and not error:
        # Scalars then an empty error section: one pack (the commonest replies).
        try:
            body = layout.fixed_reply.pack(*[values[n] for n in layout.names], 0, 0)
        except struct.error as exc:
            raise ValueError(f"cannot encode the reply to {name}: {exc}") from None
    else:
        if error or values is None:
            values = layout.zeros()
        body = layout.encode(values) + encode_error(error)
    return encode_reply_header(raw_name, len(body)) + body


def encode_unknown_reply(raw_name: bytes | str, message: str) -> bytes:
    """The error-only reply to a command the server does not know."""
    body = encode_error(message or "unknown command", status=1)
    return encode_reply_header(raw_name, len(body)) + body
