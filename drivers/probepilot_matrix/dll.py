"""``RemoteAccessTransport``: MATRIX's ``RemoteAccess_API.dll`` through ctypes.

Importing this module never fails: the library is loaded by :meth:`RemoteAccessTransport.open`,
which on a machine without it (any non-Windows system, a PC without the MATRIX SDK, a Python of
the other bitness) raises :class:`~probepilot.errors.DriverConnectionError` saying which.

The calls and their C signatures are those the MATE/nOmicron clients use (ASSUMED, to verify
against the SDK's header of your MATRIX version; see the README)::

    setHost(char*)                 init(char* installation) -> rc       rundown() -> rc
    setScopeName(char*)
    get<Type>Property(char* name, int index, <type>* out) -> rc   Type: Double, Integer, Enum
    getBooleanProperty(char* name, int index, char* out) -> rc
    getStringPropertyByDesc(char* name, int index, String** out) -> rc
    getPairProperty(char* name, int index, double* x, double* y) -> rc
    set<Type>Property(char* name, int index, <type> value) -> rc   (Boolean, Enum: int)
    setStringProperty(char* name, int index, char* value) -> rc
    setPairProperty(char* name, int index, double x, double y) -> rc
    callFunctionByDesc(char* name, FlatValue* result, FlatValues** args) -> rc
    setObservedEntity(char* name, int observe) -> rc
    getEntityEventByDesc(String** name, int* count, FlatValues** values, int flags) -> rc

``index`` is always -1 (the whole property). Structures: ``String {int length; char
text[256]}``, ``RealArray {int length; double values[n]}``, ``FlatValue {int type, boolean,
integer, enumeration; double real; String** string; double pairX, pairY; RealArray**
realArray}`` packed to 8 bytes on 64-bit Python (4 on 32-bit), ``FlatValues {int length;
FlatValue values[n]}``. The caller allocates every buffer, sets each ``length`` to its capacity,
and the library fills them in.

Every call runs on one dedicated thread (the library is never entered from two threads at once)
and must return within ``timeout``. A second thread polls for events every ``poll_interval``
while something is observed and runs the callbacks.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import logging
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from probepilot.errors import DriverConnectionError, DriverTimeoutError
from probepilot_matrix.options import MatrixOptions
from probepilot_matrix.transport import (
    Code,
    Event,
    EventCallback,
    Value,
    ValueType,
    error_for,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DLL_NAME = "RemoteAccess_API.dll"
DEFAULT_ROOT = Path("C:/Program Files/Scienta Omicron/MATRIX")
STRING_CAPACITY = 256
#: Attaching to MATRIX may take longer than a property call.
CONNECT_TIMEOUT = 30.0
#: Most events taken from the library in one poll before callbacks run.
EVENTS_PER_POLL = 256
#: Packing of FlatValue and RealArray: 8 on 64-bit Python, 4 on 32-bit (as MATE does).
PACK = 8 if ctypes.sizeof(ctypes.c_void_p) == 8 else 4


class String(ctypes.Structure):
    _fields_ = (("length", ctypes.c_int), ("text", ctypes.c_char * STRING_CAPACITY))


def real_array_type(capacity: int) -> type[ctypes.Structure]:
    """``RealArray`` holding up to ``capacity`` doubles."""

    class RealArray(ctypes.Structure):
        _pack_ = PACK
        _fields_ = (("length", ctypes.c_int), ("values", ctypes.c_double * max(capacity, 1)))

    return RealArray


def flat_value_type(real_array: type[ctypes.Structure]) -> type[ctypes.Structure]:
    """``FlatValue`` whose array member points to ``real_array``."""

    class FlatValue(ctypes.Structure):
        _pack_ = PACK
        _fields_ = (
            ("type", ctypes.c_int),
            ("boolean", ctypes.c_int),
            ("integer", ctypes.c_int),
            ("enumeration", ctypes.c_int),
            ("real", ctypes.c_double),
            ("string", ctypes.POINTER(ctypes.POINTER(String))),
            ("pairX", ctypes.c_double),
            ("pairY", ctypes.c_double),
            ("realArray", ctypes.POINTER(ctypes.POINTER(real_array))),
        )

    return FlatValue


def flat_values_type(flat_value: type[ctypes.Structure], count: int) -> type[ctypes.Structure]:
    """``FlatValues`` with ``count`` slots."""

    class FlatValues(ctypes.Structure):
        _fields_ = (("length", ctypes.c_int), ("values", flat_value * max(count, 1)))

    return FlatValues


class Buffers:
    """Caller-allocated value buffers with string and array storage attached, reset to their
    capacity before each use (the library writes what it returns into them)."""

    def __init__(self, slots: int, array_capacity: int) -> None:
        self.array_capacity = max(array_capacity, 1)
        self.real_array = real_array_type(self.array_capacity)
        self.flat_value = flat_value_type(self.real_array)
        self.values = flat_values_type(self.flat_value, slots)()
        self.values.length = max(slots, 1)
        self._keep: list[Any] = []  # the storage the pointers refer to
        for slot in self.values.values:
            self.attach(slot)

    def attach(self, slot: Any) -> None:
        string = String(STRING_CAPACITY - 1)
        array = self.real_array(self.array_capacity)
        slot.string = ctypes.pointer(ctypes.pointer(string))
        slot.realArray = ctypes.pointer(ctypes.pointer(array))
        self._keep.extend((string, array, slot.string, slot.realArray))

    def reset(self) -> None:
        for slot in self.values.values:
            slot.type = 0
            slot.string[0][0].length = STRING_CAPACITY - 1
            slot.realArray[0][0].length = self.array_capacity


def decode(slot: Any) -> Value:
    """A Python value from a filled ``FlatValue``."""
    kind = slot.type
    if kind == ValueType.INTEGER:
        return int(slot.integer)
    if kind == ValueType.DOUBLE:
        return float(slot.real)
    if kind == ValueType.BOOLEAN:
        return bool(slot.boolean)
    if kind == ValueType.ENUM:
        return int(slot.enumeration)
    if kind == ValueType.PAIR:
        return (float(slot.pairX), float(slot.pairY))
    if kind == ValueType.STRING:
        return text_of(slot.string[0].contents)
    if kind == ValueType.DOUBLE_ARRAY:
        array = slot.realArray[0].contents
        count = min(max(int(array.length), 0), len(array.values))
        return np.ctypeslib.as_array(array.values)[:count].astype(np.float64)
    raise ValueError(f"MATRIX returned a value of unknown type {kind}")


def encode(slot: Any, value: Value) -> None:
    """Fill ``FlatValue`` ``slot`` (with storage attached) with an argument."""
    if isinstance(value, bool):
        slot.type, slot.boolean = ValueType.BOOLEAN, int(value)
    elif isinstance(value, int):
        slot.type, slot.integer = ValueType.INTEGER, value
    elif isinstance(value, float):
        slot.type, slot.real = ValueType.DOUBLE, value
    elif isinstance(value, str):
        raw = value.encode()
        if len(raw) >= STRING_CAPACITY:
            raise ValueError(f"string argument longer than {STRING_CAPACITY - 1} bytes")
        slot.type = ValueType.STRING
        slot.string[0][0].length = len(raw)
        slot.string[0][0].text = raw
    elif isinstance(value, tuple) and len(value) == 2:
        slot.type, slot.pairX, slot.pairY = ValueType.PAIR, float(value[0]), float(value[1])
    else:
        raise ValueError(f"cannot pass {value!r} to a MATRIX function")


def text_of(string: Any) -> str:
    return bytes(string.text).split(b"\0", 1)[0].decode(errors="replace")


def _signatures(
    flat_value: type[ctypes.Structure], flat_values: type[ctypes.Structure]
) -> dict[str, tuple[list[Any], Any]]:
    c_char_p, c_int, c_double = ctypes.c_char_p, ctypes.c_int, ctypes.c_double
    p = ctypes.POINTER
    string_pp = p(p(String))
    return {
        "setHost": ([c_char_p], None),
        "init": ([c_char_p], c_int),
        "rundown": ([], c_int),
        "setScopeName": ([c_char_p], None),
        "getDoubleProperty": ([c_char_p, c_int, p(c_double)], c_int),
        "getIntegerProperty": ([c_char_p, c_int, p(c_int)], c_int),
        "getEnumProperty": ([c_char_p, c_int, p(c_int)], c_int),
        "getBooleanProperty": ([c_char_p, c_int, p(ctypes.c_char)], c_int),
        "getStringPropertyByDesc": ([c_char_p, c_int, string_pp], c_int),
        "getPairProperty": ([c_char_p, c_int, p(c_double), p(c_double)], c_int),
        "setDoubleProperty": ([c_char_p, c_int, c_double], c_int),
        "setIntegerProperty": ([c_char_p, c_int, c_int], c_int),
        "setEnumProperty": ([c_char_p, c_int, c_int], c_int),
        "setBooleanProperty": ([c_char_p, c_int, c_int], c_int),
        "setStringProperty": ([c_char_p, c_int, c_char_p], c_int),
        "setPairProperty": ([c_char_p, c_int, c_double, c_double], c_int),
        "callFunctionByDesc": ([c_char_p, p(flat_value), p(p(flat_values))], c_int),
        "setObservedEntity": ([c_char_p, c_int], c_int),
        "getEntityEventByDesc": ([string_pp, p(c_int), p(p(flat_values)), c_int], c_int),
    }


def on_windows() -> bool:
    return sys.platform == "win32"


def default_installation(root: Path = DEFAULT_ROOT) -> Path | None:
    """The newest version folder under MATRIX's default installation root, or None."""
    try:
        folders = [p for p in root.iterdir() if p.is_dir()]
    except OSError:
        return None
    return max(folders, key=lambda p: p.stat().st_mtime, default=None)


