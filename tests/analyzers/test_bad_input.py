"""Bad frames give zero-confidence findings (or a typed error), never a numpy exception."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from analyzer_helpers import microscope, scan, with_z

from probepilot.model import Channel, Frame, ScanArea
from probepilot.options import build
from probepilot.plugins import make_plugin_manager

NAMES = ["double_tip", "drift", "tip_changes", "roughness", "resolution"]


@pytest.fixture(scope="module")
def good() -> Frame:
    return scan(microscope("au111", seed=3), 15e-9, 64)


def _analyzers() -> list[object]:
    registry = make_plugin_manager().registry("analyzer")
    return [
        registry.get(n).factory(build(registry.get(n).options, {}, source="t", key=n))
        for n in NAMES
    ]


def _frame_with(raw: object, lines: int = 64, pixels: int = 64) -> Frame:
    base = scan(microscope("au111", seed=3), 15e-9, 64)
    return dataclasses.replace(
        base,
        channels={"Z": Channel("Z", "m", raw, None)},  # type: ignore[arg-type]
        area=ScanArea((0.0, 0.0), (15e-9, 15e-9), pixels, lines),
    )


BAD: dict[str, Callable[[], Frame]] = {
    "all NaN": lambda: _frame_with(np.full((64, 64), np.nan)),
    "one line": lambda: _frame_with(np.random.default_rng(0).normal(size=(1, 64)), lines=1),
    "constant": lambda: _frame_with(np.full((64, 64), 3e-9)),
    "strings": lambda: _frame_with(np.full((64, 64), "z")),
    "complex": lambda: _frame_with(np.ones((64, 64)) * (1 + 1j)),
    "objects": lambda: _frame_with(np.array([[object()] * 8] * 8, dtype=object)),
    "three dimensions": lambda: _frame_with(np.zeros((4, 64, 64))),
    "not an array": lambda: _frame_with(None),
    "all infinite": lambda: _frame_with(np.full((64, 64), np.inf)),
    "no channels": lambda: dataclasses.replace(_frame_with(np.zeros((64, 64))), channels={}),
    "zero size": lambda: dataclasses.replace(
        _frame_with(np.random.default_rng(0).normal(size=(64, 64))),
        area=ScanArea((0.0, 0.0), (0.0, 0.0), 64, 64),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_frames_give_zero_confidence(case: str, good: Frame) -> None:
    frame = BAD[case]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning either
        for analyzer in _analyzers():
            for history in ([], [good], [frame]):
                findings = analyzer.analyze(frame, history)  # type: ignore[attr-defined]
                assert findings, analyzer
                assert all(f.confidence == 0.0 for f in findings), (case, findings)
                assert findings[0].values.get("status") in ("invalid", "no_reference")
                assert "not analysed" in findings[0].message or "no drift" in findings[0].message


def test_integer_and_float32_images_are_analysed(good: Frame) -> None:
    for dtype in (np.int32, np.float32):
        z = good.topography / 1e-12  # picometres as integers: still an image
        frame = with_z(good, z.astype(dtype))
        for analyzer in _analyzers():
            findings = analyzer.analyze(frame, [])  # type: ignore[attr-defined]
            assert findings[0].values["status"] in ("ok", "no_reference")


def test_partial_frame_uses_the_scanned_lines(good: Frame) -> None:
    z = good.topography.copy()
    z[40:] = np.nan  # the scan stopped after 40 lines
    z[5, 7] = np.inf  # and one pixel glitched
    frame = dataclasses.replace(with_z(good, z), lines_done=40)
    later = dataclasses.replace(frame, started_at=good.started_at + 10.0)
    for analyzer in _analyzers():
        findings = analyzer.analyze(later, [good])  # type: ignore[attr-defined]
        assert findings[0].values["status"] == "ok", findings
    rough = _analyzers()[3].analyze(frame, [])  # type: ignore[attr-defined]
    assert rough[0].confidence == pytest.approx(40 / 64)


def test_garbage_history_is_ignored(good: Frame) -> None:
    for analyzer in _analyzers():
        findings = analyzer.analyze(good, [None, "frame", good])  # type: ignore[attr-defined]
        assert findings
