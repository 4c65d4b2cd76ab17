"""Frames as terminal pictures, and the bridge that keeps only what is newest."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from probepilot import events as ev
from probepilot.events import Event
from probepilot_dashboard.bridge import LinkBridge
from probepilot_dashboard.render import (
    BLANK,
    LEVELS,
    UPPER_HALF,
    colormap,
    fit,
    halfblock_lines,
    level,
    picture,
    resample,
)

from .fakes import scripted_run, surface


def test_levelling_removes_tilt_and_line_offsets() -> None:
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:32, 0:32].astype(float)
    raw = 3.0 * x - 2.0 * y + rng.normal(0, 5.0, (32, 1))  # tilt plus a jump per line
    flat = level(raw)
    assert np.abs(flat).max() < 1e-9
    partial = raw.copy()
    partial[20:] = np.nan  # not scanned yet
    out = level(partial)
    assert np.isnan(out[20:]).all() and np.abs(out[:20]).max() < 1e-9


def test_colour_maps_run_dark_to_bright() -> None:
    for name in ("afmhot", "viridis", "gray"):
        table = colormap(name)
        assert table.shape == (LEVELS, 3)
        brightness = table.astype(int).sum(axis=1)
        assert brightness[0] < brightness[-1]
    with pytest.raises(ValueError, match="unknown colour map"):
        colormap("jet")


def test_fit_keeps_square_pixels_and_enlarges_by_whole_factors() -> None:
    assert fit((128, 128), 64, 32) == (64, 64)  # 64 cells wide, 32 tall at 2 px per cell
    assert fit((128, 128), 200, 32) == (64, 64)  # the height limits
    assert fit((32, 32), 100, 40) == (64, 64)  # x2, not x2.5
    assert fit((16, 64), 32, 40) == (8, 32)


def test_resample_averages_blocks_and_ignores_what_is_not_scanned() -> None:
    z = np.arange(16.0).reshape(4, 4)
    assert resample(z, 2, 2).tolist() == [[2.5, 4.5], [10.5, 12.5]]
    z[2:] = np.nan
    out = resample(z, 2, 2)
    assert out[0].tolist() == [2.5, 4.5] and np.isnan(out[1]).all()
    assert resample(np.ones((2, 2)), 4, 4).shape == (4, 4)


def test_half_blocks_carry_two_pixels_per_cell() -> None:
    rgb = picture(surface(32, 3), 16, 8)
    assert rgb.shape == (16, 16, 3)
    lines = halfblock_lines(rgb)
    assert len(lines) == 8
    for line in lines:
        assert "".join(s.text for s in line) == UPPER_HALF * 16
    first = lines[0][0].style
    assert first.color.triplet == tuple(rgb[0, 0]) and first.bgcolor.triplet == tuple(rgb[1, 0])
    half = np.full((32, 32), np.nan)
    half[:10] = surface(32, 3)[:10]
    rows = picture(half, 16, 8)
    assert (rows[-1] == BLANK).all() and not (rows[0] == BLANK).all()


def test_the_bridge_keeps_the_newest_frame_and_the_recent_ones() -> None:
    bridge = LinkBridge(keep=3)
    items = scripted_run(frames=5, pixels=16)
    for item in items:
        bridge(item)
    view = bridge.view()
    assert view.current is not None and view.current.number == 5 and view.current.complete
    assert list(view.recent) == [3, 4, 5]
    assert bridge.lines_seen == 5 * 16
    events = bridge.drain()
    assert [e.type for e in events] == [i.type for i in items if isinstance(i, Event)]
    assert bridge.drain() == []
    z = view.current.channel("Z")
    assert z is not None and np.isfinite(z).all()
    assert view.current.channel("nope", "backward") is not None  # falls back to the first


def test_a_rescanned_frame_starts_afresh() -> None:
    bridge = LinkBridge()
    lines = [i for i in scripted_run(frames=1, pixels=8) if hasattr(i, "row")]
    for line in lines[:5]:
        bridge(line)
    first = bridge.current
    bridge(lines[0])  # the driver failed and the session scans the same frame again
    assert bridge.current is not first and bridge.current.rows_done == 1


def test_the_bridge_takes_lines_from_another_thread_while_drained() -> None:
    bridge = LinkBridge()
    items = scripted_run(frames=4, pixels=32)
    done = threading.Event()

    def run() -> None:
        for item in items:
            bridge(item)
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    drained = []
    while not done.is_set() or bridge.pending():
        drained += bridge.drain(limit=7)
        bridge.view()
    thread.join()
    assert [e.seq for e in drained] == sorted(e.seq for e in drained)
    assert len(drained) == sum(isinstance(i, Event) for i in items)
    assert drained[-1].type == ev.STATE_CHANGED
