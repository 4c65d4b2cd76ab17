"""The tip-state classifier: good, double, blunt or unstable, from one frame.

A small convolutional network (:mod:`probepilot_analyzers._cnn`) looks at six 64 x 64 views
of the frame (:mod:`probepilot_analyzers._tip_views`: the levelled overview, the line offsets,
a full-resolution detail, and three autocorrelations that show a ghost wherever it is). It was
trained on simulated frames with strong domain randomisation (surfaces, scan sizes and pixel
counts, noise, drift, plane tilt, line offsets, feedback lag, scan direction) by
``probepilot train classifier`` (:mod:`probepilot_analyzers.classifier_train`, needs torch);
using it needs only numpy and scipy and the weights shipped in ``weights/tip_state.npz``.

Unlike the physics-based detectors it also recognises a blunt tip (lost detail), which no
single-feature rule does; unlike them it cannot say where the second apex sits.
``benchmarks/bench_tip_state.py`` measures it against the ``double_tip`` detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from probepilot.errors import PluginError
from probepilot.model import Finding, Frame
from probepilot_analyzers._cnn import WEIGHTS, Network, WeightsError
from probepilot_analyzers._findings import finite, guarded
from probepilot_analyzers._image import prepare
from probepilot_analyzers._tip_views import VIEWS, views
from probepilot_analyzers.options import TipStateOptions

#: The classes, in the network's output order (the values of ``TipState`` they stand for).
CLASSES = ("good", "double", "blunt", "unstable")
#: The network needs this many lines and pixels (fewer would be mostly padding).
MIN_SIZE = 16


@lru_cache(maxsize=4)
def load_network(path: str | None = None) -> Network:
    """The network from ``path`` (default: the shipped weights), loaded once per path.

    :raises PluginError: when the file is missing or was not written for this classifier.
    """
    where = Path(path).expanduser() if path else WEIGHTS
    try:
        network = Network.load(where)
    except WeightsError as exc:
        raise PluginError(
            f"tip_state: {exc}",
            hint="run `probepilot train classifier` or reinstall probepilot",
        ) from None
    if network.classes != CLASSES or network.views != VIEWS:
        raise PluginError(
            f"tip_state: {where} was trained for classes {network.classes} and views "
            f"{network.views}, this version needs {CLASSES} and {VIEWS}",
            hint="retrain with `probepilot train classifier`",
        )
    return network


class TipStateAnalyzer:
    """``tip_state``: the tip's state and the probability of each.

    One finding of kind ``tip_state``: ``confidence`` is the largest class probability;
    ``values``: ``state`` (``good``, ``double``, ``blunt`` or ``unstable``), ``p_good``,
    ``p_double``, ``p_blunt``, ``p_unstable``, ``status`` (``"ok"``). A frame that cannot be
    analysed gives ``status`` ``"invalid"`` and confidence 0.
    """

    name = "tip_state"

    def __init__(self, options: TipStateOptions | None = None) -> None:
        self.options = options or TipStateOptions()
        self.network = load_network(self.options.weights)

    def analyze(self, frame: Frame, history: Sequence[Frame]) -> list[Finding]:
        return guarded(self.name, "tip_state", lambda: self._analyze(frame))

    def probabilities(self, frame: Frame) -> np.ndarray:
        """Class probabilities (in :data:`CLASSES` order) of one frame.

        :raises BadImage: when the frame cannot be analysed.
        """
        image = prepare(frame, self.options.channel, min_size=MIN_SIZE)
        return self.network.probabilities(views(image.data)[None])[0]

    def _analyze(self, frame: Frame) -> list[Finding]:
        p = self.probabilities(frame)
        if not np.all(np.isfinite(p)):
            raise ValueError("the network's output is not finite")
        best = int(np.argmax(p))
        state = CLASSES[best]
        values: dict[str, float | str] = {"status": "ok", "state": state}
        values.update({f"p_{c}": finite(p[i]) for i, c in enumerate(CLASSES)})
        others = ", ".join(f"{c} {p[i]:.2f}" for i, c in enumerate(CLASSES) if i != best)
        message = f"tip {state} (p {p[best]:.2f}; {others})"
        return [Finding(self.name, "tip_state", finite(p[best]), values, message=message)]
