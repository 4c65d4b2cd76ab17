"""Progress of ``probepilot train classifier``: frames and epochs with the right counts off a
terminal, nothing with ``--quiet``, the same weights with or without a progress callable."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from probepilot.cli import cli
from probepilot.progress import Update

pytest.importorskip("torch")

TIMES = r" \[\d+:\d\d:\d\d, (ETA \d+:\d\d:\d\d|done)\]$"


def test_train_classifier_shows_frames_and_epochs(tmp_path: Path) -> None:
    out = tmp_path / "w.npz"
    args = ["train", "classifier", "--frames", "8", "--epochs", "2", "--out", str(out)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    frames = [line for line in lines if line.startswith("simulating frames ")]
    assert [line.split(":")[0] for line in frames] == [
        f"simulating frames {i}/8" for i in range(1, 9)
    ]
    assert all(re.search(r": rate [\d.]+ frames/s" + TIMES, line) for line in frames)
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2
    for k, line in enumerate(epochs, 1):
        assert re.match(rf"epoch {k}/2: loss [\d.]+, train acc [\d.]+%, val acc \S+" + TIMES, line)
    assert epochs[-1].endswith("done]")
    assert result.stdout.startswith(f"wrote {out}")


def test_train_classifier_quiet(tmp_path: Path) -> None:
    out = tmp_path / "w.npz"
    args = ["train", "classifier", "--frames", "8", "--epochs", "1", "-q", "--out", str(out)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith(f"wrote {out}") and out.exists()


def test_weights_are_the_same_with_a_progress_callable(tmp_path: Path) -> None:
    from probepilot_analyzers.classifier_train import train

    seen: list[Update] = []
    train(frames=8, epochs=2, out=tmp_path / "a.npz", echo=lambda line: None)
    train(frames=8, epochs=2, out=tmp_path / "b.npz", echo=lambda line: None, progress=seen.append)
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert set(a.files) == set(b.files)
        for name in a.files:
            if name != "meta":  # it holds the seconds taken
                np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    frames = [u for u in seen if u.name == "simulating frames"]
    assert [u.done for u in frames] == list(range(9))
    epochs = [u for u in seen if u.name == "epoch"]
    assert [u.done for u in epochs if u.complete] == [1, 2]
    assert any(0 < u.partial < 1 for u in epochs)  # batches of an epoch in progress
