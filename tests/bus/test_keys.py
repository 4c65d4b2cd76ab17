"""CurveZMQ: with keys on, only allow-listed clients reach the driver or the run's stream."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from probepilot.bus.host import HostThread
from probepilot.bus.keys import KeyFileError, client_keys, generate, server_keys
from probepilot.bus.publisher import StreamPublisher
from probepilot.bus.watcher import RemoteLink
from probepilot.errors import DriverConnectionError, RemoteError
from probepilot_remote.driver import RemoteDriver
from probepilot_remote.options import RemoteOptions
from probepilot_sim.driver import SimDriver
from probepilot_sim.options import SimOptions

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """server keys, alice allow-listed, mallory not."""
    folder = tmp_path / "keys"
    generate(folder, "server")
    for name in ("alice", "mallory"):
        generate(tmp_path / name, name)
    (folder / "authorized").mkdir()
    shutil.copy(tmp_path / "alice" / "alice.key", folder / "authorized")
    return tmp_path


def driver(address: str, keys: Path, who: str | None) -> RemoteDriver:
    secured = {}
    if who is not None:
        secured = {
            "server_key": str(keys / "keys" / "server.key"),
            "client_key": str(keys / who / f"{who}.key_secret"),
        }
    options = RemoteOptions(address=address, timeout=0.5, retries=1, heartbeat=0.1, **secured)
    return RemoteDriver(options)


def test_only_allow_listed_clients_reach_the_driver(keys: Path) -> None:
    with HostThread(SimDriver(SimOptions(seed=1)), keys=server_keys(keys / "keys")) as host:

        async def main() -> None:
            alice = driver(host.address, keys, "alice")
            await alice.connect()
            await alice.set_bias(0.25)
            assert await alice.get_bias() == pytest.approx(0.25)
            await alice.close()
            for who in ("mallory", None):  # an unknown key, and no key at all
                intruder = driver(host.address, keys, who)
                with pytest.raises(DriverConnectionError, match="no answer from the driver host"):
                    await intruder.connect()

        asyncio.run(main())
        assert host.host.served == 2  # only alice's two calls reached the driver


def test_only_allow_listed_watchers_see_the_run(keys: Path) -> None:
    async def main() -> None:
        publisher = StreamPublisher("tcp://127.0.0.1:0", keys=server_keys(keys / "keys"))
        await publisher.start()
        try:
            alice = client_keys(keys / "keys" / "server.key", keys / "alice" / "alice.key_secret")
            link = RemoteLink(publisher.address, keys=alice, timeout=5)
            await asyncio.to_thread(link.start)
            link.close()
            for who in (
                client_keys(keys / "keys" / "server.key", keys / "mallory" / "mallory.key_secret"),
                None,
            ):
                intruder = RemoteLink(publisher.address, keys=who, timeout=0.5)
                with pytest.raises(RemoteError, match="no run answers"):
                    await asyncio.to_thread(intruder.start)
        finally:
            await publisher.close(drain=0)

    asyncio.run(main())


def test_key_folders_are_checked_with_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"server\.key_secret: not a readable"):
        server_keys(tmp_path)
    generate(tmp_path, "server")
    with pytest.raises(KeyFileError, match="holds no client keys"):
        server_keys(tmp_path)
    with pytest.raises(KeyFileError, match="exists"):
        generate(tmp_path, "server")
    with pytest.raises(KeyFileError, match="holds no secret key"):
        client_keys(tmp_path / "server.key", tmp_path / "server.key")


def test_keys_generate_command(
    tmp_path: Path, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    result = run_cli("keys", "generate", str(tmp_path / "k"), "--name", "bob")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "k" / "bob.key").exists() and (tmp_path / "k" / "bob.key_secret").exists()
    assert (tmp_path / "k" / "bob.key_secret").stat().st_mode & 0o077 == 0
    assert "authorized/" in result.stdout
    server = run_cli("keys", "generate", str(tmp_path / "k"))
    assert server.returncode == 0 and (tmp_path / "k" / "authorized").is_dir()
