"""The ``rl`` policy: a double DQN over the default conditioning actions.

It sees what ``probepilot/Conditioning-v0`` gives an agent (:mod:`probepilot_policies.env`):
the newest frame, levelled and reduced to 32 x 32, and the feature vector of the analyzers'
findings (double-tip probability, tip changes, roughness, the tip-state classifier's
probabilities, the verdict, counters and the last action). It picks the action of
:data:`~probepilot.model.DEFAULT_CONDITIONING_ACTIONS` with the largest Q-value among those
whose damage fits the frame's clean area (DeepSPM's masking). While the verdict is ``good`` or
``unknown`` it keeps imaging, as every policy does.

Inference is numpy (:mod:`probepilot_policies.qnet`) on the weights shipped in
``data/rl_qnet.npz`` (trained by ``probepilot train rl``), so it needs neither torch nor a GPU.
The feature code lives with the environment, so the policy needs gymnasium (the ``rl`` extra).
With ``learn_online = true`` it keeps a replay buffer of its own transitions and takes double
DQN gradient steps as outcomes come back (torch, the ``ml`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt

from probepilot.errors import PluginError
from probepilot.model import (
    CONDITIONING_ACTIONS,
    DEFAULT_CONDITIONING_ACTIONS,
    Action,
    KeepImaging,
    Observation,
    Outcome,
    TipState,
)
from probepilot.options import Doc, Range
from probepilot_policies.qnet import NumpyQNet, masked_argmax

#: The weights shipped with the package.
SHIPPED_WEIGHTS = "data/rl_qnet.npz"


def shipped_weights_path() -> Path:
    """Path of the Q-network weights shipped in the package."""
    return Path(str(resources.files("probepilot_policies").joinpath(SHIPPED_WEIGHTS)))


def env_module() -> Any:
    """The environment module (observation encoding and masks), or one clear error."""
    try:
        from probepilot_policies import env
    except ImportError as exc:
        if exc.name != "gymnasium":
            raise
        raise PluginError(
            "the rl policy encodes observations as its environment does, which needs "
            "gymnasium: pip install 'probepilot[rl]'"
        ) from None
    return env


@dataclass(frozen=True)
class RlOptions:
    """The ``[policies.rl]`` table."""

    weights: Annotated[
        str | None,
        Doc("Q-network weights written by `probepilot train rl` (default: the shipped ones)"),
    ] = None
    max_actions: Annotated[
        int,
        Range(1, 10_000),
        Doc("actions per bad tip the features are scaled by (as in training: 50)"),
    ] = 50
    learn_online: Annotated[
        bool, Doc("keep learning from this run's outcomes (replay and gradient steps; torch)")
    ] = False
    epsilon: Annotated[float, Range(0.0, 1.0), Doc("exploration rate while learning online")] = 0.05
    seed: Annotated[int | None, Doc("seed of exploration and replay sampling")] = None
    learning_rate: Annotated[float, Range(0.0, 1.0), Doc("Adam step size online")] = 1e-4
    gamma: Annotated[float, Range(0.0, 1.0), Doc("discount per action")] = 0.95
    batch: Annotated[int, Range(1, 4096), Doc("transitions per online gradient step")] = 32
    buffer: Annotated[int, Range(1, 1_000_000), Doc("replay buffer capacity")] = 10_000
    learn_after: Annotated[
        int, Range(1, 1_000_000), Doc("transitions collected before the first online step")
    ] = 32
    target_sync: Annotated[
        int, Range(1, 1_000_000), Doc("online gradient steps between target-network copies")
    ] = 200


class RlPolicy:
    """Greedy (masked) action of a Q-network; optionally learning online."""

    name = "rl"

    def __init__(self, options: RlOptions | None = None, qnet: NumpyQNet | None = None) -> None:
        self.options = options = options or RlOptions()
        self._env = env_module()
        if qnet is None:
            qnet = NumpyQNet.load(
                Path(options.weights) if options.weights else shipped_weights_path()
            )
        if qnet.spec.features != tuple(self._env.FEATURES):
            raise PluginError(
                "the rl policy's weights were trained on other features than this version "
                "computes; retrain them with `probepilot train rl`"
            )
        self.qnet = qnet
        self.actions = DEFAULT_CONDITIONING_ACTIONS
        self._rng = np.random.default_rng(options.seed)
        self._last: int | None = None
        self._pending: tuple[dict[str, npt.NDArray[np.float32]], int] | None = None
        self.learner: OnlineLearner | None = None
        if options.learn_online:
            self.learner = OnlineLearner(qnet, options, self._rng)

    def encode(self, observation: Observation) -> dict[str, npt.NDArray[np.float32]]:
        """The network's input for an observation, as the environment computes it."""
        env = self._env
        features = env.features(
            observation, observation.actions_since_good, self.options.max_actions, self._last
        )
        return {"frame": env.frame_image(observation), "features": features}

    def q_values(self, obs: dict[str, npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
        if self.learner is not None:
            return self.learner.q_values(obs)
        frame = obs["frame"][None] if self.qnet.spec.use_frame else None
        q: npt.NDArray[np.float32] = self.qnet(obs["features"][None], frame)[0]
        return q

    def decide(self, observation: Observation) -> Action:
        if observation.tip_state in (TipState.GOOD, TipState.UNKNOWN):
            self._last = None
            return KeepImaging()
        obs = self.encode(observation)
        mask = self._env.action_masks(observation)
        if self.learner is not None and self._rng.random() < self.options.epsilon:
            index = int(self._rng.choice(np.flatnonzero(mask)))
        else:
            index = masked_argmax(self.q_values(obs), mask)
        self._last = index
        self._pending = (obs, index)
        return self.actions[index]

    def feedback(self, outcome: Outcome) -> None:
        """Learn from the transition of the last action (online learning only)."""
        pending, self._pending = self._pending, None
        if outcome.done:
            self._last = None
        if self.learner is None or pending is None:
            return
        if not isinstance(outcome.action, CONDITIONING_ACTIONS):
            return  # the action was replaced or rejected: not the transition we chose
        obs, index = pending
        next_obs = self.encode(outcome.observation)
        mask = self._env.action_masks(outcome.observation)
        good = outcome.observation.tip_state == TipState.GOOD
        self.learner.add(obs, index, outcome.reward, next_obs, good, mask)


class OnlineLearner:
    """Replay buffer and double DQN steps on the run's own transitions (needs torch)."""

    def __init__(self, qnet: NumpyQNet, options: RlOptions, rng: np.random.Generator) -> None:
        from probepilot_policies.dqn import (
            DoubleDqn,
            DqnSettings,
            ReplayBuffer,
            from_numpy,
            require_torch,
        )

        self.torch = require_torch()
        self.options = options
        self.rng = rng
        settings = DqnSettings(
            lr=options.learning_rate,
            gamma=options.gamma,
            batch=options.batch,
            target_sync=options.target_sync,
        )
        self.agent = DoubleDqn(from_numpy(qnet), settings)
        self.buffer = ReplayBuffer(options.buffer, qnet.spec)
        self.steps = 0

    def q_values(self, obs: dict[str, npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
        return np.asarray(self.agent.q_values(obs), dtype=np.float32)

    def add(
        self,
        obs: dict[str, npt.NDArray[np.float32]],
        action: int,
        reward: float,
        next_obs: dict[str, npt.NDArray[np.float32]],
        terminal: bool,
        next_mask: npt.NDArray[np.bool_],
    ) -> None:
        self.buffer.add(obs, action, reward, next_obs, terminal, next_mask)
        if self.buffer.size >= max(self.options.learn_after, self.options.batch):
            self.agent.update(self.buffer.sample(self.rng, self.options.batch))
            self.steps += 1

    def export(self) -> NumpyQNet:
        """The network as learnt so far, as numpy weights."""
        from probepilot_policies.dqn import to_numpy

        return to_numpy(self.agent.online)
