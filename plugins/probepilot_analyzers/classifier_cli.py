"""``probepilot train classifier``: the command; the training is in
:mod:`probepilot_analyzers.classifier_train`.

Only click is imported here: the plugin registers this command whenever the command line
starts, and numpy, scipy and torch load only when it runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

#: Defaults of the command and of ``classifier_train.train``: they made the shipped weights.
FRAMES = 6000
EPOCHS = 20


@click.command("classifier")
@click.option("--seed", default=0, show_default=True, help="Seed of the examples and of torch.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("tip_state.npz"),
    show_default=True,
    help="Weights file to write (use it with [analyzers.tip_state] weights = PATH).",
)
@click.option("--frames", default=FRAMES, show_default=True, help="Simulated training frames.")
@click.option("--epochs", default=EPOCHS, show_default=True, help="Passes over the frames.")
@click.option("--threads", default=2, show_default=True, help="Torch threads (results vary).")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def classifier_command(
    seed: int, out: Path, frames: int, epochs: int, threads: int, quiet: bool
) -> None:
    """Train the tip-state classifier on simulated frames (needs torch: the `ml` extra).

    Same seed, threads and versions: same weights. The defaults reproduce the shipped ones.
    Progress (frames simulated, then each epoch's loss and accuracies, with elapsed time and
    ETA) goes to stderr: a live line on a terminal, a line per step otherwise.
    """
    from probepilot.progress import ProgressPrinter
    from probepilot_analyzers.classifier_train import train

    if frames < 8 or epochs < 1:
        raise click.BadParameter("need at least 8 frames and 1 epoch")
    printer = None if quiet else ProgressPrinter(sys.stderr)

    def echo(line: str) -> None:
        if printer is not None:
            printer.close()  # end the live line before a line on stdout
        click.echo(line)

    try:
        train(
            seed=seed,
            frames=frames,
            epochs=epochs,
            threads=threads,
            out=out,
            echo=echo,
            progress=printer,
        )
    finally:
        if printer is not None:
            printer.close()
