"""Continuous-presence canvases: the latest frame of each site scaled into its tile.

One `Canvas` per output size. It keeps its pixels between ticks and redraws a tile only when what
the tile shows has changed (a new frame, another site, another layout), so a room of still or stale
sites costs almost nothing. Runs in the room's video clock thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import av
import numpy as np

from . import _mix
from .labels import blend_label, label_position, placeholder, render_label

logger = logging.getLogger(__name__)

# I420 colours (Y, U, V)
BACKGROUND = (16, 128, 128)  # canvas behind and between tiles: black
WAITING = (48, 128, 128)  # a tile held for a site with no name to show: dark grey
HIGHLIGHT = (210, 16, 146)  # the active speaker's border: yellow


@dataclass(frozen=True)
class Placement:
    """What one tile shows.

    A frame scaled into the tile; or, without a frame, the placeholder of the site `name` (a
    site present without video) or a flat `colour` (an empty tile). A tile with a `name` carries
    the site's label; `highlight` draws the active speaker's border.
    """

    rect: tuple[int, int, int, int]
    frame: av.VideoFrame | None
    colour: tuple[int, int, int] = WAITING
    name: str | None = None
    highlight: bool = False


Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


def planes(frame: av.VideoFrame) -> Planes:
    """The Y, U and V planes of a frame as 2-D uint8 arrays (converted to I420 if needed)."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    out = []
    for plane in frame.planes:
        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
        out.append(rows[:, : plane.width])
    return out[0], out[1], out[2]


class Canvas:
    """An I420 canvas of a fixed size that tiles are composited into."""

    def __init__(self, width: int, height: int) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"canvas size must be even, not {width}x{height}")
        self.width = width
        self.height = height
        self._buffer = np.empty((height * 3 // 2, width), np.uint8)
        self.y = self._buffer[:height]
        chroma = self._buffer[height:].reshape(-1)
        quarter = width * height // 4
        self.u = chroma[:quarter].reshape(height // 2, width // 2)
        self.v = chroma[quarter:].reshape(height // 2, width // 2)
        self._fill((0, 0, width, height), BACKGROUND)
        self._shown: list[Placement] = []
        self.redrawn_tiles = 0

    def _fill(self, rect: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
        x, y, w, h = rect
        _mix.fill_plane(self.y, x, y, w, h, colour[0])
        cx, cy = x // 2, y // 2
        cw, ch = (x + w + 1) // 2 - cx, (y + h + 1) // 2 - cy
        _mix.fill_plane(self.u, cx, cy, cw, ch, colour[1])
        _mix.fill_plane(self.v, cx, cy, cw, ch, colour[2])

    def compose(
        self,
        placements: Sequence[Placement],
        plane_cache: dict[int, Planes] | None = None,
    ) -> None:
        """Draw the tiles that changed; `frame()` then gives the picture to encode.

        `plane_cache` (keyed by `id(frame)`, valid for one tick) lets canvases of several sizes
        share the plane extraction of the same source frame.
        """
        cache = plane_cache if plane_cache is not None else {}

        # a different set of rectangles means a new layout: clear and redraw everything
        if [p.rect for p in placements] != [p.rect for p in self._shown]:
            self._fill((0, 0, self.width, self.height), BACKGROUND)
            self._shown = []

        redrawn: list[tuple[int, int, int, int]] = []
        for i, placement in enumerate(placements):
            before = self._shown[i] if i < len(self._shown) else None
            # an overlay must be drawn again when a tile below it was
            covered = any(_intersect(placement.rect, rect) for rect in redrawn)
            if before is not None and _same(before, placement) and not covered:
                continue
            self._draw(placement, cache)
            redrawn.append(placement.rect)
            self.redrawn_tiles += 1
        self._shown = list(placements)

    def frame(self) -> av.VideoFrame:
        """A new frame holding the canvas as drawn; the encoder owns it from then on."""
        return av.VideoFrame.from_ndarray(self._buffer, format="yuv420p")

    def _draw(
        self,
        placement: Placement,
        cache: dict[int, Planes],
    ) -> None:
        frame = placement.frame
        x, y, w, h = placement.rect
        if frame is not None:
            key = id(frame)
            if key not in cache:
                cache[key] = planes(frame)
            sy, su, sv = cache[key]
            _mix.scale_into_tile(sy, su, sv, self.y, self.u, self.v, x, y, w, h, *BACKGROUND)
        elif placement.name is not None:
            # a site without video: its placeholder already shows its name
            py, pu, pv = placeholder(placement.name, w, h)
            self.y[y : y + h, x : x + w] = py
            self.u[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = pu
            self.v[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = pv
        else:
            self._fill(placement.rect, placement.colour)

        if frame is not None and placement.name is not None:
            label = render_label(placement.name, w, h)
            blend_label(label, self.y, self.u, self.v, *label_position(placement.rect, label))
        if placement.highlight:
            self._border(placement.rect, HIGHLIGHT)

    def _border(self, rect: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
        """A frame just inside `rect`, about 1/90 of its height thick (even, at least 2)."""
        x, y, w, h = rect
        thickness = max(2, 2 * round(h / 180))
        _mix.draw_border(self.y, self.u, self.v, x, y, w, h, thickness, *colour)


def _same(a: Placement, b: Placement) -> bool:
    """Whether two placements draw the same pixels (frames compared by identity)."""
    return (a.rect, a.colour, a.name, a.highlight) == (b.rect, b.colour, b.name, b.highlight) and (
        a.frame is b.frame
    )


def _intersect(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
