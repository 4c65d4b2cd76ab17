"""``probepilot bench policies`` through click's runner, and the benchmark script's figures."""

from __future__ import annotations

import json

from click.testing import CliRunner

from probepilot.cli import cli
from probepilot.episodes import EpisodeResult
from probepilot_policies.bench import figures


def test_bench_policies_prints_one_json_line() -> None:
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "policies",
            "--episodes",
            "3",
            "--policy",
            "rules",
            "--max-actions",
            "5",
            "--false-alarm-episodes",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["benchmark"] == "policies"
    assert set(record["policies"]) == {"random", "rules"}  # random always: the reference
    rules = record["policies"]["rules"]
    assert rules["episodes"] == 3
    assert 0.0 <= rules["success_rate"] <= 1.0
    assert rules["target"] == 0.8
    assert "median_ratio_to_random" in rules
    assert 0.0 <= rules["false_alarm_rate"] <= 1.0
    assert record["median_ratio_to_random"]["random"] in (1.0, None)
    assert "rules: 3/3 episodes" in result.stderr


def test_bench_policies_rejects_an_unknown_policy() -> None:
    result = CliRunner().invoke(cli, ["bench", "policies", "--episodes", "1", "--policy", "nope"])
    assert result.exit_code != 0


def test_figures_count_failures_as_never() -> None:
    def r(actions: int, success: bool) -> EpisodeResult:
        return EpisodeResult(0, actions, success, 60.0 * actions, ())

    three = figures([r(2, True), r(4, True), r(50, False)])
    assert three["median_actions"] == 4
    assert three["mean_actions"] == 3
    assert three["success_rate"] == 0.667
    assert three["median_minutes"] == 4
    mostly_failed = figures([r(2, True), r(50, False), r(50, False)])
    assert mostly_failed["median_actions"] is None
