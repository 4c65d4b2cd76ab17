"""The SR830 lock-in driver against its pyvisa-sim twin: every command, every error."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

pytest.importorskip("pyvisa_sim")

from probepilot.contracts import LockIn
from probepilot.errors import (
    DriverConnectionError,
    DriverTimeoutError,
    InstrumentError,
    LimitError,
    NotConnectedError,
    ProtocolError,
)
from probepilot_visa.options import Sr830Options
from probepilot_visa.sr830 import SENSITIVITIES, SIM_YAML, TIME_CONSTANTS, Sr830

T = TypeVar("T")


def run(work: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(work(), 20))


def lockin(**options: object) -> Sr830:
    return Sr830(Sr830Options(**{"backend": "@sim", "timeout": 0.2, **options}))  # type: ignore[arg-type]


async def connected(**options: object) -> Sr830:
    instrument = lockin(**options)
    await instrument.connect()
    return instrument


def test_the_twin_ships_with_the_package_and_is_a_lockin() -> None:
    assert SIM_YAML.is_file() and SIM_YAML.parent.name == "probepilot_visa"
    assert isinstance(lockin(), LockIn)
    assert len(SENSITIVITIES) == 27 and SENSITIVITIES[0] == 2e-9 and SENSITIVITIES[-1] == 1.0
    assert len(TIME_CONSTANTS) == 20 and TIME_CONSTANTS[0] == 10e-6 and TIME_CONSTANTS[-1] == 30e3


@pytest.mark.parametrize("resource", ["GPIB0::8::INSTR", "ASRL1::INSTR"])
def test_connect_identifies_it_over_gpib_and_rs232(resource: str) -> None:
    async def go() -> str:
        instrument = await connected(resource=resource)
        try:
            return await instrument.identify()
        finally:
            await instrument.close()

    assert run(go).startswith("Stanford_Research_Systems,SR830")


def test_settings_round_trip_with_the_sr830s_ranges() -> None:
    async def go() -> None:
        li = await connected()
        # Sensitivity and time constant: the smallest range that is not smaller.
        assert await li.set_sensitivity(3e-3) == 5e-3
        assert await li.get_sensitivity() == 5e-3
        assert await li.set_sensitivity(1e-6) == 1e-6  # exact values keep their range
        assert await li.set_time_constant(2e-3) == 3e-3
        assert await li.get_time_constant() == 3e-3
        assert await li.set_time_constant(30e3) == 30e3
        await li.set_reference(873.0, 0.01)
        assert await li.get_reference() == (873.0, 0.01)
        await li.set_phase(math.radians(-90.0))
        assert await li.get_phase() == pytest.approx(math.radians(-90.0))
        reading = await li.read()
        assert (reading.x, reading.y, reading.r) == (1.2345e-3, -5.67e-5, 1.2358e-3)
        assert reading.theta == pytest.approx(math.radians(-2.63)) and not reading.overload
        await li.set_sensitivity(1e-6)
        assert await li.auto_gain() in SENSITIVITIES
        assert await li.status() == []
        assert await li.query("HARM?") == "1"
        await li.write("HARM 2")
        assert await li.query("HARM?") == "2"
        await li.write("HARM 1")
        await li.close()

    run(go)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda li: li.set_sensitivity(2.0), "above the largest, 1 V"),
        (lambda li: li.set_sensitivity(0.0), "must be a positive number"),
        (lambda li: li.set_sensitivity(math.nan), "must be a positive number"),
        (lambda li: li.set_time_constant(1e5), "above the largest, 30000 s"),
        (lambda li: li.set_reference(2e5, 0.01), "reference frequency 200000.0 Hz is outside"),
        (lambda li: li.set_reference(1e3, 0.001), "sine amplitude 0.001 V is outside"),
        (lambda li: li.set_reference(1e3, 6.0), "sine amplitude 6.0 V is outside"),
        (lambda li: li.set_phase(math.radians(800.0)), "phase"),
    ],
)
def test_values_outside_the_instruments_ranges_are_refused_before_sending(
    call: Callable[[Sr830], Awaitable[object]], message: str
) -> None:
    async def go() -> None:
        li = await connected()
        try:
            before = await li.query("SENS?"), await li.query("FREQ?"), await li.query("SLVL?")
            with pytest.raises(LimitError, match=message):
                await call(li)
            after = await li.query("SENS?"), await li.query("FREQ?"), await li.query("SLVL?")
            assert after == before
        finally:
            await li.close()

    run(go)


def test_instrument_errors_are_read_from_the_event_status_register() -> None:
    async def go() -> None:
        li = await connected()
        try:
            # A raw setting the SR830 refuses (SENS runs 0-26): it answers nothing, sets *ESR.
            with pytest.raises(InstrumentError, match=r"SENS 99: the instrument reported: command"):
                await li.write("SENS 99")
            with pytest.raises(InstrumentError) as info:
                await li.write("FROB 1")
            assert info.value.command.endswith("FROB 1") and "command error" in info.value.detail
            # An unknown query gets no answer; *ESR? tells why, instead of a bare timeout.
            with pytest.raises(InstrumentError, match="BOGUS"):
                await li.query("BOGUS?")
            # The register was read and cleared: the next command is fine.
            await li.write("HARM 1")
        finally:
            await li.close()

    run(go)


def test_no_answer_is_a_timeout() -> None:
    async def go() -> None:
        li = await connected(timeout=0.05)
        try:
            with pytest.raises(DriverTimeoutError, match=r"no reply to '\*TRG' within 0.05 s"):
                await li.query("*TRG")  # a valid command that returns nothing
        finally:
            await li.close()

    run(go)


BROKEN_TWIN = """
spec: "1.1"
devices:
  liar:
    eom:
      GPIB INSTR: {q: "\\n", r: "\\n"}
    error:
      status_register:
        - {q: "*ESR?", command_error: 32, query_error: 4}
    dialogues:
      - {q: "*IDN?", r: "Stanford_Research_Systems,SR830,s/n1,ver1.07"}
      - {q: "OUTX 1"}
      - {q: "ISRC?", r: "0"}
      - {q: "SNAP? 1,2,3,4", r: "1.0,2.0,oops"}
      - {q: "LIAS?", r: "9"}
      - {q: "SENS?", r: "41"}
      - {q: "OFLT?", r: "a few"}
  other:
    eom:
      GPIB INSTR: {q: "\\n", r: "\\n"}
    dialogues:
      - {q: "*IDN?", r: "KEITHLEY INSTRUMENTS INC.,MODEL 2400,1,C30"}
