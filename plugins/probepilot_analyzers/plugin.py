"""Registers the built-in analyzers and the ``probepilot analyze`` and ``probepilot replay``
commands.

Kept light: each factory imports its analyzer (numpy, scipy) only when one is built, and the
commands import theirs when they run, so ``probepilot plugins`` and ``--help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probepilot import hookimpl
from probepilot_analyzers.options import (
    AdsorbateOptions,
    DoubleTipOptions,
    DriftOptions,
    ResolutionOptions,
    RoughnessOptions,
    SurfaceStateOptions,
    TipChangeOptions,
    TipStateOptions,
)

if TYPE_CHECKING:
    from probepilot.contracts import Analyzer
    from probepilot.registry import Registry


def make_double_tip(options: DoubleTipOptions | None) -> Analyzer:
    from probepilot_analyzers.double_tip import DoubleTipAnalyzer

    return DoubleTipAnalyzer(options)


def make_drift(options: DriftOptions | None) -> Analyzer:
    from probepilot_analyzers.drift import DriftAnalyzer

    return DriftAnalyzer(options)


def make_tip_changes(options: TipChangeOptions | None) -> Analyzer:
    from probepilot_analyzers.tip_changes import TipChangeAnalyzer

    return TipChangeAnalyzer(options)


def make_roughness(options: RoughnessOptions | None) -> Analyzer:
    from probepilot_analyzers.roughness import RoughnessAnalyzer

    return RoughnessAnalyzer(options)


def make_adsorbates(options: AdsorbateOptions | None) -> Analyzer:
    from probepilot_analyzers.adsorbates import AdsorbateAnalyzer

    return AdsorbateAnalyzer(options)


def make_surface_state(options: SurfaceStateOptions | None) -> Analyzer:
    from probepilot_analyzers.surface_state import SurfaceStateAnalyzer

    return SurfaceStateAnalyzer(options)


def make_resolution(options: ResolutionOptions | None) -> Analyzer:
    from probepilot_analyzers.resolution import ResolutionAnalyzer

    return ResolutionAnalyzer(options)


def make_tip_state(options: TipStateOptions | None) -> Analyzer:
    from probepilot_analyzers.tip_state import TipStateAnalyzer

    return TipStateAnalyzer(options)


@hookimpl
def probepilot_register_analyzers(registry: Registry[Analyzer]) -> None:
    registry.register(
        "double_tip",
        make_double_tip,
        options=DoubleTipOptions,
        description="double-tip detector: P(double), apex offset and weight from ghost features",
    )
    registry.register(
        "drift",
        make_drift,
        options=DriftOptions,
        description="drift velocity and uncertainty from overlapping frames (Kalman), creep",
    )
    registry.register(
        "tip_changes",
        make_tip_changes,
        options=TipChangeOptions,
        description="tip changes during a frame: jumps, streaks, forward/backward disagreement",
    )
    registry.register(
        "roughness",
        make_roughness,
        options=RoughnessOptions,
        description="roughness, clean fraction and the largest clean square for conditioning",
    )
    registry.register(
        "resolution",
        make_resolution,
        options=ResolutionOptions,
        description="atomic resolution from the lattice's spectral peaks (none: a blunt tip)",
    )
    registry.register(
        "tip_state",
        make_tip_state,
        options=TipStateOptions,
        description="tip-state CNN: good, double, blunt or unstable, with each probability",
    )
    registry.register(
        "adsorbates",
        make_adsorbates,
        options=AdsorbateOptions,
        description="adsorbates' positions and heights: spots for site-specific spectroscopy",
    )
    registry.register(
        "surface_state",
        make_surface_state,
        options=SurfaceStateOptions,
        description="tip check from spectra: the Shockley surface-state step on clean terrace",
    )


@hookimpl
def probepilot_register_commands(cli: Any) -> None:
    from probepilot_analyzers.cli import analyze, replay

    cli.add_command(analyze)
    cli.add_command(replay)
    # `probepilot train classifier`: torch is imported only when it runs.
    from probepilot_analyzers.classifier_cli import classifier_command

    cli.commands["train"].add_command(classifier_command)
