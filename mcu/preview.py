"""Pictures of layouts: each tile drawn with its fill-order number, for docs and operators."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

from PIL import Image, ImageDraw

from mcu.labels import fit_text, font
from mcu.layout import Layout, Tile

logger = logging.getLogger(__name__)

Rgb = tuple[int, int, int]

BACKGROUND: Rgb = (22, 24, 29)
TILE_FILL: Rgb = (52, 84, 122)
ROLE_FILL: Rgb = (122, 86, 34)  # tiles reserved for the speaker, the chair or a pinned site
BORDER: Rgb = (196, 206, 222)
NUMBER: Rgb = (244, 246, 250)
CAPTION: Rgb = (214, 222, 236)

INDEX_NAME = "index"
THUMBNAIL = (256, 144)
_SHEET_GAP = 12
_SHEET_CAPTION = 26


def tile_fill(tile: Tile) -> Rgb:
    """The fill colour of a tile in a preview: tiles with a role stand out."""
    return ROLE_FILL if getattr(tile, "role", None) is not None else TILE_FILL


def tile_caption(number: int, tile: Tile) -> str:
    """The small caption of a tile: its fill-order number, and its role when it has one."""
    role = getattr(tile, "role", None)
    return f"{number}" if role is None else f"{number} · {role}"


def draw_preview(layout: Layout, width: int = 640, height: int = 360) -> Image.Image:
    """`layout` drawn on a `width` x `height` RGB image.

    Each tile is a filled rectangle with a border, its fill-order number (1 is filled first)
    large in the middle and a caption in its top-left corner. Tiles are drawn in fill order, so
    an overlay (picture-in-picture) lands over the tiles it covers, as on the canvas.
    """
    if width < 2 or height < 2:
        raise ValueError(f"preview too small: {width}x{height}")
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)

    for number, tile in enumerate(layout.tiles, 1):
        x, y, w, h = tile.rect(width, height)
        border = max(1, min(w, h) // 90)
        draw.rectangle((x, y, x + w - 1, y + h - 1), fill=tile_fill(tile), outline=BORDER,
                       width=border)

        # the number: about half the tile's height, narrower tiles get a smaller one
        size = max(6, int(min(h * 0.45, w * 0.5 / max(1, len(str(number))))))
        draw.text((x + w / 2, y + h / 2), str(number), font=font(size), fill=NUMBER,
                  anchor="mm")

        # the caption, only where there is room for it
        caption_size = min(max(h // 10, 9), 18)
        inset = border + max(2, caption_size // 3)
        if h >= 5 * caption_size and w >= 4 * caption_size:
            caption = fit_text(tile_caption(number, tile), caption_size, w - 2 * inset)
            draw.text((x + inset, y + inset), caption, font=font(caption_size), fill=CAPTION)
    return image


def contact_sheet(layouts: Mapping[str, Layout]) -> Image.Image:
    """Small previews of all `layouts`, in name order, each with its name underneath."""
    names = sorted(layouts)
    columns = max(1, math.ceil(math.sqrt(len(names))))
    rows = max(1, math.ceil(len(names) / columns))
    cell_w, cell_h = THUMBNAIL[0], THUMBNAIL[1] + _SHEET_CAPTION
    sheet = Image.new(
        "RGB",
        (columns * cell_w + (columns + 1) * _SHEET_GAP, rows * cell_h + (rows + 1) * _SHEET_GAP),
        BACKGROUND,
    )
    draw = ImageDraw.Draw(sheet)
    caption_font = font(14)
    if not names:
        draw.text((_SHEET_GAP, _SHEET_GAP), "no layouts", font=caption_font, fill=CAPTION)
        return sheet

    for index, name in enumerate(names):
        row, column = divmod(index, columns)
        left = _SHEET_GAP + column * (cell_w + _SHEET_GAP)
        top = _SHEET_GAP + row * (cell_h + _SHEET_GAP)
        sheet.paste(draw_preview(layouts[name], *THUMBNAIL), (left, top))
        tiles = layouts[name].capacity
        caption = fit_text(f"{name} · {tiles} tile{'s' if tiles != 1 else ''}", 14, cell_w)
        draw.text((left, top + THUMBNAIL[1] + 6), caption, font=caption_font, fill=CAPTION)
    return sheet


def write_previews(
    layouts: Mapping[str, Layout],
    directory: Path,
    width: int = 640,
    height: int = 360,
) -> list[Path]:
    """Write `<name>.png` for each layout and `index.png`, a sheet of them all; return the paths.

    Layout names must be plain file names and must not be "index".
    """
    for name in layouts:
        if name == INDEX_NAME or not name or Path(name).name != name or name in (".", ".."):
            raise ValueError(f"layout name not usable as a file name: {name!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    written = []
    for name in sorted(layouts):
        path = directory / f"{name}.png"
        draw_preview(layouts[name], width, height).save(path, format="PNG")
        written.append(path)
    index = directory / f"{INDEX_NAME}.png"
    contact_sheet(layouts).save(index, format="PNG")
    written.append(index)
    logger.info("layout previews written: dir=%s layouts=%d", directory, len(layouts))
    return written
