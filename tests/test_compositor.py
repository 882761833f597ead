"""The canvas: frames land in their tiles, empty tiles are flat, unchanged tiles are not redrawn."""

from __future__ import annotations

import av
import numpy as np
import pytest

from mcu.compositor import BACKGROUND, WAITING, Canvas, Placement

from .analysis import region_colour


def flat(yuv: tuple[int, int, int], width: int, height: int) -> av.VideoFrame:
    image = np.empty((height * 3 // 2, width), np.uint8)
    image[:height] = yuv[0]
    chroma = image[height:].reshape(-1)
    chroma[: chroma.size // 2] = yuv[1]
    chroma[chroma.size // 2:] = yuv[2]
    return av.VideoFrame.from_ndarray(image, format="yuv420p")


LEFT, RIGHT = (0, 0, 160, 180), (160, 0, 160, 180)


def test_frames_and_empty_tiles_land_where_placed() -> None:
    canvas = Canvas(320, 180)
    red = flat((82, 90, 240), 160, 90)
    canvas.compose([Placement(LEFT, red), Placement(RIGHT, None)])
    frame = canvas.frame()
    assert region_colour(frame, LEFT) == (82.0, 90.0, 240.0)
    assert region_colour(frame, RIGHT) == tuple(float(c) for c in WAITING)

    # a 16:9 source in a 160x180 tile is letterboxed: bars above and below
    image = frame.to_ndarray(format="yuv420p")
    assert image[10, 80] == BACKGROUND[0]
    assert image[90, 80] == 82


def test_only_changed_tiles_are_redrawn() -> None:
    canvas = Canvas(320, 180)
    a, b = flat((100, 128, 128), 64, 64), flat((200, 128, 128), 64, 64)
    canvas.compose([Placement(LEFT, a), Placement(RIGHT, b)])
    assert canvas.redrawn_tiles == 2
    canvas.compose([Placement(LEFT, a), Placement(RIGHT, b)])
    assert canvas.redrawn_tiles == 2
    c = flat((50, 128, 128), 64, 64)
    canvas.compose([Placement(LEFT, a), Placement(RIGHT, c)])
    frame = canvas.frame()
    assert canvas.redrawn_tiles == 3
    assert region_colour(frame, RIGHT)[0] == 50.0

    # a new layout clears the canvas: nothing of the old tiles survives
    canvas.compose([Placement((0, 0, 320, 180), None, BACKGROUND)])
    frame = canvas.frame()
    assert (frame.to_ndarray(format="yuv420p")[:180] == BACKGROUND[0]).all()


def test_frames_of_other_pixel_formats_are_converted() -> None:
    canvas = Canvas(320, 180)
    rgb = av.VideoFrame.from_ndarray(np.full((90, 160, 3), (255, 255, 255), np.uint8),
                                     format="rgb24")
    canvas.compose([Placement(LEFT, rgb)])
    frame = canvas.frame()
    assert region_colour(frame, LEFT)[0] == pytest.approx(235, abs=2)


def test_odd_canvas_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="even"):
        Canvas(321, 180)


def test_every_shipped_layout_composes_for_one_to_n_sites() -> None:
    from pathlib import Path

    from mcu.layout import load_library, place

    from .analysis import region_colour

    library = load_library(Path(__file__).resolve().parents[1] / "layouts")
    sources = [flat((20 + 8 * i, 128, 128), 64, 36) for i in range(30)]
    for name in library.names:
        for present in range(1, library.choose(name, 1).capacity + 3):
            layout = library.choose(name, present)
            sites = [f"s{i}" for i in range(present)]
            shown = place(layout, sites, chair="s0")
            canvas = Canvas(640, 360)
            placements = [
                Placement(tile.rect(640, 360), sources[int(site[1:])] if site else None,
                          BACKGROUND)
                for tile, site in zip(layout.tiles, shown, strict=True)
            ]
            canvas.compose(placements)
            frame = canvas.frame()
            assert sum(site is not None for site in shown) == min(present, layout.capacity)
            for tile, site in zip(layout.tiles, shown, strict=True):
                if site is None or tile.overlay:
                    continue
                covered = any(t.overlay and t.order > tile.order for t in layout.tiles)
                rect = tile.rect(640, 360)
                if covered:
                    continue  # an inset sits on this tile's centre
                luma = region_colour(frame, rect, keep=0.2)[0]
                assert abs(luma - (20 + 8 * int(site[1:]))) <= 1, (name, present, site)
