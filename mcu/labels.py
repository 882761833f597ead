"""Site names on the canvas: name labels over tiles and placeholders for sites without video.

Everything is drawn with Pillow in RGB (plus an alpha mask where needed) and then converted to
I420 with the same BT.601 limited-range coefficients as the rest of the project. Text is drawn
with DejaVu, which covers every Vietnamese letter, stacked diacritics included.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

Plane = NDArray[np.uint8]

FONT_PACKAGE = "fonts-dejavu-core"
_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
    Path("/usr/local/share/fonts"),
)
_FONT_FILES = {False: "DejaVuSans.ttf", True: "DejaVuSans-Bold.ttf"}

ELLIPSIS = "…"

# letters reaching highest and lowest, so every line of one size gets the same height and baseline
_TALL_AND_DEEP = "ỄỮẬÅÉjgpqyỵ"

# labels: font height as a fraction of the tile height, and its bounds in pixels
LABEL_FONT_FRACTION = 1 / 14
LABEL_FONT_MIN = 10
LABEL_FONT_MAX = 28
LABEL_TEXT = (255, 255, 255)
LABEL_BOX = (12, 16, 24)
LABEL_BOX_OPACITY = 176  # of 255: dark enough for white text over a white picture

# placeholders
SLATE = (36, 44, 56)
PICTOGRAM = (112, 126, 146)
CAMERA_OFF = (214, 84, 72)
PLACEHOLDER_TEXT = (236, 240, 246)
PLACEHOLDER_FONT_MIN = 10
_SUPERSAMPLE = 2  # placeholders are drawn at twice the size, then reduced: smooth edges
_BOX_SUPERSAMPLE = 4


@functools.cache
def font_path(bold: bool = False) -> Path:
    """The DejaVu Sans file (bold or regular): known font folders first, then `fc-match`.

    Raises FileNotFoundError naming the Debian package when neither finds it.
    """
    name = _FONT_FILES[bold]
    for directory in _FONT_DIRS:
        candidate = directory / name
        if candidate.is_file():
            return candidate

    found = _fc_match(bold)
    if found is not None:
        return found
    raise FileNotFoundError(
        f"font {name} not found in {', '.join(str(d) for d in _FONT_DIRS)} nor by fc-match; "
        f"install the Debian package {FONT_PACKAGE}"
    )


def _fc_match(bold: bool) -> Path | None:
    """Ask fontconfig for DejaVu Sans; None unless it answers with DejaVu Sans itself."""
    program = shutil.which("fc-match")
    if program is None:
        return None
    pattern = "DejaVu Sans:style=Bold" if bold else "DejaVu Sans:style=Book"
    try:
        result = subprocess.run(
            [program, "--format=%{family}\n%{file}\n", pattern],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as error:
        logger.debug("fc-match failed: pattern=%r error=%s", pattern, error)
        return None

    # fontconfig always answers with some font: accept only the family asked for
    lines = result.stdout.splitlines()
    if len(lines) < 2 or "DejaVu Sans" not in lines[0].split(","):
        return None
    path = Path(lines[1])
    return path if path.is_file() else None


@functools.lru_cache(maxsize=128)
def font(size: int, bold: bool = True) -> ImageFont.FreeTypeFont:
    """DejaVu Sans at `size` pixels."""
    if size < 1:
        raise ValueError(f"font size must be at least 1 px, got {size}")
    return ImageFont.truetype(str(font_path(bold)), size)


@functools.lru_cache(maxsize=128)
def _line_extent(size: int, bold: bool) -> tuple[int, int]:
    """Top and bottom of a line of text at `size`, relative to where it is drawn."""
    _, top, _, bottom = font(size, bold).getbbox(_TALL_AND_DEEP)
    return int(top), int(bottom)


def text_width(text: str, size: int, bold: bool = True) -> int:
    """Width in pixels of `text` drawn at `size`, ink overhangs included."""
    if not text:
        return 0
    face = font(size, bold)
    left, _, right, _ = face.getbbox(text)
    return int(max(right, math.ceil(face.getlength(text))) - min(left, 0))


def text_bitmap(text: str, size: int, bold: bool = True) -> Plane:
    """`text` (NFC) drawn on one line at `size`: coverage 0..255, H x W.

    Lines of one size share their height and baseline, unless the text reaches beyond the
    tallest and deepest Vietnamese letters.
    """
    text = unicodedata.normalize("NFC", text)
    face = font(size, bold)
    top, bottom = _line_extent(size, bold)
    left = 0
    if text:
        box = face.getbbox(text)
        left = min(int(box[0]), 0)
        top, bottom = min(top, int(box[1])), max(bottom, int(box[3]))
    image = Image.new("L", (max(text_width(text, size, bold), 1), bottom - top), 0)
    ImageDraw.Draw(image).text((-left, -top), text, font=face, fill=255)
    return np.asarray(image, np.uint8)


def fit_text(text: str, size: int, max_width: int, bold: bool = True) -> str:
    """`text` if it fits in `max_width` pixels, else its longest prefix that fits with "…" added.

    Never cuts between a letter and its combining marks. Returns "…" alone when nothing else
    fits (it may itself be wider than `max_width`).
    """
    text = unicodedata.normalize("NFC", text)
    if text_width(text, size, bold) <= max_width:
        return text

    def shortened(length: int) -> str:
        while 0 < length < len(text) and unicodedata.combining(text[length]):
            length -= 1
        return text[:length].rstrip() + ELLIPSIS

    # binary search the longest prefix that fits
    low, high = 0, len(text) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if text_width(shortened(middle), size, bold) <= max_width:
            low = middle
        else:
            high = middle - 1
    return shortened(low)


def rgb_to_yuv(rgb: NDArray[np.uint8]) -> tuple[Plane, Plane, Plane]:
    """Full-resolution Y, U, V of an H x W x 3 RGB image, BT.601 limited range.

    In integers with rounding:
        Y = 16 + (66 R + 129 G + 25 B + 128) >> 8
        U = 128 + (-38 R - 74 G + 112 B + 128) >> 8
        V = 128 + (112 R - 94 G - 18 B + 128) >> 8
    so black is Y 16, white Y 235 and greys have U = V = 128.
    """
    r, g, b = (rgb[..., channel].astype(np.int32) for channel in range(3))
    y = 16 + ((66 * r + 129 * g + 25 * b + 128) >> 8)
    u = 128 + ((-38 * r - 74 * g + 112 * b + 128) >> 8)
    v = 128 + ((112 * r - 94 * g - 18 * b + 128) >> 8)
    return y.astype(np.uint8), u.astype(np.uint8), v.astype(np.uint8)


def _quads(plane: NDArray[np.int64]) -> NDArray[np.int64]:
    """Sum of each 2 x 2 block of an even-sized plane."""
    h, w = plane.shape
    summed: NDArray[np.int64] = plane.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3))
    return summed


def _halve(plane: NDArray[np.uint8]) -> Plane:
    """Mean of each 2 x 2 block, rounded."""
    return ((_quads(plane.astype(np.int64)) + 2) // 4).astype(np.uint8)


def _halve_weighted(plane: NDArray[np.uint8], weight: NDArray[np.uint8]) -> Plane:
    """Mean of each 2 x 2 block weighted by `weight`; neutral chroma where all weights are 0."""
    total = _quads(weight.astype(np.int64))
    weighted = _quads(plane.astype(np.int64) * weight)
    mean = (weighted + total // 2) // np.maximum(total, 1)
    return np.where(total > 0, mean, 128).astype(np.uint8)


def _even_up(value: float) -> int:
    return 2 * math.ceil(value / 2)


def _even_near(value: float) -> int:
    return 2 * math.floor(value / 2 + 0.5)


def _frozen(plane: NDArray[np.uint8]) -> Plane:
    """A C-contiguous read-only copy: cached overlays are shared and must not change."""
    out = np.ascontiguousarray(plane, np.uint8).copy()
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Label:
    """A site name ready to blend into an I420 canvas; even size, read-only planes.

    `alpha` is the coverage of the luma plane (0 transparent, 255 opaque) and `alpha_chroma`
    that of the chroma planes; `luma`, `u`, `v` are the overlay's own colour (not premultiplied).
    `text` is what is drawn: the name, possibly shortened with "…".
    """

    text: str
    width: int
    height: int
    alpha: Plane
    luma: Plane
    alpha_chroma: Plane
    u: Plane
    v: Plane


def label_font_size(tile_height: int) -> int:
    """Font height of a label: about 1/14 of the tile height, within [10, 28] px."""
    size = round(tile_height * LABEL_FONT_FRACTION)
    return min(max(size, LABEL_FONT_MIN), LABEL_FONT_MAX)


def label_margin(tile_height: int) -> int:
    """Gap, in pixels and even, between a label and the edges of its tile."""
    return max(2, _even_near(label_font_size(tile_height) / 3))


def render_label(text: str, tile_width: int, tile_height: int) -> Label:
    """The label of a site named `text` for a tile of this size; cached per (name, size).

    A blank name gives a fully transparent 2 x 2 label.
    """
    return _render_label(unicodedata.normalize("NFC", text).strip(), tile_width, tile_height)


@functools.lru_cache(maxsize=512)
def _render_label(text: str, tile_width: int, tile_height: int) -> Label:
    if tile_width < 2 or tile_height < 2:
        raise ValueError(f"tile too small for a label: {tile_width}x{tile_height}")
    if not text:
        clear, half = np.zeros((2, 2), np.uint8), np.zeros((1, 1), np.uint8)
        grey = np.full((1, 1), 128, np.uint8)
        return Label("", 2, 2, _frozen(clear), _frozen(clear), _frozen(half), _frozen(grey),
                     _frozen(grey))

    size = label_font_size(tile_height)
    margin = label_margin(tile_height)
    pad_x, pad_y = max(2, round(size * 0.45)), max(1, round(size * 0.2))

    # the box never leaves the tile: the name is shortened first, then the box is cropped
    max_width = max(2, tile_width - 2 * margin - tile_width % 2)
    max_height = max(2, tile_height - 2 * margin - tile_height % 2)
    shown = fit_text(text, size, max_width - 2 * pad_x)
    ink = text_bitmap(shown, size)
    width = min(_even_up(ink.shape[1] + 2 * pad_x), max_width)
    height = min(_even_up(ink.shape[0] + 2 * pad_y), max_height)

    # the box: rounded corners, drawn larger and reduced so its edges are smooth
    scale = _BOX_SUPERSAMPLE
    box = Image.new("L", (width * scale, height * scale), 0)
    radius = min(round(size * 0.35), height // 2) * scale
    ImageDraw.Draw(box).rounded_rectangle(
        (0, 0, width * scale - 1, height * scale - 1), radius=radius, fill=LABEL_BOX_OPACITY
    )
    box = box.reduce(scale)

    # the text, white, centred vertically in the box and cropped to it
    text_alpha = Image.new("L", (width, height), 0)
    text_alpha.paste(Image.fromarray(ink), (pad_x, (height - ink.shape[0]) // 2))

    layer = Image.new("RGBA", (width, height), (*LABEL_BOX, 0))
    layer.putalpha(box)
    glyphs = Image.new("RGBA", (width, height), (*LABEL_TEXT, 0))
    glyphs.putalpha(text_alpha)
    layer = Image.alpha_composite(layer, glyphs)

    pixels = np.asarray(layer, np.uint8)
    alpha = pixels[..., 3]
    y, u, v = rgb_to_yuv(pixels[..., :3])
    logger.debug("label rendered: text=%r tile=%dx%d size=%dx%d", shown, tile_width,
                 tile_height, width, height)
    return Label(
        text=shown,
        width=width,
        height=height,
        alpha=_frozen(alpha),
        luma=_frozen(y),
        alpha_chroma=_frozen(_halve(alpha)),
        u=_frozen(_halve_weighted(u, alpha)),
        v=_frozen(_halve_weighted(v, alpha)),
    )


def label_position(tile_rect: tuple[int, int, int, int], label: Label) -> tuple[int, int]:
    """Where `label` goes in a tile: bottom left, a small margin in; even coordinates."""
    x, y, w, h = tile_rect
    margin = label_margin(h)
    left = x + min(margin, max(0, w - label.width))
    top = y + max(0, h - label.height - margin)
    return left - left % 2, top - top % 2


def _blend(dst: NDArray[np.uint8], src: NDArray[np.uint8], alpha: NDArray[np.uint8]) -> None:
    """dst = (src a + dst (255 - a)) / 255, rounded, in place; all three of one shape."""
    a = alpha.astype(np.uint32)
    mixed = src.astype(np.uint32) * a + dst.astype(np.uint32) * (255 - a) + 127
    dst[...] = mixed // 255


def blend_label(
    label: Label,
    dy: NDArray[np.uint8],
    du: NDArray[np.uint8],
    dv: NDArray[np.uint8],
    x: int,
    y: int,
) -> None:
    """Alpha-blend `label` into the canvas planes with its top left at luma (x, y), both even.

    Parts outside the canvas are skipped.
    """
    if x % 2 or y % 2:
        raise ValueError(f"label position must be even, got ({x}, {y})")

    # luma: clip the label's rectangle to the canvas
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + label.width, dy.shape[1]), min(y + label.height, dy.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    window = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
    _blend(dy[y0:y1, x0:x1], label.luma[window], label.alpha[window])

    # chroma: the same clip at half resolution
    cx, cy = x // 2, y // 2
    cx0, cy0 = max(cx, 0), max(cy, 0)
    cx1 = min(cx + label.width // 2, du.shape[1], dv.shape[1])
    cy1 = min(cy + label.height // 2, du.shape[0], dv.shape[0])
    if cx0 >= cx1 or cy0 >= cy1:
        return
    window = (slice(cy0 - cy, cy1 - cy), slice(cx0 - cx, cx1 - cx))
    _blend(du[cy0:cy1, cx0:cx1], label.u[window], label.alpha_chroma[window])
    _blend(dv[cy0:cy1, cx0:cx1], label.v[window], label.alpha_chroma[window])


def placeholder_font_size(width: int, height: int) -> int:
    """Starting font height of the name on a placeholder: large, about 1/9 of the tile."""
    return max(PLACEHOLDER_FONT_MIN, min(round(height / 9), round(width / 12), 64))


def wrap_name(text: str, size: int, max_width: int) -> tuple[str, ...]:
    """`text` on one line if it fits, else split in two at the word break that balances the
    lines best; a line still too wide is shortened with "…"."""
    text = " ".join(unicodedata.normalize("NFC", text).split())
    if text_width(text, size) <= max_width:
        return (text,)
    words = text.split(" ")
    if len(words) == 1:
        return (fit_text(text, size, max_width),)

    def widest(split: int) -> int:
        return max(text_width(" ".join(words[:split]), size),
                   text_width(" ".join(words[split:]), size))

    split = min(range(1, len(words)), key=widest)
    first, second = " ".join(words[:split]), " ".join(words[split:])
    return fit_text(first, size, max_width), fit_text(second, size, max_width)


def _name_layout(text: str, width: int, height: int, scale: int) -> tuple[int, tuple[str, ...]]:
    """Font size and lines of the name, as large as possible on at most two lines, measured
    at `scale` times the tile size (the size it is drawn at)."""
    max_width = (width - 2 * max(4, width // 16)) * scale
    whole = " ".join(text.split())
    size = placeholder_font_size(width, height)
    while True:
        lines = wrap_name(text, size * scale, max_width)
        if " ".join(lines) == whole or size <= PLACEHOLDER_FONT_MIN:
            return size, lines
        size = max(PLACEHOLDER_FONT_MIN, size * 7 // 8)


def _draw_pictogram(draw: ImageDraw.ImageDraw, cx: float, cy: float, side: float) -> None:
    """A person's head and shoulders in a `side` square centred at (cx, cy), with a crossed-out
    camera badge at its lower right."""
    top = cy - side / 2
    head = side * 0.2
    draw.ellipse((cx - head, top + side * 0.1, cx + head, top + side * 0.1 + 2 * head),
                 fill=PICTOGRAM)
    # shoulders: the upper half of a wide ellipse
    draw.pieslice((cx - side * 0.4, top + side * 0.58, cx + side * 0.4, top + side * 1.42),
                  180, 360, fill=PICTOGRAM)

    # camera-off badge: a dark disc, a camera body and lens, a red stroke across
    bx, by, br = cx + side * 0.3, top + side * 0.78, side * 0.2
    draw.ellipse((bx - br, by - br, bx + br, by + br), fill=SLATE, outline=CAMERA_OFF,
                 width=max(1, round(side * 0.025)))
    body_w, body_h = br * 0.9, br * 0.7
    draw.rectangle((bx - br * 0.6, by - body_h / 2, bx - br * 0.6 + body_w, by + body_h / 2),
                   fill=PLACEHOLDER_TEXT)
    lens_x = bx - br * 0.6 + body_w
    draw.polygon([(lens_x, by), (lens_x + br * 0.45, by - body_h / 2),
                  (lens_x + br * 0.45, by + body_h / 2)], fill=PLACEHOLDER_TEXT)
    reach = br * 0.7
    draw.line((bx - reach, by + reach, bx + reach, by - reach), fill=CAMERA_OFF,
              width=max(1, round(side * 0.04)))


def placeholder(text: str, width: int, height: int) -> tuple[Plane, Plane, Plane]:
    """I420 planes of a tile for a site without video: a slate background, a person with a
    crossed-out camera, and the site's name centred below in large letters.

    Cached per (name, size); the planes are read-only.
    """
    return _placeholder(unicodedata.normalize("NFC", text), width, height)


@functools.lru_cache(maxsize=64)
def _placeholder(text: str, width: int, height: int) -> tuple[Plane, Plane, Plane]:
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise ValueError(f"placeholder size must be even and at least 2x2, got {width}x{height}")
    # drawn at a larger scale and reduced, so circles and strokes have smooth edges
    s = _SUPERSAMPLE
    size, lines = _name_layout(text, width, height, s)
    line_height = round(size * 1.25)
    block = line_height * len(lines) if text.strip() else 0
    image = Image.new("RGB", (width * s, height * s), SLATE)
    draw = ImageDraw.Draw(image)

    # the pictogram fills the space above the name, the two together centred
    gap = round(size * 0.5) if block else 0
    side = min(width * 0.4, (height - block - gap) * 0.75)
    total = (side if side >= 8 else 0) + gap + block
    top = (height - total) / 2
    if side >= 8:
        _draw_pictogram(draw, width * s / 2, (top + side / 2) * s, side * s)
        top += side + gap
    else:
        top = (height - block) / 2

    face = font(size * s)
    for number, line in enumerate(lines if block else ()):
        middle = (top + line_height * (number + 0.5)) * s
        draw.text((width * s / 2, middle), line, font=face, fill=PLACEHOLDER_TEXT, anchor="mm")

    # luma from the picture at tile size, chroma from it averaged down to half that
    y, _, _ = rgb_to_yuv(np.asarray(image.reduce(s), np.uint8))
    _, u, v = rgb_to_yuv(np.asarray(image.reduce(2 * s), np.uint8))
    logger.debug("placeholder rendered: text=%r size=%dx%d lines=%d", text, width, height,
                 len(lines))
    return _frozen(y), _frozen(u), _frozen(v)
