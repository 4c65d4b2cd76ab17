"""Every analyzer on every real image in ../shared/stm-data, without crashing (skipped when the
folder is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
from analyzer_helpers import STM_DATA, real_images

from probepilot.model import Frame
from probepilot.options import build
from probepilot.plugins import make_plugin_manager
from probepilot.store import read_any

pytestmark = pytest.mark.skipif(not STM_DATA.is_dir(), reason="../shared/stm-data is absent")

NAMES = ["double_tip", "drift", "tip_changes", "roughness", "resolution"]


def _frames(path: Path) -> list[Frame]:
    data = read_any(path)
    return data if isinstance(data, list) else [data]  # type: ignore[list-item,return-value]


@pytest.mark.parametrize("path", list(real_images()), ids=lambda p: p.name)
def test_real_image_through_every_analyzer(path: Path) -> None:
    registry = make_plugin_manager().registry("analyzer")
    analyzers = [
        registry.get(n).factory(build(registry.get(n).options, {}, source="t", key=n))
        for n in NAMES
    ]
    frames = _frames(path)
    history: list[Frame] = []
    for frame in frames:
        for analyzer in analyzers:
            findings = analyzer.analyze(frame, history)
            assert findings, (analyzer.name, path)
            for finding in findings:
                assert 0.0 <= finding.confidence <= 1.0
                if finding.kind == "resolution" and "max_pixel" in finding.message:
                    # An overview frame: its pixels cannot show atoms, so the check abstains.
                    assert finding.confidence == 0.0 and frame.area.pixel_size[0] > 0.25e-9
                    continue
                assert finding.values.get("status") in ("ok", "no_reference"), finding.message
        history.append(frame)


def test_real_images_exist() -> None:
    assert len(list(real_images())) >= 8
