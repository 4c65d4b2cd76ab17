"""Training the ``rl`` policy's double DQN on ``probepilot/Conditioning-v0`` (``probepilot train
rl``).

The agent acts epsilon-greedily among the actions :meth:`ConditioningEnv.action_masks` allows,
learns from a replay buffer after every step, and the result is written as a numpy weight file
(:mod:`probepilot_policies.qnet`). Episodes end on the simulator's ground truth
(``terminate_on="truth"``): the reward then is the real objective, a good tip, even where the
analyzers misjudge one; the policy still only conditions when the analyzers say the tip is bad.

Everything is derived from ``seed`` (torch's and numpy's generators, the episode seeds, drawn
from the training range of :data:`~probepilot_policies.ga_train.TRAIN_SEED_BASE`); torch runs
on one thread, so the same seed and settings give the same weights on the same machine.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from probepilot.config import Config
from probepilot.contracts import Analyzer
from probepilot.plugins import PluginManager
from probepilot.progress import ProgressCallback, Stage
from probepilot_policies.ga_train import TRAIN_SEED_BASE
from probepilot_policies.qnet import NumpyQNet, QNetSpec, masked_argmax


@dataclass(frozen=True)
class RlTraining:
    """Settings of one training run."""

    seed: int = 0
    steps: int = 30_000
    """Environment steps (conditioning actions)."""
    use_frame: bool = False
    """Add the CNN on the 32 x 32 frame to the features' MLP."""
    hidden: tuple[int, ...] = (64, 64)
    lr: float = 5e-4
    gamma: float = 0.95
    batch: int = 64
    buffer: int = 30_000
    warmup: int = 1_000
    """Steps of uniformly random (allowed) actions before learning starts."""
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_fraction: float = 0.4
    """Fraction of ``steps`` over which epsilon decays linearly to ``epsilon_end``."""
    target_sync: int = 500
    max_actions: int = 50
    pixels: int = 64


@dataclass(frozen=True)
class RlResult:
    qnet: NumpyQNet
    meta: dict[str, Any]


def epsilon(t: RlTraining, step: int) -> float:
    """Exploration rate at ``step``."""
    span = max(1.0, t.epsilon_fraction * t.steps)
    frac = min(1.0, step / span)
    return t.epsilon_start + frac * (t.epsilon_end - t.epsilon_start)


def train_rl(
    t: RlTraining,
    config: Config | None = None,
    manager: PluginManager | None = None,
    *,
    analyzers: Sequence[Analyzer] | None = None,
    log: Callable[[str], None] = lambda line: None,
    progress: ProgressCallback | None = None,
) -> RlResult:
    """Train a Q-network.

    ``progress`` is told of every environment step (``step``: episodes so far and, over the
    last 100, the mean return, the median actions to a good tip and the fraction of good
    ones; epsilon; the mean loss); it does not change the result. ``log`` gets the closing
    line."""
    from probepilot.episodes import EpisodeSettings
    from probepilot_policies.dqn import (
        DoubleDqn,
        DqnSettings,
        ReplayBuffer,
        build_network,
        require_torch,
        to_numpy,
    )
    from probepilot_policies.env import FEATURES, ConditioningEnv

    torch = require_torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        torch.manual_seed(t.seed)
        rng = np.random.default_rng([t.seed, 0xD9])
        env = ConditioningEnv(
            EpisodeSettings(max_actions=t.max_actions, pixels=t.pixels),
            config=config,
            manager=manager,
            analyzers=list(analyzers) if analyzers is not None else None,
            terminate_on="truth",
        )
        n_actions = len(env.actions)
        spec = QNetSpec(FEATURES, n_actions, tuple(t.hidden), t.use_frame)
        agent = DoubleDqn(
            build_network(spec),
            DqnSettings(lr=t.lr, gamma=t.gamma, batch=t.batch, target_sync=t.target_sync),
        )
        buffer = ReplayBuffer(t.buffer, spec)
        episodes = 0
        successes: deque[bool] = deque(maxlen=100)
        lengths: deque[int] = deque(maxlen=100)
        returns: deque[float] = deque(maxlen=100)
        episode_return = 0.0
        losses: deque[float] = deque(maxlen=1000)
        obs, _ = env.reset(seed=_episode_seed(t.seed, episodes))
        mask = env.action_masks()
        length = 0
        stage = Stage(progress, "step", t.steps)
        for step in range(1, t.steps + 1):
            if step <= t.warmup or rng.random() < epsilon(t, step):
                action = int(rng.choice(np.flatnonzero(mask)))
            else:
                action = masked_argmax(agent.q_values(obs), mask)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            next_mask = env.action_masks()
            buffer.add(obs, action, reward, next_obs, terminated, next_mask)
            obs, mask = next_obs, next_mask
            length += 1
            episode_return += float(reward)
            if terminated or truncated:
                episodes += 1
                successes.append(bool(terminated))
                lengths.append(length if terminated else t.max_actions)
                returns.append(episode_return)
                episode_return = 0.0
                obs, _ = env.reset(seed=_episode_seed(t.seed, episodes))
                mask = env.action_masks()
                length = 0
            if step > t.warmup and buffer.size >= t.batch:
                losses.append(agent.update(buffer.sample(rng, t.batch)))
            if progress is not None:
                stage.step(
                    {
                        "episodes": episodes,
                        "mean return": f"{_mean(returns):.2f}" if returns else "-",
                        "median actions": _median(lengths),
                        "good": f"{_mean(successes):.0%}" if successes else "-",
                        "epsilon": f"{epsilon(t, step):.2f}",
                        "loss": _mean(losses) if losses else "-",
                    }
                )
        env.close()
        qnet = to_numpy(agent.online)
    finally:
        torch.set_num_threads(threads)
    elapsed = time.perf_counter() - start
    log(
        f"{episodes} episodes; last 100: median {_median(lengths)} actions, "
        f"{_mean(successes):.0%} good, mean return {_mean(returns):.2f} [{elapsed:.0f} s]"
    )
    meta = {
        "trained_by": "probepilot train rl",
        **asdict(t),
        "analyzers": list(env.episode.config.analyzers)
        if analyzers is None
        else [a.name for a in analyzers],
        "episodes": episodes,
        "seconds": round(elapsed, 1),
        "torch": str(torch.__version__),
    }
    return RlResult(qnet, meta)


def _episode_seed(seed: int, episode: int) -> int:
    rng = np.random.default_rng([seed, episode, 0xD9])
    return int(TRAIN_SEED_BASE + rng.integers(0, TRAIN_SEED_BASE))


def _median(values: deque[int]) -> str:
    return f"{np.median(values):g}" if values else "-"


def _mean(values: deque[Any]) -> float:
    return float(np.mean(values)) if values else 0.0
