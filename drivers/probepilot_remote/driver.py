"""``RemoteDriver``: a :class:`~probepilot.contracts.Driver` whose calls go to a driver host.

Every operation is one call to the host (``probepilot serve``) through
:class:`~probepilot.bus.client.HostClient`: short ones with a reply timeout, long ones (scans,
approaches, pulses ...) for as long as the host shows signs of life; reads are retried after a
timeout, nothing else is. A scan's progress arrives line by line, as from a local driver.
Errors the host's driver raises are raised here as the same types with the same messages, so
the session's recovery (back off, reconnect, retry) works exactly as with a local driver; a
host that is down or restarted surfaces as :class:`~probepilot.errors.DriverConnectionError`
or :class:`~probepilot.errors.DriverTimeoutError`, and ``connect()`` after it greets the host
again.

The client lives on the event loop that connected it; connecting from another loop (tests run
each case in a fresh ``asyncio.run``) starts a new one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from probepilot.bus import codec
from probepilot.bus.calls import CALLS
from probepilot.bus.client import HostClient, probe
from probepilot.bus.keys import ClientKeys, client_keys
from probepilot.contracts import Capability, ProgressCallback
from probepilot.errors import NotConnectedError, ProbepilotError, ProtocolError
from probepilot.model import (
    Frame,
    InstrumentLimits,
    LineProgress,
    ScanSettings,
    Spectrum,
    SpectrumRequest,
    TipPosition,
)
from probepilot_remote.options import RemoteOptions


class RemoteDriver:
    """The driver a host serves, used from here (``driver = "remote"``)."""

    name = "remote"

    def __init__(self, options: RemoteOptions | None = None) -> None:
        self.options = options or RemoteOptions()
        self._keys: ClientKeys | None = None
        if self.options.server_key and self.options.client_key:
            self._keys = client_keys(
                Path(self.options.server_key).expanduser(),
                Path(self.options.client_key).expanduser(),
            )
        self._client: HostClient | None = None
        self._capabilities: frozenset[Capability] = frozenset()
        #: The host's driver (``"nanonis"``, ``"sim"`` ...), once connected.
        self.host_driver: str | None = None

    # -- connection --------------------------------------------------------------------------

    async def connect(self) -> None:
        """Greet the host (which makes sure its driver is connected); idempotent."""
        loop = asyncio.get_running_loop()
        client = self._client
        if client is not None and client.open and client.loop is loop:
            return
        if client is not None:
            client.close()
            self._client = None
        client = HostClient(
            self.options.address,
            timeout=self.options.timeout,
            retries=self.options.retries,
            heartbeat=self.options.heartbeat,
            keys=self._keys,
            name=f"remote driver pid {_pid()}",
        )
        self._learn(await client.connect())
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def capabilities(self) -> frozenset[Capability]:
        """What the host's driver can do, as its welcome said. Asked before the first
        connection, it asks the host synchronously (a blocking round trip of at most
        ``timeout``); empty when the host does not answer."""
        if self._client is None and not self._capabilities:
            try:
                welcome = probe(self.options.address, keys=self._keys, timeout=self.options.timeout)
            except ProbepilotError:
                return frozenset()
            self._learn(welcome)
        return self._capabilities

    def _learn(self, welcome: dict[str, Any]) -> None:
        known = {c.value for c in Capability}
        capabilities = welcome.get("capabilities")
        if isinstance(capabilities, list):
            self._capabilities = frozenset(Capability(c) for c in capabilities if c in known)
        driver = welcome.get("driver")
        self.host_driver = driver if isinstance(driver, str) else None

    async def _call(self, method: str, *args: Any, progress: ProgressCallback | None = None) -> Any:
        client = self._client
        if client is None or not client.open:
            raise NotConnectedError(
                f"remote: the driver is not connected ({method})",
                hint="await driver.connect() first",
            )
        if client.loop is not asyncio.get_running_loop():
            await self.connect()  # another event loop: its own socket
            client = self._client
            assert client is not None
        spec = CALLS[method]
        handler = None
        if progress is not None:

            def handler(value: Any) -> None:
                progress(codec.from_wire(value, LineProgress, "progress line"))

        value = await client.call(
            method,
            list(args),
            progress=handler,
            retries=client.retries if spec.read else 0,
            long=spec.long,
        )
        if spec.result is None:
            if value is not None:
                raise ProtocolError(f"{client.where}: {method} returned {value!r:.60}")
            return None
        return codec.from_wire(value, spec.result, f"{method} result")

    # -- the contract ------------------------------------------------------------------------

    async def limits(self) -> InstrumentLimits:
        result: InstrumentLimits = await self._call("limits")
        return result

    async def get_bias(self) -> float:
        result: float = await self._call("get_bias")
        return result

    async def set_bias(self, voltage: float) -> None:
        await self._call("set_bias", float(voltage))

    async def get_setpoint(self) -> float:
        result: float = await self._call("get_setpoint")
        return result

    async def set_setpoint(self, current: float) -> None:
        await self._call("set_setpoint", float(current))

    async def get_feedback(self) -> bool:
        result: bool = await self._call("get_feedback")
        return result

    async def set_feedback(self, on: bool) -> None:
        await self._call("set_feedback", bool(on))

    async def withdraw(self) -> None:
        await self._call("withdraw")

    async def approach(self) -> None:
        await self._call("approach")

    async def get_tip_position(self) -> TipPosition:
        result: TipPosition = await self._call("get_tip_position")
        return result

    async def set_tip_position(self, x: float, y: float) -> None:
        await self._call("set_tip_position", float(x), float(y))

    async def scan(self, settings: ScanSettings, progress: ProgressCallback | None = None) -> Frame:
        result: Frame = await self._call("scan", settings, progress=progress)
        return result

    async def bias_pulse(self, voltage: float, width: float) -> None:
        await self._call("bias_pulse", float(voltage), float(width))

    async def dip(self, depth: float, bias: float) -> None:
        await self._call("dip", float(depth), float(bias))

    async def spectrum(self, request: SpectrumRequest) -> Spectrum:
        result: Spectrum = await self._call("spectrum", request)
        return result

    async def coarse_move(self, axis: str, steps: int) -> None:
        await self._call("coarse_move", str(axis), int(steps))

    async def set_drift_compensation(self, vx: float, vy: float, vz: float) -> None:
        await self._call("set_drift_compensation", float(vx), float(vy), float(vz))


def _pid() -> int:
    import os

    return os.getpid()
