"""Double-tip detection accuracy on held-out simulated frames and on real topographs; one JSON
line.

**Simulated** (``sim``): frames from the simulated microscope with seeds, frame sizes (10-70 nm),
pixel counts (128, 192, 256), noise levels (0.3-4x the defaults), drift (up to 50 pm/s), feature
densities (0.3-3x), scan directions and rotations the detector's calibration never saw (it was
calibrated on the tuning sets below: other seeds, 12-60 nm, 128/256 pixels, 0.5-3x noise,
0.5-2.5x features, unrotated downward scans). Equal numbers of good, double, blunt and unstable
tips; the truth is the apex the frame started with. Positive class: double. A double tip is only
visible through what is not periodic (adsorbates, vacancies, molecules, debris, steps: a lattice
plus a shifted copy of itself is the same lattice), and many simulated frames show none, so the
figures are also given for the frames with at least three such features in view
(``sim_with_features``), and for frames judged after the three frames their tip took just
before, side by side (``sim_sequences``, half as many, other seeds; ``last_frame_alone``:
the same last frames judged without them): what the analyzer sees in a run, where a ghost
repeats at the same offset frame after frame.

**Real** (``real``): the Z topographs of ``../shared/stm-data`` (those whose Z is not constant),
cut into random 128 x 128 crops (random position, rotation, mirror), each kept as it is (single
tip) and turned into a double-tip image by the physically right transform, the tunnelling
currents of two apexes adding:
``z2 = (1/2k) ln(exp(2k z(x)) + a exp(2k (z(x - d) - dz)))`` with k = 1.087e10 /m, a random
offset ``d`` of 0.6-3 nm (as on real tips) in a random direction, clamped to 3-32 pixels (at
least three pixels, at most a quarter of the crop: on the finest images, 0.016 nm per pixel,
the offset is then 0.5 nm), ``a`` in [0.3, 1] and ``dz`` in [0, 60 pm]. Images too coarse to
show such an offset (the 5 um frame: 20 nm per pixel) are left out; the detector runs with its
default options. The transform copies the recorded noise along with the image (a real second
apex would not), which puts the ghost's fringes into every Fourier bin: this set is easier for
the cepstrum than a real double tip of the same weight.

Figures per set: ``balanced_accuracy`` (threshold P = 0.5), ``recall`` per class, ``roc_auc``,
``n``; ``offset_within_1px`` (fraction of the detected doubles whose second-apex offset, sign
included, is within a pixel of the truth) and ``offset_error_px`` (their median error). The
tip-state CNN classifier (the issue's other detector) is measured by ``bench_tip_state.py``.

**Tuning sets** (``--calibrate``): what the logistic calibration of P(double)
(``probepilot_analyzers.double_tip.CALIBRATION``) was fitted on, and never the held-out sets
above: :func:`tuning_frame` (simulated frames, seeds drawn from ``[31337, i]``, every surface
preset and tip state) and :func:`tuning_real_like` (simulated single-tip frames turned double
by the same two-apex transform as the real set, seeds ``[4242, i]``).

Run: ``.venv/bin/python benchmarks/bench_analyzers_double_tip.py [--quick | --calibrate]``
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from probepilot.model import Channel, Frame, ScanArea, ScanSettings  # noqa: E402
from probepilot.store import read_any  # noqa: E402
from probepilot_analyzers import double_tip  # noqa: E402
from probepilot_analyzers._image import level  # noqa: E402
from probepilot_analyzers.double_tip import KAPPA, DoubleTipAnalyzer, detect  # noqa: E402
from probepilot_analyzers.options import DoubleTipOptions  # noqa: E402
from probepilot_sim import tip as tips  # noqa: E402
from probepilot_sim.microscope import Microscope  # noqa: E402
from probepilot_sim.options import SimOptions  # noqa: E402

STM_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "stm-data"
STATES = ("good", "double", "blunt", "unstable")
SURFACES = ("au111", "cu111", "si111_7x7", "hopg")
#: Side of the real-image crops (pixels) and the offsets' bounds in them.
CROP = 128
OFFSET_PIXELS = (3.0, CROP / 4)
#: Apex separations of real double tips (and of the simulator's), m.
SEPARATION = (0.6e-9, 3e-9)
#: Frames of one tip in the ``sim_sequences`` set: the last is judged after the others.
SEQUENCE = 4

#: A row of figures: (true state, P(double), features in view, offset within a pixel or None,
#: offset error in pixels or None).
Row = tuple[str, float, int, "bool | None", "float | None"]


# --------------------------------------------------------------------------------------------
# Simulated frames


def _acquire(scope: Microscope, area: ScanArea, line_time: float, direction: str) -> Frame:
    settings = ScanSettings(area, line_time, direction)  # type: ignore[arg-type]
    plan = scope.plan_scan(settings)
    result = scope.render(plan)
    scope.commit(plan, area.lines, result)
    return Frame(
        channels={"Z": Channel("Z", "m", result.z_forward, result.z_backward)},
        area=area,
        direction=direction,  # type: ignore[arg-type]
        bias=scope.bias,
        setpoint=scope.setpoint,
        line_time=settings.line_time,
        started_at=plan.start,
        finished_at=scope.clock,
        lines_done=area.lines,
        source="sim",
    )


def sim_frame(
    i: int, frames: int = 1, base: int = 7919
) -> tuple[Frame, str, int, tuple[float, float] | None, list[Frame]]:
    """Frame ``i`` of the held-out set: (frame, state, features in view, second apex offset,
    the ``frames - 1`` frames the same tip took before it, side by side to its left)."""
    rng = np.random.default_rng([base, i])
    surface, state = SURFACES[i % 4], STATES[(i // 4) % 4]
    noise = float(rng.uniform(0.3, 4.0))
    options = SimOptions(
        seed=int(rng.integers(10**6, 2 * 10**6)),
        surface=surface,  # type: ignore[arg-type]
        tip="good",
        noise_z=2e-12 * noise,
        flicker_z=3e-12 * noise,
        line_offset_z=4e-12 * noise,
        drift_velocity=(float(rng.normal(0, 25e-12)), float(rng.normal(0, 25e-12)), 0.0),
        feature_density=float(rng.uniform(0.3, 3.0)),
    )
    scope = Microscope(options)
    apex = tips.make_apex(state, rng)
    scope.apex = apex if state == "unstable" else dataclasses.replace(apex, change_rate=0.0)
    size = float(rng.uniform(10e-9, 70e-9))
    pixels = int(rng.choice([128, 192, 256]))
    centre = (float(rng.uniform(-2e-7, 2e-7)), float(rng.uniform(-2e-7, 2e-7)))
    area = ScanArea(centre, (size, size), pixels, pixels, float(rng.uniform(-0.6, 0.6)))
    direction = "down" if rng.random() < 0.5 else "up"
    line_time = float(rng.uniform(0.04, 0.25))
    earlier = []
    for k in range(frames - 1, 0, -1):
        before = dataclasses.replace(area, centre=(centre[0] - 1.05 * k * size, centre[1]))
        earlier.append(_acquire(scope, before, line_time, direction))
    frame = _acquire(scope, area, line_time, direction)
    blobs = (
        scope.surface.features.blobs_in(
            centre[0] - size / 2, centre[0] + size / 2, centre[1] - size / 2, centre[1] + size / 2
        )
        if scope.surface.features is not None
        else None
    )
    seen = 0
    if blobs is not None:
        inside = (np.abs(blobs.x - centre[0]) < 0.45 * size) & (
            np.abs(blobs.y - centre[1]) < 0.45 * size
        )
        seen = int((inside & (np.abs(blobs.height) > 0.06e-9)).sum())
    second = (apex.tips[1].dx, apex.tips[1].dy) if state == "double" else None
    return frame, state, seen, second, earlier


def run_sim(
    count: int, frames: int = 1, history: bool = True
) -> tuple[dict[str, object], dict[str, object], float]:
    """The held-out simulated set; with ``frames`` > 1, each frame judged after the
    ``frames - 1`` frames its tip took before (other seeds: the ``sim_sequences`` set), or, with
    ``history`` false, the same frames judged alone."""
    rows: list[Row] = []
    elapsed = 0.0
    for i in range(count):
        frame, state, seen, second, earlier = sim_frame(i, frames, 7919 if frames == 1 else 7927)
        analyzer = DoubleTipAnalyzer(DoubleTipOptions())
        earlier = earlier if history else []
        for k, before in enumerate(earlier):
            analyzer.analyze(before, earlier[:k])
        t0 = time.perf_counter()
        [finding] = analyzer.analyze(frame, earlier)
        elapsed += time.perf_counter() - t0
        near = error = None
        if second is not None and finding.confidence >= 0.5:
            got = (float(finding.values["offset_x"]), float(finding.values["offset_y"]))
            pixel = frame.area.pixel_size[0]
            error = math.hypot(got[0] - second[0], got[1] - second[1]) / pixel
            near = error < 1.0
        rows.append((state, finding.confidence, seen, near, error))
    every = scores(rows)
    with_features = scores([r for r in rows if r[2] >= 3])
    return every, with_features, 1e3 * elapsed / count


# --------------------------------------------------------------------------------------------
# Real topographs


def real_topographs() -> list[tuple[str, np.ndarray, float]]:
    """(name, levelled Z, pixel size) of every real image whose Z is not constant."""
    out = []
    if not STM_DATA.is_dir():
        return out
    paths = sorted(p for p in STM_DATA.rglob("*") if p.name.lower().endswith((".sxm", ".z_mtrx")))
    for path in paths:
        data = read_any(path)
        for k, frame in enumerate(data if isinstance(data, list) else [data]):
            z = frame.channels["Z"].forward
            z = z[np.isfinite(z).all(axis=1)]
            if z.shape[0] < 160 or z.shape[1] < 160 or np.ptp(z) < 1e-12:
                continue
            out.append((f"{path.name}#{k + 1}", level(z), frame.area.pixel_size[0]))
    return out


def two_apex(z: np.ndarray, shifted: np.ndarray, a: float, dz: float) -> np.ndarray:
    """``(1/2k) ln(exp(2k z) + a exp(2k (z_shifted - dz)))``, overflow-free."""
    k2 = 2 * KAPPA
    return np.logaddexp(k2 * z, math.log(a) + k2 * (shifted - dz)) / k2


def offset_bounds(pixel: float) -> tuple[float, float] | None:
    """The range of apex offsets (pixels) drawn for an image of ``pixel`` m per pixel: real
    separations, clamped to :data:`OFFSET_PIXELS`; ``None`` when even the smallest clamped
    offset is longer than the largest real separation (too coarse an image)."""
    low, high = SEPARATION[0] / pixel, min(SEPARATION[1] / pixel, OFFSET_PIXELS[1])
    if high < OFFSET_PIXELS[0]:
        return None
    return min(max(low, OFFSET_PIXELS[0]), high), high


def double_crop(
    z: np.ndarray,
    rng: np.random.Generator,
    pixel: float,
    size: int = CROP,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int], float] | None:
    """A random ``size`` crop of ``z`` and the same crop seen by two apexes: (single, double,
    ghost displacement (rows, columns) in pixels, effective weight ``a exp(-2k dz)``); ``None``
    when the image is too coarse or too small."""
    bounds = offset_bounds(pixel)
    if bounds is None:
        return None
    low, high = bounds
    margin = math.ceil(high) + 1
    if min(z.shape) < size + 2 * margin:
        return None
    oy = int(rng.integers(margin, z.shape[0] - size - margin))
    ox = int(rng.integers(margin, z.shape[1] - size - margin))
    length = float(rng.uniform(low, high))
    angle = float(rng.uniform(0, 2 * math.pi))
    dy, dx = round(length * math.sin(angle)), round(length * math.cos(angle))
    a, dz = float(rng.uniform(0.3, 1.0)), float(rng.uniform(0, 60e-12))
    crop = z[oy : oy + size, ox : ox + size]
    # z(x - d): the crop of the same image d pixels up-left; a feature at p shows again at p + d.
    shifted = z[oy - dy : oy - dy + size, ox - dx : ox - dx + size]
    return crop, two_apex(crop, shifted, a, dz), (dy, dx), a * math.exp(-2 * KAPPA * dz)


def view_vector(vector: tuple[float, float], turn: int, mirror: bool) -> tuple[float, float]:
    """A displacement (rows, columns) after ``np.rot90(image, turn)`` and, if ``mirror``,
    ``[:, ::-1]``."""
    dy, dx = vector
    for _ in range(turn % 4):
        dy, dx = -dx, dy
    return (dy, -dx) if mirror else (dy, dx)


def run_real(crops_per_image: int) -> tuple[dict[str, object], list[str]]:
    rng = np.random.default_rng(2024)
    rows: list[Row] = []
    used = []
    options = DoubleTipOptions()
    for name, z, pixel in real_topographs():
        if offset_bounds(pixel) is None:
            continue
        made = False
        for _ in range(crops_per_image):
            pair = double_crop(z, rng, pixel)
            if pair is None:
                break
            made = True
            crop, double, ghost, _ = pair
            turn, mirror = int(rng.integers(4)), bool(rng.random() < 0.5)
            gy, gx = view_vector(ghost, turn, mirror)
            for image, state in ((crop, "good"), (double, "double")):
                view = np.rot90(image, turn)
                view = view[:, ::-1] if mirror else view
                result = detect(
                    level(np.ascontiguousarray(view)),
                    (pixel, pixel),
                    feature_size=options.feature_size,
                    max_offset=options.max_offset,
                    min_offset=options.min_offset,
                )
                near = error = None
                if state == "double" and result.probability >= 0.5:
                    # The second apex sits at minus the ghost displacement, (x, rows).
                    error = math.hypot(result.offset[0] + gx, result.offset[1] + gy)
                    near = error < 1.0
                rows.append((state, result.probability, 99, near, error))
        if made:
            used.append(name)
    return scores(rows), used


# --------------------------------------------------------------------------------------------
# Tuning sets (what the calibration was fitted on; never the held-out sets above)


def tuning_frame(i: int) -> tuple[np.ndarray, tuple[float, float], str, tuple[float, float] | None]:
    """Simulated tuning frame ``i``: (levelled Z, pixel size, state, ghost displacement (rows,
    columns) in pixels, or ``None`` when the tip is not double)."""
    rng = np.random.default_rng([31337, i])
    surface, state = SURFACES[i % 4], STATES[(i // 4) % 4]
    noise = float(rng.uniform(0.5, 3.0))
    options = SimOptions(
        seed=int(rng.integers(0, 10**6)),
        surface=surface,  # type: ignore[arg-type]
        tip="good",
        noise_z=2e-12 * noise,
        flicker_z=3e-12 * noise,
        line_offset_z=4e-12 * noise,
        drift_velocity=(float(rng.normal(0, 20e-12)), float(rng.normal(0, 20e-12)), 0.0),
        feature_density=float(rng.uniform(0.5, 2.5)),
    )
    scope = Microscope(options)
    apex = tips.make_apex(state, rng)
    scope.apex = apex if state == "unstable" else dataclasses.replace(apex, change_rate=0.0)
    size = float(rng.uniform(12e-9, 60e-9))
    pixels = int(rng.choice([128, 256]))
    centre = (float(rng.uniform(-2e-7, 2e-7)), float(rng.uniform(-2e-7, 2e-7)))
    area = ScanArea(centre, (size, size), pixels, pixels)
    frame = _acquire(scope, area, float(rng.uniform(0.04, 0.25)), "down")
    pixel = frame.area.pixel_size
    ghost = None
    if state == "double":
        # Downward scan, no rotation: rows run along -y; the ghost sits at minus the offset.
        second = apex.tips[1]
        ghost = (second.dy / pixel[1], -second.dx / pixel[0])
    return level(frame.channels["Z"].forward), pixel, state, ghost


def tuning_real_like(
    i: int,
) -> list[tuple[np.ndarray, tuple[float, float], str, tuple[float, float] | None]]:
    """A simulated single-tip frame and its two-apex transform (as the real set makes them),
    seeds ``[4242, i]``: two rows like :func:`tuning_frame`'s."""
    rng = np.random.default_rng([4242, i])
    surface = SURFACES[i % 4]
    options = SimOptions(
        seed=int(rng.integers(0, 10**6)),
        surface=surface,  # type: ignore[arg-type]
        tip="good",
        feature_density=float(rng.uniform(0.5, 2.5)),
    )
    scope = Microscope(options)
    scope.apex = dataclasses.replace(scope.apex, change_rate=0.0)
    size = float(rng.uniform(12e-9, 60e-9))
    area = ScanArea((0.0, 0.0), (size, size), 256, 256)
    frame = _acquire(scope, area, float(rng.uniform(0.04, 0.25)), "down")
    pixel = frame.area.pixel_size[0]
    pair = double_crop(level(frame.channels["Z"].forward), rng, pixel)
    if pair is None:
        return []
    crop, double, ghost, _ = pair
    return [
        (level(crop), (pixel, pixel), "good", None),
        (level(double), (pixel, pixel), "double", (float(ghost[0]), float(ghost[1]))),
    ]


