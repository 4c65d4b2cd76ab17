"""Config files: defaults, plugin schemas, unit strings, and one clear line for every mistake."""

from __future__ import annotations

import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from probepilot.config import load_config
from probepilot.errors import ConfigError

CLI = Callable[..., subprocess.CompletedProcess[str]]


def write(tmp_path: Path, text: str, name: str = "probe.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_need_no_file() -> None:
    config, manager = load_config(None)
    assert config.driver == "sim"
    assert config.policy == "rules"
    assert config.source == "<defaults>"
    assert "sim" in manager.registry("driver")
    assert config.options("driver", "sim") is not None


def test_unit_strings_become_si_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [safety]
        max_pulse = "4 V"
        max_dip_depth = "1.5 nm"
        bias_range = ["-250 mV", "1.5 V"]
        max_setpoint = "2 nA"
        """,
    )
    config, _ = load_config(path)
    assert config.safety.max_pulse == 4.0
    assert config.safety.max_dip_depth == pytest.approx(1.5e-9)
    assert config.safety.bias_range == pytest.approx((-0.25, 1.5))
    assert config.safety.max_setpoint == pytest.approx(2e-9)


def test_swapping_the_policy_is_one_line(tmp_path: Path) -> None:
    base = 'driver = "sim"\n[policies.random]\nseed = 3\n'
    config, _ = load_config(write(tmp_path, base))
    assert config.policy == "rules"  # the default; options of others may sit in the file
    config, _ = load_config(write(tmp_path, 'policy = "random"\n' + base))
    assert config.policy == "random"
    assert config.options("policy", "random").seed == 3


def test_effective_config_round_trips(tmp_path: Path) -> None:
    path = write(tmp_path, '[safety]\nmax_pulse = "4 V"\n[run]\nframes = 12\n')
    config, _ = load_config(path)
    text = config.to_toml()
    table = tomllib.loads(text)
    assert table["safety"]["max_pulse"] == "4 V"
    assert table["driver"] == "sim"
    assert "sim" in table["drivers"]
    again, _ = load_config(write(tmp_path, text, "again.toml"))
    assert again.core == config.core
    assert dict(again.plugin_options) == dict(config.plugin_options)


def test_relative_run_folder_is_relative_to_the_file(tmp_path: Path) -> None:
    sub = tmp_path / "lab"
    sub.mkdir()
    config, _ = load_config(write(sub, '[run]\nfolder = "data/runs"\n'))
    assert config.run_folder() == (sub / "data" / "runs").resolve()


INVALID = [
    ('drivr = "sim"\n', "drivr: unknown key 'drivr'; expected one of: analyzers, driver"),
    ('[safety]\nmax_puls = "4 V"\n', "safety.max_puls: unknown key 'max_puls'"),
    ('analyzers = "double_tip"\n', "analyzers: 'double_tip' is not a list"),
    ('[run]\nframes = "ten"\n', "run.frames: 'ten' is not an integer"),
    ("[run]\nframes = 1.5\n", "run.frames: 1.5 is not an integer"),
    ("[run]\nframes = true\n", "run.frames: True is not an integer"),
    (
        '[safety]\nmax_pulse = "4 nm"\n',
        "safety.max_pulse: bad unit string: '4 nm' is not a voltage",
    ),
    (
        '[safety]\nmax_pulse = "4 volts"\n',
        "safety.max_pulse: bad unit string: unknown unit 'volts'",
    ),
    ('[safety]\nmax_pulse = "12 V"\n', "safety.max_pulse: 12 V is above the hard ceiling of 10 V"),
    (
        '[safety]\nmax_dip_depth = "20 nm"\n',
        "safety.max_dip_depth: 20 nm is above the hard ceiling",
    ),
    ("[safety]\nmax_pulse = nan\n", "safety.max_pulse: nan is not a finite number"),
    ('driver = "nanonis9000"\n', "driver: unknown driver 'nanonis9000'; expected one of:"),
    ('policy = "rl2"\n', "policy: unknown policy 'rl2'"),
    ('analyzers = ["double_tipp"]\n', "analyzers[0]: unknown analyzer 'double_tipp'"),
    ("[policies.dqn]\nlr = 1\n", "policies.dqn: unknown policy 'dqn'"),
    ('[policies.random]\nseed = "x"\n', "policies.random.seed: 'x' is not an integer"),
    ('[plugins]\nrequire = ["nanonis-extra>=2"]\n', "plugins.require: required plugin"),
    ('[safety]\nbias_range = ["2 V", "-2 V"]\n', "safety: "),
    ('[safety]\nbias_range = ["2 V"]\n', "safety.bias_range: ['2 V'] is not a list of 2 values"),
    ("driver = \n", "not valid TOML: "),
    ("drivers = 3\n", "drivers: 3 is not a table"),
]


@pytest.mark.parametrize(("text", "expected"), INVALID, ids=[e for _, e in INVALID])
def test_invalid_file_gives_one_line_naming_file_and_key(
    tmp_path: Path, run_cli: CLI, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)

    result = run_cli("config", "check", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines == [f"error: {info.value}"]


def test_missing_and_binary_files(tmp_path: Path, run_cli: CLI) -> None:
    result = run_cli("config", "check", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'nope.toml'}: cannot read the config file")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b'driver = "\xff"\n')
    result = run_cli("config", "check", str(binary))
    assert result.returncode == 2
    assert "not UTF-8 text (byte 10 is 0xff)" in result.stderr


def test_config_check_and_show_from_the_cli(tmp_path: Path, run_cli: CLI) -> None:
    path = write(tmp_path, '[safety]\nmax_pulse = "4 V"\n')
    ok = run_cli("config", "check", str(path))
    assert ok.returncode == 0
    assert ok.stdout.startswith(f"{path}: ok (driver 'sim', policy 'rules'")
    shown = run_cli("config", "show", "--config", str(path))
    assert shown.returncode == 0
    table = tomllib.loads(shown.stdout)
    assert table["safety"]["max_pulse"] == "4 V"
    defaults = tomllib.loads(run_cli("config", "show").stdout)
    assert defaults["safety"]["max_pulse"] == "8 V"


def test_readme_config_reference_lists_every_key() -> None:
    """A key added to a core schema without a line in the README's reference fails here."""
    from probepilot.config import CoreOptions, PluginsOptions, RunOptions
    from probepilot.options import fields_of
    from probepilot.safety import SafetyLimits

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("## Writing a plugin", 1)[0]
    for schema in (CoreOptions, RunOptions, PluginsOptions, SafetyLimits):
        for info in fields_of(schema):
            if info.name in ("safety", "run", "plugins"):
                continue  # tables, documented by their own headings
            assert f"| `{info.name}` |" in section, f"{schema.__name__}.{info.name} undocumented"
