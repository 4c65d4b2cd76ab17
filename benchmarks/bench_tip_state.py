"""Tip-state classifier against the physics-based double-tip detector; one JSON line.

Both analyzers are built through the plugin registry with their default options, exactly as
a run builds them, and see the same frames.

**Held-out simulated set** (``sim``): frames drawn by
:data:`probepilot_analyzers.classifier_data.HELD_OUT`: simulator seeds from 10^6 (training
draws below), Au(111) without its herringbone (training always has it), feature densities of
0.25-0.5x and 2.5-4x (training: 0.5-2.5x), noise at 0.3-0.5x and 3-4x the defaults (training:
0.5-3x), 192- and 256-pixel frames of 10-60 nm (training: 48-160 pixels, 2-40 nm), no
image-level augmentation. Equal numbers start with each tip state; the label is the state at
the start of the frame, ``unstable`` for a frame during which the apex changed (an unstable
tip that did not change is redrawn, as in training). Figures: for the classifier's four
classes, ``balanced_accuracy`` (mean recall), ``recall`` and one-vs-rest ``roc_auc`` per
class; for double versus single (good, blunt and unstable), for both detectors,
``balanced_accuracy``, ``recall`` of each label, ``roc_auc`` (the classifier calls a tip
double when ``double`` is its most probable state and ranks by ``p_double``; ``double_tip``
calls P(double) >= 0.5).

**Real topographs** (``real``): every Z image of ``../shared/stm-data`` at least 160 pixels
square that is not constant and fine enough (at least 3 pixels per 3 nm), as in
``bench_analyzers_double_tip.py``: random 128 x 128 crops (position, rotation by quarter
turns, mirror), each kept as it is (single tip) and turned into a double-tip image by the
two-apex formula ``z2 = (1/2k) ln(exp(2k z(x)) + a exp(2k (z(x - d) - dz)))`` with
k = 1.087e10 /m, ``|d|`` 0.6-3 nm in a random direction but 3-32 pixels (the 0.016 nm-pixel
image's 0.6 nm would be 38 pixels; it is capped at 32), ``a`` in [0.3, 1], ``dz`` in [0, 60 pm].
Double versus single for both detectors, as above.

**Speed** (``ms_per_256_frame``): the classifier's ``analyze`` on a 256 x 256 simulated frame,
one thread (BLAS pools pinned before numpy loads), median of 50 runs; ``ms_views`` and
``ms_network`` split it.

Run: ``.venv/bin/python benchmarks/bench_tip_state.py [--quick]``
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from probepilot.config import load_config  # noqa: E402
from probepilot.model import Channel, Frame, ScanArea  # noqa: E402
from probepilot.store import read_any  # noqa: E402
from probepilot_analyzers import classifier_data as cd  # noqa: E402
from probepilot_analyzers._image import level, prepare  # noqa: E402
from probepilot_analyzers._tip_views import views  # noqa: E402
from probepilot_analyzers.tip_state import CLASSES, MIN_SIZE  # noqa: E402

STM_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "stm-data"
#: Seed of the held-out draw and of the real crops.
SEED = 7
CROP = 128


def build_analyzers() -> tuple[Any, Any]:
    config, manager = load_config(None)
    return (
        config.build(manager, "analyzer", "tip_state"),
        config.build(manager, "analyzer", "double_tip"),
    )


def crop_frame(z: np.ndarray, pixel: float) -> Frame:
    """A real crop as a frame (what both analyzers take)."""
    n = z.shape[0]
    return Frame(
        channels={"Z": Channel("Z", "m", np.ascontiguousarray(z), None)},
        area=ScanArea((0.0, 0.0), (pixel * n, pixel * n), n, n),
        direction="down",
        bias=0.1,
        setpoint=1e-10,
        line_time=0.1,
        started_at=0.0,
        finished_at=0.0,
        lines_done=n,
        source="bench",
    )


def judge(frames: list[Frame], tip_state: Any, double_tip: Any) -> list[dict[str, Any]]:
    """Both analyzers' verdicts on every frame."""
    out = []
    for frame in frames:
        [c] = tip_state.analyze(frame, [])
        [d] = double_tip.analyze(frame, [])
        out.append(
            {
                "probs": [float(c.values.get(f"p_{k}", 0.0)) for k in CLASSES],
                "state": str(c.values.get("state", "")),
                "p_double_tip": float(d.confidence),
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# Figures


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability a positive scores above a negative (ties count half)."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    order = np.concatenate([positive, negative])
    ranks = _ranks(order)
    r = ranks[: len(positive)].sum()
    return float((r - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative)))


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def four_class(labels: list[str], verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    truth = np.array(labels)
    called = np.array([v["state"] for v in verdicts])
    probs = np.array([v["probs"] for v in verdicts])
    recall, aucs = {}, {}
    for k, name in enumerate(CLASSES):
        mine = truth == name
        if mine.any():
            recall[name] = round(float(np.mean(called[mine] == name)), 3)
            aucs[name] = round(auc(probs[mine, k], probs[~mine, k]), 3)
    confusion = {
        name: {other: int(np.sum((truth == name) & (called == other))) for other in CLASSES}
        for name in CLASSES
    }
    return {
        "n": len(labels),
        "balanced_accuracy": round(float(np.mean(list(recall.values()))), 3),
        "recall": recall,
        "roc_auc": aucs,
        "confusion": confusion,
    }


def double_vs_single(labels: list[str], scores: np.ndarray, called: np.ndarray) -> dict[str, Any]:
    truth = np.array([label == "double" for label in labels])
    by_label = {}
    for name in dict.fromkeys(labels):
        mine = np.array([label == name for label in labels])
        by_label[name] = round(float(np.mean(called[mine] == (name == "double"))), 3)
    balanced = 0.5 * (float(np.mean(called[truth])) + float(np.mean(~called[~truth])))
    return {
        "n": len(labels),
        "balanced_accuracy": round(balanced, 3),
        "recall": by_label,
        "roc_auc": round(auc(scores[truth], scores[~truth]), 3),
    }


def both_detectors(labels: list[str], verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    p_cls = np.array([v["probs"][CLASSES.index("double")] for v in verdicts])
    called_cls = np.array([v["state"] == "double" for v in verdicts])
    p_phys = np.array([v["p_double_tip"] for v in verdicts])
    return {
        "tip_state": double_vs_single(labels, p_cls, called_cls),
        "double_tip": double_vs_single(labels, p_phys, p_phys >= 0.5),
    }


# --------------------------------------------------------------------------------------------
# Real topographs


def real_topographs() -> list[tuple[str, np.ndarray, float]]:
    """(name, levelled Z, pixel size) of every real image whose Z is usable."""
    out: list[tuple[str, np.ndarray, float]] = []
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


def real_crops(per_image: int) -> tuple[list[Frame], list[str], list[str]]:
    """Single and transformed double-tip crops (frames, labels) and the images used."""
    rng = np.random.default_rng(SEED)
    frames, labels, used = [], [], []
    for name, z, pixel in real_topographs():
        high = min(3e-9 / pixel, CROP / 4)
        if high < 3 or min(z.shape) < CROP + 2 * high + 2:
            continue
        low = min(max(0.6e-9 / pixel, 3.0), high)
        used.append(name)
        margin = math.ceil(high) + 1
        for _ in range(per_image):
            oy = int(rng.integers(margin, z.shape[0] - CROP - margin))
            ox = int(rng.integers(margin, z.shape[1] - CROP - margin))
            turn, mirror = int(rng.integers(4)), bool(rng.random() < 0.5)
            length = float(rng.uniform(low, high))
            angle = float(rng.uniform(0, 2 * math.pi))
            dy, dx = round(length * math.sin(angle)), round(length * math.cos(angle))
            a, dz = float(rng.uniform(0.3, 1.0)), float(rng.uniform(0, 60e-12))
            crop = z[oy : oy + CROP, ox : ox + CROP]
            shifted = z[oy - dy : oy - dy + CROP, ox - dx : ox - dx + CROP]
            double = cd.two_apex(crop, shifted, a, dz)
            for image, label in ((crop, "single"), (double, "double")):
                view = np.rot90(image, turn)
                view = view[:, ::-1] if mirror else view
                frames.append(crop_frame(view, pixel))
                labels.append(label)
    return frames, labels, used


# --------------------------------------------------------------------------------------------
# Speed


def speed(tip_state: Any, frame: Frame, repeats: int = 50) -> dict[str, float]:
    def median_ms(work: Any) -> float:
        work()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            work()
            times.append(time.perf_counter() - t0)
        return round(1e3 * statistics.median(times), 2)

    data = prepare(frame, min_size=MIN_SIZE).data
    x = views(data)[None]
    return {
        "ms_per_256_frame": median_ms(lambda: tip_state.analyze(frame, [])),
        "ms_views": median_ms(lambda: views(data)),
        "ms_network": median_ms(lambda: tip_state.network.probabilities(x)),
    }


def main() -> None:
    quick = "--quick" in sys.argv
    count = 96 if quick else 400
    per_image = 4 if quick else 16
    started = time.perf_counter()
    tip_state, double_tip = build_analyzers()
    examples = cd.examples(cd.HELD_OUT, count, SEED)
    labels = [e.label for e in examples]
    sim_frames = [e.frame for e in examples]
    verdicts = judge(sim_frames, tip_state, double_tip)
    full_size = [e.frame for e in examples if e.frame.area.pixels == 256]
    real_frames, real_labels, used = real_crops(per_image)
    real_verdicts = judge(real_frames, tip_state, double_tip)
    timing = speed(tip_state, full_size[0])
    print(
        json.dumps(
            {
                "benchmark": "tip_state",
                "sim": {
                    "tip_state_4_class": four_class(labels, verdicts),
                    "double_vs_single": both_detectors(labels, verdicts),
                },
                "real": {
                    "double_vs_single": both_detectors(real_labels, real_verdicts),
                    "images": used,
                    "crops_per_image": per_image,
                },
                "targets": {
                    "sim_double_balanced_accuracy": 0.97,
                    "real_double_balanced_accuracy": 0.95,
                    "ms_per_256_frame": 10,
                },
                **timing,
                "weights_meta": tip_state.network.meta,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
