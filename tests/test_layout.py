"""Layouts: the shipped files, pixel rectangles, validation, auto choice and tile assignment."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcu.exceptions import LayoutError
from mcu.layout import (
    GRID_NAMES,
    Layout,
    Tile,
    assign,
    choose_layout,
    grid,
    load_layout,
    load_layouts,
    site_order,
)

LAYOUTS_DIR = Path(__file__).resolve().parents[1] / "layouts"
CANVASES = [(640, 360), (1280, 720), (960, 540)]
REQUIRED = {"1x1", "2x2", "3x3", "4x4", "1+5", "1+7"}


@pytest.fixture(scope="module")
def shipped() -> dict[str, Layout]:
    return load_layouts(LAYOUTS_DIR)


def coverage(layout: Layout, width: int, height: int) -> np.ndarray:
    """How many tiles cover each pixel, painted rectangle by rectangle."""
    count = np.zeros((height, width), dtype=np.int32)
    for tile in layout.tiles:
        x, y, w, h = tile.rect(width, height)
        count[y : y + h, x : x + w] += 1
    return count


def write(tmp_path: Path, text: str, name: str = "bad") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def tile_toml(x: float, y: float, w: float, h: float, order: int) -> str:
    return f"[[tile]]\nx = {x}\ny = {y}\nw = {w}\nh = {h}\norder = {order}\n"


# --- the shipped layouts ---


def test_required_layouts_are_shipped_with_descriptions(shipped: dict[str, Layout]) -> None:
    assert set(shipped) >= REQUIRED
    for name, layout in shipped.items():
        assert layout.name == name
        assert layout.description, name


def test_shipped_capacities(shipped: dict[str, Layout]) -> None:
    expected = {"1x1": 1, "2x2": 4, "3x3": 9, "4x4": 16, "1+5": 6, "1+7": 8}
    assert {name: shipped[name].capacity for name in expected} == expected


def test_shipped_tiles_are_inside_the_canvas_and_sorted(shipped: dict[str, Layout]) -> None:
    for name, layout in shipped.items():
        orders = [tile.order for tile in layout.tiles]
        assert orders == sorted(orders), name
        for tile in layout.tiles:
            assert tile.x >= 0 and tile.x + tile.w <= 1 + 1e-6, (name, tile)
            assert tile.y >= 0 and tile.y + tile.h <= 1 + 1e-6, (name, tile)


@pytest.mark.parametrize(("width", "height"), CANVASES)
def test_shipped_rects_are_even_inside_and_tile_the_canvas(
    shipped: dict[str, Layout], width: int, height: int
) -> None:
    for name, layout in shipped.items():
        for tile in layout.tiles:
            x, y, w, h = tile.rect(width, height)
            assert all(value % 2 == 0 for value in (x, y, w, h)), (name, tile)
            assert w >= 2 and h >= 2
            assert x >= 0 and y >= 0 and x + w <= width and y + h <= height, (name, tile)

        # every shipped layout covers the whole canvas: each pixel in exactly one tile
        count = coverage(layout, width, height)
        assert count.max() == 1, f"{name}: tiles overlap at {width}x{height}"
        assert count.min() == 1, f"{name}: gap at {width}x{height}"


def test_grid_rects_at_640x360(shipped: dict[str, Layout]) -> None:
    # 640 / 3 = 213.3 -> 214, 2 * 640 / 3 = 426.7 -> 426; 360 / 3 = 120
    rects = [tile.rect(640, 360) for tile in shipped["3x3"].tiles]
    assert rects[:3] == [(0, 0, 214, 120), (214, 0, 212, 120), (426, 0, 214, 120)]
    assert rects[8] == (426, 240, 214, 120)
    assert [tile.rect(640, 360) for tile in shipped["2x2"].tiles] == [
        (0, 0, 320, 180),
        (320, 0, 320, 180),
        (0, 180, 320, 180),
        (320, 180, 320, 180),
    ]


def test_large_tiles_at_1280x720(shipped: dict[str, Layout]) -> None:
    # 2/3 of 1280 is 853.3 -> 854; 2/3 of 720 is 480
    big_5 = shipped["1+5"].tiles[0]
    assert big_5.rect(1280, 720) == (0, 0, 854, 480)
    assert (big_5.w, big_5.h) == pytest.approx((2 / 3, 2 / 3))
    big_7 = shipped["1+7"].tiles[0]
    assert big_7.rect(1280, 720) == (0, 0, 960, 540)
    assert [tile.rect(1280, 720) for tile in shipped["1+7"].tiles[1:4]] == [
        (960, 0, 320, 180),
        (960, 180, 320, 180),
        (960, 360, 320, 180),
    ]
    # the other tiles of both layouts are all small and below or right of the big one
    for layout, small in ((shipped["1+5"], 1 / 3), (shipped["1+7"], 1 / 4)):
        big = layout.tiles[0]
        for tile in layout.tiles[1:]:
            assert (tile.w, tile.h) == pytest.approx((small, small))
            assert tile.x >= big.w - 1e-9 or tile.y >= big.h - 1e-9


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_shipped_grids_match_code_grids(shipped: dict[str, Layout], n: int) -> None:
    from_file = shipped[f"{n}x{n}"]
    built = grid(n)
    assert built.name == f"{n}x{n}"
    for width, height in CANVASES:
        assert [t.rect(width, height) for t in from_file.tiles] == [
            t.rect(width, height) for t in built.tiles
        ]


# --- rectangles ---


def test_tiny_tile_is_at_least_2x2_and_stays_inside() -> None:
    assert Tile(0.0, 0.0, 0.0001, 0.0001, 0).rect(640, 360) == (0, 0, 2, 2)
    assert Tile(0.9999, 0.9999, 0.0001, 0.0001, 0).rect(640, 360) == (638, 358, 2, 2)


def test_odd_canvas_keeps_rects_even_and_inside() -> None:
    x, y, w, h = Tile(0.5, 0.5, 0.5, 0.5, 0).rect(641, 361)
    # 0.5 * 641 = 320.5 -> 320; the right edge is the largest even column, 640
    assert (x, y, w, h) == (320, 180, 320, 180)


def test_shared_edge_written_two_ways_lands_on_one_pixel() -> None:
    # 0.501 of 1000 px is 501, exactly halfway between two even columns; the left tile's edge,
    # summed as 0 + 0.5009999999, falls just below it but must still meet the right tile
    left = Tile(0.0, 0.0, 0.5009999999, 1.0, 0).rect(1000, 100)
    right = Tile(0.501, 0.0, 0.499, 1.0, 1).rect(1000, 100)
    assert left == (0, 0, 502, 100)
    assert right == (502, 0, 498, 100)


def test_canvas_too_small() -> None:
    with pytest.raises(ValueError, match="1x360"):
        Tile(0, 0, 1, 1, 0).rect(1, 360)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 7),
    half_width=st.integers(8, 300),
    half_height=st.integers(8, 200),
)
def test_code_grids_tile_any_even_canvas(n: int, half_width: int, half_height: int) -> None:
    width, height = 2 * half_width, 2 * half_height
    count = coverage(grid(n), width, height)
    # tiles smaller than 2 px are widened, so tiny canvases with many tiles may overlap; the
    # canvases here give every tile at least 2 px
    assert count.min() == 1 and count.max() == 1


def test_grid_order_is_row_by_row() -> None:
    layout = grid(3)
    assert layout.capacity == 9
    assert [tile.order for tile in layout.tiles] == list(range(9))
    corners = [value for tile in layout.tiles[:4] for value in (tile.x, tile.y)]
    assert corners == pytest.approx([0, 0, 1 / 3, 0, 2 / 3, 0, 0, 1 / 3])
    with pytest.raises(ValueError):
        grid(0)


# --- validation ---


def test_valid_file_loads_with_tiles_sorted_by_order(tmp_path: Path) -> None:
    text = 'description = "two"\n' + tile_toml(0.5, 0, 0.5, 1, 0) + tile_toml(0, 0, 0.5, 1, 1)
    layout = load_layout(write(tmp_path, text, "halves"))
    assert layout.name == "halves"
    assert layout.description == "two"
    assert [(tile.x, tile.order) for tile in layout.tiles] == [(0.5, 0), (0.0, 1)]


def test_edge_within_tolerance_is_accepted(tmp_path: Path) -> None:
    layout = load_layout(write(tmp_path, tile_toml(0.5, 0, 0.5000005, 1, 0)))
    assert layout.tiles[0].rect(640, 360) == (320, 0, 320, 360)


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ('description = "x"\n', "tile", "at least one [[tile]]"),
        ('description = "x"\ntile = []\n', "tile", "at least one [[tile]]"),
        ("tile = 3\n", "tile", "[[tile]] tables"),
        ('colour = "red"\n' + tile_toml(0, 0, 1, 1, 0), "colour", "unknown key"),
        ("description = 5\n" + tile_toml(0, 0, 1, 1, 0), "description", "expected a string"),
        (
            tile_toml(0, 0, 0.5, 1, 0) + tile_toml(0.5, 0, 0.5, 1, 1) + "wdith = 0.5\n",
            "tile 2",
            "unknown key 'wdith'",
        ),
        (
            tile_toml(0, 0, 0.5, 1, 0) + "[[tile]]\nx = 0.5\ny = 0\nw = 0.5\norder = 1\n",
            "tile 2",
            "h: missing",
        ),
        (
            tile_toml(0, 0, 0.5, 1, 0).replace("w = 0.5", 'w = "half"'),
            "tile 1",
            "w: expected a number, got a string",
        ),
        (
            tile_toml(0, 0, 0.5, 1, 0).replace("x = 0", "x = true"),
            "tile 1",
            "x: expected a number, got a boolean",
        ),
        (tile_toml(0, 0, 0.5, 1, 0).replace("y = 0", "y = nan"), "tile 1", "finite"),
        (
            tile_toml(0, 0, 0.5, 1, 0).replace("order = 0", "order = 1.5"),
            "tile 1",
            "order: expected a non-negative integer",
        ),
        (
            tile_toml(0, 0, 0.5, 1, 0).replace("order = 0", "order = -1"),
            "tile 1",
            "order: expected a non-negative integer, got -1",
        ),
        (
            tile_toml(0, 0, 0.5, 0.5, 0) + tile_toml(0.6, 0, 0.5, 0.5, 1),
            "tile 2",
            "inside the canvas",
        ),
        (
            tile_toml(0, 0, 0.5, 0.5, 0) + tile_toml(0, 0.75, 0.5, 0.3, 1),
            "tile 2",
            "inside the canvas",
        ),
        (tile_toml(-0.1, 0, 0.5, 0.5, 0), "tile 1", "inside the canvas"),
        (tile_toml(0, 0, 0, 0.5, 0), "tile 1", "w and h above 0"),
        (tile_toml(0, 0, 0.5, -0.5, 0), "tile 1", "w and h above 0"),
        (
            tile_toml(0, 0, 0.5, 0.5, 0)
            + tile_toml(0.5, 0, 0.5, 0.5, 1)
            + tile_toml(0, 0.5, 0.5, 0.5, 1),
            "tile 3",
            "order 1 is also the order of tile 2",
        ),
        (
            tile_toml(0, 0, 0.5, 0.5, 0)
            + tile_toml(0.5, 0, 0.5, 0.5, 1)
            + tile_toml(0.25, 0.25, 0.5, 0.5, 2),
            "tile 3",
            "overlaps tile 1",
        ),
        ("[[tile]\nx = 0\n", "line 1, column", "expected valid TOML"),
        ("description = \n", "line 1, column", "expected valid TOML"),
    ],
)
def test_invalid_layout_names_file_tile_and_problem(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(LayoutError) as caught:
        load_layout(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {where}")
    assert problem in message


def test_overlap_reports_the_area(tmp_path: Path) -> None:
    # the two tiles share a 0.25 x 0.5 strip
    text = tile_toml(0, 0, 0.5, 0.5, 0) + tile_toml(0.25, 0, 0.5, 0.5, 1)
    with pytest.raises(LayoutError, match=r"tile 2: overlaps tile 1 \(0\.125 of the canvas\)"):
        load_layout(write(tmp_path, text))


def test_touching_tiles_and_tiny_overlap_are_accepted(tmp_path: Path) -> None:
    # an overlap of 1e-7 of the canvas is within the tolerance
    text = tile_toml(0, 0, 0.5000001, 1, 0) + tile_toml(0.5, 0, 0.5, 1, 1)
    assert load_layout(write(tmp_path, text)).capacity == 2


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(LayoutError, match=r"nope\.toml: \(file\): expected a readable file"):
        load_layout(missing)
    with pytest.raises(LayoutError, match="expected a directory of layout files"):
        load_layouts(tmp_path / "absent")


def test_load_layouts_names_by_stem_and_reports_a_bad_file(tmp_path: Path) -> None:
    write(tmp_path, tile_toml(0, 0, 1, 1, 0), "solo")
    write(
        tmp_path,
        'description = "halves"\n' + tile_toml(0, 0, 0.5, 1, 0) + tile_toml(0.5, 0, 0.5, 1, 1),
        "halves",
    )
    assert sorted(load_layouts(tmp_path)) == ["halves", "solo"]
    write(tmp_path, tile_toml(0, 0, 2, 1, 0), "wide")
    with pytest.raises(LayoutError, match=r"wide\.toml: tile 1"):
        load_layouts(tmp_path)


# --- choosing and assigning ---


@pytest.mark.parametrize("present", range(21))
@pytest.mark.parametrize("from_files", [True, False])
def test_auto_picks_the_smallest_grid_that_fits(
    shipped: dict[str, Layout], present: int, from_files: bool
) -> None:
    layouts = shipped if from_files else {}
    side = min(max(math.ceil(math.sqrt(present)), 1), 4)
    chosen = choose_layout(layouts, "auto", present)
    assert chosen.name == f"{side}x{side}"
    assert chosen.capacity == side * side
    if from_files:
        assert chosen is shipped[chosen.name]


def test_auto_uses_the_capacity_of_the_loaded_grids() -> None:
    # an operator's 2x2 file with only three tiles no longer fits four sites
    three = Layout("2x2", "three", grid(2).tiles[:3])
    layouts = {"1x1": grid(1), "2x2": three}
    assert choose_layout(layouts, "auto", 3) is three
    assert choose_layout(layouts, "auto", 4).name == "3x3"


def test_named_layout_and_unknown_name(shipped: dict[str, Layout]) -> None:
    assert choose_layout(shipped, "1+5", 2) is shipped["1+5"]
    assert choose_layout(shipped, "1+7", 30) is shipped["1+7"]
    with pytest.raises(LayoutError) as caught:
        choose_layout(shipped, "5x5", 3)
    message = str(caught.value)
    assert message.startswith("5x5.toml: ")
    assert "no such layout" in message and "1+5" in message and "'auto'" in message


def test_negative_present_is_a_bug() -> None:
    with pytest.raises(ValueError):
        choose_layout({}, "auto", -1)


def test_grid_names() -> None:
    assert GRID_NAMES == ("1x1", "2x2", "3x3", "4x4")


def test_assign_fills_tiles_in_order(tmp_path: Path) -> None:
    # tiles listed right-to-left in the file but ordered left-to-right
    text = tile_toml(0.5, 0, 0.5, 1, 1) + tile_toml(0, 0, 0.5, 1, 0)
    layout = load_layout(write(tmp_path, text, "pair"))
    pairs = assign(layout, ["chair"])
    assert [(tile.x, site) for tile, site in pairs] == [(0.0, "chair"), (0.5, None)]


def test_assign_more_sites_than_tiles() -> None:
    pairs = assign(grid(2), ["a", "b", "c", "d", "e", "f"])
    assert [site for _, site in pairs] == ["a", "b", "c", "d"]
    assert [tile.order for tile, _ in pairs] == [0, 1, 2, 3]


def test_assign_no_sites() -> None:
    assert [site for _, site in assign(grid(3), [])] == [None] * 9


@pytest.mark.parametrize(
    ("chair", "present", "expected"),
    [
        ("c", {"a", "b", "c", "d"}, ["c", "a", "b", "d"]),
        ("c", {"d", "a"}, ["a", "d"]),
        (None, {"d", "b"}, ["b", "d"]),
        ("a", {"a"}, ["a"]),
        ("a", set(), []),
        ("b", {"b", "x", "d"}, ["b", "d"]),
    ],
)
def test_site_order(chair: str | None, present: set[str], expected: list[str]) -> None:
    assert site_order(["a", "b", "c", "d"], chair, present) == expected


def test_site_order_accepts_any_collection() -> None:
    assert site_order(("x", "y", "z"), "z", ["y", "z"]) == ["z", "y"]