class RemoteAccessTransport:
    """The real MATRIX through ``RemoteAccess_API.dll``; see the module docstring.

    :param library: an already loaded library object (tests pass a fake with the same
        functions); by default the DLL is loaded on :meth:`open`.
    """

    def __init__(self, options: MatrixOptions | None = None, *, library: Any = None) -> None:
        self.options = options or MatrixOptions()
        self.description = f"MATRIX remote access ({DLL_NAME}) on {self.options.host}"
        self._library = library
        self._lib: Any = None
        self._installation: Path | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._callbacks: dict[str, EventCallback] = {}
        self._callbacks_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._events = Buffers(1, self.options.max_event_values)
        self._event_name = ctypes.pointer(String(STRING_CAPACITY - 1))
        self._signed = False
        #: Events whose callback was missing or failed, for diagnostics.
        self.dropped = 0

    # ------------------------------------------------------------------ loading

    def _paths(self) -> tuple[Path, Path | None]:
        o = self.options
        installation = Path(o.installation) if o.installation else default_installation()
        if o.dll_path:
            return Path(o.dll_path), installation
        if installation is None:
            raise DriverConnectionError(
                f"matrix: cannot find the MATRIX installation to load {DLL_NAME} from "
                f"(nothing under {DEFAULT_ROOT})",
                hint="set installation (or dll_path) in [drivers.matrix]",
            )
        return installation / "SDK" / "RemoteAccess" / DLL_NAME, installation

    def _load(self) -> tuple[Any, Path | None]:
        if not on_windows():
            raise DriverConnectionError(
                f"matrix: {DLL_NAME} is unavailable: MATRIX's remote-access library is a "
                f"Windows DLL and this is {sys.platform}",
                hint="run probepilot on the MATRIX PC, or use transport = 'simulated'",
            )
        path, installation = self._paths()
        if not path.is_file():
            raise DriverConnectionError(
                f"matrix: {DLL_NAME} is unavailable: {path} does not exist",
                hint="check installation / dll_path in [drivers.matrix] (MATRIX SDK installed?)",
            )
        try:
            return ctypes.CDLL(str(path)), installation
        except OSError as exc:
            bits = 8 * ctypes.sizeof(ctypes.c_void_p)
            raise DriverConnectionError(
                f"matrix: cannot load {path}: {exc}",
                hint=f"this Python is {bits}-bit; the DLL must be too (error 193 means it is "
                "not), and MATRIX's Bin folder must be reachable",
            ) from None

    def _sign(self) -> None:
        """Declare the C signatures on a real ctypes library (a fake has no ``argtypes``)."""
        if self._signed:
            return
        call = Buffers(1, 0)
        for name, (args, result) in _signatures(call.flat_value, type(call.values)).items():
            function = getattr(self._lib, name, None)
            if function is not None and hasattr(function, "argtypes"):
                # Structures of other capacities are passed by reference too: accept any.
                function.argtypes = [
                    ctypes.c_void_p
                    if a not in (ctypes.c_char_p, ctypes.c_int, ctypes.c_double)
                    else a
                    for a in args
                ]
                function.restype = result
        self._signed = True

    # ------------------------------------------------------------------ plumbing

    def _run(self, work: Callable[[], T], what: str, timeout: float | None = None) -> T:
        if self._executor is None or self._lib is None:
            raise DriverConnectionError(f"matrix: {what}: the transport is not open")
        future = self._executor.submit(work)
        try:
            return future.result(self.options.timeout if timeout is None else timeout)
        except concurrent.futures.TimeoutError:
            raise DriverTimeoutError(
                f"matrix: {what} did not return within {self.options.timeout:g} s",
                hint="is MATRIX busy or hung? see [drivers.matrix] timeout",
            ) from None

    @staticmethod
    def _check(rc: int, function: str, name: str) -> None:
        if rc != Code.SUCCESS:
            raise error_for(int(rc), function, name)

    # ------------------------------------------------------------------ the interface

    def open(self) -> None:
        if self._executor is not None:
            return
        if self._library is not None:
            self._lib = self._library
            if self.options.installation:
                self._installation = Path(self.options.installation)
        elif self._lib is None:  # loaded once; reconnecting reuses it
            self._lib, self._installation = self._load()
        installation = self._installation
        self._sign()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="matrix-dll")
        host = self.options.host.encode()
        folder = str(installation or "").encode()
        experiment = self.options.experiment.encode()

        def start() -> None:
            self._lib.setHost(host)
            self._check(self._lib.init(folder), "init", str(installation or ""))
            if hasattr(self._lib, "setScopeName"):
                self._lib.setScopeName(experiment)

        try:
            self._run(start, "init", max(self.options.timeout, CONNECT_TIMEOUT))
        except BaseException:
            self._shutdown()
            raise
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll, name="matrix-events", daemon=True)
        self._poller.start()

    def close(self) -> None:
        if self._executor is None:
            return
        self._stop.set()
        if self._poller is not None:
            self._poller.join(max(1.0, 10 * self.options.poll_interval))
            self._poller = None
        with self._callbacks_lock:
            names = list(self._callbacks)
            self._callbacks.clear()
        for name in names:
            with contextlib.suppress(Exception):  # closing never raises
                self._run(
                    partial(self._lib.setObservedEntity, name.encode(), ctypes.c_int(0)),
                    f"observe {name}",
                )
        with contextlib.suppress(Exception):
            self._run(self._lib.rundown, "rundown")
        self._shutdown()

    def _shutdown(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def get(self, name: str, kind: ValueType) -> Value:
        raw = name.encode()
        lib = self._lib

        def work() -> Value:
            index = ctypes.c_int(-1)
            if kind is ValueType.DOUBLE:
                d = ctypes.c_double()
                self._check(lib.getDoubleProperty(raw, index, ctypes.byref(d)), "get", name)
                return float(d.value)
            if kind in (ValueType.INTEGER, ValueType.ENUM):
                i = ctypes.c_int()
                function = (
                    lib.getIntegerProperty if kind is ValueType.INTEGER else (lib.getEnumProperty)
                )
                self._check(function(raw, index, ctypes.byref(i)), "get", name)
                return int(i.value)
            if kind is ValueType.BOOLEAN:
                b = ctypes.c_char()
                self._check(lib.getBooleanProperty(raw, index, ctypes.byref(b)), "get", name)
                return b.value != b"\0"
            if kind is ValueType.STRING:
                s = ctypes.pointer(String(STRING_CAPACITY - 1))
                self._check(lib.getStringPropertyByDesc(raw, index, ctypes.byref(s)), "get", name)
                return text_of(s.contents)
            if kind is ValueType.PAIR:
                x, y = ctypes.c_double(), ctypes.c_double()
                self._check(
                    lib.getPairProperty(raw, index, ctypes.byref(x), ctypes.byref(y)), "get", name
                )
                return (float(x.value), float(y.value))
            raise ValueError(f"cannot read a {kind.name} property")

        return self._run(work, f"get {name}")

    def set(self, name: str, kind: ValueType, value: Value) -> None:
        raw = name.encode()
        lib = self._lib

        def work() -> None:
            index = ctypes.c_int(-1)
            if kind is ValueType.DOUBLE:
                assert isinstance(value, int | float)
                rc = lib.setDoubleProperty(raw, index, ctypes.c_double(float(value)))
            elif kind in (ValueType.INTEGER, ValueType.ENUM):
                assert isinstance(value, int)
                function = (
                    lib.setIntegerProperty if kind is ValueType.INTEGER else (lib.setEnumProperty)
                )
                rc = function(raw, index, ctypes.c_int(int(value)))
            elif kind is ValueType.BOOLEAN:
                rc = lib.setBooleanProperty(raw, index, ctypes.c_int(int(bool(value))))
            elif kind is ValueType.STRING:
                assert isinstance(value, str)
                rc = lib.setStringProperty(raw, index, ctypes.c_char_p(value.encode()))
            elif kind is ValueType.PAIR:
                assert isinstance(value, tuple)
                x, y = (ctypes.c_double(float(v)) for v in value)
                rc = lib.setPairProperty(raw, index, x, y)
            else:
                raise ValueError(f"cannot write a {kind.name} property")
            self._check(rc, "set", name)

        self._run(work, f"set {name}")

    def call(self, name: str, *args: Value) -> Value | None:
        raw = name.encode()
        lib = self._lib

        def work() -> Value | None:
            result = Buffers(1, 4096)
            arguments = Buffers(len(args), 0)
            for slot, value in zip(arguments.values.values, args, strict=False):
                encode(slot, value)
            # MATE passes one (empty, type 0) slot to functions without arguments.
            arguments.values.length = max(len(args), 1)
            pointer = ctypes.pointer(arguments.values)
            slot = result.values.values[0]
            rc = lib.callFunctionByDesc(raw, ctypes.byref(slot), ctypes.byref(pointer))
            self._check(rc, "call", name)
            return None if slot.type == 0 else decode(slot)

        return self._run(work, f"call {name}")

    def observe(self, name: str, callback: EventCallback | None) -> None:
        raw = name.encode()
        with self._callbacks_lock:
            if callback is None:
                self._callbacks.pop(name, None)
            else:
                self._callbacks[name] = callback
        on = ctypes.c_int(int(callback is not None))
        self._run(
            lambda: self._check(self._lib.setObservedEntity(raw, on), "observe", name),
            f"observe {name}",
        )

    # ------------------------------------------------------------------ events

    def _take_events(self) -> list[Event]:
        """Every pending event (up to :data:`EVENTS_PER_POLL`), on the library's thread."""
        events: list[Event] = []
        buffers = self._events
        pointer = ctypes.pointer(buffers.values)
        for _ in range(EVENTS_PER_POLL):
            buffers.reset()
            self._event_name.contents.length = STRING_CAPACITY - 1
            count = ctypes.c_int(0)
            rc = self._lib.getEntityEventByDesc(
                ctypes.byref(self._event_name),
                ctypes.byref(count),
                ctypes.byref(pointer),
                ctypes.c_int(0),
            )
            if rc == Code.NOEVENT:
                break
            self._check(rc, "getEntityEventByDesc", "")
            slots = pointer.contents.values
            n = min(max(int(count.value), 0), len(slots))
            events.append(
                Event(text_of(self._event_name.contents), tuple(decode(slots[i]) for i in range(n)))
            )
        return events

    def _poll(self) -> None:
        while not self._stop.is_set():
            with self._callbacks_lock:
                observing = bool(self._callbacks)
            events: list[Event] = []
            if observing:
                try:
                    events = self._run(self._take_events, "getEntityEventByDesc")
                except Exception as exc:  # noqa: BLE001 - the poller must survive to report
                    log.warning("matrix: polling for events failed: %s", exc)
                    self._stop.wait(max(self.options.poll_interval, 0.1))
            for event in events:
                self._dispatch(event)
            if not events:
                self._stop.wait(self.options.poll_interval)

    def _dispatch(self, event: Event) -> None:
        with self._callbacks_lock:
            callback = self._callbacks.get(event.name)
            if callback is None:  # some versions may name the entity without its experiment
                leaf = event.name.rpartition("::")[2]
                callback = next(
                    (c for n, c in self._callbacks.items() if n.rpartition("::")[2] == leaf), None
                )
        if callback is None:
            self.dropped += 1
            return
        try:
            callback(event)
        except Exception:
            self.dropped += 1
            log.exception("matrix: the callback for %s failed", event.name)
