"""An independent peer: the MIT client ``nanonisTCP`` drives the virtual Nanonis and gets correct
values. It has no timeouts, so every exchange runs in a thread with a deadline.

Known quirk of the peer (not of the server): its error parser skips the first four characters of
an error description (it reads an extra int32 before the text), so messages are compared
without them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nanonis_helpers import in_thread, virtual_nanonis

from probepilot.store import read_sxm
from probepilot_nanonis.server import ServerThread

nanonisTCP = pytest.importorskip("nanonisTCP")
from nanonisTCP import nanonisTCP as Client  # noqa: E402
from nanonisTCP.AutoApproach import AutoApproach  # noqa: E402
from nanonisTCP.Bias import Bias  # noqa: E402
from nanonisTCP.BiasSpectr import BiasSpectr  # noqa: E402
from nanonisTCP.Current import Current  # noqa: E402
from nanonisTCP.FolMe import FolMe  # noqa: E402
from nanonisTCP.Motor import Motor  # noqa: E402
from nanonisTCP.Piezo import Piezo  # noqa: E402
from nanonisTCP.Scan import Scan  # noqa: E402
from nanonisTCP.Signals import Signals  # noqa: E402
from nanonisTCP.TipShaper import TipShaper  # noqa: E402
from nanonisTCP.ZController import ZController  # noqa: E402

DEADLINE = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    # Simulated time passes at 2x real time, so a scan takes a moment and WaitEndOfScan waits.
    with virtual_nanonis(tmp_path_factory.mktemp("scans"), seed=7, time_scale=2.0) as server:
        yield server


@pytest.fixture
def client(server: ServerThread) -> Iterator[Any]:
    c = in_thread(lambda: Client("127.0.0.1", server.ports[0], max_buf_size=1 << 16), DEADLINE)
    yield c
    c.close_connection()


def peer(work: Any) -> Any:
    return in_thread(work, DEADLINE)


def test_bias_set_get_and_the_error_path(client: Any) -> None:
    bias = Bias(client)
    peer(lambda: bias.Set(0.375))
    assert peer(bias.Get) == 0.375
    with pytest.raises(Exception) as caught:  # nanonisTCP raises plain Exception
        peer(lambda: bias.Set(25.0))
    assert "25" in str(caught.value) and "outside" in str(caught.value)
    assert peer(bias.Get) == 0.375  # the refused value changed nothing
    peer(lambda: bias.Set(1.0))


def test_z_controller_setpoint_withdraw_and_current(client: Any) -> None:
    z = ZController(client)
    peer(lambda: z.SetpntSet(50e-12))
    assert peer(z.SetpntGet) == pytest.approx(50e-12, rel=1e-6)
    assert peer(z.OnOffGet) == 1
    assert peer(lambda: Current(client).Get()) == pytest.approx(50e-12, rel=1e-6)
    z_tunnelling = peer(z.ZPosGet)
    peer(lambda: z.Withdraw(1, 5000))
    assert peer(z.OnOffGet) == 0
    assert peer(z.ZPosGet) > z_tunnelling
    assert peer(lambda: Current(client).Get()) == 0.0
    auto = AutoApproach(client)
    peer(auto.Open)
    peer(lambda: auto.OnOffSet(1))
    deadline_polls = 200
    while peer(auto.OnOffGet) and deadline_polls:
        deadline_polls -= 1
    assert peer(z.OnOffGet) == 1
    peer(lambda: z.SetpntSet(100e-12))


def test_follow_me_moves_and_its_limits(client: Any) -> None:
    folme = FolMe(client)
    peer(lambda: folme.XYPosSet(20e-9, -15e-9, True))
    x, y = peer(lambda: folme.XYPosGet(True))
    assert (x, y) == pytest.approx((20e-9, -15e-9), rel=1e-12)
    with pytest.raises(Exception, match="piezo range"):
        peer(lambda: folme.XYPosSet(5e-6, 0.0, True))
    assert peer(lambda: folme.XYPosGet(True)) == pytest.approx([20e-9, -15e-9], rel=1e-12)


def test_pulse_tip_shaper_motor_and_drift_compensation(client: Any) -> None:
    bias = Bias(client)
    before = peer(bias.Get)
    peer(lambda: bias.Pulse(0.05, 2.0, z_hold=1, rel_abs=2, wait_until_done=True))
    assert peer(bias.Get) == before
    shaper = TipShaper(client)
    peer(lambda: shaper.PropsSet(Tip_lift=-0.4e-9, Lift_height=0.4e-9))
    props = peer(shaper.PropsGet)
    assert props[3] == pytest.approx(-0.4e-9, rel=1e-6) and props[7] == pytest.approx(0.4e-9)
    peer(lambda: shaper.Start(1, 5000))
    assert peer(lambda: ZController(client).OnOffGet()) == 1  # feedback restored
    peer(lambda: Motor(client).StartMove("Z+", 2, True, 0))
    piezo = Piezo(client)
    peer(lambda: piezo.DriftCompSet(1, 2e-12, -1e-12, 0.0, 10.0))
    status, vx, vy, *_ = peer(piezo.DriftCompGet)
    assert status == 1 and (vx, vy) == pytest.approx((2e-12, -1e-12), rel=1e-6)
    assert peer(piezo.RangeGet) == pytest.approx([1e-6, 1e-6, 200e-9], rel=1e-6)


def test_scan_start_wait_and_grab_forward_and_backward(client: Any, server: ServerThread) -> None:
    scan, signals = Scan(client), Signals(client)
    names = peer(signals.NamesGet)
    z_index, current_index = names.index("Z (m)"), names.index("Current (A)")
    peer(lambda: scan.FrameSet(10e-9, 5e-9, 8e-9, 4e-9, 0))
    assert peer(scan.FrameGet) == pytest.approx([10e-9, 5e-9, 8e-9, 4e-9, 0.0], rel=1e-6)
    peer(lambda: scan.BufferSet([z_index, current_index], 33, 12))  # pixels: forced to 32
    assert peer(scan.BufferGet) == [2, [z_index, current_index], 32, 12]
    peer(lambda: scan.SpeedSet(fwd_line_time=0.01, bwd_line_time=0.01))
    assert peer(scan.SpeedGet)[2:4] == pytest.approx([0.01, 0.01], rel=1e-6)
    peer(lambda: scan.Action("start", "down"))
    assert peer(scan.StatusGet) is True
    timed_out, size, path = peer(lambda: scan.WaitEndOfScan(5000))
    assert not timed_out and size == len(path.encode()) and Path(path).is_file()
    assert peer(scan.StatusGet) is False

    frame = read_sxm(path)
    for direction, model in ((1, "forward"), (0, "backward")):
        name, data, scan_direction = peer(lambda d=direction: scan.FrameDataGrab(z_index, d))
        assert (name, scan_direction, data.shape) == ("Z (m)", "down", (12, 32))
        assert np.array_equal(data, getattr(frame.channels["Z"], model))
    name, current, _ = peer(lambda: scan.FrameDataGrab(current_index, 1))
    assert name == "Current (A)" and np.isfinite(current).all()
    # A channel outside the buffer: the zero-filled layout keeps the peer's parser on track.
    _, empty, _ = peer(lambda: scan.FrameDataGrab(3, 1))
    assert empty.shape == (0, 0)


def test_a_stopped_scan_returns_an_empty_path(client: Any) -> None:
    scan = Scan(client)
    peer(lambda: scan.BufferSet(pixels=16, lines=200))
    peer(lambda: scan.Action("start", "up"))
    peer(lambda: scan.Action("stop", "up"))
    timed_out, size, path = peer(lambda: scan.WaitEndOfScan(2000))
    assert (timed_out, size, path) == (False, 0, "")


def test_scan_props_and_bias_spectroscopy(client: Any) -> None:
    scan = Scan(client)
    peer(lambda: scan.PropsSet(continuous_scan=2, autosave=1, series_name="peer_", comment="hi"))
    continuous, _, autosave, series, comment, modules, _ = peer(scan.PropsGet)
    assert (continuous, autosave, series, comment, modules) == (0, 0, "peer_", "hi", [])
    spectr = BiasSpectr(client)
    result = peer(lambda: spectr.Start(1, ""))
    data = result["data_dict"]
    assert set(data) == {"Bias (V)", "Current (A)", "LI Demod 1 X (A)"}
    sweep = data["Bias (V)"]
    assert sweep.size == 256 and sweep[0] == pytest.approx(-1.0) and sweep[-1] == pytest.approx(1.0)
