"""Region search: the masked grid, the next region, damage radii, the conditioning spot."""

from __future__ import annotations

import pytest

from probepilot.model import Dip, Finding, KeepImaging, Pulse, ScanArea
from probepilot.regions import Cell, RegionMap, conditioning_spot, damage_radius


def grid() -> RegionMap:
    # 200 nm of range, 20 nm frames, 10 nm margins: 9 x 9 cells centred on zero.
    return RegionMap((200e-9, 200e-9), 20e-9)


def test_the_grid_covers_the_range_inside_its_margins() -> None:
    g = grid()
    assert (g.nx, g.ny) == (9, 9)
    assert g.xs[0] == pytest.approx(-80e-9) and g.xs[-1] == pytest.approx(80e-9)
    assert g.free == 81 and g.counts()["free"] == 81
    assert g.cell_of(0.0, 0.0) == (4, 4)
    assert g.cell_of(95e-9, 0.0) is None


def test_the_first_region_is_the_centre_then_neighbours_of_the_tip() -> None:
    g = grid()
    first = g.next_region((0.0, 0.0), 64)
    assert first.area is not None and first.area.centre == (0.0, 0.0)
    assert first.area.size == (20e-9, 20e-9) and first.area.pixels == 64
    g.mark(first.area, Cell.IMAGED)
    second = g.next_region((0.0, 0.0), 64).area
    assert second is not None
    assert max(abs(second.centre[0]), abs(second.centre[1])) == pytest.approx(20e-9)
    # With the tip far off to one side, a cell between the tip and the centre wins.
    far = g.next_region((80e-9, 80e-9), 64).area
    assert far is not None and far.centre[0] > 0 and far.centre[1] > 0


def test_imaged_never_downgrades_damaged_or_rough() -> None:
    g = grid()
    area = ScanArea((0.0, 0.0), (20e-9, 20e-9), 64, 64)
    g.mark(area, Cell.ROUGH)
    g.mark(area, Cell.IMAGED)
    assert g.cells[4, 4] == Cell.ROUGH


def test_damage_masks_every_cell_within_the_radius() -> None:
    g = grid()
    # A spot on the corner of four cells with a small radius touches exactly those four.
    assert g.mark_damaged(10e-9, 10e-9, 1e-9) == 4
    assert g.mark_damaged(10e-9, 10e-9, 1e-9) == 0  # already damaged
    # A larger radius reaches the next ring.
    assert g.mark_damaged(-40e-9, -40e-9, 15e-9) == 9


def test_damage_radius_grows_with_the_action() -> None:
    assert damage_radius(Pulse(2.5, 0.2)) < damage_radius(Pulse(-8.0, 0.2))
    assert damage_radius(Dip(0.8e-9)) < damage_radius(Dip(5e-9))
    assert damage_radius(Dip(5e-9)) == pytest.approx(9.6e-9)
    assert damage_radius(KeepImaging()) == 0.0


def test_a_rough_frame_masks_its_cell() -> None:
    g = grid()
    area = ScanArea((20e-9, 0.0), (20e-9, 20e-9), 64, 64)
    rough = Finding("roughness", "roughness", 1.0, {"status": "ok", "fit_to_image": 0.0})
    g.note_findings(area, [rough])
    assert g.cells[4, 5] == Cell.ROUGH
    unsure = Finding("roughness", "roughness", 0.2, {"status": "ok", "fit_to_image": 0.0})
    g.note_findings(ScanArea((0.0, 0.0), (20e-9, 20e-9), 64, 64), [unsure])
    assert g.cells[4, 4] == Cell.FREE


def test_the_range_used_up_asks_for_a_coarse_move_and_then_starts_afresh() -> None:
    g = RegionMap((60e-9, 60e-9), 20e-9)
    assert g.free == 4
    for _ in range(4):
        choice = g.next_region((0.0, 0.0), 32)
        assert choice.area is not None
        g.mark(choice.area, Cell.IMAGED)
    used = g.next_region((0.0, 0.0), 32)
    assert used.area is None and "all 4 cells" in used.reason
    g.after_coarse_move()
    assert g.free == 4 and g.coarse_moves == 1


def test_conditioning_goes_to_the_largest_clean_square() -> None:
    area = ScanArea((5e-9, 5e-9), (20e-9, 20e-9), 64, 64)
    small = Finding(
        "roughness",
        "roughness",
        1.0,
        {"status": "ok", "fit_to_condition": 1.0, "clean_square": 3e-9, "clean_x": 1e-9},
    )
    big = Finding(
        "roughness",
        "roughness",
        1.0,
        {
            "status": "ok",
            "fit_to_condition": 1.0,
            "clean_square": 8e-9,
            "clean_x": 2e-9,
            "clean_y": -3e-9,
        },
    )
    assert conditioning_spot([small, big], area) == (2e-9, -3e-9)
    unfit = Finding("roughness", "roughness", 1.0, {"status": "ok", "fit_to_condition": 0.0})
    assert conditioning_spot([unfit], area) == (5e-9, 5e-9)  # the last frame's centre
    assert conditioning_spot([], None) is None
