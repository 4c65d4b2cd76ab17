"""``probepilot/Conditioning-v0``: tip conditioning as a gymnasium environment.

So that any agent of the RL ecosystem (stable-baselines3, sb3-contrib's MaskablePPO, CleanRL
...) can be trained on the simulated microscope, :class:`ConditioningEnv` wraps a
:class:`~probepilot.episodes.ConditioningEpisode` behind gymnasium's synchronous API::

    import gymnasium
    import probepilot_policies.env  # registers the environment

    env = gymnasium.make("probepilot/Conditioning-v0")            # default settings
    env = gymnasium.make(
        "probepilot/Conditioning-v0",
        settings=EpisodeSettings(max_actions=30),                  # probepilot.episodes
        terminate_on="truth",                                      # train on ground truth
    )
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

* **Actions**: ``Discrete(12)``, the index into
  :data:`~probepilot.model.DEFAULT_CONDITIONING_ACTIONS` (pulses of +-2.5, +-4, +-8 V for 200 ms,
  dips of 0.8 to 5 nm). Every action passes the safety envelope.
* **Observations**: ``{"frame": Box(-5, 5, (1, 32, 32), float32), "features": Box(0, 1, (F,),
  float32)}``: the newest frame plane-levelled, robustly normalised (median and scaled median
  absolute deviation, clipped at 5) and area-averaged to 32 x 32; and the features listed in
  :data:`FEATURES`, in that order, each scaled into [0, 1].
* **Reward**: -1 per action, +10 when the tip is good.
* **Termination**: ``terminated`` when the tip is good, by the observation's verdict
  (``terminate_on="observation"``, the default: what a real instrument can know) or by the
  simulator's ground truth (``terminate_on="truth"``: without the tip-state classifier the
  physics-based findings miss most double tips, and the observation's verdict calls them
  good); ``truncated`` after ``settings.max_actions`` actions.
* **info**: ``truth`` (the true tip state as a string, or None), ``sim_time`` (simulated
  seconds), ``accepted`` (the envelope's verdict), ``tip_state`` (the observation's verdict),
  ``actions``.
* :meth:`ConditioningEnv.action_masks` gives the actions whose damage fits the clean area of the
  newest frame, as in DeepSPM (MaskablePPO calls it).

gymnasium is the ``rl`` extra: only this module imports it, so the policies plugin loads
without it. The environment runs its episode on its own event loop (``asyncio.Runner``), so
call it from synchronous code, not from inside a running event loop.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, ClassVar, Literal

import gymnasium
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from probepilot.config import Config, load_config
from probepilot.contracts import Analyzer
from probepilot.episodes import (
    ACTION_REWARD,
    GOOD_REWARD,
    ConditioningEpisode,
    EpisodeSettings,
    required_clean_side,
)
from probepilot.model import DEFAULT_CONDITIONING_ACTIONS, Finding, Observation, TipState
from probepilot.plugins import PluginManager

__all__ = [
    "ENV_ID",
    "FEATURES",
    "FRAME_SHAPE",
    "ConditioningEnv",
    "action_masks",
    "features",
    "frame_image",
]

ENV_ID = "probepilot/Conditioning-v0"
#: Shape of the frame observation: one channel (topography), 32 x 32.
FRAME_SHAPE = (1, 32, 32)
#: Largest |value| of the normalised frame (in robust standard deviations).
FRAME_CLIP = 5.0

#: The feature vector, in order; every entry is scaled into [0, 1].
FEATURES: tuple[str, ...] = (
    "p_double",  # double-tip detector: P(double) (its finding's confidence)
    "double_separation",  # apex separation it found / 3 nm (0 when none)
    "tip_change_count",  # tip changes in the frame / 5
    "tip_change_confidence",  # confidence of the tip-change finding
    "roughness_rms",  # rms roughness / 100 pm
    "clean_fraction",  # fraction of the frame that is clean
    "clean_area",  # side of the largest clean square / frame side
    "classifier_p_good",  # the tip-state classifier's four probabilities, 0 if absent
    "classifier_p_double",
    "classifier_p_blunt",
    "classifier_p_unstable",
    "state_good",  # the observation's tip-state verdict, one-hot (unknown: all 0)
    "state_double",
    "state_blunt",
    "state_unstable",
    "bad_frames_in_row",  # bad frames in a row / 10
    "actions_taken",  # conditioning actions this episode / max_actions
    *(f"last_action_{i}" for i in range(len(DEFAULT_CONDITIONING_ACTIONS))),  # one-hot
)


def _value(finding: Finding | None, key: str, default: float = 0.0) -> float:
    if finding is None or finding.values.get("status", "ok") != "ok":
        return default
    value = finding.values.get(key, default)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return default
    return float(value)


def features(
    observation: Observation, actions: int, max_actions: int, last_action: int | None
) -> npt.NDArray[np.float32]:
    """The feature vector of :data:`FEATURES` for one observation, float32 in [0, 1]."""
    double = observation.finding("double_tip")
    change = observation.finding("tip_change")
    rough = observation.finding("roughness")
    classifier = observation.finding("tip_state")
    frame = observation.frame
    side = max(frame.area.size) if frame is not None else 0.0
    state = observation.tip_state
    values = [
        _value(double, "p_double", double.confidence if double is not None else 0.0),
        _value(double, "separation") / 3e-9,
        _value(change, "count") / 5.0,
        change.confidence if change is not None else 0.0,
        _value(rough, "rms") / 100e-12,
        _value(rough, "clean_fraction"),
        observation.clean_area / side if side > 0 else 0.0,
        _value(classifier, "p_good"),
        _value(classifier, "p_double"),
        _value(classifier, "p_blunt"),
        _value(classifier, "p_unstable"),
        float(state == TipState.GOOD),
        float(state == TipState.DOUBLE),
        float(state == TipState.BLUNT),
        float(state == TipState.UNSTABLE),
        observation.bad_frames_in_row / 10.0,
        actions / max(max_actions, 1),
    ]
    onehot = [0.0] * len(DEFAULT_CONDITIONING_ACTIONS)
    if last_action is not None:
        onehot[last_action] = 1.0
    out = np.array([*values, *onehot], dtype=np.float64)
    out = np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def frame_image(observation: Observation) -> npt.NDArray[np.float32]:
    """The newest frame's topography, plane-levelled, robustly normalised and area-averaged to
    :data:`FRAME_SHAPE` (zeros without a frame)."""
    out = np.zeros(FRAME_SHAPE, dtype=np.float32)
    frame = observation.frame
    if frame is None:
        return out
    z = np.asarray(frame.topography, dtype=np.float64)
    finite = np.isfinite(z)
    if z.ndim != 2 or finite.sum() < 3:
        return out
    rows, cols = np.indices(z.shape)
    design = np.stack([np.ones(finite.sum()), rows[finite], cols[finite]], axis=1)
    coef, *_ = np.linalg.lstsq(design, z[finite], rcond=None)
    levelled = z - (coef[0] + coef[1] * rows + coef[2] * cols)
    centre = float(np.median(levelled[finite]))
    spread = 1.4826 * float(np.median(np.abs(levelled[finite] - centre)))
    if not spread > 0:
        spread = float(np.std(levelled[finite])) or 1.0
    normalised = np.where(finite, (levelled - centre) / spread, 0.0)
    out[0] = _area_average(normalised, FRAME_SHAPE[1:])
    return np.clip(out, -FRAME_CLIP, FRAME_CLIP)


def _area_average(image: npt.NDArray[np.float64], shape: tuple[int, int]) -> npt.NDArray[Any]:
    """``image`` averaged over (near-)equal blocks into ``shape`` (repeats pixels if smaller)."""
    out = image
    for axis, n in enumerate(shape):
        edges = np.linspace(0, out.shape[axis], n + 1)
        start = np.minimum(np.floor(edges[:-1]).astype(int), out.shape[axis] - 1)
        stop = np.maximum(np.ceil(edges[1:]).astype(int), start + 1)
        cums = np.cumsum(out, axis=axis)
        zero = np.zeros_like(np.take(cums, [0], axis=axis))
        cums = np.concatenate([zero, cums], axis=axis)
        sums = np.take(cums, stop, axis=axis) - np.take(cums, start, axis=axis)
        counts = (stop - start).reshape([-1 if a == axis else 1 for a in range(out.ndim)])
        out = sums / counts
    return out


def action_masks(observation: Observation | None) -> npt.NDArray[np.bool_]:
    """Which of :data:`DEFAULT_CONDITIONING_ACTIONS` fit the clean area of the newest frame.

    An action is allowed when :func:`~probepilot.episodes.required_clean_side` is at most the
    side of the largest clean square (DeepSPM's rule: condition only where the damage lands on
    clean surface). When none fits, those with the smallest need stay allowed, so an agent
    always has a choice (the next frame is a fresh area anyway).
    """
    needs = np.array([required_clean_side(a) for a in DEFAULT_CONDITIONING_ACTIONS])
    clean = observation.clean_area if observation is not None else math.inf
    if observation is not None and observation.frame is None:
        clean = math.inf
    mask = needs <= clean * (1 + 1e-9)
    if not mask.any():
        mask = needs <= needs.min() * (1 + 1e-9)
    return mask


class ConditioningEnv(gymnasium.Env[dict[str, npt.NDArray[np.float32]], np.int64]):
    """Gymnasium environment over :class:`~probepilot.episodes.ConditioningEpisode` (see the
    module docstring for spaces, reward and termination)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        settings: EpisodeSettings | None = None,
        *,
        config: Config | None = None,
        manager: PluginManager | None = None,
        analyzers: list[Analyzer] | None = None,
        terminate_on: Literal["observation", "truth"] = "observation",
    ) -> None:
        if terminate_on not in ("observation", "truth"):
            raise ValueError(f"terminate_on must be 'observation' or 'truth', not {terminate_on!r}")
        if config is None or manager is None:
            config, manager = load_config(None)
        self.settings = settings or EpisodeSettings()
        self.terminate_on = terminate_on
        self.episode = ConditioningEpisode(config, manager, self.settings, analyzers)
        self.actions = DEFAULT_CONDITIONING_ACTIONS
        self.action_space = spaces.Discrete(len(self.actions))
        self.observation_space = spaces.Dict(
            {
                "frame": spaces.Box(-FRAME_CLIP, FRAME_CLIP, FRAME_SHAPE, dtype=np.float32),
                "features": spaces.Box(0.0, 1.0, (len(FEATURES),), dtype=np.float32),
            }
        )
        self._runner: asyncio.Runner | None = None
        self._last_action: int | None = None
        self._observation: Observation | None = None

    # ------------------------------------------------------------------ gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, npt.NDArray[np.float32]], dict[str, Any]]:
        """A new episode. ``seed`` seeds the simulator (and this environment's generator);
        without it the environment's generator draws the simulator's seed."""
        super().reset(seed=seed)
        episode_seed = int(seed) if seed is not None else int(self.np_random.integers(2**31))
        observation = self._run(self.episode.reset(episode_seed))
        self._last_action = None
        self._observation = observation
        return self._observe(observation), self._info(observation, accepted=True)

    def step(
        self, action: np.int64 | int
    ) -> tuple[dict[str, npt.NDArray[np.float32]], float, bool, bool, dict[str, Any]]:
        index = int(action)
        if not self.action_space.contains(index):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        if self._observation is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        result = self._run(self.episode.step(self.actions[index]))
        self._last_action = index
        self._observation = result.observation
        if self.terminate_on == "truth" and result.truth is not None:
            good = result.truth == TipState.GOOD
        else:
            good = result.observation.tip_state == TipState.GOOD
        terminated = good
        truncated = not terminated and self.episode.actions >= self.settings.max_actions
        reward = ACTION_REWARD + (GOOD_REWARD if good else 0.0)
        return (
            self._observe(result.observation),
            float(reward),
            terminated,
            truncated,
            self._info(result.observation, accepted=result.verdict.accepted),
        )

    def action_masks(self) -> npt.NDArray[np.bool_]:
        """Allowed actions for the newest frame (see :func:`action_masks`)."""
        return action_masks(self._observation)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.run(self.episode.close())
            self._runner.close()
            self._runner = None
        super().close()

    # ------------------------------------------------------------------ internals

    def _run(self, coroutine: Any) -> Any:
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(coroutine)

    def _observe(self, observation: Observation) -> dict[str, npt.NDArray[np.float32]]:
        return {
            "frame": frame_image(observation),
            "features": features(
                observation, self.episode.actions, self.settings.max_actions, self._last_action
            ),
        }

    def _info(self, observation: Observation, *, accepted: bool) -> dict[str, Any]:
        truth = self.episode.last_truth
        return {
            "truth": truth.value if truth is not None else None,
            "sim_time": self.episode.sim_time,
            "tip_state": observation.tip_state.value,
            "accepted": accepted,
            "actions": self.episode.actions,
        }


if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="probepilot_policies.env:ConditioningEnv")
