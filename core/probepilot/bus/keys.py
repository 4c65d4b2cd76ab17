"""CurveZMQ keys: who may talk to a driver host or a run's stream on a lab network.

Without keys, a host or a run binds 127.0.0.1 and anyone who can log into that machine can use
it. A host exposed on a network should use keys: every connection is then encrypted, and only
clients whose public key is on the host's allow-list get through (the others fail the CURVE
handshake and never reach the driver).

Layout of a server's key folder (``--curve-keys DIR``)::

    DIR/server.key           the server's public key: give it to every client
    DIR/server.key_secret    the server's secret key: stays on the server
    DIR/authorized/*.key     public keys of the clients allowed in

and each client holds the server's public key and its own secret key (``NAME.key_secret``,
which contains its public key too). ``probepilot keys generate DIR --name NAME`` writes a pair
with :func:`zmq.auth.create_certificates`, the file format ZeroMQ's own tools use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from probepilot.errors import ProbepilotError

SERVER = "server"
AUTHORIZED = "authorized"


class KeyFileError(ProbepilotError):
    """A key file is missing or is not a CurveZMQ certificate."""


@dataclass(frozen=True, slots=True)
class ServerKeys:
    """A server's key pair and the folder of allowed clients' public keys."""

    public: bytes
    secret: bytes
    authorized: Path


@dataclass(frozen=True, slots=True)
class ClientKeys:
    """What a client needs: the server's public key and its own key pair."""

    server: bytes
    public: bytes
    secret: bytes


def generate(folder: Path, name: str) -> tuple[Path, Path]:
    """Write ``folder/NAME.key`` (public) and ``folder/NAME.key_secret``; refuses to overwrite.

    :returns: (public key file, secret key file)
    """
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise KeyFileError(f"key name {name!r}: use letters, digits, '-' and '_'")
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise KeyFileError(f"{path} exists", hint="choose another --name or remove it first")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = zmq.auth.create_certificates(folder, name)
        Path(written[1]).chmod(0o600)
    except OSError as exc:
        raise KeyFileError(f"{folder}: cannot write keys: {exc.strerror or exc}") from None
    return Path(written[0]), Path(written[1])


def _load(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: not a readable CurveZMQ key file: {exc}") from None
    if secret and secret_key is None:
        raise KeyFileError(
            f"{path} holds no secret key",
            hint="give the NAME.key_secret file, not the public NAME.key",
        )
    return public, secret_key


def server_keys(folder: Path) -> ServerKeys:
    """The keys of a server that uses ``folder`` (see the module docstring)."""
    public, secret = _load(folder / f"{SERVER}.key_secret", secret=True)
    authorized = folder / AUTHORIZED
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        raise KeyFileError(
            f"{authorized} holds no client keys, so no client could connect",
            hint=f"copy each client's public NAME.key into {authorized}",
        )
    assert secret is not None
    return ServerKeys(public, secret, authorized)


def client_keys(server_key: Path, client_key: Path | None) -> ClientKeys:
    """A client's keys: the server's public key file and the client's secret key file.

    Without a client key the client uses a fresh key pair, which only a server that accepts
    any key (none of probepilot's do) would let in; it is allowed so the refusal is the
    server's, with its log line, rather than a config error here."""
    server, _ = _load(server_key, secret=False)
    if client_key is None:
        public, secret = zmq.curve_keypair()
    else:
        public, maybe = _load(client_key, secret=True)
        assert maybe is not None
        secret = maybe
    return ClientKeys(server, public, secret)


def apply_server(sock: zmq.Socket[Any], keys: ServerKeys) -> None:
    """Make ``sock`` a CURVE server (before it binds)."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True


def apply_client(sock: zmq.Socket[Any], keys: ClientKeys) -> None:
    """Make ``sock`` a CURVE client of the server (before it connects)."""
    sock.curve_serverkey = keys.server
    sock.curve_publickey = keys.public
    sock.curve_secretkey = keys.secret


class Authenticator:
    """The ZAP handler of one ZeroMQ context: only allow-listed client keys get in.

    It answers every CURVE handshake of every socket of ``context`` from a thread of its own,
    so it works whatever event loop the sockets are served by.
    """

    def __init__(self, context: zmq.Context[Any], keys: ServerKeys) -> None:
        self._auth = ThreadAuthenticator(context)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(keys.authorized))

    def stop(self) -> None:
        """Stop answering (sockets of the context then refuse every client)."""
        self._auth.stop()
