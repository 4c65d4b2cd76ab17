"""A stand-in for ``RemoteAccess_API.dll``: a Python object with the library's functions, for
testing :class:`~probepilot_matrix.dll.RemoteAccessTransport` without the DLL.

Each function checks its arguments as the C library would receive them (bytes names, index
``c_int(-1)``, outputs passed by reference as the exact ctypes types, caller-allocated buffers
with their capacities set), then answers from a backend, the simulated MATRIX, so that the real
driver can run on top of the ctypes transport. Every call is recorded in :attr:`calls`.
"""

from __future__ import annotations

import ctypes
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from probepilot.errors import DriverConnectionError
from probepilot_matrix.dll import String
from probepilot_matrix.simulated import SimulatedMatrixTransport
from probepilot_matrix.transport import (
    Code,
    Event,
    MatrixRefused,
    MatrixUnknownName,
    Value,
    ValueType,
)

FUNCTIONS = (
    "setHost",
    "init",
    "rundown",
    "setScopeName",
    "getDoubleProperty",
    "getIntegerProperty",
    "getEnumProperty",
    "getBooleanProperty",
    "getStringPropertyByDesc",
    "getPairProperty",
    "setDoubleProperty",
    "setIntegerProperty",
    "setEnumProperty",
    "setBooleanProperty",
    "setStringProperty",
    "setPairProperty",
    "callFunctionByDesc",
    "setObservedEntity",
    "getEntityEventByDesc",
)
CArg = type(ctypes.byref(ctypes.c_int()))
STRING_P = ctypes.POINTER(String)


def out(ref: Any, ctype: Any) -> Any:
    """The object a ``byref`` argument points to, checked to be a ``ctype``."""
    assert isinstance(ref, CArg), f"expected byref(...), got {type(ref).__name__}"
    assert isinstance(ref._obj, ctype), f"expected {ctype}, got {type(ref._obj).__name__}"
    return ref._obj


def name_of(raw: Any) -> str:
    assert isinstance(raw, bytes), f"names are passed as bytes, got {type(raw).__name__}"
    return raw.decode()


def whole(index: Any) -> None:
    assert isinstance(index, ctypes.c_int) and index.value == -1, f"index {index!r}"


def decode_argument(slot: Any) -> Value | None:
    kind = slot.type
    if kind == 0:
        return None
    if kind == ValueType.STRING:
        text = slot.string[0].contents
        return bytes(text.text[: text.length]).decode()
    if kind == ValueType.DOUBLE:
        return float(slot.real)
    if kind == ValueType.INTEGER:
        return int(slot.integer)
    if kind == ValueType.BOOLEAN:
        return bool(slot.boolean)
    if kind == ValueType.PAIR:
        return (float(slot.pairX), float(slot.pairY))
    raise AssertionError(f"unexpected argument type {kind}")


