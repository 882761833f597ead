"""Layouts: where each site's picture goes on the composite canvas, and who gets which tile.

A layout is a set of tiles given in fractions of the canvas, so one file serves every profile's
canvas size. The functions here are pure: no I/O besides reading layout files, no asyncio.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcu.config import AUTO_LAYOUT, kind_of, loads_toml, read_text
from mcu.exceptions import LayoutError

logger = logging.getLogger(__name__)

GRID_NAMES = ("1x1", "2x2", "3x3", "4x4")

# tolerance on tile edges, as a fraction of the canvas side
EPSILON = 1e-6
_EDGE_DIGITS = 6

_TILE_KEYS = ("x", "y", "w", "h", "order")
_FILE_KEYS = ("description", "tile")

# builds the error for a place in the file being read: fail(where, problem)
_Fail = Callable[[str, str], LayoutError]


def _even(value: float) -> int:
    """The even integer nearest to `value` (halves go up)."""
    return 2 * math.floor(value / 2 + 0.5)


def _span(start: float, end: float, size: int) -> tuple[int, int]:
    """Even pixel edges of the fractional span [start, end] on a side of `size` pixels."""
    # snap the fraction first so edges shared by neighbours, written or summed slightly
    # differently, land on the same pixel
    limit = size - size % 2
    low = min(max(_even(round(start, _EDGE_DIGITS) * size), 0), limit - 2)
    high = min(max(_even(round(end, _EDGE_DIGITS) * size), low + 2), limit)
    return low, high


@dataclass(frozen=True)
class Tile:
    """One picture slot: position and size as fractions of the canvas, and its fill rank."""

    x: float
    y: float
    w: float
    h: float
    order: int

    def rect(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x, y, width, height) in pixels on a `width` x `height` canvas, all even, at least 2.

        Each edge is rounded on its own from the fractional edge, so tiles that touch in the
        layout touch on the canvas, with neither a gap nor an overlap.
        """
        if width < 2 or height < 2:
            raise ValueError(f"canvas too small for a tile: {width}x{height}")
        left, right = _span(self.x, self.x + self.w, width)
        top, bottom = _span(self.y, self.y + self.h, height)
        return left, top, right - left, bottom - top


@dataclass(frozen=True)
class Layout:
    """A named set of tiles, sorted by the order in which sites fill them."""

    name: str
    description: str
    tiles: tuple[Tile, ...]

    @property
    def capacity(self) -> int:
        """How many sites the layout shows."""
        return len(self.tiles)


def load_layout(path: Path) -> Layout:
    """Read and check one layout file; its name is the file's stem."""
    file = str(path)

    def fail(where: str, problem: str) -> LayoutError:
        return LayoutError(file, where, problem)

    data = loads_toml(read_text(Path(path), fail), fail)
    return _parse(Path(path).stem, data, fail)


def load_layouts(directory: Path) -> dict[str, Layout]:
    """Every `*.toml` layout in `directory`, keyed by name."""
    if not Path(directory).is_dir():
        raise LayoutError(directory, "(directory)", "expected a directory of layout files")
    layouts = {path.stem: load_layout(path) for path in sorted(Path(directory).glob("*.toml"))}
    logger.debug("layouts loaded: dir=%s names=%s", directory, sorted(layouts))
    return layouts


def _parse(name: str, data: dict[str, Any], fail: _Fail) -> Layout:
    for key in data:
        if key not in _FILE_KEYS:
            raise fail(key, f"unknown key; expected one of: {', '.join(_FILE_KEYS)}")

    description = data.get("description", "")
    if not isinstance(description, str):
        raise fail("description", f"expected a string, got {kind_of(description)}")

    raw_tiles = data.get("tile")
    if raw_tiles is None or raw_tiles == []:
        raise fail("tile", "expected at least one [[tile]] table")
    if not isinstance(raw_tiles, list) or not all(isinstance(raw, dict) for raw in raw_tiles):
        raise fail("tile", "expected [[tile]] tables")

    # tiles are numbered from 1 in the order the file lists them
    tiles = [_tile(raw, f"tile {number}", fail) for number, raw in enumerate(raw_tiles, 1)]
    _check_tiles(tiles, fail)
    return Layout(name, description.strip(), tuple(sorted(tiles, key=lambda tile: tile.order)))


