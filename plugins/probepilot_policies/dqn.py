"""Double DQN in torch: the Q-network, the replay buffer and the learning step.

Used by ``probepilot train rl`` (:mod:`probepilot_policies.rl_train`) and by the ``rl`` policy
when it learns online. torch is the ``ml`` extra: import this module only when torch is wanted
(:func:`require_torch` gives the one-line error when it is not installed).

Double DQN (van Hasselt et al. 2016): the online network picks the next action, the target
network values it, which removes most of plain DQN's over-estimation. Action masking applies in
both places a maximum is taken: acting (:func:`~probepilot_policies.qnet.masked_argmax`) and the
target (the next state's disallowed actions are never the argmax).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from probepilot.errors import PluginError
from probepilot_policies.qnet import CONVS, FRAME_EMBEDDING, NumpyQNet, QNetSpec, layer_names


def require_torch() -> Any:
    """Import torch, or raise one clear :class:`PluginError`."""
    try:
        import torch
    except ImportError:
        raise PluginError(
            "the rl policy needs torch to train or to learn online: "
            "pip install 'probepilot[ml]' -c constraints.txt"
        ) from None
    return torch


def build_network(spec: QNetSpec) -> Any:
    """A torch module with the layout of :class:`~probepilot_policies.qnet.QNetSpec`."""
    torch = require_torch()
    nn = torch.nn

    class QNetwork(nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.spec = spec
            inputs = len(spec.features)
            if spec.use_frame:
                layers: list[Any] = []
                channels = spec.frame_shape[0]
                for out, k, s, p in CONVS:
                    layers += [nn.Conv2d(channels, out, k, s, p), nn.ReLU()]
                    channels = out
                self.convs = nn.Sequential(*layers)
                self.embed = nn.Linear(spec.frame_flat, FRAME_EMBEDDING)
                inputs += FRAME_EMBEDDING
            mlp: list[Any] = []
            for width in spec.hidden:
                mlp += [nn.Linear(inputs, width), nn.ReLU()]
                inputs = width
            mlp.append(nn.Linear(inputs, spec.n_actions))
            self.mlp = nn.Sequential(*mlp)

        def forward(self, features: Any, frame: Any = None) -> Any:
            x = features
            if spec.use_frame:
                y = self.convs(frame).flatten(1)
                x = torch.cat([torch.relu(self.embed(y)), x], dim=1)
            return self.mlp(x)

    return QNetwork()


def to_numpy(network: Any) -> NumpyQNet:
    """The numpy twin of a torch Q-network (same parameters, float32)."""
    state = network.state_dict()
    params = {
        n: state[n].detach().cpu().numpy().astype(np.float32) for n in layer_names(network.spec)
    }
    return NumpyQNet(network.spec, params)


def from_numpy(qnet: NumpyQNet) -> Any:
    """A torch Q-network loaded with a numpy network's parameters."""
    torch = require_torch()
    network = build_network(qnet.spec)
    network.load_state_dict({n: torch.from_numpy(a.copy()) for n, a in qnet.params.items()})
    return network


def double_dqn_target(
    next_online: Any, next_target: Any, next_masks: Any, rewards: Any, terminal: Any, gamma: float
) -> Any:
    """``r + gamma * Q_target(s', argmax_a' Q_online(s', a'))`` with the argmax over the
    actions allowed in ``s'`` only, and no bootstrap from terminal transitions (torch tensors,
    one row per transition)."""
    torch = require_torch()
    best = next_online.masked_fill(~next_masks, -torch.inf).argmax(dim=1, keepdim=True)
    next_value = next_target.gather(1, best)[:, 0]
    return rewards + gamma * (1.0 - terminal) * next_value


