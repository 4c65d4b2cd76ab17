"""Drift-shift accuracy and speed against scikit-image, on real topographs; one JSON line.

Pairs are made from the Z topographs of ``../shared/stm-data`` (those whose Z is not
constant): the image is shifted by a known random sub-pixel amount (up to 8 pixels along each
axis) exactly, in Fourier space, after mirror-padding it so the shift does not wrap its borders,
and both images get independent white noise of 5 % of the image's rms. Both methods get the
same raw pairs; probepilot's time includes its levelling.

Peer: ``skimage.registration.phase_cross_correlation(reference, moving, upsample_factor=100)``
in the same run (scikit-image is a benchmark-only dependency: ``pip install scikit-image``;
without it only probepilot's figures are printed and ``skimage`` says it is missing). It is
also run on the levelled images (``skimage_levelled``), so the comparison separates the
estimator from the levelling.

Figures: ``rms_error_px`` (root mean square of the vector error, pixels), ``median_ms`` per
pair for each method; ``error_ratio`` (probepilot / skimage; target <= 0.5) and
``time_ratio`` (target <= 1.0); ``pairs``; ``z_rms`` (rms of error / reported sigma for
probepilot: about 1 when its uncertainty is honest).

Run: ``.venv/bin/python benchmarks/bench_analyzers_drift.py``
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from probepilot.store import read_any  # noqa: E402
from probepilot_analyzers._image import level  # noqa: E402
from probepilot_analyzers.registration import estimate_shift  # noqa: E402

STM_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "stm-data"
PAIRS_PER_IMAGE = 24
NOISE = 0.05


def topographs() -> list[tuple[str, np.ndarray]]:
    out = []
    if not STM_DATA.is_dir():
        return out
    for path in sorted(STM_DATA.rglob("*")):
        if not path.name.lower().endswith((".sxm", ".z_mtrx")):
            continue
        data = read_any(path)
        for k, frame in enumerate(data if isinstance(data, list) else [data]):
            z = frame.channels["Z"].forward
            z = z[np.isfinite(z).all(axis=1)]
            if min(z.shape) >= 128 and np.ptp(z) > 1e-12:
                out.append((f"{path.name}#{k + 1}", np.asarray(z, dtype=np.float64)))
    return out


def shifted_pair(z: np.ndarray, sy: float, sx: float) -> tuple[np.ndarray, np.ndarray]:
    """``z`` and ``z`` with its content moved by (sy, sx) pixels, same size, exactly (a
    Fourier shift of the mirror-padded image, which has no jumps at its borders)."""
    ny, nx = z.shape
    big = np.pad(z, ((ny // 2, ny // 2), (nx // 2, nx // 2)), mode="symmetric")
    ky = np.fft.fftfreq(big.shape[0])[:, None]
    kx = np.fft.fftfreq(big.shape[1])[None, :]
    moved = np.real(np.fft.ifft2(np.fft.fft2(big) * np.exp(-2j * np.pi * (ky * sy + kx * sx))))
    window = (slice(ny // 2, ny // 2 + ny), slice(nx // 2, nx // 2 + nx))
    return big[window].copy(), moved[window]


def main() -> None:
    try:
        from skimage.registration import phase_cross_correlation
    except ImportError:
        phase_cross_correlation = None
    rng = np.random.default_rng(11)
    ours, peer, peer_levelled, zs = [], [], [], []
    t_ours, t_peer = [], []
    images = topographs()
    for _name, z in images:
        for _ in range(PAIRS_PER_IMAGE):
            sy, sx = rng.uniform(-8, 8, 2)
            a, b = shifted_pair(z, sy, sx)
            rms = float(np.std(level(a)))
            a = a + rng.normal(0, NOISE * rms, a.shape)
            b = b + rng.normal(0, NOISE * rms, b.shape)
            t0 = time.perf_counter()
            got = estimate_shift(level(a), level(b))
            t_ours.append(time.perf_counter() - t0)
            ours.append((got.rows - sy, got.columns - sx))
            zs.append(((got.rows - sy) / got.sigma_rows, (got.columns - sx) / got.sigma_columns))
            if phase_cross_correlation is not None:
                t0 = time.perf_counter()
                shift, _, _ = phase_cross_correlation(a, b, upsample_factor=100)
                t_peer.append(time.perf_counter() - t0)
                # skimage returns the shift that registers `moving` onto `reference`: minus ours.
                peer.append((-shift[0] - sy, -shift[1] - sx))
                shift, _, _ = phase_cross_correlation(level(a), level(b), upsample_factor=100)
                peer_levelled.append((-shift[0] - sy, -shift[1] - sx))

    def rms(errors: list[tuple[float, float]]) -> float:
        e = np.asarray(errors)
        return float(np.sqrt(np.mean(np.sum(e * e, axis=1)))) if e.size else float("nan")

    record: dict[str, object] = {
        "benchmark": "analyzers_drift",
        "images": len(images),
        "pairs": len(ours),
        "noise": NOISE,
        "probepilot": {
            "rms_error_px": round(rms(ours), 4),
            "median_ms": round(1e3 * statistics.median(t_ours), 2) if t_ours else None,
            "z_rms": round(float(np.sqrt(np.mean(np.square(zs)))), 2) if zs else None,
        },
    }
    if phase_cross_correlation is None:
        record["skimage"] = "not installed: pip install scikit-image (benchmark-only dependency)"
    else:
        record["skimage"] = {
            "rms_error_px": round(rms(peer), 4),
            "median_ms": round(1e3 * statistics.median(t_peer), 2),
        }
        record["skimage_levelled"] = {"rms_error_px": round(rms(peer_levelled), 4)}
        record["error_ratio"] = round(rms(ours) / rms(peer), 3)
        record["time_ratio"] = round(statistics.median(t_ours) / statistics.median(t_peer), 3)
        record["targets"] = {"error_ratio": 0.5, "time_ratio": 1.0}
    print(json.dumps(record))


if __name__ == "__main__":
    main()
