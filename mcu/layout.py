"""Layouts: where each site's picture goes on the composite canvas, and who gets which tile.

A layout is a set of tiles given in fractions of the canvas, so one file serves every profile's
canvas size. The functions here are pure: no I/O besides reading layout files, no asyncio.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcu.config import ID_PATTERN, kind_of, loads_toml, read_text
from mcu.exceptions import LayoutError

logger = logging.getLogger(__name__)

# tolerance on tile edges, as a fraction of the canvas side
EPSILON = 1e-6
_EDGE_DIGITS = 6

_TILE_KEYS = ("x", "y", "w", "h", "order", "role", "overlay")
_REQUIRED_TILE_KEYS = ("x", "y", "w", "h", "order")
_FILE_KEYS = ("description", "tile")
_GROUP_KEYS = ("description", "sites")

# what a tile with a role shows; a tile without one is filled in room order or by recent speech
SPEAKER = "speaker"
CHAIR = "chair"
PIN = "pin:"
ROLE_EXPECTED = "'speaker', 'chair' or 'pin:<site id>'"


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
    role: str | None = None
    overlay: bool = False  # drawn over the tiles of lower order it covers (picture-in-picture)

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
    for key in _REQUIRED_TILE_KEYS:
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

    role = raw.get("role")
    if role is not None and not _valid_role(role):
        shown = repr(role) if isinstance(role, str) else kind_of(role)
        raise fail(where, f"role: expected {ROLE_EXPECTED}, got {shown}")

    overlay = raw.get("overlay", False)
    if not isinstance(overlay, bool):
        raise fail(where, f"overlay: expected true or false, got {kind_of(overlay)}")

    tile = Tile(fractions["x"], fractions["y"], fractions["w"], fractions["h"], order, role,
                overlay)
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
            # an overlay may cover tiles drawn before it (lower order), nothing else may overlap
            top, below = (tile, other) if tile.order > other.order else (other, tile)
            if shared > EPSILON and not (top.overlay and not below.overlay):
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


def _valid_role(role: object) -> bool:
    if not isinstance(role, str):
        return False
    if role in (SPEAKER, CHAIR):
        return True
    return role.startswith(PIN) and ID_PATTERN.fullmatch(role[len(PIN):]) is not None


@dataclass(frozen=True)
class LayoutGroup:
    """Layouts chosen by how many sites are present (like FreeSWITCH's layout groups).

    `steps` are (fewest, most or None for no limit, layout name), contiguous from one site up.
    """

    name: str
    description: str
    steps: tuple[tuple[int, int | None, str], ...]

    def layout_for(self, present: int) -> str:
        for _fewest, most, layout in self.steps:
            if most is None or present <= most:
                return layout
        return self.steps[-1][2]


_RANGE = re.compile(r"(\d+)(?:-(\d+)|(\+))?")


def load_group(path: Path) -> LayoutGroup:
    """Read and check one layout group file; its name is the file's stem."""
    file = str(path)

    def fail(where: str, problem: str) -> LayoutError:
        return LayoutError(file, where, problem)

    data = loads_toml(read_text(Path(path), fail), fail)
    for key in data:
        if key not in _GROUP_KEYS:
            raise fail(key, f"unknown key; expected one of: {', '.join(_GROUP_KEYS)}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise fail("description", f"expected a string, got {kind_of(description)}")
    sites = data.get("sites")
    if not isinstance(sites, dict) or not sites:
        raise fail("sites", 'expected a [sites] table such as "1" = "1x1", "2-4" = "2x2"')

    steps: list[tuple[int, int | None, str]] = []
    expected_next = 1
    for key, layout in sites.items():
        where = f"sites.{key!r}"
        match = _RANGE.fullmatch(key)
        if match is None:
            raise fail(where, "expected a site count 'N', a range 'N-M' or an open end 'N+'")
        fewest = int(match.group(1))
        most = None if match.group(3) else int(match.group(2) or fewest)
        if fewest != expected_next:
            raise fail(where, f"expected the counts to go on from {expected_next}, got {fewest}")
        if most is not None and most < fewest:
            raise fail(where, f"expected N-M with N <= M, got {key}")
        if not isinstance(layout, str):
            raise fail(where, f"expected a layout name, got {kind_of(layout)}")
        if steps and steps[-1][1] is None:
            raise fail(where, "comes after an open-ended 'N+' entry")
        steps.append((fewest, most, layout))
        expected_next = (most or fewest) + 1
    if steps[-1][1] is not None:
        raise fail("sites", "expected the last entry to be open-ended ('N+')")
    return LayoutGroup(Path(path).stem, description.strip(), tuple(steps))


@dataclass(frozen=True)
class LayoutLibrary:
    """Every layout and layout group an operator may choose by name."""

    layouts: Mapping[str, Layout]
    groups: Mapping[str, LayoutGroup]

    @property
    def names(self) -> list[str]:
        return sorted({*self.layouts, *self.groups})

    def choose(self, name: str, present: int) -> Layout:
        """The layout `name` stands for with `present` sites: a layout, or a group's pick."""
        group = self.groups.get(name)
        if group is not None:
            name = group.layout_for(present)
        layout = self.layouts.get(name)
        if layout is None:
            raise LayoutError(f"{name}.toml", "(file)",
                              f"no such layout; expected one of: {', '.join(self.names)}")
        return layout


def load_library(directory: Path) -> LayoutLibrary:
    """The layouts of `directory` and the groups of `directory/groups`, cross-checked."""
    layouts = load_layouts(directory)
    group_dir = Path(directory) / "groups"
    groups = {
        path.stem: load_group(path) for path in sorted(group_dir.glob("*.toml"))
    } if group_dir.is_dir() else {}
    for group in groups.values():
        for fewest, _most, layout in group.steps:
            if layout not in layouts:
                raise LayoutError(group_dir / f"{group.name}.toml", f"sites for {fewest}",
                                  f"no layout named {layout!r} in {directory}")
    clash = sorted(set(layouts) & set(groups))
    if clash:
        raise LayoutError(group_dir, clash[0], "a group may not share its name with a layout")
    return LayoutLibrary(layouts, groups)


def place(
    layout: Layout,
    present: Sequence[str],
    *,
    chair: str | None = None,
    floor: str | None = None,
    recent: Sequence[str] = (),
    pins: Mapping[int, str] | None = None,
    previous: Mapping[str, int] | None = None,
) -> list[str | None]:
    """Which site each tile of `layout` shows (by tile index; None for an empty tile).

    `present` is in room order (chair first, then config order). Operator `pins` (tile index →
    site) come first, then the tiles' roles (`pin:<site>`, `chair`, `speaker` — the floor holder,
    else the latest speaker, else the chair, else the first present). The other tiles show the
    remaining sites: all of them in room order when they fit, else the most recent speakers.
    A site shown before keeps its tile (`previous`: site → tile index) when that tile is still
    free, so a floor change swaps two tiles instead of shifting every site along.
    """
    here = set(present)
    shown: list[str | None] = [None] * len(layout.tiles)
    placed: set[str] = set()

    def put(index: int, site: str | None) -> None:
        if site is not None and site in here and site not in placed and shown[index] is None:
            shown[index] = site
            placed.add(site)

    for index, site in sorted((pins or {}).items()):
        if 0 <= index < len(shown):
            put(index, site)
    for index, tile in enumerate(layout.tiles):
        if tile.role is not None and tile.role.startswith(PIN):
            put(index, tile.role[len(PIN):])
    for index, tile in enumerate(layout.tiles):
        if tile.role == CHAIR:
            put(index, chair)
    for index, tile in enumerate(layout.tiles):
        if tile.role == SPEAKER:
            for candidate in (floor, *recent, chair, *present):
                if candidate in here and candidate not in placed:
                    put(index, candidate)
                    break

    # the rest: in room order when everyone fits, else the most recent speakers first
    free = [index for index, site in enumerate(shown) if site is None]
    waiting = [site for site in present if site not in placed]
    if len(waiting) > len(free):
        rank = {site: position for position, site in enumerate(recent)}
        waiting = sorted(waiting, key=lambda site: rank.get(site, len(rank)))[: len(free)]
        chosen = set(waiting)
        waiting = [site for site in present if site in chosen]
    keep = previous or {}
    for site in waiting:
        kept = keep.get(site)
        if kept is not None and kept in free and shown[kept] is None:
            put(kept, site)
    for site in waiting:
        if site not in placed:
            put(next(i for i in free if shown[i] is None), site)
    return shown


def site_order(
    config_order: Sequence[str], chair: str | None, present: Collection[str]
) -> list[str]:
    """The present sites in tile order: the chair first, then the others in config order."""
    others = [site for site in config_order if site in present and site != chair]
    if chair is not None and chair in present:
        return [chair, *others]
    return others
