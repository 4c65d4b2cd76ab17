"""Instruments as plugins: the hook, the registry kind, the config keys and the run's set."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest

from probepilot.config import load_config, validate
from probepilot.errors import ConfigError, PluginError
from probepilot.instruments import Instruments, kind_of
from probepilot.plugins import make_plugin_manager


def config(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "run.toml"
    path.write_text(text)
    return load_config(path)


def test_the_builtin_instruments_register_through_the_hook() -> None:
    manager = make_plugin_manager(env={})
    infos = {info.name: info for info in manager.plugin_infos()}
    assert infos["visa"].provides == {"instrument": ["sr830"]}
    assert infos["serial"].provides == {"instrument": ["anc300", "sr570"]}
    assert infos["visa"].hooks == ["probepilot_register_instruments"]
    assert manager.registry("instrument").names() == ["anc300", "sr570", "sr830"]


def test_instruments_are_selected_by_a_list_or_by_their_tables(tmp_path: Path) -> None:
    listed, _ = config(tmp_path, 'instruments = ["sr830", "anc300"]\n')
    assert listed.instruments == ["sr830", "anc300"]
    assert listed.options("instrument", "sr830").resource == "GPIB0::8::INSTR"
    tabled, _ = config(
        tmp_path,
        '[instruments.anc300]\nport = "/dev/ttyUSB0"\nvoltage = "35 V"\n'
        '[instruments.sr830]\nbackend = "@sim"\ntimeout = "500 ms"\n',
    )
    assert tabled.instruments == ["anc300", "sr830"]
    assert tabled.options("instrument", "anc300").voltage == 35.0
    assert tabled.options("instrument", "sr830").timeout == 0.5
    # `config show` writes them back as tables; reading that again gives the same config.
    again = tomllib.loads(tabled.to_toml())
    assert list(again["instruments"]) == ["anc300", "sr830"]
    assert again["instruments"]["anc300"]["port"] == "/dev/ttyUSB0"
    none, _ = config(tmp_path, "")
    assert none.instruments == [] and tomllib.loads(none.to_toml())["instruments"] == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('instruments = ["lockin9000"]\n', "instruments[0]: unknown instrument 'lockin9000'"),
        ('instruments = ["sr830", "sr830"]\n', "instruments: an instrument is listed twice"),
        ("[instruments.sr830]\ntimeout = -1\n", "instruments.sr830.timeout"),
        ('[instruments.anc300]\ninvert = ["q"]\n', "instruments.anc300.invert[0]"),
        ('[spectroscopy]\ndidv = "magic"\n', "spectroscopy.didv"),
        ('[spectroscopy]\nstart = "1 V"\nstop = "1 V"\n', "spectroscopy: start and stop must"),
        ('[spectroscopy]\nmodulation = "1 V"\n', "spectroscopy.modulation"),
    ],
)
def test_bad_instrument_and_spectroscopy_keys_name_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config(tmp_path, text)


def test_the_run_builds_and_connects_them_in_order(tmp_path: Path) -> None:
    cfg, manager = config(
        tmp_path,
        '[instruments.sr830]\nbackend = "@sim"\n'
        '[instruments.sr570]\nport = "sim"\ngain = "100 MV/A"\n'
        '[spectroscopy]\nmodulation_ratio = 0.01\npreamp_gain = "1 GV/A"\n',
    )
    instruments = Instruments.build(cfg, manager)
    assert [kind_of(i) for i in instruments] == ["lockin", "preamplifier"]
    assert instruments.positioner is None

    async def go() -> tuple[float, float, float]:
        await instruments.connect()
        lockin = instruments.lockin
        assert lockin is not None
        await lockin.set_reference(1000.0, 1.0)
        await lockin.set_time_constant(1e-3)
        setup = await instruments.lockin_setup()
        await instruments.close()
        return setup.modulation, setup.gain, setup.settle

    modulation, gain, settle = asyncio.run(asyncio.wait_for(go(), 20))
    assert modulation == pytest.approx(0.01)  # 1 V rms through a 1:100 divider
    assert gain == 1e8  # from the preamplifier, not the fallback
    assert settle == pytest.approx(5e-3)


def test_an_instrument_that_is_nothing_known_is_refused(tmp_path: Path) -> None:
    from probepilot import hookimpl

    class Thermometer:
        name = "thermo"

        async def connect(self) -> None: ...
        async def close(self) -> None: ...
        async def identify(self) -> str:
            return "thermometer"

    class Plugin:
        @hookimpl
        def probepilot_register_instruments(self, registry):  # type: ignore[no-untyped-def]
            registry.register("thermo", lambda options: Thermometer())

    cfg, manager = load_config(None, extra_plugins={"thermo": Plugin()})
    table = {"instruments": ["thermo"]}
    cfg = validate(table, manager, source="test", base_dir=tmp_path)
    with pytest.raises(PluginError, match="neither a LockIn, a Positioner nor a Preamplifier"):
        Instruments.build(cfg, manager)
