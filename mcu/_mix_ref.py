"""Plain numpy (float64) versions of the kernel in `mcu._mix`, for tests and benchmarks.

Written from the definitions, not from the kernel: resizing is a matrix product with one
coverage matrix per axis, so a slip in the kernel's tap tables cannot hide in here too.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

FLOOR_DBOV = -127.0
FULL_SCALE = 32768.0

# the soft limiter: identity up to the knee, then bent smoothly toward a ceiling it never reaches
KNEE = 0.7 * FULL_SCALE
CEILING = 0.9 * FULL_SCALE

Rect = tuple[int, int, int, int]


def area_matrix(src_len: int, dst_len: int) -> NDArray[np.float64]:
    """(dst_len, src_len) matrix: how much of each source sample each output interval covers."""
    scale = src_len / dst_len
    lo = np.arange(dst_len, dtype=np.float64)[:, None] * scale
    hi = lo + scale
    k = np.arange(src_len, dtype=np.float64)[None, :]
    overlap: NDArray[np.float64] = np.clip(np.minimum(hi, k + 1.0) - np.maximum(lo, k), 0.0, None)
    return overlap / scale


def bilinear_matrix(src_len: int, dst_len: int) -> NDArray[np.float64]:
    """(dst_len, src_len) matrix of two-tap interpolation at aligned pixel centres."""
    out = np.zeros((dst_len, src_len), dtype=np.float64)
    pos = (np.arange(dst_len, dtype=np.float64) + 0.5) * src_len / dst_len - 0.5
    pos = np.clip(pos, 0.0, src_len - 1)
    left = np.floor(pos).astype(np.int64)
    right = np.minimum(left + 1, src_len - 1)
    frac = pos - left
    rows = np.arange(dst_len)
    np.add.at(out, (rows, left), 1.0 - frac)
    np.add.at(out, (rows, right), frac)
    return out


def resize_matrix(src_len: int, dst_len: int) -> NDArray[np.float64]:
    """The matrix that resizes one axis from src_len to dst_len samples."""
    if src_len < 1 or dst_len < 1:
        raise ValueError(f"axis lengths must be at least 1, got {src_len} -> {dst_len}")
    if dst_len < src_len:
        return area_matrix(src_len, dst_len)
    if dst_len > src_len:
        return bilinear_matrix(src_len, dst_len)
    return np.eye(src_len, dtype=np.float64)


def resize_plane(src: NDArray[np.uint8], w: int, h: int) -> NDArray[np.float64]:
    """`src` resized to h x w, unrounded."""
    rows = resize_matrix(src.shape[0], h)
    cols = resize_matrix(src.shape[1], w)
    return rows @ src.astype(np.float64) @ cols.T


def to_u8(values: NDArray[np.float64]) -> NDArray[np.uint8]:
    """Round half up and clamp to bytes."""
    return np.clip(np.floor(values + 0.5), 0, 255).astype(np.uint8)


def scale_plane(
    src: NDArray[np.uint8], dst: NDArray[np.uint8], x: int, y: int, w: int, h: int
) -> None:
    """Reference of `mcu._mix.scale_plane`."""
    dst[y : y + h, x : x + w] = to_u8(resize_plane(src, w, h))


def fill_plane(dst: NDArray[np.uint8], x: int, y: int, w: int, h: int, value: int) -> None:
    """Reference of `mcu._mix.fill_plane`."""
    dst[y : y + h, x : x + w] = value


def exact_fit(src_w: int, src_h: int, w: int, h: int) -> tuple[float, float]:
    """Real-valued width and height of the largest source-shaped rectangle inside w x h."""
    scale = min(w / src_w, h / src_h)
    return src_w * scale, src_h * scale


def chroma_rect(x: int, y: int, w: int, h: int) -> Rect:
    """The I420 chroma samples touched by luma rectangle (x, y, w, h)."""
    cx, cy = x // 2, y // 2
    return cx, cy, -(-(x + w) // 2) - cx, -(-(y + h) // 2) - cy


def scale_into_tile(
    src: tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]],
    canvas: tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]],
    tile: Rect,
    image: Rect,
    bg: tuple[int, int, int] = (16, 128, 128),
) -> None:
    """Reference of `mcu._mix.scale_into_tile`, given the image rectangle to use."""
    for index, (plane_src, plane_dst, colour) in enumerate(zip(src, canvas, bg)):
        outer = tile if index == 0 else chroma_rect(*tile)
        inner = image if index == 0 else chroma_rect(*image)
        fill_plane(plane_dst, *outer, colour)
        scale_plane(plane_src, plane_dst, *inner)


def border_masks(
    canvas_wh: tuple[int, int], rect: Rect, thickness: int
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Luma and chroma masks of a frame `thickness` wide just inside `rect` of an I420 canvas.

    A chroma sample is on the frame when any of the luma samples it covers is.
    """
    width, height = canvas_wh
    x, y, w, h = rect
    luma = np.zeros((height, width), bool)
    luma[y : y + h, x : x + w] = True
    inner_w, inner_h = w - 2 * thickness, h - 2 * thickness
    if inner_w > 0 and inner_h > 0:
        luma[y + thickness : y + thickness + inner_h, x + thickness : x + thickness + inner_w] = 0
    padded = np.zeros((height + height % 2, width + width % 2), bool)
    padded[:height, :width] = luma
    blocks = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2)
    chroma: NDArray[np.bool_] = np.asarray(blocks.any(axis=(1, 3)))
    return luma, chroma


