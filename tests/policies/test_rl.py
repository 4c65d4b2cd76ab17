"""The rl policy: numpy inference equals torch's, masking, double DQN targets, the shipped
weights, online learning and `probepilot train rl`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from probepilot.cli import cli
from probepilot.config import Config
from probepilot.episodes import ConditioningEpisode, EpisodeSettings, run_episode
from probepilot.errors import ConfigError
from probepilot.model import (
    DEFAULT_CONDITIONING_ACTIONS,
    Finding,
    Frame,
    KeepImaging,
    Observation,
    Outcome,
    TipState,
)
from probepilot.plugins import PluginManager
from probepilot_policies.qnet import NumpyQNet, QNetSpec, masked_argmax, read_meta

pytest.importorskip("gymnasium")
from probepilot_policies.env import FEATURES, action_masks
from probepilot_policies.rl import RlOptions, RlPolicy, shipped_weights_path

SHORT = EpisodeSettings(max_actions=4, max_scans=3, pixels=32)
N = len(DEFAULT_CONDITIONING_ACTIONS)


def random_qnet(use_frame: bool, seed: int = 0) -> NumpyQNet:
    torch = pytest.importorskip("torch")
    from probepilot_policies.dqn import build_network, to_numpy

    torch.manual_seed(seed)
    return to_numpy(build_network(QNetSpec(FEATURES, N, (16, 8), use_frame)))


def biased_qnet(favourite: int) -> NumpyQNet:
    """A features-only network whose Q-values are its output bias: ``favourite`` is best."""
    spec = QNetSpec(FEATURES, N, (4,), False)
    bias = np.linspace(0, 1, N, dtype=np.float32)
    bias[favourite] = 10.0
    params = {
        "mlp.0.weight": np.zeros((4, len(FEATURES)), np.float32),
        "mlp.0.bias": np.zeros(4, np.float32),
        "mlp.2.weight": np.zeros((N, 4), np.float32),
        "mlp.2.bias": bias,
    }
    return NumpyQNet(spec, params)


def observation(
    state: TipState, clean_area: float = 1.0, frame: Frame | None = None
) -> Observation:
    return Observation(frame=frame, findings=(), tip_state=state, clean_area=clean_area)


def small_frame() -> Frame:
    """A real 32 x 32 simulator frame (so the masks see a frame and its clean area counts)."""
    from probepilot.model import ScanArea, ScanSettings

    async def scan() -> Frame:
        from probepilot.config import load_config

        config, manager = load_config(None)
        driver = config.build(manager, "driver", "sim", overrides={"seed": 1})
        await driver.connect()
        try:
            await driver.approach()
            return await driver.scan(
                ScanSettings(ScanArea((0.0, 0.0), (10e-9, 10e-9), 32, 32), 0.01)
            )
        finally:
            await driver.close()

    return asyncio.run(scan())


# ------------------------------------------------------------------ numpy == torch


@pytest.mark.parametrize("use_frame", [False, True])
def test_numpy_inference_equals_torch(use_frame: bool) -> None:
    torch = pytest.importorskip("torch")
    from probepilot_policies.dqn import build_network

    torch.manual_seed(3)
    net = build_network(QNetSpec(FEATURES, N, (32, 16), use_frame))
    from probepilot_policies.dqn import to_numpy

    qnet = to_numpy(net)
    rng = np.random.default_rng(0)
    features = rng.random((5, len(FEATURES)), dtype=np.float32)
    frames = rng.normal(0, 1, (5, 1, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(features), torch.from_numpy(frames)).numpy()
    got = qnet(features, frames if use_frame else None)
    assert got.shape == (5, N)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_weights_file_round_trip(tmp_path: Path) -> None:
    qnet = random_qnet(use_frame=True)
    path = tmp_path / "w.npz"
    qnet.save(path, {"steps": 3})
    again = NumpyQNet.load(path)
    assert again.spec == qnet.spec
    x = np.random.default_rng(1).random((2, len(FEATURES)), dtype=np.float32)
    f = np.zeros((2, 1, 32, 32), np.float32)
    assert np.array_equal(again(x, f), qnet(x, f))
    assert read_meta(path) == {"steps": 3}
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match=r"bad\.npz"):
        NumpyQNet.load(tmp_path / "bad.npz")


def test_shipped_weights_load_and_are_small() -> None:
    path = shipped_weights_path()
    assert path.stat().st_size < 200_000
    qnet = NumpyQNet.load(path)
    assert qnet.spec.features == FEATURES
    assert qnet.spec.n_actions == N
    assert read_meta(path)["trained_by"] == "probepilot train rl"


def test_default_policy_builds_from_config(config: Config, manager: PluginManager) -> None:
    policy = config.build(manager, "policy", "rl")
    assert isinstance(policy, RlPolicy)
    assert isinstance(policy.decide(observation(TipState.GOOD)), KeepImaging)
    assert isinstance(policy.decide(observation(TipState.UNKNOWN)), KeepImaging)
    assert policy.decide(observation(TipState.DOUBLE)) in DEFAULT_CONDITIONING_ACTIONS


def test_weights_for_other_features_are_refused() -> None:
    spec = QNetSpec(("a", "b"), N, (4,), False)
    params = {
        "mlp.0.weight": np.zeros((4, 2), np.float32),
        "mlp.0.bias": np.zeros(4, np.float32),
        "mlp.2.weight": np.zeros((N, 4), np.float32),
        "mlp.2.bias": np.zeros(N, np.float32),
    }
    with pytest.raises(Exception, match="retrain"):
        RlPolicy(qnet=NumpyQNet(spec, params))


# ------------------------------------------------------------------ masking


def test_masked_argmax() -> None:
    q = np.array([3.0, 1.0, 2.0], np.float32)
    assert masked_argmax(q, np.array([True, True, True])) == 0
    assert masked_argmax(q, np.array([False, True, True])) == 2
    with pytest.raises(ValueError):
        masked_argmax(q, np.array([False, False, False]))


def test_policy_never_picks_a_masked_action() -> None:
    frame = small_frame()
    strong_dip = N - 1  # the 5 nm dip needs the largest clean square
    policy = RlPolicy(RlOptions(), qnet=biased_qnet(strong_dip))
    roomy = observation(TipState.DOUBLE, clean_area=1e-6, frame=frame)
    assert policy.decide(roomy) == DEFAULT_CONDITIONING_ACTIONS[strong_dip]
    cramped = observation(TipState.DOUBLE, clean_area=4e-9, frame=frame)
    mask = action_masks(cramped)
    assert not mask[strong_dip] and mask.any()
    action = policy.decide(cramped)
    index = DEFAULT_CONDITIONING_ACTIONS.index(action)
    assert mask[index]
    # the best allowed one: the bias rises with the index
    assert index == int(np.flatnonzero(mask).max())


def test_double_dqn_target_respects_the_next_mask() -> None:
    torch = pytest.importorskip("torch")
    from probepilot_policies.dqn import double_dqn_target

    online = torch.tensor([[1.0, 5.0, 2.0], [1.0, 5.0, 2.0]])
    target = torch.tensor([[10.0, 20.0, 30.0], [10.0, 20.0, 30.0]])
    masks = torch.tensor([[True, True, True], [True, False, True]])
    y = double_dqn_target(online, target, masks, torch.tensor([-1.0, -1.0]), torch.zeros(2), 0.5)
    # row 0: the online argmax is action 1, valued by the target at 20; row 1: action 1 is
    # masked, so action 2 (30)
    assert y.tolist() == [-1.0 + 10.0, -1.0 + 15.0]
    terminal = double_dqn_target(
        online, target, masks, torch.tensor([9.0, 9.0]), torch.ones(2), 0.5
    )
    assert terminal.tolist() == [9.0, 9.0]


# ------------------------------------------------------------------ episodes and learning


def test_seeded_short_episode_is_reproducible(config: Config, manager: PluginManager) -> None:
    async def play(seed: int) -> tuple[int, tuple[str, ...]]:
        episode = ConditioningEpisode(config, manager, SHORT)
        try:
            result = await run_episode(RlPolicy(), episode, seed)
        finally:
            await episode.close()
        assert result.actions <= SHORT.max_actions
        return result.actions, result.trace

    first = asyncio.run(play(2))
    assert first == asyncio.run(play(2))


def test_online_learning_takes_gradient_steps() -> None:
    pytest.importorskip("torch")
    options = RlOptions(learn_online=True, seed=0, batch=4, learn_after=4, epsilon=0.5)
    policy = RlPolicy(options, qnet=random_qnet(use_frame=False))
    assert policy.learner is not None
    before = policy.learner.export().params["mlp.4.bias"].copy()
    bad = observation(TipState.UNSTABLE)
    good = Observation(None, (Finding("x", "tip_state", 1.0),), tip_state=TipState.GOOD)
    for i in range(12):
        action = policy.decide(bad)
        done = i % 3 == 2
        policy.feedback(Outcome(action, good if done else bad, 9.0 if done else -1.0, done))
    assert policy.learner.buffer.size == 12
    assert policy.learner.steps == 9
    assert not np.array_equal(before, policy.learner.export().params["mlp.4.bias"])


# ------------------------------------------------------------------ probepilot train rl


def test_train_rl_tiny_run_is_deterministic(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    runner = CliRunner()
    args = ["train", "rl", "--seed", "1", "--steps", "40", "--warmup", "20"]
    args += ["--max-actions", "3", "--pixels", "32"]
    nets = []
    for name in ("a.npz", "b.npz"):
        result = runner.invoke(cli, [*args, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert "step 40/40" in result.stderr
        assert json.loads(result.stdout.strip().splitlines()[-1])["out"].endswith(name)
        nets.append(NumpyQNet.load(tmp_path / name))
    for key, value in nets[0].params.items():
        assert np.array_equal(value, nets[1].params[key]), key
    policy = RlPolicy(RlOptions(weights=str(tmp_path / "a.npz")))
    assert policy.decide(observation(TipState.BLUNT)) in DEFAULT_CONDITIONING_ACTIONS