resources:
  GPIB0::9::INSTR: {device: liar}
  GPIB0::10::INSTR: {device: other}
"""


def test_replies_that_are_not_what_the_command_returns(tmp_path: Path) -> None:
    twin = tmp_path / "broken.yaml"
    twin.write_text(BROKEN_TWIN)

    async def go() -> None:
        li = await connected(backend=f"{twin}@sim", resource="GPIB0::9::INSTR")
        try:
            with pytest.raises(ProtocolError, match="not four numbers"):
                await li.read()
            with pytest.raises(ProtocolError, match="answered 41, not 0-26"):
                await li.get_sensitivity()
            with pytest.raises(ProtocolError, match="'a few', not a number"):
                await li.get_time_constant()
        finally:
            await li.close()
        with pytest.raises(DriverConnectionError, match="not an SR8x0"):
            await connected(backend=f"{twin}@sim", resource="GPIB0::10::INSTR")

    run(go)


def test_an_unlocked_reference_is_an_error_and_overloads_are_flagged(tmp_path: Path) -> None:
    twin = tmp_path / "unlocked.yaml"
    twin.write_text(
        BROKEN_TWIN.replace('"1.0,2.0,oops"', '"1.0,2.0,2.2,63.4"').replace(
            "GPIB0::10::INSTR: {device: other}", ""
        )
    )
    overloaded = tmp_path / "overloaded.yaml"
    overloaded.write_text(twin.read_text().replace('r: "9"', 'r: "4"'))

    async def go() -> None:
        li = await connected(backend=f"{twin}@sim", resource="GPIB0::9::INSTR")
        with pytest.raises(InstrumentError, match="reference unlock"):
            await li.read()
        await li.close()
        li = await connected(backend=f"{overloaded}@sim", resource="GPIB0::9::INSTR")
        reading = await li.read()
        assert reading.overload and reading.x == 1.0
        await li.close()

    run(go)


@pytest.mark.filterwarnings("ignore:read string doesn't end with termination")
def test_connection_failures_and_use_before_connect() -> None:
    async def go() -> None:
        with pytest.raises(DriverConnectionError, match="cannot open it"):
            await connected(resource="no such resource")
        with pytest.raises(DriverConnectionError, match="GPIB0::22::INSTR"):
            await connected(resource="GPIB0::22::INSTR")  # nothing answers at that address
        li = lockin()
        with pytest.raises(NotConnectedError):
            await li.read()
        await li.connect()
        await li.close()
        await li.close()  # idempotent
        with pytest.raises(NotConnectedError):
            await li.get_sensitivity()

    run(go)