class FakeRemoteAccess:
    """See the module docstring. ``delays`` maps a function name to seconds it hangs."""

    def __init__(self, backend: SimulatedMatrixTransport | None = None) -> None:
        self.backend = backend
        self.calls: list[tuple[str, Any]] = []
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.threads: set[int] = set()
        self.delays: dict[str, float] = {}
        self.codes: dict[str, int] = {}  # function -> the code it returns instead
        for function in FUNCTIONS:  # every call is recorded, may hang or fail on request
            setattr(self, function, self._wrap(function, getattr(self, function)))

    def _wrap(self, function: str, body: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            self.threads.add(threading.get_ident())
            self.calls.append((function, args))
            delay = self.delays.get(function, 0.0)
            if delay:
                time.sleep(delay)
            if function in self.codes:
                return self.codes[function]
            try:
                return body(*args)
            except (MatrixRefused, MatrixUnknownName) as exc:
                return exc.code
            except DriverConnectionError:
                return Code.NOSERVER

        return call

    # ---------------------------------------------------------------- session

    def setHost(self, host: Any) -> None:
        name_of(host)

    def init(self, folder: Any) -> int:
        name_of(folder)
        if self.backend is not None:
            self.backend.open()
        return Code.SUCCESS

    def rundown(self) -> int:
        if self.backend is not None:
            self.backend.close()
        return Code.SUCCESS

    def setScopeName(self, scope: Any) -> None:
        name_of(scope)

    def _get(self, raw: Any, index: Any, kind: ValueType) -> Value:
        whole(index)
        assert self.backend is not None
        return self.backend.get(name_of(raw), kind)

    # ---------------------------------------------------------------- getters

    def getDoubleProperty(self, raw: Any, index: Any, ref: Any) -> int:
        target = out(ref, ctypes.c_double)
        target.value = float(self._get(raw, index, ValueType.DOUBLE))  # type: ignore[arg-type]
        return Code.SUCCESS

    def getIntegerProperty(self, raw: Any, index: Any, ref: Any) -> int:
        out(ref, ctypes.c_int).value = int(self._get(raw, index, ValueType.INTEGER))  # type: ignore[call-overload]
        return Code.SUCCESS

    def getEnumProperty(self, raw: Any, index: Any, ref: Any) -> int:
        out(ref, ctypes.c_int).value = int(self._get(raw, index, ValueType.ENUM))  # type: ignore[call-overload]
        return Code.SUCCESS

    def getBooleanProperty(self, raw: Any, index: Any, ref: Any) -> int:
        value = self._get(raw, index, ValueType.BOOLEAN)
        out(ref, ctypes.c_char).value = b"\x01" if value else b"\x00"
        return Code.SUCCESS

    def getStringPropertyByDesc(self, raw: Any, index: Any, ref: Any) -> int:
        string = out(ref, STRING_P).contents
        assert string.length >= 255, "the caller sets the capacity"
        text = str(self._get(raw, index, ValueType.STRING)).encode()
        string.text, string.length = text, len(text)
        return Code.SUCCESS

    def getPairProperty(self, raw: Any, index: Any, rx: Any, ry: Any) -> int:
        x, y = self._get(raw, index, ValueType.PAIR)  # type: ignore[misc]
        out(rx, ctypes.c_double).value = x
        out(ry, ctypes.c_double).value = y
        return Code.SUCCESS

    # ---------------------------------------------------------------- setters

    def _set(self, raw: Any, index: Any, kind: ValueType, value: Value) -> int:
        whole(index)
        assert self.backend is not None
        self.backend.set(name_of(raw), kind, value)
        return Code.SUCCESS

    def setDoubleProperty(self, raw: Any, index: Any, value: Any) -> int:
        assert isinstance(value, ctypes.c_double)
        return self._set(raw, index, ValueType.DOUBLE, value.value)

    def setIntegerProperty(self, raw: Any, index: Any, value: Any) -> int:
        assert isinstance(value, ctypes.c_int)
        return self._set(raw, index, ValueType.INTEGER, value.value)

    def setEnumProperty(self, raw: Any, index: Any, value: Any) -> int:
        assert isinstance(value, ctypes.c_int)
        return self._set(raw, index, ValueType.ENUM, value.value)

    def setBooleanProperty(self, raw: Any, index: Any, value: Any) -> int:
        assert isinstance(value, ctypes.c_int) and value.value in (0, 1)
        return self._set(raw, index, ValueType.BOOLEAN, bool(value.value))

    def setStringProperty(self, raw: Any, index: Any, value: Any) -> int:
        assert isinstance(value, ctypes.c_char_p) and value.value is not None
        return self._set(raw, index, ValueType.STRING, value.value.decode())

    def setPairProperty(self, raw: Any, index: Any, x: Any, y: Any) -> int:
        assert isinstance(x, ctypes.c_double) and isinstance(y, ctypes.c_double)
        return self._set(raw, index, ValueType.PAIR, (x.value, y.value))

    # ---------------------------------------------------------------- functions and events

    def callFunctionByDesc(self, raw: Any, result: Any, arguments: Any) -> int:
        assert isinstance(result, CArg) and type(result._obj).__name__ == "FlatValue"
        assert isinstance(arguments, CArg) and type(arguments._obj).__name__ == "LP_FlatValues"
        block = arguments._obj.contents
        args = [decode_argument(block.values[i]) for i in range(block.length)]
        assert self.backend is not None
        value = self.backend.call(name_of(raw), *(a for a in args if a is not None))
        slot = result._obj
        if value is None:
            slot.type = 0
        elif isinstance(value, bool):
            slot.type, slot.boolean = ValueType.BOOLEAN, int(value)
        elif isinstance(value, int):
            slot.type, slot.integer = ValueType.INTEGER, value
        elif isinstance(value, float):
            slot.type, slot.real = ValueType.DOUBLE, value
        else:
            raise AssertionError(f"the fake cannot return {value!r}")
        return Code.SUCCESS

    def setObservedEntity(self, raw: Any, on: Any) -> int:
        assert isinstance(on, ctypes.c_int) and on.value in (0, 1)
        assert self.backend is not None
        self.backend.observe(name_of(raw), self.events.put if on.value else None)
        return Code.SUCCESS

    def getEntityEventByDesc(self, name: Any, count: Any, values: Any, flags: Any) -> int:
        assert isinstance(flags, ctypes.c_int) and flags.value == 0
        label = out(name, STRING_P).contents
        counter = out(count, ctypes.c_int)
        assert isinstance(values, CArg) and type(values._obj).__name__ == "LP_FlatValues"
        try:
            event = self.events.get_nowait()
        except queue.Empty:
            return Code.NOEVENT
        label.text = event.name.encode()
        label.length = len(event.name)
        block = values._obj.contents
        assert len(event.values) <= len(block.values)
        counter.value = len(event.values)
        for slot, value in zip(block.values, event.values, strict=False):
            if isinstance(value, np.ndarray):
                array = slot.realArray[0].contents
                assert value.size <= array.length, "the caller sets the array's capacity"
                np.ctypeslib.as_array(array.values)[: value.size] = value
                slot.type, array.length = ValueType.DOUBLE_ARRAY, value.size
            elif isinstance(value, bool):
                slot.type, slot.boolean = ValueType.BOOLEAN, int(value)
            else:
                raise AssertionError(f"the fake cannot deliver {value!r}")
        return Code.SUCCESS
