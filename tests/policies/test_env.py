"""The gymnasium environment: registration, check_env, spaces, masks, termination."""

from __future__ import annotations

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from probepilot.config import Config  # noqa: E402
from probepilot.episodes import EpisodeSettings  # noqa: E402
from probepilot.model import (  # noqa: E402
    DEFAULT_CONDITIONING_ACTIONS,
    Finding,
    Observation,
    TipState,
)
from probepilot.plugins import PluginManager  # noqa: E402
from probepilot_policies import env as envmod  # noqa: E402

SHORT = EpisodeSettings(max_actions=3, pixels=32)


@pytest.fixture
def env(config: Config, manager: PluginManager):  # type: ignore[no-untyped-def]
    e = envmod.ConditioningEnv(SHORT, config=config, manager=manager)
    yield e
    e.close()


def test_registered_and_made_by_id() -> None:
    made = gymnasium.make(envmod.ENV_ID, settings=SHORT)
    try:
        assert isinstance(made.unwrapped, envmod.ConditioningEnv)
        assert made.action_space == gymnasium.spaces.Discrete(12)
    finally:
        made.close()


def test_passes_check_env(env: envmod.ConditioningEnv) -> None:
    check_env(env, skip_render_check=True)


def test_spaces_and_one_episode(env: envmod.ConditioningEnv) -> None:
    obs, info = env.reset(seed=7)
    assert env.observation_space.contains(obs)
    assert obs["frame"].shape == envmod.FRAME_SHAPE
    assert obs["features"].shape == (len(envmod.FEATURES),)
    assert info["truth"] in ("double", "blunt", "unstable")
    assert info["actions"] == 0
    steps = 0
    terminated = truncated = False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(8)  # dip 1.2 nm
        steps += 1
        assert env.observation_space.contains(obs)
        assert reward == (9.0 if terminated else -1.0)
        assert terminated == (info["tip_state"] == "good")
        assert obs["features"][envmod.FEATURES.index("last_action_8")] == 1.0
        assert info["sim_time"] > 0
    assert steps <= SHORT.max_actions
    if truncated:
        assert steps == SHORT.max_actions
    with pytest.raises(ValueError, match="not in"):
        env.step(12)


def test_truth_termination(config: Config, manager: PluginManager) -> None:
    e = envmod.ConditioningEnv(SHORT, config=config, manager=manager, terminate_on="truth")
    try:
        e.reset(seed=7)
        for _ in range(SHORT.max_actions):
            _, _, terminated, truncated, info = e.step(8)
            assert terminated == (info["truth"] == "good")
            if terminated or truncated:
                break
    finally:
        e.close()
    with pytest.raises(ValueError, match="terminate_on"):
        envmod.ConditioningEnv(SHORT, config=config, manager=manager, terminate_on="x")  # type: ignore[arg-type]


def test_same_seed_same_observations(env: envmod.ConditioningEnv) -> None:
    a, _ = env.reset(seed=11)
    a1 = env.step(3)[0]
    b, _ = env.reset(seed=11)
    b1 = env.step(3)[0]
    for key in ("frame", "features"):
        np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_array_equal(a1[key], b1[key])


def test_action_masks_follow_the_clean_area(env: envmod.ConditioningEnv) -> None:
    env.reset(seed=1)
    mask = env.action_masks()
    assert mask.dtype == np.bool_ and mask.shape == (12,)
    assert mask.any()
    needs = np.array([envmod.required_clean_side(a) for a in DEFAULT_CONDITIONING_ACTIONS])
    obs = env.episode.observation
    assert obs is not None
    frame_obs = Observation(obs.frame, (), TipState.DOUBLE, clean_area=5e-9)
    small = envmod.action_masks(frame_obs)
    np.testing.assert_array_equal(small, needs <= 5e-9 * (1 + 1e-9))
    assert not small.all()  # 8 V pulses and 5 nm dips need more than 5 nm
    assert small[0] and not small[4] and not small[11]
    tiny = envmod.action_masks(Observation(obs.frame, (), TipState.DOUBLE, clean_area=0.0))
    assert tiny.sum() >= 1  # never nothing: the gentlest stay allowed
    assert tiny[int(np.argmin(needs))]


def test_features_read_the_classifier_when_present() -> None:
    classifier = Finding(
        "tip_state",
        "tip_state",
        0.9,
        {"state": "blunt", "p_good": 0.05, "p_double": 0.1, "p_blunt": 0.8, "p_unstable": 0.05},
    )
    obs = Observation(None, (classifier,), TipState.BLUNT, bad_frames_in_row=3)
    vector = envmod.features(obs, actions=5, max_actions=50, last_action=None)
    named = dict(zip(envmod.FEATURES, vector.tolist(), strict=True))
    assert named["classifier_p_blunt"] == pytest.approx(0.8)
    assert named["state_blunt"] == 1.0
    assert named["bad_frames_in_row"] == pytest.approx(0.3)
    assert named["actions_taken"] == pytest.approx(0.1)
    assert not any(named[f"last_action_{i}"] for i in range(12))
    assert ((vector >= 0) & (vector <= 1)).all()
    assert envmod.frame_image(obs).shape == envmod.FRAME_SHAPE
