"""The tip-state network's forward pass in plain numpy, from the shipped ``.npz`` weights.

Training needs torch (the ``ml`` extra); using the classifier must not, so an instrument PC
with a base install can run it. The network is small enough that numpy is fast: 3 x 3
convolutions (grouped ones too) as one matrix product per group over an im2col view of the
batch, ReLU, 2 x 2 max pooling, global average and maximum pooling, two dense layers, softmax.
Batch normalisation was folded into the convolutions when the weights were exported
(:func:`probepilot_analyzers.classifier_train.export`), so inference is exactly this; a test
checks it equals the torch model's output.

Weights file: ``conv{i}.weight`` (out, in/groups, k, k) and ``conv{i}.bias`` for each
convolution, ``stride`` (of each; padding is ``(k - 1) // 2``), ``pool`` (1 where 2 x 2 max
pooling follows convolution ``i``), ``groups``,
``fc1.weight``/``fc1.bias``, ``fc2.weight``/``fc2.bias``, ``classes``, ``views``, and
``meta`` (a JSON string: how the weights were trained).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: Weights shipped with the package (trained with ``probepilot train classifier``).
WEIGHTS = Path(__file__).resolve().parent / "weights" / "tip_state.npz"


class WeightsError(ValueError):
    """The weights file is missing or not a tip-state network; ``str()`` says which."""


@dataclass(frozen=True)
class Network:
    """The tip-state network's parameters (float32) and what it was trained on."""

    convs: tuple[tuple[np.ndarray, np.ndarray], ...]
    stride: tuple[int, ...]
    pool: tuple[bool, ...]
    groups: int
    fc1: tuple[np.ndarray, np.ndarray]
    fc2: tuple[np.ndarray, np.ndarray]
    classes: tuple[str, ...]
    views: tuple[str, ...]
    meta: dict[str, object]

    @classmethod
    def load(cls, path: str | Path = WEIGHTS) -> Network:
        """Read a weights file; :class:`WeightsError` when it is missing or malformed."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise WeightsError(f"cannot read tip-state weights {path}: {exc}") from None
        try:
            count = len(arrays["pool"])
            convs = tuple(
                (
                    arrays[f"conv{i}.weight"].astype(np.float32),
                    arrays[f"conv{i}.bias"].astype(np.float32),
                )
                for i in range(count)
            )
            return cls(
                convs=convs,
                stride=tuple(int(v) for v in arrays["stride"]),
                pool=tuple(bool(p) for p in arrays["pool"]),
                groups=int(arrays["groups"]),
                fc1=(
                    arrays["fc1.weight"].astype(np.float32),
                    arrays["fc1.bias"].astype(np.float32),
                ),
                fc2=(
                    arrays["fc2.weight"].astype(np.float32),
                    arrays["fc2.bias"].astype(np.float32),
                ),
                classes=tuple(str(c) for c in arrays["classes"]),
                views=tuple(str(v) for v in arrays["views"]),
                meta=json.loads(str(arrays["meta"])) if "meta" in arrays else {},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"{path} is not a tip-state network: {exc!r}") from None

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Class scores for a batch ``x`` (n, views, h, w): (n, classes)."""
        h = np.ascontiguousarray(x, dtype=np.float32).transpose(0, 2, 3, 1)  # NHWC
        for (weight, bias), stride, pool in zip(self.convs, self.stride, self.pool, strict=True):
            h = np.maximum(conv2d(h, weight, bias, stride, self.groups), 0.0)
            if pool:
                n, hh, ww, c = h.shape
                h = h[:, : hh // 2 * 2, : ww // 2 * 2]
                h = h.reshape(n, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))
        features = np.concatenate([h.mean(axis=(1, 2)), h.max(axis=(1, 2))], axis=1)
        hidden = np.maximum(features @ self.fc1[0].T + self.fc1[1], 0.0)
        return np.asarray(hidden @ self.fc2[0].T + self.fc2[1])

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Softmax of :meth:`logits`, float64 (n, classes)."""
        z = self.logits(x).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True))


def conv2d(
    h: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int = 1, groups: int = 1
) -> np.ndarray:
    """Grouped k x k convolution of an NHWC batch with zero padding ``(k - 1) // 2``, as
    torch's ``Conv2d(padding=(k - 1) // 2, stride=stride, groups=groups)``; ``weight`` is
    torch's (out, in/groups, k, k)."""
    n, _, _, c = h.shape
    out, _, k, _ = weight.shape
    pad = (k - 1) // 2
    cin, cout = c // groups, out // groups
    padded = np.pad(h, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    windows = sliding_window_view(padded, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    oh, ow = windows.shape[1], windows.shape[2]
    result = np.empty((n, oh, ow, out), dtype=np.float32)
    for g in range(groups):
        cols = windows[..., g * cin : (g + 1) * cin, :, :].reshape(n * oh * ow, cin * k * k)
        kernel = weight[g * cout : (g + 1) * cout].reshape(cout, cin * k * k)
        result[..., g * cout : (g + 1) * cout] = (cols @ kernel.T).reshape(n, oh, ow, cout)
    result += bias
    return result
