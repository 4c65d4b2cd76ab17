"""The analyzers plugin: registration, options, defaults, and the import rules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import probepilot_analyzers
from probepilot.config import load_config
from probepilot.contracts import Analyzer
from probepilot.options import build, to_table
from probepilot.plugins import make_plugin_manager

NAMES = [
    "adsorbates",
    "double_tip",
    "drift",
    "resolution",
    "roughness",
    "surface_state",
    "tip_changes",
    "tip_state",
]


def test_registered_through_the_entry_point() -> None:
    manager = make_plugin_manager()
    info = manager.infos["analyzers"]
    assert info.error is None
    assert info.provides["analyzer"] == NAMES
    assert "probepilot_register_commands" in info.hooks
    registry = manager.registry("analyzer")
    for name in NAMES:
        entry = registry.get(name)
        assert entry.options is not None
        analyzer = entry.factory(build(entry.options, {}, source="test", key=name))
        assert isinstance(analyzer, Analyzer)
        assert analyzer.name == name


def test_default_config_runs_every_finished_analyzer() -> None:
    # tip_state joins the defaults once its shipped weights pass their known answers.
    config, _ = load_config(None)
    assert config.analyzers == [
        "double_tip",
        "drift",
        "tip_changes",
        "roughness",
        "resolution",
    ]
    for name in config.analyzers:
        assert config.options("analyzer", name) is not None


def test_options_take_units_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "probe.toml"
    path.write_text(
        '[analyzers.double_tip]\nmax_offset = "3 nm"\n'
        '[analyzers.roughness]\nmax_height_range = "120 pm"\nmin_clean_square = "5 nm"\n',
        encoding="utf-8",
    )
    config, _ = load_config(path)
    assert config.analyzers == ["double_tip", "roughness"]
    assert config.options("analyzer", "double_tip").max_offset == pytest.approx(3e-9)
    options = config.options("analyzer", "roughness")
    assert options.max_height_range == pytest.approx(120e-12)
    again = tmp_path / "again.toml"
    again.write_text(config.to_toml(), encoding="utf-8")
    reread, _ = load_config(again)
    assert reread.core == config.core
    assert to_table(reread.options("analyzer", "roughness")) == to_table(options)


def test_bad_option_names_file_and_key(tmp_path: Path) -> None:
    from probepilot.errors import ConfigError

    path = tmp_path / "probe.toml"
    path.write_text("[analyzers.drift]\nmin_overlap = 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"analyzers\.drift\.min_overlap"):
        load_config(path)


#: The one module that may import torch, and only inside its functions: the classifier's
#: training (the `ml` extra); the classifier itself runs on numpy.
TORCH_TRAINING = "classifier_train.py"


def test_product_code_imports_no_other_plugin() -> None:
    """Plugins meet through hooks only (DESIGN.md §2): no probepilot_sim in product code."""
    package = Path(probepilot_analyzers.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if path.name == TORCH_TRAINING:
            # Lazily only: not at module level, so the plugin loads without torch.
            top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
            assert not any("torch" in ast.unparse(n) for n in top), path
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            offenders += [
                f"{path.name}: {n}"
                for n in names
                if (n.startswith("probepilot_") and not n.startswith("probepilot_analyzers"))
                or (n.split(".")[0] == "torch" and path.name != TORCH_TRAINING)
                or n.split(".")[0] in ("skimage", "textual")
            ]
    assert offenders == []
