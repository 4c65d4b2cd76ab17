"""``probepilot train ga`` and ``probepilot train rl``: evolve a recipe, train a Q-network.

Both run on the simulated microscope through the conditioning episodes, show their progress
on stderr (a live line on a terminal, a line per step in a log; ``--quiet``: none; see
:mod:`probepilot.progress`), write one file and print one JSON line on stdout. The ``ga`` and
``rl`` policies read the file with ``recipe = "PATH"`` / ``weights = "PATH"`` in their config
table (without it they use the files shipped in the package, which these commands reproduce
with their default settings).
Heavy imports (the episode runner, gymnasium, torch) happen inside the commands.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from probepilot.progress import ProgressPrinter


class _Chatter:
    """What a command says on stderr: lines and the progress renderer (nothing if quiet)."""

    def __init__(self, quiet: bool) -> None:
        from probepilot.progress import ProgressPrinter

        self.printer: ProgressPrinter | None = None if quiet else ProgressPrinter(sys.stderr)

    def echo(self, line: str) -> None:
        if self.printer is not None:
            self.printer.message(line)


@contextmanager
def _chatter(quiet: bool) -> Iterator[_Chatter]:
    chatter = _Chatter(quiet)
    try:
        yield chatter
    finally:
        if chatter.printer is not None:
            chatter.printer.close()


def _load(config_file: Path | None) -> tuple[Any, Any]:
    from probepilot.config import load_config

    return load_config(config_file)


_config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file whose analyzers and safety limits the episodes use (default: defaults).",
)


_quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="No progress or notes on stderr (the JSON line stays)."
)


_max_actions_option = click.option(
    "--max-actions",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="Conditioning actions after which an episode gives up.",
)
_pixels_option = click.option(
    "--pixels",
    type=click.IntRange(8, 1024),
    default=64,
    show_default=True,
    help="Pixels per line of the episodes' frames.",
)


@click.command("ga")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of everything.")
@click.option(
    "--generations", type=click.IntRange(1), default=20, show_default=True, help="Generations."
)
@click.option(
    "--population",
    type=click.IntRange(2),
    default=10,
    show_default=True,
    help="Recipes per generation.",
)
@click.option(
    "--episodes",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="Episodes per recipe and generation.",
)
@click.option(
    "--validation",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="Episodes on which the best few recipes are compared at the end.",
)
@_max_actions_option
@click.option(
    "--max-scans",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="Frames without conditioning after which a training episode gives up.",
)
@_pixels_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("ga-recipe.json"),
    show_default=True,
    help="Recipe file to write.",
)
@_config_option
@_quiet_option
def ga_command(
    seed: int,
    generations: int,
    population: int,
    episodes: int,
    validation: int,
    max_actions: int,
    max_scans: int,
    pixels: int,
    out: Path,
    config_file: Path | None,
    quiet: bool,
) -> None:
    """Evolve a conditioning recipe for the ga policy on the simulator.

    Progress on stderr: each generation (mean and lowest cost of its recipes, in actions to
    a good tip, and the best recipe's running mean), then each validated candidate, with
    elapsed time and ETA."""
    from probepilot_policies.ga_train import GaTraining, train_ga

    config, manager = _load(config_file)
    training = GaTraining(
        seed=seed,
        generations=generations,
        population=population,
        episodes=episodes,
        validation=validation,
        max_actions=max_actions,
        max_scans=max_scans,
        pixels=pixels,
    )
    with _chatter(quiet) as say:
        say.echo(
            f"evolving a recipe: {generations} generations of {population}, {episodes} "
            f"episodes each, analyzers {', '.join(config.analyzers)}"
        )
        result = train_ga(training, config, manager, log=say.echo, progress=say.printer)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(result.recipe.to_json(result.meta), encoding="utf-8")
        say.echo(result.recipe.describe())
    click.echo(
        json.dumps(
            {
                "out": str(out),
                "validation_cost": result.meta["validation_cost"],
                "seconds": result.meta["seconds"],
            }
        )
    )


@click.command("rl")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of everything.")
@click.option(
    "--steps",
    type=click.IntRange(1),
    default=30_000,
    show_default=True,
    help="Environment steps (conditioning actions).",
)
@click.option(
    "--warmup",
    type=click.IntRange(0),
    default=1_000,
    show_default=True,
    help="Random steps before learning starts.",
)
@click.option(
    "--frame/--no-frame",
    default=False,
    show_default=True,
    help="Add a small CNN on the 32 x 32 frame to the features' MLP.",
)
@_max_actions_option
@_pixels_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("rl-qnet.npz"),
    show_default=True,
    help="Weight file to write (numpy .npz).",
)
@_config_option
@_quiet_option
def rl_command(
    seed: int,
    steps: int,
    warmup: int,
    frame: bool,
    max_actions: int,
    pixels: int,
    out: Path,
    config_file: Path | None,
    quiet: bool,
) -> None:
    """Train the rl policy's double DQN on the simulator (CPU; torch and gymnasium).

    Progress on stderr: steps done, episodes, and over the last 100 episodes the mean
    return, the median actions to a good tip and the fraction of good ones; epsilon, the
    mean loss, elapsed time and ETA."""
    from probepilot_policies.dqn import require_torch
    from probepilot_policies.rl import env_module
    from probepilot_policies.rl_train import RlTraining, train_rl

    require_torch()
    env_module()
    config, manager = _load(config_file)
    training = RlTraining(
        seed=seed,
        steps=steps,
        warmup=min(warmup, steps),
        use_frame=frame,
        max_actions=max_actions,
        pixels=pixels,
    )
    with _chatter(quiet) as say:
        say.echo(
            f"training a double DQN: {steps} steps, {'frame and ' if frame else ''}features, "
            f"analyzers {', '.join(config.analyzers)}"
        )
        result = train_rl(training, config, manager, log=say.echo, progress=say.printer)
        result.qnet.save(out, result.meta)
    click.echo(
        json.dumps(
            {
                "out": str(out),
                "episodes": result.meta["episodes"],
                "seconds": result.meta["seconds"],
            }
        )
    )
