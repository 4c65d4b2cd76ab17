"""The ``[analyzers.NAME]`` tables: what each analyzer can be told, with units and ranges.

Only the schemas live here (no numpy, no scipy), so listing plugins and checking a config stay
fast; the analyzers themselves are imported when one is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from probepilot.options import Doc, Quantity, Range

_CHANNEL_DOC = Doc("channel to analyse; a frame without it falls back to its first channel")


@dataclass(frozen=True)
class DoubleTipOptions:
    """Options of the double-tip detector (``double_tip``)."""

    feature_size: Annotated[
        float,
        Quantity("m"),
        Range(0.05e-9, 10e-9),
        Doc("Gaussian width of the features whose ghosts are looked for (adsorbates: 0.3 nm)"),
    ] = 0.3e-9
    max_offset: Annotated[
        float,
        Quantity("m"),
        Range(0.2e-9, 1e-6),
        Doc("largest lateral distance between two apexes that is looked for"),
    ] = 5e-9
    min_offset: Annotated[
        float,
        Quantity("m"),
        Range(0.05e-9, 1e-6),
        Doc(
            "smallest lateral distance between two apexes that is looked for (closer ghosts "
            "merge with their features)"
        ),
    ] = 0.4e-9
    threshold: Annotated[
        float, Range(0, 1), Doc("P(double) from which the message calls the tip double")
    ] = 0.5
    work_function: Annotated[
        float, Range(1, 10), Doc("tunnelling barrier in eV, for the weight of the second apex")
    ] = 4.5
    channel: Annotated[str, _CHANNEL_DOC] = "Z"


@dataclass(frozen=True)
class DriftOptions:
    """Options of the drift estimator (``drift``)."""

    min_overlap: Annotated[
        float,
        Range(0.1, 1.0),
        Doc("smallest overlap (fraction of the frame) with an earlier frame to measure drift"),
    ] = 0.5
    lookback: Annotated[
        int, Range(1, 100), Doc("how many earlier frames to search for an overlapping one")
    ] = 8
    velocity_walk: Annotated[
        float,
        Quantity("m/s"),
        Range(0, 1e-6),
        Doc("how far the drift velocity may wander in 100 s (rms): the filter's process noise"),
    ] = 2e-12
    creep_threshold: Annotated[
        float,
        Range(1, 1000),
        Doc("chi-square (2 degrees of freedom) of a velocity jump reported as creep or a change"),
    ] = 13.8
    channel: Annotated[str, _CHANNEL_DOC] = "Z"


@dataclass(frozen=True)
class TipChangeOptions:
    """Options of the tip-change detector (``tip_changes``)."""

    threshold: Annotated[
        float,
        Range(3, 1000),
        Doc("robust z-score of a line-to-line jump or streak that counts as a tip change"),
    ] = 8.0
    min_jump: Annotated[
        float,
        Quantity("m"),
        Range(0, 1e-8),
        Doc("smallest height jump or streak that counts as a tip change"),
    ] = 20e-12
    channel: Annotated[str, _CHANNEL_DOC] = "Z"


@dataclass(frozen=True)
class RoughnessOptions:
    """Options of the roughness and cleanliness check (``roughness``)."""

    max_height_range: Annotated[
        float,
        Quantity("m"),
        Range(1e-12, 1e-6),
        Doc("largest peak-to-peak height inside an area that still counts as flat and clean"),
    ] = 0.15e-9
    min_clean_square: Annotated[
        float,
        Quantity("m"),
        Range(0, 1e-5),
        Doc("side of the smallest clean square the tip may be conditioned on"),
    ] = 4e-9
    max_rms: Annotated[
        float,
        Quantity("m"),
        Range(1e-12, 1e-5),
        Doc("largest rms roughness (after levelling) of a frame fit for imaging"),
    ] = 0.5e-9
    min_clean_fraction: Annotated[
        float, Range(0, 1), Doc("smallest clean fraction of a frame fit for imaging")
    ] = 0.25
    channel: Annotated[str, _CHANNEL_DOC] = "Z"


@dataclass(frozen=True)
class ResolutionOptions:
    """Options of the atomic-resolution check (``resolution``)."""

    max_period: Annotated[
        float,
        Quantity("m"),
        Range(0.1e-9, 20e-9),
        Doc(
            "longest spatial period that counts as atomic detail (coarser ones, such as terraces, "
            "reconstructions or the herringbone, are ignored)"
        ),
    ] = 1e-9
    min_period: Annotated[
        float,
        Quantity("m"),
        Range(0.01e-9, 10e-9),
        Doc(
            "shortest spatial period that can be atomic (nearest neighbours are at least "
            "about 0.2 nm apart); finer periodic contrast is electronic noise"
        ),
    ] = 0.15e-9
    max_pixel: Annotated[
        float,
        Quantity("m"),
        Range(0.01e-9, 10e-9),
        Doc("pixels coarser than this cannot show atoms: the check says nothing (confidence 0)"),
    ] = 0.25e-9
    margin: Annotated[
        float,
        Range(0, 20),
        Doc(
            "how far (robust standard deviations) the strongest spectral peak must stand above "
            "the strongest one white noise would give for the frame to count as atomically "
            "resolved"
        ),
    ] = 1.2
    channel: Annotated[str, _CHANNEL_DOC] = "Z"


@dataclass(frozen=True)
class TipStateOptions:
    """Options of the tip-state classifier (``tip_state``)."""

    weights: Annotated[
        str | None,
        Doc(
            "weights file (.npz) written by `probepilot train classifier`; "
            "none: the weights shipped with probepilot"
        ),
    ] = None
    channel: Annotated[str, _CHANNEL_DOC] = "Z"


@dataclass(frozen=True)
class SurfaceStateOptions:
    """Options of the spectrum-based tip check (``surface_state``)."""

    surface: Annotated[
        Literal["au111", "cu111", "ag111"],
        Doc("the metal whose Shockley surface state is looked for (sets the expected onset)"),
    ] = "au111"
    onset: Annotated[
        float | None,
        Quantity("V"),
        Range(-3, 3),
        Doc("expected onset instead of the surface's (calibrate on your sample and tip)"),
    ] = None
    window: Annotated[
        float, Quantity("V"), Range(0.05, 2), Doc("how far around the onset dI/dV is fitted")
    ] = 0.3
    tolerance: Annotated[
        float, Quantity("V"), Range(0, 1), Doc("how far from expected the onset may lie")
    ] = 0.06
    max_width: Annotated[
        float,
        Quantity("V"),
        Range(0.005, 2),
        Doc("widest 10-90 % rise of the step that still counts as sharp (a good tip)"),
    ] = 0.12
    min_step: Annotated[
        float,
        Range(0, 10),
        Doc("smallest rise of dI/dV across the onset, relative to its median near the onset"),
    ] = 0.2


@dataclass(frozen=True)
class AdsorbateOptions:
    """Options of the adsorbate finder (``adsorbates``)."""

    feature_size: Annotated[
        float,
        Quantity("m"),
        Range(0.05e-9, 10e-9),
        Doc("Gaussian width of the adsorbates looked for (single atoms, small molecules)"),
    ] = 0.35e-9
    min_height: Annotated[
        float,
        Quantity("m"),
        Range(1e-12, 1e-8),
        Doc("smallest apparent height above the surrounding terrace that counts"),
    ] = 40e-12
    max_count: Annotated[int, Range(1, 1000), Doc("most adsorbates reported per frame")] = 20
    channel: Annotated[str, _CHANNEL_DOC] = "Z"
