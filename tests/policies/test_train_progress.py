"""Progress of ``probepilot train ga`` and ``probepilot train rl``: lines with the right counts
off a terminal, nothing with ``--quiet``, and the same result with or without a progress
callable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from probepilot.cli import cli
from probepilot.config import Config
from probepilot.plugins import PluginManager
from probepilot.progress import Update
from probepilot_policies.ga_train import GaTraining, train_ga

TIMES = r" \[\d+:\d\d:\d\d, (ETA \d+:\d\d:\d\d|done)\]$"

GA = ["train", "ga", "--seed", "4", "--generations", "2", "--population", "2"]
GA += ["--episodes", "1", "--validation", "1", "--max-actions", "2", "--pixels", "32"]
RL = ["train", "rl", "--seed", "1", "--steps", "30", "--warmup", "10"]
RL += ["--max-actions", "3", "--pixels", "32"]


def counts(lines: list[str], name: str) -> list[tuple[int, int]]:
    found = [re.match(rf"{name} (\d+)/(\d+)", line) for line in lines]
    return [(int(m[1]), int(m[2])) for m in found if m]


def test_train_ga_shows_generations_and_validation(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, [*GA, "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("evolving a recipe: 2 generations of 2")
    assert counts(lines, "generation") == [(1, 2), (2, 2)]
    for line in lines:
        if line.startswith("generation "):
            assert re.match(r"generation \d/2: mean cost [\d.]+, lowest [\d.]+, best so far", line)
            assert re.search(TIMES, line), line
    validated = counts(lines, "validating candidate")
    assert validated and validated == [(i + 1, len(validated)) for i in range(len(validated))]
    last = {line.split(":")[0]: line for line in lines if re.match(r"\w+[ \w]* \d+/\d+", line)}
    assert last["generation 2/2"].endswith("done]")
    assert last[f"validating candidate {len(validated)}/{len(validated)}"].endswith("done]")
    assert any(line.startswith("validation (") for line in lines)
    assert json.loads(result.stdout)["out"].endswith("r.json")


def test_train_ga_quiet_prints_only_the_json_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, [*GA, "--quiet", "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert json.loads(result.stdout)["out"].endswith("r.json")


def test_train_rl_shows_steps_with_episodes_return_and_epsilon(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("gymnasium")
    runner = CliRunner()
    result = runner.invoke(cli, [*RL, "--out", str(tmp_path / "q.npz")])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("training a double DQN: 30 steps")
    # 30 steps: thinned to 20 lines, the last one included.
    assert len(counts(lines, "step")) == 20
    assert counts(lines, "step")[-1] == (30, 30)
    steps = [line for line in lines if line.startswith("step ")]
    assert re.match(
        r"step 30/30: episodes \d+, mean return -?[\d.]+, median actions [\d.]+, good \d+%, "
        r"epsilon 0\.05, loss ",
        steps[-1],
    )
    assert all(re.search(TIMES, line) for line in steps)
    quiet = runner.invoke(cli, [*RL, "-q", "--out", str(tmp_path / "quiet.npz")])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    assert json.loads(quiet.stdout)["episodes"] == json.loads(result.stdout)["episodes"]


def test_ga_result_is_the_same_with_a_progress_callable(
    config: Config, manager: PluginManager
) -> None:
    training = GaTraining(
        seed=4, generations=2, population=2, episodes=1, validation=1, max_actions=2, pixels=32
    )
    seen: list[Update] = []
    plain = train_ga(training, config, manager)
    watched = train_ga(training, config, manager, progress=seen.append)
    assert watched.recipe == plain.recipe
    drop = {"seconds"}
    assert {k: v for k, v in watched.meta.items() if k not in drop} == {
        k: v for k, v in plain.meta.items() if k not in drop
    }
    generations = [u for u in seen if u.name == "generation"]
    assert [u.done for u in generations if u.complete] == [1, 2]
    # Every episode of a generation is reported as a part of the step in progress.
    assert [u.partial for u in generations if not u.complete][:3] == [0.0, 0.5, 0.999]
    assert any(u.name == "validating candidate" and u.done == u.total for u in seen)


def test_rl_result_is_the_same_with_a_progress_callable(
    config: Config, manager: PluginManager
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("gymnasium")
    from probepilot_policies.rl_train import RlTraining, train_rl

    training = RlTraining(seed=1, steps=20, warmup=5, batch=4, max_actions=3, pixels=32)
    seen: list[Update] = []
    plain = train_rl(training, config, manager)
    watched = train_rl(training, config, manager, progress=seen.append)
    for key, value in plain.qnet.params.items():
        assert np.array_equal(value, watched.qnet.params[key]), key
    assert watched.meta["episodes"] == plain.meta["episodes"]
    assert [u.done for u in seen] == list(range(21))
    assert seen[-1].figures["loss"] != "-"  # learning started after the warm-up
