"""Types of the compiled kernel `mcu._mix` (see `_mix.pyx`)."""

import numpy as np
from numpy.typing import NDArray

LIMITER_KNEE: float
"""Level (in int16 units) up to which `mix_minus_limited` passes a mix unchanged."""

LIMITER_CEILING: float
"""Level that `mix_minus_limited` approaches above the knee and never reaches."""

def scale_plane(
    src: NDArray[np.uint8],
    dst: NDArray[np.uint8],
    x: int,
    y: int,
    w: int,
    h: int,
) -> None: ...
def fill_plane(
    dst: NDArray[np.uint8],
    x: int,
    y: int,
    w: int,
    h: int,
    value: int,
) -> None: ...
def fit_rect(
    src_w: int,
    src_h: int,
    x: int,
    y: int,
    w: int,
    h: int,
) -> tuple[int, int, int, int]: ...
def scale_into_tile(
    sy: NDArray[np.uint8],
    su: NDArray[np.uint8],
    sv: NDArray[np.uint8],
    dy: NDArray[np.uint8],
    du: NDArray[np.uint8],
    dv: NDArray[np.uint8],
    x: int,
    y: int,
    w: int,
    h: int,
    bg_y: int = 16,
    bg_u: int = 128,
    bg_v: int = 128,
) -> tuple[int, int, int, int]: ...
def draw_border(
    dy: NDArray[np.uint8],
    du: NDArray[np.uint8],
    dv: NDArray[np.uint8],
    x: int,
    y: int,
    w: int,
    h: int,
    thickness: int,
    y_val: int,
    u_val: int,
    v_val: int,
) -> None:
    """Paint a frame `thickness` luma pixels wide just inside rectangle (x, y, w, h).

    The frame's outer edge is the rectangle's edge; a thickness of half the shorter side or
    more paints the whole rectangle. In the chroma planes a sample is painted when any of the
    luma samples it covers inside the rectangle is on the frame, so the colour covers the whole
    frame even at odd positions. Nothing outside the rectangle (luma) and its chroma rectangle
    is written. Raises ValueError for a rectangle outside the canvas, a thickness below 1 or a
    value outside 0..255.
    """

def mix_minus(inputs: NDArray[np.int16], out: NDArray[np.int16]) -> None: ...
def mix_all(inputs: NDArray[np.int16], out_row: NDArray[np.int16]) -> None: ...
def levels_dbov(inputs: NDArray[np.int16], out: NDArray[np.float64]) -> None: ...
def mix_minus_limited(
    inputs: NDArray[np.int16],
    gains: NDArray[np.float32],
    out: NDArray[np.int16],
    levels: NDArray[np.float64],
) -> None:
    """N-1 mixes with per-site gains and a soft limiter, plus each site's level, in O(N).

    `inputs` is (sites, samples) int16, C-contiguous; `gains` float32 per site (1.0 unity,
    0.0 muted, at most 16.0). ``out[i]`` is everyone else's gained sum, limited: unchanged up to
    `LIMITER_KNEE`, then bent smoothly toward `LIMITER_CEILING`, and rounded. ``levels[i]`` is
    the RMS of site i's gained input in dB relative to full scale (32768), floored at -127.
    Sums are kept in float32.
    """

def _cache_stats() -> tuple[int, int, int]:
    """(hits, misses, entries) of the weight-table cache."""

def _line_block(src_len: int, dst_len: int) -> int:
    """Outputs per block of the AVX-512 horizontal plan of an axis (32, 16, or 0: none)."""

def _cache_clear() -> None:
    """Empty the weight-table cache and zero its counters."""

_CACHE_CAPACITY: int
"""Weight tables the cache keeps before it drops the least recently used."""

_SIMD_LEVELS: tuple[str, ...]
"""SIMD levels this CPU can run, from "portable" up to the best ("sse2", "avx2")."""

def _simd(name: str | None = None) -> str:
    """Switch the video loops to SIMD level `name`; return the previous level.

    Without a name, return the current level unchanged. Every level gives the same bytes.
    """
