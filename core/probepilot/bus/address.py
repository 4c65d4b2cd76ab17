"""ZeroMQ tcp addresses, checked without importing ZeroMQ (the config reads them too)."""

from __future__ import annotations

import re

from probepilot.errors import ConfigError

TCP = re.compile(r"tcp://(?P<host>\[[0-9a-fA-F:.]+\]|[^:/\s]+):(?P<port>\*|[0-9]{1,5})")
#: What an address must look like, for error messages.
EXPECTED = "tcp://HOST:PORT, e.g. tcp://127.0.0.1:5570 (port * or 0: any free port)"


def is_tcp_address(address: str) -> bool:
    """True when ``address`` is ``tcp://HOST:PORT`` with PORT a number up to 65535 or ``*``."""
    match = TCP.fullmatch(address.strip())
    return match is not None and (match["port"] == "*" or int(match["port"]) <= 65535)


def check_address(address: str, *, what: str = "address", source: str = "command line") -> str:
    """``address`` (stripped) if it is a tcp address, else a :class:`ConfigError` naming
    ``what`` (the option or config key) and ``source``."""
    if not is_tcp_address(address):
        raise ConfigError(
            f"{address!r} is not a ZeroMQ tcp address", source=source, key=what, expected=EXPECTED
        )
    return address.strip()