def draw_border(
    canvas: tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]],
    rect: Rect,
    thickness: int,
    colour: tuple[int, int, int],
) -> None:
    """Reference of `mcu._mix.draw_border`."""
    luma, chroma = border_masks((canvas[0].shape[1], canvas[0].shape[0]), rect, thickness)
    canvas[0][luma] = colour[0]
    canvas[1][chroma] = colour[1]
    canvas[2][chroma] = colour[2]


def limit(mixed: NDArray[np.float64]) -> NDArray[np.float64]:
    """The soft limiter, unrounded: above the knee the excess e becomes e * D / (D + e)."""
    room = CEILING - KNEE
    size = np.abs(mixed)
    over = np.maximum(size - KNEE, 0.0)
    bent = np.minimum(size, KNEE) + over * room / (room + over)
    out: NDArray[np.float64] = np.sign(mixed) * bent
    return out


def mix_minus_limited(
    inputs: NDArray[np.int16],
    gains: NDArray[np.float32],
    out: NDArray[np.int16],
    levels: NDArray[np.float64],
) -> None:
    """Reference of `mcu._mix.mix_minus_limited`."""
    gained = inputs.astype(np.float64) * gains.astype(np.float64)[:, None]
    others = gained.sum(axis=0, keepdims=True) - gained
    limited = limit(others)
    out[...] = np.sign(limited) * np.floor(np.abs(limited) + 0.5)
    levels_dbov_float(gained, levels)


def levels_dbov_float(samples: NDArray[np.float64], out: NDArray[np.float64]) -> None:
    """RMS level of each row in dBov, floored at -127 (rows of any real values)."""
    if samples.shape[1] == 0:
        out[...] = FLOOR_DBOV
        return
    rms = np.sqrt(np.mean(samples * samples, axis=1))
    with np.errstate(divide="ignore"):
        level = 20.0 * np.log10(rms / FULL_SCALE)
    out[...] = np.maximum(level, FLOOR_DBOV)


def mix_minus(inputs: NDArray[np.int16], out: NDArray[np.int16]) -> None:
    """Reference of `mcu._mix.mix_minus`: each row gets everyone else's sum."""
    wide = inputs.astype(np.int64)
    others = wide.sum(axis=0, keepdims=True) - wide
    out[...] = np.clip(others, -32768, 32767)


def mix_all(inputs: NDArray[np.int16], out_row: NDArray[np.int16]) -> None:
    """Reference of `mcu._mix.mix_all`."""
    out_row[...] = np.clip(inputs.astype(np.int64).sum(axis=0), -32768, 32767)


def levels_dbov(inputs: NDArray[np.int16], out: NDArray[np.float64]) -> None:
    """Reference of `mcu._mix.levels_dbov`."""
    levels_dbov_float(inputs.astype(np.float64), out)
