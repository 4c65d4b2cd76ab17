"""The plugin manager: discovery, error capture, disabling, requirements."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Callable
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from probepilot import hookimpl
from probepilot.errors import PluginError
from probepilot.plugins import make_plugin_manager
from probepilot.registry import Registry

CLI = Callable[..., subprocess.CompletedProcess[str]]


def fake_distribution(site: Path, dist: str, version: str, plugins: dict[str, str]) -> None:
    """Install a distribution the way pip would, as far as entry points are concerned:
    a ``.dist-info`` folder with METADATA and entry_points.txt, plus its modules."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[probepilot]"]
    for module, source in plugins.items():
        lines.append(f"{module} = {module}_mod")
        (site / f"{module}_mod.py").write_text(textwrap.dedent(source))
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


GOOD_PLUGIN = """
    from probepilot import hookimpl

    class Policy:
        name = "steady"
        def __init__(self, options): pass
        def decide(self, observation): ...
        def feedback(self, outcome): pass

    @hookimpl
    def probepilot_register_policies(registry):
        registry.register("steady", Policy, description="third-party test policy")
"""


def test_builtins_are_entry_points_like_any_other() -> None:
    manager = make_plugin_manager(env={})
    infos = {info.name: info for info in manager.plugin_infos()}
    assert infos["policies"].distribution == "probepilot"
    assert infos["policies"].provides == {"policy": ["ga", "random", "rl", "rules"]}
    hooks = ["probepilot_register_commands", "probepilot_register_policies"]
    assert infos["policies"].hooks == hooks
    assert "random" in manager.registry("policy")


def test_broken_plugin_is_listed_with_its_error_and_the_rest_load(
    tmp_path: Path, run_cli: CLI
) -> None:
    site = tmp_path / "site"
    fake_distribution(site, "broken-stm", "1.0", {"broken": "import no_such_module_xyz\n"})
    fake_distribution(site, "steady-stm", "2.3", {"steady": GOOD_PLUGIN})
    result = run_cli("plugins", "--json", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    infos = {p["name"]: p for p in json.loads(result.stdout)}
    broken = infos["broken"]
    assert broken["distribution"] == "broken-stm"
    assert broken["version"] == "1.0"
    assert broken["error"].startswith("ModuleNotFoundError: No module named 'no_such_module_xyz'")
    assert "broken_mod.py:1" in broken["error"]
    assert infos["steady"]["error"] is None
    assert infos["steady"]["provides"] == {"policy": ["steady"]}
    assert infos["steady"]["version"] == "2.3"
    assert infos["policies"]["provides"] == {"policy": ["ga", "random", "rl", "rules"]}

    human = run_cli("plugins", env={"PYTHONPATH": str(site)})
    assert "ERROR: ModuleNotFoundError" in human.stdout
    assert "provides: policy steady" in human.stdout


def test_selecting_a_third_party_plugin_in_config(tmp_path: Path, run_cli: CLI) -> None:
    site = tmp_path / "site"
    fake_distribution(site, "steady-stm", "2.3", {"steady": GOOD_PLUGIN})
    cfg = tmp_path / "run.toml"
    cfg.write_text('policy = "steady"\n')
    ok = run_cli("config", "check", str(cfg), env={"PYTHONPATH": str(site)})
    assert ok.returncode == 0, ok.stderr
    missing = run_cli("config", "check", str(cfg))
    assert missing.returncode == 2
    assert f"{cfg}: policy: unknown policy 'steady'" in missing.stderr


def test_disable_by_environment_and_autoload_off() -> None:
    manager = make_plugin_manager(env={"PROBEPILOT_DISABLE_PLUGINS": "policies, other"})
    assert manager.infos["policies"].disabled
    assert "random" not in manager.registry("policy")

    off = make_plugin_manager(env={"PROBEPILOT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert all(info.disabled for info in off.plugin_infos())
    assert len(off.registry("policy")) == 0

    chosen = make_plugin_manager(
        env={"PROBEPILOT_DISABLE_PLUGIN_AUTOLOAD": "1", "PROBEPILOT_PLUGINS": "policies"}
    )
    assert chosen.infos["policies"].loaded
    assert "random" in chosen.registry("policy")


def _only(*eps: EntryPoint) -> Callable[[], list[EntryPoint]]:
    return lambda: list(eps)


class Misspelled:
    @hookimpl
    def probepilot_register_driver(self, registry: Registry[Any]) -> None:  # no such hook
        raise AssertionError("never called")


class Exploding:
    @hookimpl
    def probepilot_register_drivers(self, registry: Registry[Any]) -> None:
        registry.register("bang", object)

    @hookimpl
    def probepilot_register_policies(self, registry: Registry[Any]) -> None:
        raise RuntimeError("policy table corrupt")


class Sim2:
    @hookimpl
    def probepilot_register_policies(self, registry: Registry[Any]) -> None:
        registry.register("random", object)


class WrongSignature:
    @hookimpl
    def probepilot_register_policies(self, registry: Registry[Any], extra: int) -> None:
        raise AssertionError("never called")


def test_each_kind_of_failure_is_isolated_to_its_plugin() -> None:
    manager = make_plugin_manager(
        env={},
        extra={
            "misspelled": Misspelled(),
            "exploding": Exploding(),
            "clash": Sim2(),
            "wrongsig": WrongSignature(),
        },
    )
    infos = manager.infos
    assert "unknown hook 'probepilot_register_driver'" in (infos["misspelled"].error or "")
    assert infos["exploding"].error is not None
    assert infos["exploding"].error.startswith("RuntimeError: policy table corrupt")
    # what a failing plugin registered earlier is taken out with it
    assert "bang" not in manager.registry("driver")
    assert infos["clash"].error is not None
    assert "registered by both 'policies' and 'clash'" in infos["clash"].error
    assert "extra" in (infos["wrongsig"].error or "")
    # and the built-ins are untouched
    assert infos["policies"].loaded
    assert manager.registry("policy").get("random").plugin == "policies"


def test_plugin_that_calls_sys_exit_on_import_is_contained() -> None:
    ep = EntryPoint("quitter", "sys:exit", "probepilot")  # loading works; calling is not done
    manager = make_plugin_manager(env={}, discover=_only(ep))
    # sys.exit is a function, not a module with hooks: it registers but provides nothing
    assert manager.infos["quitter"].provides == {}


def test_required_plugins_with_versions() -> None:
    manager = make_plugin_manager(env={})
    manager.check_required(["probepilot>=0.1", "policies"])
    with pytest.raises(PluginError, match=r"'probepilot' has version .* does not satisfy >=99"):
        manager.check_required(["probepilot>=99"])
    with pytest.raises(PluginError, match="'nanonis-extra' is not installed"):
        manager.check_required(["nanonis-extra"])
    with pytest.raises(PluginError, match="not a valid requirement"):
        manager.check_required(["probepilot >= = 1"])
    disabled = make_plugin_manager(env={"PROBEPILOT_DISABLE_PLUGINS": "policies"})
    with pytest.raises(PluginError, match="'policies' is disabled"):
        disabled.check_required(["policies"])
