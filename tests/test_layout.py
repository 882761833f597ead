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
    Layout,
    LayoutLibrary,
    Tile,
    grid,
    load_group,
    load_layout,
    load_layouts,
    load_library,
    place,
    site_order,
)

LAYOUTS_DIR = Path(__file__).resolve().parents[1] / "layouts"
CANVASES = [(640, 360), (1280, 720), (960, 540)]
REQUIRED = {"1x1", "2x2", "3x3", "4x4", "5x5", "1+5", "1+7", "1+9", "1+12", "2+8", "lecture",
            "pip", "presentation"}


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

        # tiles never overlap, but for an overlay (picture-in-picture) drawn on top
        flat = Layout(name, "", tuple(tile for tile in layout.tiles if not tile.overlay))
        count = coverage(flat, width, height)
        assert count.max() == 1, f"{name}: tiles overlap at {width}x{height}"
        # a layout whose tiles add up to the whole canvas leaves no gap anywhere
        if math.isclose(sum(tile.w * tile.h for tile in flat.tiles), 1.0, abs_tol=1e-6):
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


# --- groups, choosing and placing ---


@pytest.fixture(scope="module")
def library() -> LayoutLibrary:
    return load_library(LAYOUTS_DIR)


@pytest.mark.parametrize(
    ("present", "expected"),
    [(0, "1x1"), (1, "1x1"), (2, "2x2"), (4, "2x2"), (5, "1+5"), (6, "1+5"), (7, "3x3"),
     (9, "3x3"), (10, "4x4"), (16, "4x4"), (17, "1+12"), (64, "1+12"), (700, "1+12")],
)
def test_auto_group_follows_the_site_count(library: LayoutLibrary, present: int,
                                           expected: str) -> None:
    chosen = library.choose("auto", present)
    assert chosen is library.layouts[expected]


def test_named_layout_and_unknown_name(library: LayoutLibrary) -> None:
    assert library.choose("1+5", 2) is library.layouts["1+5"]
    assert library.choose("1+7", 30) is library.layouts["1+7"]
    with pytest.raises(LayoutError) as caught:
        library.choose("6x6", 3)
    message = str(caught.value)
    assert message.startswith("6x6.toml: ")
    assert "no such layout" in message and "1+5" in message and "auto" in message


def group_file(tmp_path: Path, body: str, name: str = "g") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("body", "where", "problem"),
    [
        ('[sites]\n"1" = "1x1"\n', "sites", "last entry to be open-ended"),
        ('[sites]\n"2+" = "1x1"\n', "sites.'2+'", "go on from 1, got 2"),
        ('[sites]\n"1" = "1x1"\n"3+" = "2x2"\n', "sites.'3+'", "go on from 2, got 3"),
        ('[sites]\n"1-x" = "1x1"\n', "sites.'1-x'", "a site count 'N'"),
        ('[sites]\n"1+" = 4\n', "sites.'1+'", "expected a layout name, got"),
        ('[sites]\n"1+" = "1x1"\n"2" = "2x2"\n', "sites.'2'", "after an open-ended"),
        ('[sites]\n"1-0" = "1x1"\n', "sites.'1-0'", "N <= M"),
        ("colour = 1\n", "colour", "unknown key"),
        ("description = 'x'\n", "sites", "expected a [sites] table"),
    ],
)
def test_bad_group_names_file_and_entry(tmp_path: Path, body: str, where: str,
                                        problem: str) -> None:
    path = group_file(tmp_path, body)
    with pytest.raises(LayoutError) as caught:
        load_group(path)
    assert str(caught.value).startswith(f"{path}: {where}: ")
    assert problem in str(caught.value)


def test_a_group_naming_a_missing_layout_is_refused(tmp_path: Path) -> None:
    write(tmp_path, tile_toml(0, 0, 1, 1, 0), "solo")
    (tmp_path / "groups").mkdir()
    group_file(tmp_path / "groups", '[sites]\n"1" = "solo"\n"2+" = "2x2"\n')
    with pytest.raises(LayoutError, match=r"groups/g\.toml: sites for 2: no layout named '2x2'"):
        load_library(tmp_path)


def test_group_steps_pick_by_count(tmp_path: Path) -> None:
    group = load_group(group_file(tmp_path, '[sites]\n"1" = "a"\n"2-3" = "b"\n"4+" = "c"\n'))
    assert [group.layout_for(n) for n in range(7)] == ["a", "a", "b", "b", "c", "c", "c"]


def test_roles_are_checked(tmp_path: Path) -> None:
    bad = tile_toml(0, 0, 1, 1, 0) .replace("order = 0", 'order = 0\nrole = "boss"')
    with pytest.raises(LayoutError, match=r"tile 1: role: expected 'speaker', 'chair' or "):
        load_layout(write(tmp_path, bad, "boss"))
    good = tile_toml(0, 0, 1, 1, 0).replace("order = 0", 'order = 0\nrole = "pin:ha-giang"')
    assert load_layout(write(tmp_path, good, "pinned")).tiles[0].role == "pin:ha-giang"


