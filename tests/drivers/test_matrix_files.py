"""A real MATRIX result file beside a frame the simulated MATRIX produces for the same settings:
the same geometry, scan parameters and channel, and the same metadata fields, so frames from
the instrument and from the driver read alike. Skips when ../shared/stm-data is absent."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from matrix_helpers import driver, run

from probepilot.model import Frame, ScanSettings
from probepilot.store import read_matrix, read_sxm, write_sxm

DATA = Path(__file__).resolve().parents[3] / "shared" / "stm-data" / "matrix-spm-rs"
RESULT = DATA / "20201111--4_1.Z_mtrx"

pytestmark = pytest.mark.skipif(not RESULT.is_file(), reason=f"{DATA} is absent")


@pytest.fixture(scope="module")
def pair() -> tuple[Frame, Frame]:
    frames = read_matrix(RESULT)
    assert isinstance(frames, list)
    real = frames[0]
    d = driver(sim_seed=2, sim_result_file_name="20201111")

    async def body() -> Frame:
        await d.connect()
        await d.approach()
        await d.set_bias(real.bias)
        await d.set_setpoint(real.setpoint)
        frame = await d.scan(ScanSettings(real.area, real.line_time, real.direction))
        await d.close()
        return frame

    return real, run(body, timeout=60)


def parameters(frame: Frame) -> set[str]:
    """The MATRIX parameter keys of a frame's metadata (``Element.Property (Unit)``)."""
    return {k for k in frame.metadata if re.fullmatch(r"[A-Za-z0-9_]+\.[A-Za-z0-9_]+( \(.+\))?", k)}


def test_the_simulated_frame_matches_the_real_one_in_geometry_and_settings(
    pair: tuple[Frame, Frame],
) -> None:
    real, simulated = pair
    assert simulated.area == real.area  # 100 nm, 400 x 400, off centre
    assert simulated.direction == real.direction == "up"
    assert simulated.line_time == pytest.approx(real.line_time)
    assert simulated.bias == pytest.approx(real.bias)
    assert simulated.setpoint == pytest.approx(real.setpoint)
    assert simulated.complete and real.complete
    for frame in (real, simulated):
        z = frame.channels["Z"]
        assert z.unit == "m" and z.forward.shape == (400, 400) and z.backward is not None
        assert np.isfinite(z.forward).all()
    # Both are plausible topography: sub-100 nm corrugation, not constant.
    for frame in (real, simulated):
        span = float(np.ptp(frame.topography))
        assert 1e-12 < span < 1e-7


def test_the_same_metadata_fields_are_present(pair: tuple[Frame, Frame]) -> None:
    real, simulated = pair
    recorded = parameters(simulated)
    assert len(recorded) >= 13
    assert recorded <= parameters(real), recorded - parameters(real)
    for key in recorded:
        got, want = simulated.metadata[key], real.metadata[key]
        if isinstance(want, bool) or isinstance(got, bool):
            assert got == want, key
        elif isinstance(want, int | float):
            assert math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-18), key
    assert real.metadata["MATRIX result file"] == "20201111--4_1.Z_mtrx"
    assert re.fullmatch(r"20201111--\d+_\d+\.Z_mtrx", str(simulated.metadata["MATRIX result file"]))


def test_the_result_file_a_frame_names_reads_with_the_store_reader(
    pair: tuple[Frame, Frame],
) -> None:
    from dataclasses import replace

    from probepilot_matrix.driver import result_file

    _, simulated = pair
    assert result_file(simulated) is None  # the simulated MATRIX writes no result files
    named = replace(
        simulated,
        metadata={
            **simulated.metadata,
            "MATRIX result file": RESULT.name,
            "MATRIX result file path": str(DATA),
        },
    )
    path = result_file(named)
    assert path == RESULT
    frames = read_matrix(path)
    assert isinstance(frames, list) and frames[0].area == simulated.area


def test_the_simulated_frame_is_recorded_like_any_other(
    pair: tuple[Frame, Frame], tmp_path: Path
) -> None:
    _, simulated = pair
    path = tmp_path / "frame.sxm"
    write_sxm(simulated, path)
    back = read_sxm(path)
    assert back.area.pixels == 400 and back.direction == "up"
    assert np.allclose(back.topography, simulated.topography, rtol=1e-6, atol=1e-15)
    for key in parameters(simulated):
        assert key in back.metadata, key
