"""Layout previews: one PNG per shipped layout plus a contact sheet, tiles where the layout says."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mcu.layout import Layout, Tile, load_layouts
from mcu.preview import BACKGROUND, NUMBER, ROLE_FILL, TILE_FILL, draw_preview, write_previews

LAYOUTS_DIR = Path(__file__).resolve().parents[1] / "layouts"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def layouts() -> dict[str, Layout]:
    found = load_layouts(LAYOUTS_DIR)
    assert found, f"no layouts in {LAYOUTS_DIR}"
    return found


def centre_box(rect: tuple[int, int, int, int], keep: float = 0.4) -> tuple[int, int, int, int]:
    """The central `keep` fraction of a rect, as (x0, y0, x1, y1)."""
    x, y, w, h = rect
    return (x + round(w * (1 - keep) / 2), y + round(h * (1 - keep) / 2),
            x + round(w * (1 + keep) / 2), y + round(h * (1 + keep) / 2))


def covers(rect: tuple[int, int, int, int], box: tuple[int, int, int, int]) -> bool:
    x, y, w, h = rect
    return x < box[2] and box[0] < x + w and y < box[3] and box[1] < y + h


def test_previews_are_written_for_every_layout(tmp_path: Path,
                                               layouts: dict[str, Layout]) -> None:
    paths = write_previews(layouts, tmp_path / "previews", width=480, height=270)
    expected = {f"{name}.png" for name in layouts} | {"index.png"}
    assert {path.name for path in paths} == expected
    assert {path.name for path in (tmp_path / "previews").iterdir()} == expected

    for path in paths:
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG"
            if path.name != "index.png":
                assert image.size == (480, 270)
            else:
                # the sheet holds a thumbnail of each layout: far from empty
                pixels = np.asarray(image.convert("RGB"))
                assert (pixels != BACKGROUND).any(axis=2).sum() > len(layouts) * 100 * 50


def test_tile_centres_have_the_tile_fill(layouts: dict[str, Layout]) -> None:
    for name, layout in layouts.items():
        pixels = np.asarray(draw_preview(layout, 640, 360))
        assert pixels.shape == (360, 640, 3), name
        rects = [tile.rect(640, 360) for tile in layout.tiles]

        for index, tile in enumerate(layout.tiles):
            box = centre_box(rects[index])
            # an overlay drawn later may cover the centre of this tile
            if any(covers(rect, box) for rect in rects[index + 1:]):
                continue
            area = pixels[box[1]:box[3], box[0]:box[2]].reshape(-1, 3)
            colours = Counter(map(tuple, area.tolist()))
            fill = ROLE_FILL if getattr(tile, "role", None) is not None else TILE_FILL
            assert colours.most_common(1)[0][0] == fill, (name, index)
            # the fill-order number is drawn there too
            assert colours[NUMBER] > 0, (name, index)

        # outside every tile only the background shows
        covered = np.zeros((360, 640), bool)
        for x, y, w, h in rects:
            covered[y:y + h, x:x + w] = True
        assert (pixels[~covered] == BACKGROUND).all(), name


def test_numbers_follow_the_fill_order() -> None:
    # two tiles of equal size: the one filled first reads "1", whichever side it is on
    layout = Layout("pair", "", (Tile(0.5, 0.0, 0.5, 1.0, 0), Tile(0.0, 0.0, 0.5, 1.0, 1)))
    pixels = np.asarray(draw_preview(layout, 400, 200)).astype(int)
    right, left = pixels[:, 200:], pixels[:, :200]
    ink = [int((half == NUMBER).all(axis=2).sum()) for half in (right, left)]
    # "1" takes less ink than "2"
    assert 0 < ink[0] < ink[1]


@dataclass(frozen=True)
class BareTile:
    """A tile as it was before roles existed: no `role` attribute at all."""

    x: float
    y: float
    w: float
    h: float
    order: int

    def rect(self, width: int, height: int) -> tuple[int, int, int, int]:
        return Tile(self.x, self.y, self.w, self.h, self.order).rect(width, height)


def test_tiles_without_a_role_attribute_are_drawn() -> None:
    layout = Layout("bare", "", (BareTile(0.0, 0.0, 1.0, 1.0, 0),))  # type: ignore[arg-type]
    pixels = np.asarray(draw_preview(layout, 160, 90))
    assert tuple(pixels[20, 20]) == TILE_FILL


def test_reserved_or_unsafe_names_are_refused(tmp_path: Path,
                                              layouts: dict[str, Layout]) -> None:
    layout = next(iter(layouts.values()))
    for name in ("index", "../escape", ""):
        with pytest.raises(ValueError, match="file name"):
            write_previews({name: layout}, tmp_path)
    assert not any(tmp_path.iterdir())


def test_no_layouts_still_gives_an_index(tmp_path: Path) -> None:
    assert write_previews({}, tmp_path) == [tmp_path / "index.png"]
    with Image.open(tmp_path / "index.png") as image:
        assert image.format == "PNG"
