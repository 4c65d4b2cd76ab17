"""Noise sources of an STM image: white noise, 1/f (flicker) noise along the scan path, and
line-to-line offsets. All draws come from the generator passed in, never global state."""

from __future__ import annotations

import numpy as np
from scipy.fft import next_fast_len

from probepilot.model import FloatArray


def flicker(rng: np.random.Generator, n: int, rms: float, decimate: int = 8) -> FloatArray:
    """A 1/f (pink) noise series of ``n`` samples with standard deviation ``rms``.

    White noise shaped in the frequency domain by ``1/sqrt(f)`` (power ~ 1/f); the DC term is
    dropped so the series has zero mean. It is drawn on every ``decimate``-th sample and
    linearly interpolated in between: 1/f noise has almost no power at the highest frequencies
    (white noise covers those), and the FFT is the costliest part of a large frame otherwise.
    """
    if n < 2 or rms <= 0:
        return np.zeros(n)
    m = next_fast_len(max(n // decimate, 1) + 2, real=True)
    spectrum = np.fft.rfft(rng.standard_normal(m))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = np.inf
    spectrum /= np.sqrt(f)
    coarse = np.fft.irfft(spectrum, m)
    out = np.interp(np.arange(n, dtype=np.float64), np.linspace(0.0, n - 1.0, m), coarse)
    std = out.std()
    if std > 0:
        out *= rms / std
    return np.asarray(out, dtype=np.float64)