def _tile(raw: dict[str, Any], where: str, fail: _Fail) -> Tile:
    for key in raw:
        if key not in _TILE_KEYS:
            raise fail(where, f"unknown key {key!r}; expected one of: {', '.join(_TILE_KEYS)}")
    for key in _TILE_KEYS:
        if key not in raw:
            raise fail(where, f"{key}: missing")

    fractions: dict[str, float] = {}
    for key in ("x", "y", "w", "h"):
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(where, f"{key}: expected a number, got {kind_of(value)}")
        if not math.isfinite(value):
            raise fail(where, f"{key}: expected a finite number, got {value}")
        fractions[key] = float(value)

    order = raw["order"]
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        shown = order if isinstance(order, int) else kind_of(order)
        raise fail(where, f"order: expected a non-negative integer, got {shown}")

    tile = Tile(fractions["x"], fractions["y"], fractions["w"], fractions["h"], order)
    if tile.w <= 0 or tile.h <= 0:
        raise fail(where, f"expected w and h above 0, got w={tile.w:g} h={tile.h:g}")
    if tile.x < 0 or tile.y < 0 or tile.x + tile.w > 1 + EPSILON or tile.y + tile.h > 1 + EPSILON:
        raise fail(
            where,
            f"expected the tile inside the canvas (0 <= x, y and x + w, y + h <= 1), "
            f"got x={tile.x:g} y={tile.y:g} w={tile.w:g} h={tile.h:g}",
        )
    return tile


def _overlap(a: Tile, b: Tile) -> float:
    """Area two tiles share, as a fraction of the canvas."""
    across = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    down = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    return max(across, 0.0) * max(down, 0.0)


def _check_tiles(tiles: Sequence[Tile], fail: _Fail) -> None:
    first_with_order: dict[int, int] = {}
    for number, tile in enumerate(tiles, 1):
        if tile.order in first_with_order:
            raise fail(
                f"tile {number}",
                f"order {tile.order} is also the order of tile {first_with_order[tile.order]}",
            )
        first_with_order[tile.order] = number
        for other_number, other in enumerate(tiles[: number - 1], 1):
            shared = _overlap(tile, other)
            if shared > EPSILON:
                raise fail(
                    f"tile {number}", f"overlaps tile {other_number} ({shared:.4g} of the canvas)"
                )


@functools.cache
def grid(n: int) -> Layout:
    """An n x n grid of equal tiles filled row by row, built without a file."""
    if n < 1:
        raise ValueError(f"grid size must be at least 1, got {n}")
    tiles = tuple(
        Tile(column / n, row / n, 1 / n, 1 / n, row * n + column)
        for row in range(n)
        for column in range(n)
    )
    return Layout(f"{n}x{n}", f"{n * n} equal tiles, {n} per row", tiles)


def choose_layout(layouts: Mapping[str, Layout], name: str, present: int) -> Layout:
    """The layout to show: `name`, or for "auto" the smallest grid that holds `present` sites.

    The grids come from `layouts` when loaded from files, else they are built in code. With more
    sites than the largest grid holds, the largest grid is used and the rest are not shown.
    """
    if present < 0:
        raise ValueError(f"present must not be negative, got {present}")
    if name != AUTO_LAYOUT:
        layout = layouts.get(name)
        if layout is None:
            known = ", ".join(sorted(layouts)) or "none"
            raise LayoutError(
                f"{name}.toml",
                "(file)",
                f"no such layout; expected {AUTO_LAYOUT!r} or one of: {known}",
            )
        return layout

    grids = [layouts.get(grid_name) or grid(n) for n, grid_name in enumerate(GRID_NAMES, 1)]
    return next((layout for layout in grids if layout.capacity >= present), grids[-1])


def assign(layout: Layout, site_ids: Sequence[str]) -> list[tuple[Tile, str | None]]:
    """Pair tiles, in order, with sites in room order; spare tiles get None, extra sites nothing."""
    return [
        (tile, site_ids[index] if index < len(site_ids) else None)
        for index, tile in enumerate(layout.tiles)
    ]


def site_order(
    config_order: Sequence[str], chair: str | None, present: Collection[str]
) -> list[str]:
    """The present sites in tile order: the chair first, then the others in config order."""
    others = [site for site in config_order if site in present and site != chair]
    if chair is not None and chair in present:
        return [chair, *others]
    return others