def test_only_overlays_may_cover_earlier_tiles(tmp_path: Path) -> None:
    base = tile_toml(0, 0, 1, 1, 0)
    inset = tile_toml(0.7, 0.7, 0.25, 0.25, 1)
    with pytest.raises(LayoutError, match="tile 2: overlaps tile 1"):
        load_layout(write(tmp_path, base + inset, "plain"))
    overlay = inset.replace("order = 1", "order = 1\noverlay = true")
    assert load_layout(write(tmp_path, base + overlay, "pip")).tiles[1].overlay
    under = tile_toml(0, 0, 1, 1, 1) + tile_toml(0.7, 0.7, 0.25, 0.25, 0).replace(
        "order = 0", "order = 0\noverlay = true")
    with pytest.raises(LayoutError, match="overlaps"):
        load_layout(write(tmp_path, under, "under"))


ROOM = ["hq", "a", "b", "c", "d", "e", "f", "g"]


def test_place_fills_in_room_order_when_everyone_fits() -> None:
    assert place(grid(2), ROOM[:3]) == ["hq", "a", "b", None]
    assert place(grid(3), []) == [None] * 9


def test_place_fills_tiles_by_order(tmp_path: Path) -> None:
    # tiles listed right-to-left in the file but ordered left-to-right
    layout = load_layout(write(tmp_path, tile_toml(0.5, 0, 0.5, 1, 1) + tile_toml(0, 0, 0.5, 1, 0),
                               "pair"))
    assert layout.tiles[0].x == 0.0
    assert place(layout, ["hq"]) == ["hq", None]


def test_speaker_tile_shows_the_floor_and_swaps_with_the_previous(
        library: LayoutLibrary) -> None:
    layout = library.layouts["1+5"]
    first = place(layout, ROOM[:5], chair="hq")
    assert first == ["hq", "a", "b", "c", "d", None]
    previous = {site: index for index, site in enumerate(first) if site}
    second = place(layout, ROOM[:5], chair="hq", floor="c", recent=["c"], previous=previous)
    # c moves up, hq takes c's old tile; a, b and d stay where they were
    assert second == ["c", "a", "b", "hq", "d", None]


def test_voice_switched_tiles_show_the_most_recent_speakers(library: LayoutLibrary) -> None:
    layout = library.layouts["1+5"]
    present = ROOM  # eight sites, six tiles
    shown = place(layout, present, chair="hq", floor="g", recent=["g", "e", "f"])
    assert shown[0] == "g"
    # five small tiles: the recent speakers e and f, then the others in room order
    assert set(shown[1:]) == {"e", "f", "hq", "a", "b"}
    again = place(layout, present, chair="hq", floor="g", recent=["g", "e", "f", "c"],
                  previous={s: i for i, s in enumerate(shown) if s})
    assert set(again[1:]) == {"e", "f", "c", "hq", "a"}
    # only b made way for c; everyone else kept their tile
    moved = [i for i in range(6) if shown[i] != again[i]]
    assert len(moved) == 1 and shown[moved[0]] == "b" and again[moved[0]] == "c"


def test_chair_pin_and_operator_pins(library: LayoutLibrary, tmp_path: Path) -> None:
    lecture = library.layouts["lecture"]
    assert place(lecture, ["a", "b", "hq"], chair="hq", floor="b")[0] == "hq"
    # with the chair away its large tile is not left empty
    assert place(lecture, ["a", "b"], chair="hq")[:3] == ["a", "b", None]
    pinned = load_layout(write(tmp_path, tile_toml(0, 0, 0.5, 1, 0).replace(
        "order = 0", 'order = 0\nrole = "pin:b"') + tile_toml(0.5, 0, 0.5, 1, 1), "pinned"))
    assert place(pinned, ["a", "b"]) == ["b", "a"]
    # an operator pin beats the tile's role and the floor
    assert place(library.layouts["1+5"], ROOM[:3], floor="a", pins={0: "b"})[:3] == [
        "b", "hq", "a"]
    # a pin to an absent site leaves the tile to the usual rules
    assert place(grid(2), ["hq", "a"], pins={1: "zz"}) == ["hq", "a", None, None]


def test_speaker_tile_without_a_floor_shows_the_latest_speaker_then_the_chair(
        library: LayoutLibrary) -> None:
    layout = library.layouts["1+7"]
    assert place(layout, ["a", "hq", "b"], chair="hq", recent=["b"])[0] == "b"
    assert place(layout, ["a", "hq", "b"], chair="hq")[0] == "hq"
    assert place(layout, ["a", "b"], chair="hq")[0] == "a"


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