def _features(ev: double_tip.Evidence) -> list[float]:
    """The terms of :func:`~probepilot_analyzers.double_tip.probability`'s logit."""
    if not ev.found:
        return [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    return [
        1.0,
        double_tip._feature_term(ev.llr, ev.objects),
        max(ev.cepstrum, 0.0),
        max(ev.cepstrum_best, 0.0),
        ev.weight,
        double_tip._step_term(ev.steps),
    ]


def _logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """Weighted, lightly regularised logistic regression by Newton's method."""
    beta = np.zeros(x.shape[1])
    for _ in range(60):
        p = 1.0 / (1.0 + np.exp(-x @ beta))
        w = weight * p * (1 - p)
        hessian = x.T @ (x * w[:, None]) + l2 * np.eye(x.shape[1])
        gradient = x.T @ (weight * (y - p)) - l2 * beta
        beta += np.linalg.solve(hessian, gradient)
    return beta


def calibrate(frames: int = 320, pairs: int = 120, rounds: int = 2) -> dict[str, object]:
    """Fit :data:`~probepilot_analyzers.double_tip.CALIBRATION` on the tuning sets (each set,
    and in each set each class, weighted alike). The offset chosen in a frame depends on the
    coefficients, so the fit is repeated ``rounds`` times from the current ones."""
    sets: list[list[tuple[np.ndarray, tuple[float, float], str, object]]] = [
        [tuning_frame(i) for i in range(frames)],
        [row for i in range(pairs) for row in tuning_real_like(i)],
    ]
    beta = np.asarray(double_tip.CALIBRATION, dtype=float)
    fitted: dict[str, object] = {}
    for _ in range(rounds):
        double_tip.CALIBRATION = tuple(float(b) for b in beta)  # type: ignore[assignment]
        xs, ys, ws, parts = [], [], [], []
        for rows in sets:
            truth = np.array([state == "double" for _, _, state, _ in rows])
            part = []
            for (z, pixel, _, _), positive in zip(rows, truth, strict=True):
                part.append(_features(double_tip.evidence(z, pixel)))
                ys.append(float(positive))
                share = truth.mean() if positive else 1 - truth.mean()
                ws.append(0.5 / share / len(rows))
            xs.extend(part)
            parts.append((np.asarray(part), [state for _, _, state, _ in rows]))
        beta = _logistic(np.asarray(xs), np.asarray(ys), np.asarray(ws) * 1000)
        for name, (x, states) in zip(("tuning_sim", "tuning_real_like"), parts, strict=True):
            p = 1.0 / (1.0 + np.exp(-x @ beta))
            fitted[name] = scores([(s, float(q), 0, None) for s, q in zip(states, p, strict=True)])
    return {
        "calibration": [round(float(b), 3) for b in beta],
        "fit": fitted,
        "terms": [
            "intercept",
            "sqrt(feature llr)",
            "cepstrum z at g",
            "best cepstrum z",
            "weight",
            "step ghost z above 5",
        ],
        "tuning_frames": frames,
        "tuning_real_like_pairs": pairs,
    }


# --------------------------------------------------------------------------------------------
# Figures


def scores(rows: Sequence[Sequence[object]]) -> dict[str, object]:
    """Figures for rows of (state, P(double), features in view, offset within a pixel or
    ``None`` [, offset error in pixels or ``None``])."""
    if not rows:
        return {"n": 0}
    truth = np.array([r[0] == "double" for r in rows])
    p = np.array([float(r[1]) for r in rows])  # type: ignore[arg-type]
    called = p >= 0.5
    recall = {}
    for state in STATES:
        mine = np.array([r[0] == state for r in rows])
        if mine.any():
            recall[state] = round(float(np.mean(called[mine] == (state == "double"))), 3)
    out: dict[str, object] = {"n": len(rows)}
    if truth.any() and (~truth).any():
        pos, neg = p[truth], p[~truth]
        auc = float(
            np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :])
        )
        balanced = 0.5 * (float(np.mean(called[truth])) + float(np.mean(~called[~truth])))
        out["balanced_accuracy"] = round(balanced, 3)
        out["roc_auc"] = round(auc, 3)
    out["recall"] = recall
    near = [r[3] for r in rows if r[3] is not None]
    if near:
        out["offset_within_1px"] = round(float(np.mean(near)), 3)
    errors = [float(r[4]) for r in rows if len(r) > 4 and r[4] is not None]  # type: ignore[arg-type]
    if errors:
        out["offset_error_px"] = round(float(np.median(errors)), 2)
    return out


def main() -> None:
    if "--calibrate" in sys.argv:
        started = time.perf_counter()
        result = calibrate()
        result["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps({"benchmark": "analyzers_double_tip_calibration", **result}))
        return
    quick = "--quick" in sys.argv
    count = 96 if quick else 480
    started = time.perf_counter()
    sim_all, sim_features, ms = run_sim(count)
    sequences, _, _ = run_sim(count // 2, SEQUENCE)
    alone, _, _ = run_sim(count // 2, SEQUENCE, history=False)
    real, images = run_real(4 if quick else 16)
    print(
        json.dumps(
            {
                "benchmark": "analyzers_double_tip",
                "sim": sim_all,
                "sim_with_features": sim_features,
                "sim_sequences": {**sequences, "frames": SEQUENCE, "last_frame_alone": alone},
                "real": {**real, "images": images, "crops_per_image": 4 if quick else 16},
                "targets": {"sim_balanced_accuracy": 0.97, "real_balanced_accuracy": 0.95},
                "ms_per_frame_sim": round(ms, 2),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
