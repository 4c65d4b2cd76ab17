"""``probepilot train classifier``: train the tip-state network on simulated frames (torch).

Deterministic from ``--seed`` (same seed, threads and versions: the same weights): the
examples come from seeded simulated microscopes (:mod:`probepilot_analyzers.classifier_data`),
torch is seeded, batches and flips come from seeded generators. The result is written as the
numpy weights file the analyzer reads (:mod:`probepilot_analyzers._cnn`), batch normalisation
folded into the convolutions, with a ``meta`` record of how it was made.

The shipped ``weights/tip_state.npz`` was made with the defaults::

    probepilot train classifier --out plugins/probepilot_analyzers/weights/tip_state.npz

(the figures and the time it took are in its ``meta`` record and in the README).

Torch is imported only inside the functions here, so registering the command costs nothing;
without torch the command says to ``pip install 'probepilot[ml]'``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from probepilot.errors import PluginError
from probepilot.progress import ProgressCallback, Update
from probepilot_analyzers._tip_views import VIEWS
from probepilot_analyzers.classifier_cli import EPOCHS, FRAMES
from probepilot_analyzers.tip_state import CLASSES

#: The convolutions: (channels, kernel, stride, max pooling after). A strided 4 x 4 first
#: layer halves the resolution at once: the full-resolution activations of a 3 x 3 first layer
#: made training on two CPU cores several times slower for no measured gain. The views share
#: the convolutions (grouped ones, a branch per view, are several times slower in torch).
LAYERS = ((24, 4, 2, False), (32, 3, 1, True), (48, 3, 1, True), (64, 3, 1, False))
HIDDEN = 64
BATCH = 64


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise PluginError(
            "probepilot train classifier needs torch",
            hint="pip install 'probepilot[ml]' -c constraints.txt",
        ) from None
    return torch


def build_model(torch: Any) -> Any:
    """The network :class:`probepilot_analyzers._cnn.Network` evaluates: convolutions
    (:data:`LAYERS`) with batch normalisation and ReLU, max pooling, global average and
    maximum pooling, two dense layers."""
    nn = torch.nn

    class TipNet(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            layers: list[Any] = []
            cin = len(VIEWS)
            for cout, kernel, stride, pool in LAYERS:
                layers += [
                    nn.Conv2d(cin, cout, kernel, stride, padding=(kernel - 1) // 2, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(),
                ]
                if pool:
                    layers.append(nn.MaxPool2d(2))
                cin = cout
            self.features = nn.Sequential(*layers)
            self.fc1 = nn.Linear(2 * cin, HIDDEN)
            self.drop = nn.Dropout(0.2)
            self.fc2 = nn.Linear(HIDDEN, len(CLASSES))

        def forward(self, x: Any) -> Any:
            h = self.features(x)
            pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
            return self.fc2(self.drop(torch.relu(self.fc1(pooled))))

    return TipNet()


def export(model: Any, path: str | Path, meta: dict[str, object]) -> Path:
    """Write ``model`` as the numpy weights file, batch normalisation folded in."""
    torch = _torch()
    model.eval()
    arrays: dict[str, np.ndarray] = {}
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.features if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for i, (conv, bn) in enumerate(zip(convs, norms, strict=True)):
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = conv.weight * scale[:, None, None, None]
            bias = bn.bias - bn.running_mean * scale
            arrays[f"conv{i}.weight"] = weight.numpy().astype(np.float32)
            arrays[f"conv{i}.bias"] = bias.numpy().astype(np.float32)
        for name in ("fc1", "fc2"):
            layer = getattr(model, name)
            arrays[f"{name}.weight"] = layer.weight.numpy().astype(np.float32)
            arrays[f"{name}.bias"] = layer.bias.numpy().astype(np.float32)
    arrays["stride"] = np.array([layer[2] for layer in LAYERS], dtype=np.int8)
    arrays["pool"] = np.array([layer[3] for layer in LAYERS], dtype=np.int8)
    arrays["groups"] = np.array(1)
    arrays["classes"] = np.array(CLASSES)
    arrays["views"] = np.array(VIEWS)
    arrays["meta"] = np.array(json.dumps(meta))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        np.savez_compressed(f, **arrays)
    return out


def _flip(torch: Any, x: Any, generator: Any) -> Any:
    """Random mirror along the lines and reversal of the line order, per example: both keep
    what a scan line is (the views and the autocorrelations mirror with the frame)."""
    n = x.shape[0]
    flip_x = torch.rand(n, generator=generator) < 0.5
    flip_y = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip_x[:, None, None, None], x.flip(3), x)
    return torch.where(flip_y[:, None, None, None], x.flip(2), x)


def train(
    *,
    seed: int = 0,
    frames: int = FRAMES,
    epochs: int = EPOCHS,
    threads: int = 2,
    out: str | Path = "tip_state.npz",
    echo: Callable[[str], None] = print,
    data: tuple[np.ndarray, np.ndarray] | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, object]:
    """Generate ``frames`` examples, train for ``epochs``, write the weights to ``out``.

    ``data`` (inputs, labels) replaces the generated examples (for experiments). Returns the
    ``meta`` record written with the weights. ``progress`` is told of every simulated frame
    (``simulating frames``), every batch (an epoch in progress) and every epoch (``epoch``,
    with loss, train and validation accuracy); it does not change the result. ``echo`` gets
    the closing line.
    """
    torch = _torch()
    from probepilot_analyzers import classifier_data as cd

    started = time.perf_counter()
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    if data is None:
        simulated: Callable[[int, int], None] | None = None
        if progress is not None:
            simulated = _frames_progress(progress, started)
            progress(Update("simulating frames", 0, frames))
        x_all, y_all = cd.dataset(cd.TRAINING, frames, seed, simulated)
    else:
        x_all, y_all = data
    generated = time.perf_counter() - started
    # A tenth of the examples is kept aside to report accuracy while training: every tenth
    # run of four (examples cycle through the four starting states, so all four are in it).
    held = (np.arange(len(y_all)) // 4) % 10 == 9
    x_train, y_train = torch.from_numpy(x_all[~held]), torch.from_numpy(y_all[~held])
    x_val, y_val = torch.from_numpy(x_all[held]), torch.from_numpy(y_all[held])
    # Channels-last tensors take torch's fast CPU convolutions (about twice as fast here).
    model = build_model(torch).to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    steps = max(1, epochs * math.ceil(len(y_train) / BATCH))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    generator = torch.Generator().manual_seed(seed)
    val_acc = float("nan")
    batches = math.ceil(len(y_train) / BATCH)
    if progress is not None:
        progress(Update("epoch", 0, epochs))
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=generator)
        total, correct, loss_sum = 0, 0, 0.0
        for start in range(0, len(order), BATCH):
            index = order[start : start + BATCH]
            if len(index) < 2:
                continue  # batch normalisation needs two examples
            xb = _flip(torch, x_train[index], generator)
            xb = xb.contiguous(memory_format=torch.channels_last)
            yb = y_train[index]
            logits = model(xb)
            loss = loss_fn(logits, yb)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            loss_sum += float(loss.detach()) * len(index)
            correct += int((logits.argmax(1) == yb).sum())
            total += len(index)
            if progress is not None:
                figures = {"loss": f"{loss_sum / total:.3f}", "train acc": f"{correct / total:.1%}"}
                partial = (start // BATCH + 1) / batches
                progress(Update("epoch", epoch, epochs, figures, partial=min(partial, 0.999)))
        val_acc = evaluate(torch, model, x_val, y_val)
        if progress is not None:
            figures = {
                "loss": f"{loss_sum / max(total, 1):.3f}",
                "train acc": f"{correct / max(total, 1):.1%}",
                "val acc": "-" if math.isnan(val_acc) else f"{val_acc:.1%}",
            }
            progress(Update("epoch", epoch + 1, epochs, figures))
    meta: dict[str, object] = {
        "seed": seed,
        "frames": len(y_all),
        "epochs": epochs,
        "threads": threads,
        "validation_accuracy": round(val_acc, 4),
        "seconds_simulating": round(generated, 1),
        "seconds_total": round(time.perf_counter() - started, 1),
        "torch": str(torch.__version__),
        "command": f"probepilot train classifier --seed {seed} --frames {frames} "
        f"--epochs {epochs} --threads {threads}",
    }
    path = export(model, out, meta)
    echo(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB) in {meta['seconds_total']} s")
    return meta


def _frames_progress(progress: ProgressCallback, started: float) -> Callable[[int, int], None]:
    def simulated(done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - started, 1e-9)
        progress(Update("simulating frames", done, total, {"rate": f"{rate:.1f} frames/s"}))

    return simulated


def evaluate(torch: Any, model: Any, x: Any, y: Any) -> float:
    """Accuracy of ``model`` on (``x``, ``y``); nan for no examples."""
    if len(y) == 0:
        return float("nan")
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(x[i : i + 256]).argmax(1) for i in range(0, len(y), 256)])
    return float((predicted == y).float().mean())
