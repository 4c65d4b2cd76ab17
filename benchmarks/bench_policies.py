"""Conditioning policies against the random baseline on the same seeded episodes; prints one
JSON line.

The same measurement as ``probepilot bench policies`` (``probepilot_policies.bench`` has the
definitions): for each registered policy (or those named), ``--episodes`` episodes of the
simulated microscope from a random bad tip, episode ``i`` seeded with ``seed0 + i`` for every
policy; median and mean conditioning actions to a good tip (by the simulator's ground truth),
success rate within ``--max-actions``, simulated minutes to a good tip, the false-alarm rate on
good tips, and each median's ratio to random's (targets: rl 0.5, ga 0.7, rules 0.8).

Run: ``.venv/bin/python benchmarks/bench_policies.py [--episodes 200] [--policy rules ...]``
(progress on stderr).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from probepilot_policies.bench import bench_policies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--policy", action="append", default=[], help="repeat for several")
    parser.add_argument("--seed0", type=int, default=0)
    parser.add_argument("--max-actions", type=int, default=50)
    parser.add_argument("--false-alarm-episodes", type=int, default=10)
    parser.add_argument("--config", type=Path, default=None)
    args = parser.parse_args()
    record = bench_policies(
        episodes=args.episodes,
        policies=args.policy,
        seed0=args.seed0,
        max_actions=args.max_actions,
        config_file=args.config,
        false_alarm_episodes=args.false_alarm_episodes,
    )
    print(json.dumps(record, allow_nan=False))


if __name__ == "__main__":
    main()
