"""The adsorbate finder on simulated frames whose adsorbates are known."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from probepilot.model import Frame, ScanArea, ScanSettings
from probepilot_analyzers.adsorbates import AdsorbateAnalyzer
from probepilot_analyzers.options import AdsorbateOptions
from probepilot_sim.driver import SimDriver
from probepilot_sim.options import SimOptions


def scan(seed: int) -> tuple[Frame, np.ndarray]:
    """A 20 nm frame of Au(111) with a good tip and the adsorbates truly inside it (x, y, h)."""

    async def go() -> tuple[Frame, np.ndarray]:
        driver = SimDriver(SimOptions(seed=seed, tip="good", drift_velocity=(0.0, 0.0, 0.0)))
        await driver.connect()
        await driver.approach()
        frame = await driver.scan(
            ScanSettings(ScanArea((0.0, 0.0), (20e-9, 20e-9), 128, 128), 0.05)
        )
        m = driver.microscope
        blobs = m.surface.features.blobs_in(-9e-9, 9e-9, -9e-9, 9e-9)  # type: ignore[union-attr]
        inside = (np.abs(blobs.x) < 9e-9) & (np.abs(blobs.y) < 9e-9) & (blobs.height > 0.07e-9)
        await driver.close()
        return frame, np.stack([blobs.x[inside], blobs.y[inside], blobs.height[inside]], axis=1)

    return asyncio.run(go())


@pytest.mark.parametrize("seed", [0, 2])
def test_it_finds_the_adsorbates_where_they_are(seed: int) -> None:
    frame, truth = scan(seed)
    found = AdsorbateAnalyzer().analyze(frame, [])
    assert found and all(f.kind == "adsorbate" and f.values["status"] == "ok" for f in found)
    for f in found:
        x, y = float(f.values["x"]), float(f.values["y"])
        distance = np.min(np.hypot(truth[:, 0] - x, truth[:, 1] - y))
        assert distance < 0.6e-9, (x, y)
        assert 0.5 < f.confidence <= 1.0
    # Every isolated adsorbate well inside the frame is found.
    for x, y, _ in truth:
        if max(abs(x), abs(y)) < 8e-9:
            assert (
                min(np.hypot(float(f.values["x"]) - x, float(f.values["y"]) - y) for f in found)
                < 0.6e-9
            )


def test_a_clean_flat_frame_has_none_and_a_bad_frame_says_why() -> None:
    area = ScanArea((0.0, 0.0), (10e-9, 10e-9), 64, 64)
    rng = np.random.default_rng(0)
    z = 2e-12 * rng.standard_normal((64, 64)) + np.linspace(0, 1e-9, 64)[None, :]
    from probepilot.model import Channel

    flat = Frame({"Z": Channel("Z", "m", z)}, area, "down", 1.0, 1e-10, 0.1, 0.0, 1.0, 64)
    assert AdsorbateAnalyzer().analyze(flat, []) == []
    nan = Frame(
        {"Z": Channel("Z", "m", np.full((64, 64), np.nan))}, area, "down", 1, 1, 1, 0, 1, 64
    )
    [finding] = AdsorbateAnalyzer().analyze(nan, [])
    assert finding.confidence == 0.0 and finding.values["status"] == "invalid"
    capped = AdsorbateAnalyzer(AdsorbateOptions(max_count=1)).analyze(scan(0)[0], [])
    assert len(capped) == 1
