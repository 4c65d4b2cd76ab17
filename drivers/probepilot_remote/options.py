"""The ``[drivers.remote]`` table: where the driver host is and how long to wait for it.

Only the schema (no ZeroMQ), so ``probepilot plugins`` stays fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from probepilot.options import Doc, Quantity, Range

_ADDRESS = re.compile(r"tcp://(\[[0-9a-fA-F:.]+\]|[^:/\s]+):[0-9]{1,5}")


@dataclass(frozen=True)
class RemoteOptions:
    """Options of the remote driver (``driver = "remote"``)."""

    address: Annotated[
        str, Doc("the driver host, as `probepilot serve` printed it: tcp://HOST:PORT")
    ] = "tcp://127.0.0.1:5570"
    timeout: Annotated[
        float,
        Quantity("s"),
        Range(0.05, 600),
        Doc(
            "a short command must be answered within this; a long one (scan, approach) fails "
            "when the host has been silent this long"
        ),
    ] = 10.0
    retries: Annotated[
        int, Range(0, 100), Doc("resends of a read (get_bias, limits ...) after a timeout")
    ] = 2
    heartbeat: Annotated[
        float, Quantity("s"), Range(0.01, 60), Doc("how often the host is pinged")
    ] = 1.0
    server_key: Annotated[
        str | None,
        Doc("CurveZMQ: the host's public key file (server.key); set with client_key"),
    ] = None
    client_key: Annotated[
        str | None,
        Doc("CurveZMQ: this client's secret key file (NAME.key_secret), allow-listed on the host"),
    ] = None

    def __post_init__(self) -> None:
        if (self.server_key is None) != (self.client_key is None):
            raise ValueError("server_key and client_key go together: set both or neither")
        if not _ADDRESS.fullmatch(self.address):
            raise ValueError(
                f"address {self.address!r} is not tcp://HOST:PORT (e.g. tcp://192.168.1.10:5570)"
            )