class ReplayBuffer:
    """A ring buffer of transitions, sampled uniformly.

    Frames are stored as float16 (they are normalised to a few units; half precision keeps a
    30 000-transition buffer with frames under 150 MB).
    """

    def __init__(self, capacity: int, spec: QNetSpec) -> None:
        f = len(spec.features)
        self.capacity = capacity
        self.use_frame = spec.use_frame
        frame_shape = spec.frame_shape if spec.use_frame else (0,)
        self.features = np.zeros((capacity, f), np.float32)
        self.next_features = np.zeros((capacity, f), np.float32)
        self.frames = np.zeros((capacity, *frame_shape), np.float16)
        self.next_frames = np.zeros((capacity, *frame_shape), np.float16)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminal = np.zeros(capacity, np.float32)
        self.next_masks = np.ones((capacity, spec.n_actions), bool)
        self.size = 0
        self._next = 0

    def add(
        self,
        obs: dict[str, npt.NDArray[np.float32]],
        action: int,
        reward: float,
        next_obs: dict[str, npt.NDArray[np.float32]],
        terminal: bool,
        next_mask: npt.NDArray[np.bool_],
    ) -> None:
        """Store one transition. ``terminal`` means no bootstrapping (the tip is good), not a
        time limit: a truncated episode still bootstraps from its last state."""
        i = self._next
        self.features[i] = obs["features"]
        self.next_features[i] = next_obs["features"]
        if self.use_frame:
            self.frames[i] = obs["frame"]
            self.next_frames[i] = next_obs["frame"]
        self.actions[i] = action
        self.rewards[i] = reward
        self.terminal[i] = float(terminal)
        self.next_masks[i] = next_mask
        self._next = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch: int) -> dict[str, npt.NDArray[Any]]:
        idx = rng.integers(0, self.size, batch)
        out: dict[str, npt.NDArray[Any]] = {
            "features": self.features[idx],
            "next_features": self.next_features[idx],
            "actions": self.actions[idx],
            "rewards": self.rewards[idx],
            "terminal": self.terminal[idx],
            "next_masks": self.next_masks[idx],
        }
        if self.use_frame:
            out["frames"] = self.frames[idx].astype(np.float32)
            out["next_frames"] = self.next_frames[idx].astype(np.float32)
        return out


@dataclass(frozen=True)
class DqnSettings:
    """Learning hyper-parameters."""

    lr: float = 5e-4
    gamma: float = 0.95
    batch: int = 64
    target_sync: int = 500
    """Gradient steps between copies of the online network into the target network."""
    grad_clip: float = 10.0


class DoubleDqn:
    """The online and target networks, their optimiser and the double DQN update."""

    def __init__(self, network: Any, settings: DqnSettings) -> None:
        torch = require_torch()
        self.torch = torch
        self.settings = settings
        self.online = network
        self.target = copy.deepcopy(network)
        self.target.eval()
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=settings.lr)
        self.updates = 0

    def q_values(self, obs: dict[str, npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
        """Q-values of one observation from the online network."""
        torch = self.torch
        with torch.no_grad():
            features = torch.from_numpy(np.asarray(obs["features"], np.float32)[None])
            frame = None
            if self.online.spec.use_frame:
                frame = torch.from_numpy(np.asarray(obs["frame"], np.float32)[None])
            q: npt.NDArray[np.float32] = self.online(features, frame)[0].numpy()
            return q

    def update(self, batch: dict[str, npt.NDArray[Any]]) -> float:
        """One gradient step on a sampled batch; returns the loss."""
        torch = self.torch
        s = self.settings
        t = {k: torch.from_numpy(v) for k, v in batch.items()}
        frames = t.get("frames")
        next_frames = t.get("next_frames")
        q = self.online(t["features"], frames).gather(1, t["actions"][:, None])[:, 0]
        with torch.no_grad():
            target = double_dqn_target(
                self.online(t["next_features"], next_frames),
                self.target(t["next_features"], next_frames),
                t["next_masks"],
                t["rewards"],
                t["terminal"],
                s.gamma,
            )
        # Squared error, not Huber: a success (+10) is rare and Huber's linear tails would fit
        # the median target (a failure) instead of the mean, and every Q-value would ignore it.
        loss = torch.nn.functional.mse_loss(q, target)
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.online.parameters(), s.grad_clip)
        self.optimizer.step()
        self.updates += 1
        if self.updates % s.target_sync == 0:
            self.target.load_state_dict(self.online.state_dict())
        return float(loss.item())
