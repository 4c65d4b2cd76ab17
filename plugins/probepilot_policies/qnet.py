"""The ``rl`` policy's Q-network in numpy: inference without torch.

The network is trained with torch (:mod:`probepilot_policies.dqn`) but shipped as a numpy
``.npz`` file, so an instrument PC runs the ``rl`` policy with the core's numpy alone; torch is
needed only to train it, or to keep learning online. This module defines the layout both sides
share (:class:`QNetSpec`) and evaluates it; ``tests/policies/test_rl.py`` checks that it equals
torch's forward pass.

Layout: an optional small CNN on the 32 x 32 frame (three stride-2 convolutions and a linear
layer) whose output is concatenated with the feature vector, then an MLP with ReLUs ending in one
Q-value per action of :data:`~probepilot.model.DEFAULT_CONDITIONING_ACTIONS`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from probepilot.errors import ConfigError

#: Identifies weight files.
FORMAT = "probepilot-qnet"
VERSION = 1

#: The CNN's convolutions: (output channels, kernel, stride, padding).
CONVS: tuple[tuple[int, int, int, int], ...] = ((8, 5, 2, 2), (16, 3, 2, 1), (16, 3, 2, 1))
#: Width of the CNN's output (after its linear layer).
FRAME_EMBEDDING = 32


@dataclass(frozen=True)
class QNetSpec:
    """What a weight file holds: sizes, and the names of the features it was trained on."""

    features: tuple[str, ...]
    n_actions: int
    hidden: tuple[int, ...] = (64, 64)
    use_frame: bool = False
    frame_shape: tuple[int, int, int] = (1, 32, 32)

    @property
    def frame_flat(self) -> int:
        """Length of the flattened CNN output before its linear layer."""
        h, w = self.frame_shape[1:]
        for _, k, s, p in CONVS:
            h = (h + 2 * p - k) // s + 1
            w = (w + 2 * p - k) // s + 1
        return CONVS[-1][0] * h * w

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "version": VERSION, **asdict(self)})

    @classmethod
    def from_json(cls, text: str, source: str) -> QNetSpec:
        try:
            doc = json.loads(text)
            if doc.get("format") != FORMAT:
                raise ValueError(f"format is not {FORMAT!r}")
            return cls(
                features=tuple(str(f) for f in doc["features"]),
                n_actions=int(doc["n_actions"]),
                hidden=tuple(int(h) for h in doc["hidden"]),
                use_frame=bool(doc["use_frame"]),
                frame_shape=tuple(int(s) for s in doc["frame_shape"]),  # type: ignore[arg-type]
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{source}: not a probepilot Q-network file: {exc}") from None


def layer_names(spec: QNetSpec) -> list[str]:
    """Parameter names (as in torch's ``state_dict``), in order."""
    names = []
    if spec.use_frame:
        for i in range(len(CONVS)):
            names += [f"convs.{2 * i}.weight", f"convs.{2 * i}.bias"]
        names += ["embed.weight", "embed.bias"]
    for i in range(len(spec.hidden) + 1):
        names += [f"mlp.{2 * i}.weight", f"mlp.{2 * i}.bias"]
    return names


class NumpyQNet:
    """Evaluates a :class:`QNetSpec` network from its parameters (float32)."""

    def __init__(self, spec: QNetSpec, params: dict[str, npt.NDArray[np.float32]]) -> None:
        missing = [n for n in layer_names(spec) if n not in params]
        if missing:
            raise ConfigError(f"Q-network weights lack {', '.join(missing)}")
        self.spec = spec
        self.params = {n: np.asarray(params[n], dtype=np.float32) for n in layer_names(spec)}

    @classmethod
    def load(cls, path: Path) -> NumpyQNet:
        """Read an ``.npz`` weight file; :class:`ConfigError` naming the file if it is bad."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read the Q-network weights: {exc}") from None
        if "spec" not in arrays:
            raise ConfigError(f"{path}: not a probepilot Q-network file (no spec)")
        spec = QNetSpec.from_json(str(arrays.pop("spec")), str(path))
        try:
            return cls(spec, arrays)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def save(self, path: Path, meta: dict[str, Any] | None = None) -> None:
        save_params(path, self.spec, self.params, meta)

    def __call__(
        self, features: npt.NDArray[np.float32], frame: npt.NDArray[np.float32] | None = None
    ) -> npt.NDArray[np.float32]:
        """Q-values, shape (batch, n_actions), for ``features`` (batch, F) and, when the
        network uses it, ``frame`` (batch, 1, 32, 32). Unbatched inputs give one row."""
        p = self.params
        x = np.atleast_2d(np.asarray(features, dtype=np.float32))
        if self.spec.use_frame:
            if frame is None:
                raise ValueError("this Q-network needs the frame")
            y = np.asarray(frame, dtype=np.float32).reshape(-1, *self.spec.frame_shape)
            for i, (_, _, stride, pad) in enumerate(CONVS):
                y = _relu(
                    _conv2d(y, p[f"convs.{2 * i}.weight"], p[f"convs.{2 * i}.bias"], stride, pad)
                )
            y = _relu(y.reshape(len(y), -1) @ p["embed.weight"].T + p["embed.bias"])
            x = np.concatenate([y, x], axis=1)
        n = len(self.spec.hidden) + 1
        for i in range(n):
            x = x @ p[f"mlp.{2 * i}.weight"].T + p[f"mlp.{2 * i}.bias"]
            if i < n - 1:
                x = _relu(x)
        return x.astype(np.float32)


def save_params(
    path: Path,
    spec: QNetSpec,
    params: dict[str, npt.NDArray[np.float32]],
    meta: dict[str, Any] | None = None,
) -> None:
    """Write an ``.npz`` weight file (float32 arrays, the spec and ``meta`` as JSON)."""
    arrays: dict[str, Any] = {n: np.asarray(params[n], np.float32) for n in layer_names(spec)}
    arrays["spec"] = np.array(spec.to_json())
    arrays["meta"] = np.array(json.dumps(meta or {}))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        np.savez_compressed(fh, **arrays)


def read_meta(path: Path) -> dict[str, Any]:
    """The training record stored in a weight file."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
    return dict(meta) if isinstance(meta, dict) else {}


def masked_argmax(q: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]) -> int:
    """Index of the largest Q-value among allowed actions (the first on ties)."""
    if not mask.any():
        raise ValueError("no action is allowed")
    return int(np.argmax(np.where(mask, q, -np.inf)))


def _relu(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.maximum(x, 0.0)


def _conv2d(
    x: npt.NDArray[np.float32],
    weight: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    stride: int,
    pad: int,
) -> npt.NDArray[np.float32]:
    """2-D convolution (cross-correlation, as torch's ``Conv2d``) of (N, C, H, W) input."""
    k = weight.shape[-1]
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]
    out: npt.NDArray[np.float32] = np.einsum("nchwij,ocij->nohw", windows, weight, optimize=True)
    return (out + bias[None, :, None, None]).astype(np.float32)
