"""``probepilot bench policies``: every conditioning policy on the same seeded episodes.

For each policy, ``episodes`` conditioning episodes (:mod:`probepilot.episodes`; episode ``i``
is seeded with ``seed0 + i`` for every policy, so all face the same tips and the same
simulator) and these figures, by the simulator's ground truth:

* ``median_actions``: median conditioning actions to a good tip, an episode that failed
  counting as never (so it is null when half or more fail); ``mean_actions``: the mean over the
  episodes that succeeded; ``success_rate``: the fraction that got a good tip within
  ``max_actions`` actions (and ``max_scans`` frames without acting);
* ``median_minutes`` / ``mean_minutes``: simulated minutes to a good tip, likewise (frames,
  moves and conditioning take simulated time, and so does waiting out the safety envelope's
  rate limit);
* ``median_ratio_to_random``: ``median_actions`` over the random baseline's (random always runs:
  it is the reference); ``target`` and ``meets_target`` where the issue sets one (rl 0.5,
  ga 0.7, rules 0.8);
* ``mean_scans`` (frames the policy imaged while the tip was bad without conditioning: it did
  not see the tip was bad), ``rejected`` (actions the safety envelope refused).

Episodes start from a bad tip, so they never charge a policy for conditioning a good tip; a
policy that conditions whatever it sees would look best. So every policy also images a good
tip for ``false_alarm_frames`` frames on each of ``false_alarm_episodes`` seeds, and
``false_alarm_rate`` is the fraction of those decisions (taken while the tip was truly good)
that were conditioning actions: what it would cost a run with a good tip.

The result is one JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from probepilot.config import Config, load_config
from probepilot.contracts import Policy
from probepilot.episodes import ConditioningEpisode, EpisodeResult, EpisodeSettings, run_episode
from probepilot.model import CONDITIONING_ACTIONS, TipState
from probepilot.plugins import PluginManager

__all__ = ["REFERENCE", "TARGETS", "bench_policies", "build_policy", "figures", "policies_command"]

#: The baseline every ratio is taken against.
REFERENCE = "random"
#: Target ratio of each policy's median actions to random's (issue 7).
TARGETS: dict[str, float] = {"rl": 0.5, "ga": 0.7, "rules": 0.8}


def build_policy(config: Config, manager: PluginManager, name: str, seed: int) -> Policy:
    """Build policy ``name`` through the registry, seeded with ``seed`` when it takes a seed."""
    entry = manager.registry("policy").get(name)
    options = entry.options
    takes_seed = options is not None and any(f.name == "seed" for f in dataclasses.fields(options))
    policy: Policy = config.build(
        manager, "policy", name, overrides={"seed": seed} if takes_seed else None
    )
    return policy


def _median(values: Sequence[float]) -> float | None:
    """Median where ``inf`` (a failure) counts as larger than everything; None if it is inf."""
    if not values:
        return None
    ordered = sorted(values)
    n = len(ordered)
    mid = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return float(mid) if math.isfinite(mid) else None


def _mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def figures(results: Sequence[EpisodeResult]) -> dict[str, Any]:
    """The per-policy figures of the module docstring (without ratios and false alarms)."""
    inf = math.inf
    won = [r for r in results if r.success]
    return {
        "episodes": len(results),
        "success_rate": _round(len(won) / len(results) if results else None),
        "median_actions": _median([r.actions if r.success else inf for r in results]),
        "mean_actions": _round(_mean([r.actions for r in won])),
        "median_minutes": _round(
            _median([r.sim_seconds / 60 if r.success else inf for r in results])
        ),
        "mean_minutes": _round(_mean([r.sim_seconds / 60 for r in won])),
        "mean_scans": _round(_mean([r.scans for r in results])),
        "rejected": sum(r.rejected for r in results),
    }


async def _false_alarms(
    config: Config,
    manager: PluginManager,
    name: str,
    settings: EpisodeSettings,
    seeds: Sequence[int],
    frames: int,
) -> float | None:
    """Fraction of decisions taken on a truly good tip that were conditioning actions."""
    good_settings = dataclasses.replace(
        settings,
        driver_options={**settings.driver_options, "tip": "good"},
        max_scans=frames,
        max_actions=frames,
    )
    episode = ConditioningEpisode(config, manager, good_settings)
    decisions = acted = 0
    try:
        for seed in seeds:
            policy = build_policy(config, manager, name, seed)
            observation = await episode.reset(seed)
            truth = episode.last_truth
            for _ in range(frames):
                if truth != TipState.GOOD:
                    break  # the tip went bad by itself: nothing more to learn here
                action = policy.decide(observation)
                decisions += 1
                acted += isinstance(action, CONDITIONING_ACTIONS)
                step = await episode.step(action)
                observation, truth = step.observation, step.truth
    finally:
        await episode.close()
    return acted / decisions if decisions else None


async def _run_policy(
    config: Config,
    manager: PluginManager,
    name: str,
    settings: EpisodeSettings,
    seeds: Sequence[int],
    progress: Callable[[str], None],
) -> list[EpisodeResult]:
    episode = ConditioningEpisode(config, manager, settings)
    results: list[EpisodeResult] = []
    started = time.perf_counter()
    try:
        for i, seed in enumerate(seeds, start=1):
            policy = build_policy(config, manager, name, seed)
            results.append(await run_episode(policy, episode, seed))
            if i % 25 == 0 or i == len(seeds):
                won = sum(r.success for r in results)
                progress(
                    f"{name}: {i}/{len(seeds)} episodes, {won} good, "
                    f"{time.perf_counter() - started:.0f} s"
                )
    finally:
        await episode.close()
    return results


async def bench_policies_async(
    config: Config,
    manager: PluginManager,
    *,
    episodes: int = 200,
    policies: Sequence[str] = (),
    seed0: int = 0,
    max_actions: int = 50,
    settings: EpisodeSettings | None = None,
    false_alarm_episodes: int = 10,
    false_alarm_frames: int = 10,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The benchmark's JSON record (see the module docstring)."""
    registry = manager.registry("policy")
    names = list(dict.fromkeys(policies or registry.names()))
    for name in names:
        registry.get(name)  # PluginError for an unknown policy, before any work
    if REFERENCE in registry:  # the reference runs first, whether asked for or not
        names = [REFERENCE, *(n for n in names if n != REFERENCE)]
    base = settings or EpisodeSettings()
    settings = dataclasses.replace(base, max_actions=max_actions)
    seeds = [seed0 + i for i in range(episodes)]
    alarm_seeds = [seed0 + 1_000_000 + i for i in range(false_alarm_episodes)]
    started = time.perf_counter()
    per_policy: dict[str, dict[str, Any]] = {}
    for name in names:
        t0 = time.perf_counter()
        results = await _run_policy(config, manager, name, settings, seeds, progress)
        record = figures(results)
        record["false_alarm_rate"] = _round(
            await _false_alarms(config, manager, name, settings, alarm_seeds, false_alarm_frames)
            if alarm_seeds and false_alarm_frames > 0
            else None
        )
        record["seconds"] = round(time.perf_counter() - t0, 1)
        per_policy[name] = record
    reference = per_policy.get(REFERENCE, {}).get("median_actions")
    for name, record in per_policy.items():
        median = record["median_actions"]
        ratio = median / reference if median is not None and reference else None
        record["median_ratio_to_random"] = _round(ratio)
        if name in TARGETS:
            record["target"] = TARGETS[name]
            record["meets_target"] = ratio is not None and ratio <= TARGETS[name]
    return {
        "benchmark": "policies",
        "episodes": episodes,
        "seed0": seed0,
        "max_actions": max_actions,
        "max_scans": settings.max_scans,
        "frame": {"pixels": settings.pixels, "size_m": settings.size},
        "analyzers": list(config.analyzers),
        "policies": per_policy,
        "median_ratio_to_random": {
            name: record["median_ratio_to_random"] for name, record in per_policy.items()
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def bench_policies(
    *,
    episodes: int = 200,
    policies: Sequence[str] = (),
    seed0: int = 0,
    max_actions: int = 50,
    config_file: Path | None = None,
    false_alarm_episodes: int = 10,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Synchronous entry point for the command and ``benchmarks/bench_policies.py``."""
    config, manager = load_config(config_file)
    return asyncio.run(
        bench_policies_async(
            config,
            manager,
            episodes=episodes,
            policies=policies,
            seed0=seed0,
            max_actions=max_actions,
            false_alarm_episodes=false_alarm_episodes,
            progress=progress or (lambda line: print(line, file=sys.stderr, flush=True)),
        )
    )


@click.command("policies")
@click.option("--episodes", default=200, show_default=True, type=click.IntRange(1))
@click.option(
    "--policy",
    "policies",
    multiple=True,
    help="Policy to measure (repeat for several; default: every registered one). "
    "random always runs: it is the reference.",
)
@click.option("--seed0", default=0, show_default=True, type=click.IntRange(0))
@click.option("--max-actions", default=50, show_default=True, type=click.IntRange(1))
@click.option(
    "--false-alarm-episodes",
    default=10,
    show_default=True,
    type=click.IntRange(0),
    help="Good-tip episodes (10 frames each) measuring how often a policy conditions a good tip.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file (analyzers, safety limits, policy options; default: built-in defaults).",
)
def policies_command(
    episodes: int,
    policies: tuple[str, ...],
    seed0: int,
    max_actions: int,
    false_alarm_episodes: int,
    config_file: Path | None,
) -> None:
    """Conditioning actions to a good tip for each policy, over the same seeded episodes.

    Prints progress on stderr and one JSON line of figures on stdout.
    """
    record = bench_policies(
        episodes=episodes,
        policies=policies,
        seed0=seed0,
        max_actions=max_actions,
        config_file=config_file,
        false_alarm_episodes=false_alarm_episodes,
        progress=lambda line: click.echo(line, err=True),
    )
    click.echo(json.dumps(record, allow_nan=False))
