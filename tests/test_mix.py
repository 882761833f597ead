"""The compiled kernel `mcu._mix` against its numpy reference `mcu._mix_ref`, and by hand."""

from __future__ import annotations

import math
import threading
import tracemalloc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from mcu import _mix, _mix_ref

Planes = tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]]

SENTINEL = 0xA5
FEW = settings(max_examples=100, deadline=None)
SOME = settings(max_examples=300, deadline=None)


def noise(h: int, w: int, seed: int = 0) -> NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def smooth(h: int, w: int, seed: int = 0) -> NDArray[np.uint8]:
    """A gradient with noise on top: closer to a camera picture than pure noise."""
    rows = np.linspace(0, 160, h)[:, None]
    cols = np.linspace(0, 80, w)[None, :]
    grain = np.random.default_rng(seed).integers(0, 16, (h, w))
    return (rows + cols + grain).astype(np.uint8)


def i420(w: int, h: int, seed: int = 0) -> Planes:
    cw, ch = (w + 1) // 2, (h + 1) // 2
    return noise(h, w, seed), noise(ch, cw, seed + 1), noise(ch, cw, seed + 2)


def blank_canvas(w: int, h: int) -> Planes:
    cw, ch = (w + 1) // 2, (h + 1) // 2
    return (
        np.full((h, w), SENTINEL, np.uint8),
        np.full((ch, cw), SENTINEL, np.uint8),
        np.full((ch, cw), SENTINEL, np.uint8),
    )


def max_diff(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> int:
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max(initial=0))


def outside(plane: NDArray[np.uint8], x: int, y: int, w: int, h: int) -> NDArray[np.uint8]:
    """The samples of `plane` that are not in rectangle (x, y, w, h)."""
    mask = np.ones(plane.shape, bool)
    mask[y : y + h, x : x + w] = False
    return plane[mask]


# ---------------------------------------------------------------------------------------------
# scale_plane


@pytest.mark.parametrize(
    ("src_hw", "dst_hw"),
    [
        ((480, 640), (120, 160)),  # shrink by an integer factor
        ((479, 641), (200, 300)),  # shrink by fractional factors, odd source
        ((36, 44), (100, 150)),  # enlarge
        ((143, 175), (480, 640)),  # enlarge, odd source
        ((90, 60), (45, 200)),  # shrink rows, enlarge columns
        ((30, 300), (77, 101)),  # enlarge rows, shrink columns
        ((1, 1), (5, 9)),
        ((7, 1), (1, 4)),
    ],
)
def test_scale_plane_matches_reference(
    src_hw: tuple[int, int], dst_hw: tuple[int, int]
) -> None:
    src = smooth(*src_hw)
    h, w = dst_hw
    got = np.zeros((h + 3, w + 5), np.uint8)
    want = got.copy()
    _mix.scale_plane(src, got, 2, 1, w, h)
    _mix_ref.scale_plane(src, want, 2, 1, w, h)
    assert max_diff(got, want) <= 1


def test_scale_plane_identity_copies_exactly() -> None:
    src = noise(31, 47)
    dst = np.zeros((40, 50), np.uint8)
    _mix.scale_plane(src, dst, 3, 9, 47, 31)
    np.testing.assert_array_equal(dst[9:40, 3:50], src)


def test_halving_is_the_mean_of_each_2x2_block() -> None:
    src = noise(64, 96, seed=5)
    blocks = src.astype(np.float64).reshape(32, 2, 48, 2).mean(axis=(1, 3))
    dst = np.zeros((32, 48), np.uint8)
    _mix.scale_plane(src, dst, 0, 0, 48, 32)
    np.testing.assert_array_equal(dst, np.floor(blocks + 0.5).astype(np.uint8))


def test_scale_plane_hand_values() -> None:
    # shrink 3 -> 2: [0, 1.5) and [1.5, 3) of (0, 10, 20) average to 10/3 and 50/3
    row = np.array([[0, 10, 20]], np.uint8)
    dst = np.zeros((1, 2), np.uint8)
    _mix.scale_plane(row, dst, 0, 0, 2, 1)
    assert dst.tolist() == [[3, 17]]

    # enlarge 2 -> 4: centres map to -0.25 (clamped), 0.25, 0.75, 1.25 (clamped)
    row = np.array([[0, 100]], np.uint8)
    dst = np.zeros((1, 4), np.uint8)
    _mix.scale_plane(row, dst, 0, 0, 4, 1)
    assert dst.tolist() == [[0, 25, 75, 100]]

    # exact halves round up
    column = np.array([[0], [1]], np.uint8)
    dst = np.zeros((1, 1), np.uint8)
    _mix.scale_plane(column, dst, 0, 0, 1, 1)
    assert dst[0, 0] == 1
    _mix.scale_plane(np.array([[254, 255]], np.uint8), dst, 0, 0, 1, 1)
    assert dst[0, 0] == 255


@SOME
@given(
    src_h=st.integers(1, 40),
    src_w=st.integers(1, 40),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    x=st.integers(0, 5),
    y=st.integers(0, 5),
    pad=st.integers(0, 9),
    seed=st.integers(0, 2**16),
)
def test_scale_plane_property(
    src_h: int, src_w: int, h: int, w: int, x: int, y: int, pad: int, seed: int
) -> None:
    # both planes are views into wider buffers, so row stride != width
    src = noise(src_h, src_w + pad, seed)[:, :src_w]
    big = np.full((y + h + 2, x + w + 3 + pad), SENTINEL, np.uint8)
    dst = big[:, : x + w + 3]
    want = dst.copy()
    _mix.scale_plane(src, dst, x, y, w, h)
    _mix_ref.scale_plane(np.ascontiguousarray(src), want, x, y, w, h)
    assert max_diff(dst, want) <= 1
    assert (outside(big, x, y, w, h) == SENTINEL).all()


@FEW
@given(
    src_h=st.integers(1, 60),
    src_w=st.integers(1, 60),
    h=st.integers(1, 60),
    w=st.integers(1, 60),
    value=st.integers(0, 255),
)
def test_flat_plane_stays_flat(src_h: int, src_w: int, h: int, w: int, value: int) -> None:
    src = np.full((src_h, src_w), value, np.uint8)
    dst = np.zeros((h, w), np.uint8)
    _mix.scale_plane(src, dst, 0, 0, w, h)
    assert (dst == value).all()


def test_scale_plane_accepts_read_only_source() -> None:
    src = noise(20, 30)
    src.flags.writeable = False
    dst = np.zeros((10, 15), np.uint8)
    _mix.scale_plane(src, dst, 0, 0, 15, 10)
    want = np.zeros_like(dst)
    _mix_ref.scale_plane(src, want, 0, 0, 15, 10)
    assert max_diff(dst, want) <= 1


@pytest.mark.parametrize(
    ("rect", "named"),
    [
        ((0, 0, 0, 5), "w=0"),
        ((0, 0, 5, 0), "h=0"),
        ((-1, 0, 5, 5), "x=-1"),
        ((0, -2, 5, 5), "y=-2"),
        ((6, 0, 5, 5), "x=6"),
        ((0, 0, 5, 11), "h=11"),
    ],
)
def test_scale_and_fill_reject_bad_rectangles(rect: tuple[int, int, int, int], named: str) -> None:
    dst = np.zeros((10, 10), np.uint8)
    with pytest.raises(ValueError, match=named):
        _mix.scale_plane(noise(4, 4), dst, *rect)
    with pytest.raises(ValueError, match=named):
        _mix.fill_plane(dst, *rect, 7)
    assert (dst == 0).all()


def test_scale_plane_refuses_columns_that_are_not_contiguous() -> None:
    dst = np.zeros((10, 10), np.uint8)
    with pytest.raises(ValueError, match="contiguous"):
        _mix.scale_plane(noise(8, 8)[:, ::2], dst, 0, 0, 5, 5)
    assert (dst == 0).all()


def test_scale_plane_rejects_empty_source() -> None:
    dst = np.zeros((10, 10), np.uint8)
    with pytest.raises(ValueError, match="0x4"):
        _mix.scale_plane(np.zeros((4, 0), np.uint8), dst, 0, 0, 5, 5)


# ---------------------------------------------------------------------------------------------
# fill_plane


@FEW
@given(
    x=st.integers(0, 10),
    y=st.integers(0, 10),
    w=st.integers(1, 10),
    h=st.integers(1, 10),
    value=st.integers(0, 255),
)
def test_fill_plane_writes_only_its_rectangle(x: int, y: int, w: int, h: int, value: int) -> None:
    big = np.full((21, 27), SENTINEL, np.uint8)
    dst = big[:, :22]
    _mix.fill_plane(dst, x, y, w, h, value)
    assert (big[y : y + h, x : x + w] == value).all()
    assert (outside(big, x, y, w, h) == SENTINEL).all()


@pytest.mark.parametrize("value", [-1, 256])
def test_fill_plane_rejects_values_outside_a_byte(value: int) -> None:
    with pytest.raises(ValueError, match=str(value)):
        _mix.fill_plane(np.zeros((4, 4), np.uint8), 0, 0, 2, 2, value)


# ---------------------------------------------------------------------------------------------
# fit_rect


def test_fit_rect_letterbox_and_pillarbox() -> None:
    assert _mix.fit_rect(1920, 1080, 0, 0, 640, 640) == (0, 140, 640, 360)
    assert _mix.fit_rect(640, 480, 100, 20, 640, 360) == (180, 20, 480, 360)
    assert _mix.fit_rect(352, 288, 10, 10, 352, 288) == (10, 10, 352, 288)


@SOME
@given(
    src_w=st.integers(1, 4000),
    src_h=st.integers(1, 4000),
    x=st.integers(0, 300),
    y=st.integers(0, 300),
    w=st.integers(1, 2000),
    h=st.integers(1, 2000),
)
def test_fit_rect_property(src_w: int, src_h: int, x: int, y: int, w: int, h: int) -> None:
    ix, iy, iw, ih = _mix.fit_rect(src_w, src_h, x, y, w, h)

    # inside the tile, never empty, touching two opposite sides
    assert 1 <= iw <= w and 1 <= ih <= h
    assert x <= ix and ix + iw <= x + w
    assert y <= iy and iy + ih <= y + h
    assert iw == w or ih == h

    # the source's shape within two pixels
    exact_w, exact_h = _mix_ref.exact_fit(src_w, src_h, w, h)
    assert abs(iw - exact_w) <= 2 and abs(ih - exact_h) <= 2

    # centred: the image's centre within 1.5 pixels of the tile's
    assert abs((ix + iw / 2) - (x + w / 2)) <= 1.5
    assert abs((iy + ih / 2) - (y + h / 2)) <= 1.5

    # even tiles give even rectangles, except a side squeezed to a single pixel
    if x % 2 == 0 and y % 2 == 0 and w % 2 == 0 and h % 2 == 0:
        assert ix % 2 == 0 and iy % 2 == 0
        assert iw % 2 == 0 or iw == 1
        assert ih % 2 == 0 or ih == 1


def test_fit_rect_tiny_tiles() -> None:
    assert _mix.fit_rect(1920, 1080, 0, 0, 1, 1) == (0, 0, 1, 1)
    assert _mix.fit_rect(1920, 1080, 4, 4, 2, 2) == (4, 4, 2, 2)  # 1.125 -> 2
    assert _mix.fit_rect(1920, 1080, 5, 4, 2, 2) == (5, 4, 2, 1)  # 1.125 -> 1
    assert _mix.fit_rect(1, 1000, 0, 0, 2, 2) == (0, 0, 1, 2)  # 0.002 -> 1


@pytest.mark.parametrize(
    ("args", "named"),
    [((0, 10, 0, 0, 5, 5), "0x10"), ((10, 10, 0, 0, 5, 0), "5x0"), ((4, 3, -1, 0, 5, 5), "-1")],
)
def test_fit_rect_rejects(args: tuple[int, ...], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        _mix.fit_rect(*args)


# ---------------------------------------------------------------------------------------------
# scale_into_tile


def check_tile(
    src: Planes,
    canvas_wh: tuple[int, int],
    tile: tuple[int, int, int, int],
    bg: tuple[int, int, int] = (16, 128, 128),
) -> tuple[Planes, tuple[int, int, int, int]]:
    """Place `src` into `tile` of a sentinel canvas; compare with the reference; guard bytes."""
    canvas = blank_canvas(*canvas_wh)
    image = _mix.scale_into_tile(*src, *canvas, *tile, *bg)
    assert image == _mix.fit_rect(src[0].shape[1], src[0].shape[0], *tile)

    want = blank_canvas(*canvas_wh)
    _mix_ref.scale_into_tile(src, want, tile, image, bg)
    for got_plane, want_plane in zip(canvas, want):
        assert max_diff(got_plane, want_plane) <= 1

    # nothing outside the tile (luma) or its chroma rectangle was touched
    assert (outside(canvas[0], *tile) == SENTINEL).all()
    chroma = _mix_ref.chroma_rect(*tile)
    assert (outside(canvas[1], *chroma) == SENTINEL).all()
    assert (outside(canvas[2], *chroma) == SENTINEL).all()
    return canvas, image


@pytest.mark.parametrize(
    ("src_wh", "tile"),
    [
        ((641, 479), (0, 0, 640, 360)),
        ((641, 479), (321, 181, 319, 179)),
        ((175, 143), (3, 7, 300, 100)),
        ((175, 143), (0, 0, 1280, 720)),
        ((1, 1), (5, 3, 40, 30)),
        ((1, 1), (1, 1, 1, 1)),
        ((176, 144), (639, 359, 1, 1)),
        ((1920, 1080), (10, 11, 2, 3)),
    ],
)
def test_scale_into_tile_odd_sizes(
    src_wh: tuple[int, int], tile: tuple[int, int, int, int]
) -> None:
    check_tile(i420(*src_wh), (1280, 720), tile)


@SOME
@given(
    src_w=st.integers(1, 48),
    src_h=st.integers(1, 48),
    canvas_w=st.integers(1, 64),
    canvas_h=st.integers(1, 64),
    data=st.data(),
)
def test_scale_into_tile_property(
    src_w: int, src_h: int, canvas_w: int, canvas_h: int, data: st.DataObject
) -> None:
    x = data.draw(st.integers(0, canvas_w - 1), label="x")
    y = data.draw(st.integers(0, canvas_h - 1), label="y")
    w = data.draw(st.integers(1, canvas_w - x), label="w")
    h = data.draw(st.integers(1, canvas_h - y), label="h")
    bg = data.draw(st.tuples(*[st.integers(0, 255)] * 3), label="bg")
    check_tile(i420(src_w, src_h, seed=src_w * 64 + src_h), (canvas_w, canvas_h), (x, y, w, h), bg)


@pytest.mark.parametrize(
    ("src_wh", "tile"),
    [
        ((1920, 1080), (40, 60, 640, 640)),
        ((480, 640), (0, 0, 640, 360)),
        ((175, 143), (2, 4, 90, 90)),
    ],
)
def test_letterbox_bars_and_flat_colour(
    src_wh: tuple[int, int], tile: tuple[int, int, int, int]
) -> None:
    colour = (81, 90, 240)  # a red in BT.601
    bg = (16, 128, 128)
    sw, sh = src_wh
    src = (
        np.full((sh, sw), colour[0], np.uint8),
        np.full(((sh + 1) // 2, (sw + 1) // 2), colour[1], np.uint8),
        np.full(((sh + 1) // 2, (sw + 1) // 2), colour[2], np.uint8),
    )
    canvas, image = check_tile(src, (800, 800), tile, bg)
    _ix, _iy, iw, ih = image

    # the image has the source's shape; a real bar exists on one axis
    exact_w, exact_h = _mix_ref.exact_fit(sw, sh, tile[2], tile[3])
    assert abs(iw - exact_w) <= 2 and abs(ih - exact_h) <= 2
    assert (iw, ih) != tile[2:]

    # inside the image: exactly the colour; in the tile around it: exactly the background
    for index, (plane, value, fill) in enumerate(zip(canvas, colour, bg)):
        inner = image if index == 0 else _mix_ref.chroma_rect(*image)
        outer = tile if index == 0 else _mix_ref.chroma_rect(*tile)
        px, py, pw, ph = inner
        assert (plane[py : py + ph, px : px + pw] == value).all()
        ox, oy, ow, oh = outer
        around = outside(plane[oy : oy + oh, ox : ox + ow], px - ox, py - oy, pw, ph)
        assert around.size > 0
        assert (around == fill).all()


def test_scale_into_tile_padded_planes() -> None:
    # PyAV planes have a line size larger than the width: use views into wider buffers
    sy, su, sv = i420(175, 143, seed=9)
    padded = [np.pad(p, ((0, 0), (0, 13)), constant_values=3) for p in (sy, su, sv)]
    src = (padded[0][:, :175], padded[1][:, :88], padded[2][:, :88])
    bigs = (
        np.full((360, 704), SENTINEL, np.uint8),
        np.full((180, 384), SENTINEL, np.uint8),
        np.full((180, 384), SENTINEL, np.uint8),
    )
    canvas = (bigs[0][:, :640], bigs[1][:, :320], bigs[2][:, :320])
    tile = (101, 51, 300, 200)
    image = _mix.scale_into_tile(*src, *canvas, *tile)

    want = blank_canvas(640, 360)
    _mix_ref.scale_into_tile((sy, su, sv), want, tile, image)
    for got_plane, want_plane in zip(canvas, want):
        assert max_diff(got_plane, want_plane) <= 1
    assert (bigs[0][:, 640:] == SENTINEL).all()
    assert (bigs[1][:, 320:] == SENTINEL).all() and (bigs[2][:, 320:] == SENTINEL).all()


def test_scale_into_tile_rejects_bad_planes() -> None:
    sy, su, sv = i420(64, 48)
    canvas = blank_canvas(320, 240)
    with pytest.raises(ValueError, match="source"):
        _mix.scale_into_tile(sy, su[:-1], sv, *canvas, 0, 0, 160, 120)
    with pytest.raises(ValueError, match="canvas"):
        _mix.scale_into_tile(sy, su, sv, canvas[0], canvas[1][:, :-1], canvas[2], 0, 0, 16, 16)
    with pytest.raises(ValueError, match="x=300"):
        _mix.scale_into_tile(sy, su, sv, *canvas, 300, 0, 160, 120)
    with pytest.raises(ValueError, match="bg_u"):
        _mix.scale_into_tile(sy, su, sv, *canvas, 0, 0, 16, 16, 16, 300, 128)
    assert all((plane == SENTINEL).all() for plane in canvas)


# ---------------------------------------------------------------------------------------------
# mix_minus, mix_all, levels_dbov

pcm = st.integers(-32768, 32767)


@SOME
@given(
    rows=st.integers(1, 12).flatmap(
        lambda n: st.lists(st.lists(pcm, min_size=8, max_size=8), min_size=n, max_size=n)
    )
)
def test_mixes_match_reference(rows: list[list[int]]) -> None:
    inputs = np.array(rows, np.int16)
    got = np.empty_like(inputs)
    want = np.empty_like(inputs)
    _mix.mix_minus(inputs, got)
    _mix_ref.mix_minus(inputs, want)
    np.testing.assert_array_equal(got, want)

    got_row = np.empty(inputs.shape[1], np.int16)
    want_row = np.empty_like(got_row)
    _mix.mix_all(inputs, got_row)
    _mix_ref.mix_all(inputs, want_row)
    np.testing.assert_array_equal(got_row, want_row)


def test_mix_minus_hand_values_without_wraparound() -> None:
    inputs = np.array(
        [[32767, -32768, 100], [32767, -32768, -300], [-32768, 32767, 7]], np.int16
    )
    out = np.empty_like(inputs)
    _mix.mix_minus(inputs, out)
    # column 0: sites 0 and 1 hear 32767 - 32768; site 2 hears 65534, clipped
    # column 1: sites 0 and 1 hear -32768 + 32767; site 2 hears -65536, clipped
    assert out.tolist() == [[-1, -1, -293], [-1, -1, 107], [32767, -32768, -200]]
    row = np.empty(3, np.int16)
    _mix.mix_all(inputs, row)
    assert row.tolist() == [32766, -32768, -193]


@pytest.mark.parametrize("value", [32767, -32768])
def test_a_thousand_full_scale_sites_saturate(value: int) -> None:
    inputs = np.full((1000, 960), value, np.int16)
    out = np.zeros_like(inputs)
    _mix.mix_minus(inputs, out)
    assert (out == value).all()
    row = np.zeros(960, np.int16)
    _mix.mix_all(inputs, row)
    assert (row == value).all()


def test_a_thousand_sites_that_cancel() -> None:
    # 500 sites at +32767 and 500 at -32768: the running sum swings far outside int16, the
    # total is -500, so the loud sites hear -33267 (clipped) and the others -500 + 32768
    inputs = np.empty((1000, 960), np.int16)
    inputs[0::2] = 32767
    inputs[1::2] = -32768
    out = np.empty_like(inputs)
    _mix.mix_minus(inputs, out)
    assert (out[0::2] == -32768).all()
    assert (out[1::2] == 32268).all()
    row = np.empty(960, np.int16)
    _mix.mix_all(inputs, row)
    assert (row == -500).all()


def test_mix_minus_leaves_out_each_sites_own_bit() -> None:
    # site j sends 2**j: everyone's sum has bits 0..14 set, and site i must miss exactly bit i
    n = 15
    inputs = np.repeat((1 << np.arange(n, dtype=np.int64))[:, None], 160, axis=1).astype(np.int16)
    out = np.empty_like(inputs)
    _mix.mix_minus(inputs, out)
    for i in range(n):
        assert (out[i] == (2**n - 1) - 2**i).all()


def test_mix_minus_output_holds_no_trace_of_own_voice() -> None:
    # sites sing sines of distinct whole-cycle frequencies, orthogonal over the 20 ms frame
    n, samples = 8, 960
    t = np.arange(samples)
    voices = np.array([3000 * np.sin(2 * np.pi * (5 + 7 * j) * t / samples) for j in range(n)])
    inputs = np.round(voices).astype(np.int16)
    out = np.empty_like(inputs)
    _mix.mix_minus(inputs, out)
    energy = (voices * voices).sum(axis=1)
    for i in range(n):
        heard = out[i].astype(np.float64) @ voices.T / energy
        assert abs(heard[i]) < 1e-3
        assert np.allclose(np.delete(heard, i), 1.0, atol=1e-3)


def test_a_single_site_hears_silence() -> None:
    inputs = noise(1, 960).astype(np.int16) * 100
    out = np.full_like(inputs, 5)
    _mix.mix_minus(inputs, out)
    assert (out == 0).all()
    row = np.empty(960, np.int16)
    _mix.mix_all(inputs, row)
    np.testing.assert_array_equal(row, inputs[0])


def test_mix_shapes_are_checked() -> None:
    inputs = np.zeros((3, 960), np.int16)
    with pytest.raises(ValueError, match="960"):
        _mix.mix_minus(inputs, np.zeros((3, 480), np.int16))
    with pytest.raises(ValueError, match="480"):
        _mix.mix_all(inputs, np.zeros(480, np.int16))
    with pytest.raises(ValueError, match="2 entries"):
        _mix.levels_dbov(inputs, np.zeros(2))


def test_levels_of_known_signals() -> None:
    t = np.arange(960)
    square = np.where((t // 48) % 2 == 0, 32767, -32768)
    sine = np.round(0.1 * 32768 * np.sin(2 * np.pi * 1000 * t / 48000))
    one_lsb = np.zeros(960)
    one_lsb[100] = 1
    inputs = np.array([square, sine, np.zeros(960), one_lsb], np.int16)
    out = np.empty(4)
    _mix.levels_dbov(inputs, out)
    assert abs(out[0]) < 0.01
    assert abs(out[1] - (-20.0 - 10 * math.log10(2))) < 0.05  # -23.01 dBov
    assert out[2] == -127.0
    assert abs(out[3] - 20 * math.log10(math.sqrt(1 / 960) / 32768)) < 1e-9  # about -120 dBov


def test_levels_floor_at_minus_127() -> None:
    # one LSB in a million samples is about -150 dBov: floored
    inputs = np.zeros((1, 1_000_000), np.int16)
    inputs[0, 0] = 1
    out = np.empty(1)
    _mix.levels_dbov(inputs, out)
    assert out[0] == -127.0


@FEW
@given(rows=st.lists(st.lists(pcm, min_size=16, max_size=16), min_size=1, max_size=8))
def test_levels_match_reference(rows: list[list[int]]) -> None:
    inputs = np.array(rows, np.int16)
    got = np.empty(len(rows))
    want = np.empty(len(rows))
    _mix.levels_dbov(inputs, got)
    _mix_ref.levels_dbov(inputs, want)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# the GIL is released while the kernel works


def ticks_inside_calls(work: Callable[[int], object], workers: int, calls: int) -> list[int]:
    """Run `work(worker)` `calls` times in each of `workers` threads while a Python thread ticks.

    Returns, per call, how many ticks fell in the middle third of that call's wall-clock span.
    A call that held the GIL throughout gets none: the ticker needs the GIL to record a tick, and
    only the edges of the span (before the call starts, after it returns) are open to it.
    """
    stamps: list[float] = []
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            stamps.append(time.monotonic())
            time.sleep(0.0002)

    def run(worker: int) -> None:
        for _ in range(calls):
            start = time.monotonic()
            work(worker)
            end = time.monotonic()
            with lock:
                spans.append((start, end))

    ticker = threading.Thread(target=tick)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    ticker.start()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        stop.set()
        ticker.join()

    counts = []
    for start, end in spans:
        third = (end - start) / 3
        counts.append(sum(1 for s in stamps if start + third < s < end - third))
    return counts


JOB_SIDE = 6000


@pytest.fixture(scope="module")
def big_job() -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """A source and the single-threaded result of enlarging it (~20 ms of kernel work).

    The call must last long enough for the ticker to get a core between two busy workers.
    """
    src = smooth(1500, 1500, seed=3)
    want = np.zeros((JOB_SIDE, JOB_SIDE), np.uint8)
    _mix.scale_plane(src, want, 0, 0, JOB_SIDE, JOB_SIDE)
    return src, want


def test_scale_plane_lets_python_threads_run(
    big_job: tuple[NDArray[np.uint8], NDArray[np.uint8]],
) -> None:
    src, want = big_job
    outs = [np.zeros_like(want), np.zeros_like(want)]

    def work(worker: int) -> None:
        _mix.scale_plane(src, outs[worker], 0, 0, JOB_SIDE, JOB_SIDE)

    # a call holding the GIL gets no tick at all (see the probe test below); a busy machine can
    # still keep the ticker off the CPU through one short call, so most calls must see ticks
    counts = ticks_inside_calls(work, workers=1, calls=4)
    assert sum(count > 0 for count in counts) >= 3, counts

    # two threads at once: the ticker still runs, and both results are right
    counts = ticks_inside_calls(work, workers=2, calls=4)
    assert sum(count > 0 for count in counts) >= 6, counts
    for out in outs:
        np.testing.assert_array_equal(out, want)


def test_the_probe_sees_a_held_gil() -> None:
    # builtin sum over a range runs in C without ever giving up the GIL
    counts = ticks_inside_calls(lambda _: sum(range(4_000_000)), workers=1, calls=2)
    assert counts == [0, 0]


# ---------------------------------------------------------------------------------------------
# the fast resize: weight cache, 2x and 4x paths, float fallback


def test_cached_and_uncached_calls_agree_with_reference() -> None:
    _mix._cache_clear()
    src = smooth(479, 641, seed=4)
    want = np.zeros((250, 330), np.uint8)
    _mix_ref.scale_plane(src, want, 3, 5, 319, 239)
    results = []
    for _ in range(3):
        got = np.zeros_like(want)
        _mix.scale_plane(src, got, 3, 5, 319, 239)
        results.append(got)
    hits, misses, entries = _mix._cache_stats()
    # one table per axis on the first call; every later call finds both
    assert (hits, misses, entries) == (4, 2, 2)
    for got in results:
        assert max_diff(got, want) <= 1
    np.testing.assert_array_equal(results[0], results[2])


def test_results_survive_cache_eviction() -> None:
    _mix._cache_clear()
    src = smooth(120, 200, seed=6)
    first = np.zeros((90, 150), np.uint8)
    _mix.scale_plane(src, first, 0, 0, 150, 90)

    # enough other sizes to push both of the first call's tables out
    for n in range(_mix._CACHE_CAPACITY):
        _mix.scale_plane(src, np.zeros((40, 60), np.uint8), 0, 0, 10 + n % 50, 7 + n % 30)
    assert _mix._cache_stats()[2] == _mix._CACHE_CAPACITY

    _, misses_before, _ = _mix._cache_stats()
    again = np.zeros_like(first)
    _mix.scale_plane(src, again, 0, 0, 150, 90)
    assert _mix._cache_stats()[1] == misses_before + 2  # rebuilt, not found
    want = np.zeros_like(first)
    _mix_ref.scale_plane(src, want, 0, 0, 150, 90)
    np.testing.assert_array_equal(again, first)
    assert max_diff(again, want) <= 1


def block_means(src: NDArray[np.uint8], n: int) -> NDArray[np.uint8]:
    h, w = src.shape[0] // n, src.shape[1] // n
    blocks = src.astype(np.int64).reshape(h, n, w, n).sum(axis=(1, 3))
    means: NDArray[np.uint8] = ((2 * blocks + n * n) // (2 * n * n)).astype(np.uint8)
    return means  # halves rounded up


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize(("x", "y", "pad"), [(0, 0, 0), (3, 1, 5), (1, 7, 13)])
def test_exact_shrinks_are_block_means(factor: int, x: int, y: int, pad: int) -> None:
    w, h = 37, 23
    src = noise(h * factor, w * factor + pad, seed=factor)[:, : w * factor]
    big = np.full((y + h + 2, x + w + 4 + pad), SENTINEL, np.uint8)
    dst = big[:, : x + w + 4]
    _mix.scale_plane(src, dst, x, y, w, h)
    np.testing.assert_array_equal(dst[y : y + h, x : x + w], block_means(src, factor))
    assert (outside(big, x, y, w, h) == SENTINEL).all()


@pytest.mark.parametrize(
    ("canvas_wh", "tile"), [((1280, 720), (0, 0, 640, 360)), ((1280, 720), (960, 540, 320, 180))]
)
def test_exact_shrinks_into_tiles(
    canvas_wh: tuple[int, int], tile: tuple[int, int, int, int]
) -> None:
    canvas, image = check_tile(i420(1280, 720, seed=8), canvas_wh, tile)
    factor = 1280 // tile[2]
    assert image == tile
    x, y, w, h = tile
    src = i420(1280, 720, seed=8)
    np.testing.assert_array_equal(canvas[0][y : y + h, x : x + w], block_means(src[0], factor))
    np.testing.assert_array_equal(
        canvas[1][y // 2 : (y + h) // 2, x // 2 : (x + w) // 2], block_means(src[1], factor)
    )


@pytest.mark.parametrize(
    ("src_hw", "dst_hw"),
    [
        ((720, 1280), (240, 426)),  # rows shrink by exactly 3, columns by 3.005
        ((1080, 1920), (360, 640)),  # exactly 3 both ways
        ((300, 500), (60, 77)),  # rows by 5
        ((1000, 1000), (10, 10)),  # 100 rows summed before scaling
        ((514, 9), (2, 9)),  # 257 rows: the largest sum that fits 16 bits
        ((77, 9), (7, 9)),  # 11 rows, columns copied
    ],
)
def test_whole_factor_row_shrinks_match_reference(
    src_hw: tuple[int, int], dst_hw: tuple[int, int]
) -> None:
    for src in (noise(*src_hw, seed=src_hw[0]), np.full(src_hw, 255, np.uint8)):
        h, w = dst_hw
        got = np.zeros((h, w), np.uint8)
        want = np.zeros_like(got)
        _mix.scale_plane(src, got, 0, 0, w, h)
        _mix_ref.scale_plane(src, want, 0, 0, w, h)
        assert max_diff(got, want) <= 1


@pytest.mark.parametrize(
    ("src_hw", "dst_hw"),
    [
        ((3, 1000), (2, 2)),  # 500+ taps per column: the float fallback
        ((900, 7), (1, 9)),  # shrink by 900 on one axis, enlarge the other
        ((1080, 1920), (1, 1)),
    ],
)
def test_huge_shrinks_match_reference(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> None:
    src = noise(*src_hw, seed=sum(src_hw))
    h, w = dst_hw
    got = np.full((h + 2, w + 2), SENTINEL, np.uint8)
    want = got.copy()
    _mix.scale_plane(src, got, 1, 1, w, h)
    _mix_ref.scale_plane(src, want, 1, 1, w, h)
    assert max_diff(got, want) <= 1
    assert (outside(got, 1, 1, w, h) == SENTINEL).all()


@FEW
@given(
    src_h=st.integers(1, 400),
    src_w=st.integers(1, 400),
    h=st.integers(1, 120),
    w=st.integers(1, 120),
    x=st.integers(0, 3),
    y=st.integers(0, 3),
    seed=st.integers(0, 2**16),
)
def test_scale_plane_property_many_taps(
    src_h: int, src_w: int, h: int, w: int, x: int, y: int, seed: int
) -> None:
    # sources up to 400 wide shrink into small tiles: many taps per sample, any band remainder
    src = noise(src_h, src_w, seed)
    dst = np.full((y + h + 1, x + w + 1), SENTINEL, np.uint8)
    want = dst.copy()
    _mix.scale_plane(src, dst, x, y, w, h)
    _mix_ref.scale_plane(src, want, x, y, w, h)
    assert max_diff(dst, want) <= 1
    assert (outside(dst, x, y, w, h) == SENTINEL).all()


def test_flat_planes_stay_flat_through_every_path() -> None:
    for value in (0, 1, 128, 254, 255):
        src = np.full((720, 1280), value, np.uint8)
        for w, h in ((640, 360), (320, 180), (426, 240), (1920, 1080), (7, 5), (1280, 720)):
            dst = np.zeros((h, w), np.uint8)
            _mix.scale_plane(src, dst, 0, 0, w, h)
            assert (dst == value).all(), (value, w, h)


def test_steady_state_allocates_nothing() -> None:
    src = i420(1280, 720, seed=2)
    canvas = blank_canvas(1280, 720)
    tiles = [(0, 0, 426, 240), (426, 240, 428, 240), (640, 360, 640, 360)]
    for tile in tiles:  # warm the caches and the scratch pool
        _mix.scale_into_tile(*src, *canvas, *tile)
    hits, misses, entries = _mix._cache_stats()

    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(100):
            for tile in tiles:
                _mix.scale_into_tile(*src, *canvas, *tile)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 4096, grown

    hits_after, misses_after, entries_after = _mix._cache_stats()
    assert misses_after == misses and entries_after == entries
    assert hits_after == hits + 100 * len(tiles) * 4


def test_threads_resizing_different_sizes_at_once() -> None:
    # each call takes its own scratch from the pool: results match the single-threaded ones
    jobs = [(smooth(720, 1280, seed=s), (w, h)) for s, (w, h) in
            enumerate([(426, 240), (320, 180), (854, 480), (1000, 700)])]  # fmt: skip
    want = []
    for src, (w, h) in jobs:
        out = np.zeros((h, w), np.uint8)
        _mix.scale_plane(src, out, 0, 0, w, h)
        want.append(out)
    got = [np.zeros_like(out) for out in want]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            src, (w, h) = jobs[index]
            for _ in range(20):
                _mix.scale_plane(src, got[index], 0, 0, w, h)
                np.testing.assert_array_equal(got[index], want[index])
        except BaseException as error:  # handed to the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


# ---------------------------------------------------------------------------------------------
# draw_border


def check_border(
    canvas_wh: tuple[int, int], rect: tuple[int, int, int, int], thickness: int
) -> Planes:
    colour = (210, 16, 146)
    got = blank_canvas(*canvas_wh)
    _mix.draw_border(*got, *rect, thickness, *colour)
    want = blank_canvas(*canvas_wh)
    _mix_ref.draw_border(want, rect, thickness, colour)
    for got_plane, want_plane in zip(got, want):
        np.testing.assert_array_equal(got_plane, want_plane)
    # guard bytes: nothing outside the rectangle or its chroma rectangle
    assert (outside(got[0], *rect) == SENTINEL).all()
    chroma = _mix_ref.chroma_rect(*rect)
    assert (outside(got[1], *chroma) == SENTINEL).all()
    assert (outside(got[2], *chroma) == SENTINEL).all()
    return got


def test_border_by_hand() -> None:
    got = check_border((16, 12), (2, 2, 10, 8), 2)
    y = got[0]
    assert (y[2:4, 2:12] == 210).all() and (y[8:10, 2:12] == 210).all()
    assert (y[4:8, 2:4] == 210).all() and (y[4:8, 10:12] == 210).all()
    assert (y[4:8, 4:10] == SENTINEL).all()
    # even geometry: chroma frame one sample wide around an untouched 3x2 inside
    u = got[1]
    assert (u[2:4, 2:5] == SENTINEL).all()
    assert (u[1, 1:6] == 16).all() and (u[4, 1:6] == 16).all()
    assert (u[1:5, 1] == 16).all() and (u[1:5, 5] == 16).all()


@SOME
@given(
    canvas_w=st.integers(1, 40),
    canvas_h=st.integers(1, 40),
    thickness=st.integers(1, 12),
    data=st.data(),
)
def test_border_property(canvas_w: int, canvas_h: int, thickness: int, data: st.DataObject) -> None:
    x = data.draw(st.integers(0, canvas_w - 1), label="x")
    y = data.draw(st.integers(0, canvas_h - 1), label="y")
    w = data.draw(st.integers(1, canvas_w - x), label="w")
    h = data.draw(st.integers(1, canvas_h - y), label="h")
    check_border((canvas_w, canvas_h), (x, y, w, h), thickness)


def test_border_rejects_bad_arguments() -> None:
    canvas = blank_canvas(32, 32)
    with pytest.raises(ValueError, match="thickness"):
        _mix.draw_border(*canvas, 0, 0, 8, 8, 0, 1, 2, 3)
    with pytest.raises(ValueError, match="x=30"):
        _mix.draw_border(*canvas, 30, 0, 8, 8, 1, 1, 2, 3)
    with pytest.raises(ValueError, match="v_val"):
        _mix.draw_border(*canvas, 0, 0, 8, 8, 1, 1, 2, 256)
    assert all((plane == SENTINEL).all() for plane in canvas)


# ---------------------------------------------------------------------------------------------
# mix_minus_limited


def limited(
    inputs: NDArray[np.int16], gains: NDArray[np.float32] | None = None
) -> tuple[NDArray[np.int16], NDArray[np.float64]]:
    if gains is None:
        gains = np.ones(inputs.shape[0], np.float32)
    out = np.empty_like(inputs)
    levels = np.empty(inputs.shape[0])
    _mix.mix_minus_limited(inputs, gains, out, levels)
    return out, levels


def tone(frequency: float, samples: int = 960, amplitude: float = 32767.0) -> NDArray[np.float64]:
    return amplitude * np.sin(2 * np.pi * frequency * np.arange(samples) / 48000)


def test_limiter_constants_follow_the_definition() -> None:
    assert abs(_mix.LIMITER_KNEE - _mix_ref.KNEE) < 1e-3
    assert abs(_mix.LIMITER_CEILING - _mix_ref.CEILING) < 1e-3
    assert abs(_mix_ref.KNEE - 0.7 * 32768) < 1e-9 and abs(_mix_ref.CEILING - 0.9 * 32768) < 1e-9


@SOME
@given(
    rows=st.integers(1, 12).flatmap(
        lambda n: st.lists(st.lists(pcm, min_size=24, max_size=24), min_size=n, max_size=n)
    ),
    data=st.data(),
)
def test_limited_mix_matches_reference(rows: list[list[int]], data: st.DataObject) -> None:
    inputs = np.array(rows, np.int16)
    choices = st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5, 3.0])
    picked = data.draw(st.lists(choices, min_size=len(rows), max_size=len(rows)), label="gains")
    gains = np.array(picked, np.float32)
    got, got_levels = limited(inputs, gains)
    want = np.empty_like(inputs)
    want_levels = np.empty(len(rows))
    _mix_ref.mix_minus_limited(inputs, gains, want, want_levels)
    assert np.abs(got.astype(np.int64) - want).max() <= 1
    np.testing.assert_allclose(got_levels, want_levels, rtol=0, atol=1e-3)


def test_below_the_knee_the_mix_is_plain_n_minus_1() -> None:
    inputs = (noise(9, 960, seed=3).astype(np.int16) - 128) * 9  # sums stay far below the knee
    out, _ = limited(inputs)
    plain = np.empty_like(inputs)
    _mix_ref.mix_minus(inputs, plain)
    np.testing.assert_array_equal(out, plain)


@pytest.mark.parametrize("value", [32767, -32768])
def test_limited_mix_never_wraps(value: int) -> None:
    inputs = np.full((700, 960), value, np.int16)
    inputs[::7] = -value - 1 if value < 0 else -value  # some sites pull the other way
    out, _ = limited(inputs, np.full(700, 16.0, np.float32))
    others = inputs.astype(np.int64).sum(axis=0) - inputs
    assert (np.sign(out) == np.sign(others)).all()
    assert np.abs(out.astype(np.int64)).max() < _mix_ref.CEILING


def test_three_full_scale_tones_stay_under_the_ceiling_unclipped() -> None:
    # three sites send full-scale tones; a fourth, silent, hears all three summed (~2.3x FS peaks)
    inputs = np.zeros((4, 960), np.int16)
    for i, frequency in enumerate((400, 500, 600)):
        inputs[i] = np.round(tone(frequency)).astype(np.int16)
    out, _ = limited(inputs)
    heard = out[3].astype(np.int64)
    raw = inputs[:3].astype(np.int64).sum(axis=0)
    assert np.abs(raw).max() > 2 * 32767  # the sum really overloads
    assert np.abs(heard).max() < _mix_ref.CEILING

    # no flat tops: above the knee, no 3 samples in a row share one value
    loud = np.abs(heard) > _mix_ref.KNEE
    same = np.diff(heard) == 0
    runs = loud[:-2] & loud[1:-1] & loud[2:] & same[:-1] & same[1:]
    assert not runs.any()
    # and the limiter keeps the shape: louder input, louder output, same sign
    assert (np.sign(heard) == np.sign(raw)).all()
    order = np.argsort(np.abs(raw), kind="stable")
    assert (np.diff(np.abs(heard)[order]) >= -1).all()


def test_limited_output_holds_no_trace_of_own_voice() -> None:
    n, samples = 8, 960
    t = np.arange(samples)
    voices = np.array([2500 * np.sin(2 * np.pi * (5 + 7 * j) * t / samples) for j in range(n)])
    inputs = np.round(voices).astype(np.int16)
    gains = np.linspace(0.25, 1.0, n).astype(np.float32)
    out, _ = limited(inputs, gains)
    energy = (voices * voices).sum(axis=1)
    for i in range(n):
        heard = out[i].astype(np.float64) @ voices.T / energy
        assert abs(heard[i]) < 2e-3
        # the others are heard at their gains (below the knee nothing bends)
        assert np.allclose(np.delete(heard, i), np.delete(gains, i), atol=2e-3)


def test_own_input_never_changes_own_output() -> None:
    # loud enough to bend: whatever site 3 sends, what site 3 hears stays the same
    inputs = (noise(5, 960, seed=12).astype(np.int16) - 128) * 250
    gains = np.array([1.0, 0.5, 2.0, 1.0, 0.25], np.float32)
    out, _ = limited(inputs, gains)
    assert np.abs(out[3].astype(np.int64)).max() > _mix_ref.KNEE
    for seed in range(5):
        changed = inputs.copy()
        changed[3] = noise(1, 960, seed=seed)[0].astype(np.int16) * 128
        out_changed, _ = limited(changed, gains)
        np.testing.assert_array_equal(out_changed[3], out[3])
        assert not np.array_equal(out_changed[0], out[0])


def test_gain_zero_removes_a_site_from_every_mix() -> None:
    inputs = (noise(6, 960, seed=11).astype(np.int16) - 128) * 200
    gains = np.array([1.0, 0.5, 0.0, 1.0, 2.0, 1.0], np.float32)
    out, levels = limited(inputs, gains)
    without = inputs.copy()
    without[2] = 0
    out_without, _ = limited(without, gains)
    np.testing.assert_array_equal(np.delete(out, 2, axis=0), np.delete(out_without, 2, axis=0))
    assert levels[2] == -127.0


def test_limited_levels_match_numpy() -> None:
    inputs = np.array([np.round(tone(1000, amplitude=a)) for a in (32767, 3276.8, 100, 0)])
    inputs = inputs.astype(np.int16)
    gains = np.array([0.5, 1.0, 2.0, 1.0], np.float32)
    _, levels = limited(inputs, gains)
    gained = inputs.astype(np.float64) * gains[:, None]
    rms = np.sqrt((gained**2).mean(axis=1))
    with np.errstate(divide="ignore"):
        want = np.maximum(20 * np.log10(rms / 32768), -127.0)
    np.testing.assert_allclose(levels, want, rtol=0, atol=1e-3)
    assert abs(levels[0] - (-3.01 - 6.02)) < 0.02  # a full-scale sine at half gain


def test_limited_mix_checks_its_arguments() -> None:
    inputs = np.zeros((3, 960), np.int16)
    out = np.empty_like(inputs)
    levels = np.empty(3)
    ones = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="2 entries"):
        _mix.mix_minus_limited(inputs, np.ones(2, np.float32), out, levels)
    with pytest.raises(ValueError, match="480"):
        _mix.mix_minus_limited(inputs, ones, np.empty((3, 480), np.int16), levels)
    with pytest.raises(ValueError, match="levels has 4"):
        _mix.mix_minus_limited(inputs, ones, out, np.empty(4))
    for bad in (-0.5, float("nan"), 17.0):
        gains = ones.copy()
        gains[1] = bad
        with pytest.raises(ValueError, match=r"gains\[1\]"):
            _mix.mix_minus_limited(inputs, gains, out, levels)


# ---------------------------------------------------------------------------------------------
# SIMD paths: every level the CPU offers gives the portable path's bytes exactly


@contextmanager
def simd_level(name: str) -> Iterator[None]:
    """Run the block with the kernel's video loops at SIMD level `name`, then restore it."""
    previous = _mix._simd(name)
    try:
        yield
    finally:
        _mix._simd(previous)


def scaled_at(
    level: str, src: NDArray[np.uint8], rect: tuple[int, int, int, int], pad: int
) -> NDArray[np.uint8]:
    """`src` scaled into `rect` of a sentinel plane wider than its view, at SIMD `level`."""
    x, y, w, h = rect
    big = np.full((y + h + 2, x + w + 3 + pad), SENTINEL, np.uint8)
    with simd_level(level):
        _mix.scale_plane(src, big[:, : x + w + 3], x, y, w, h)
    return big


def test_simd_switch() -> None:
    levels = _mix._SIMD_LEVELS
    assert levels[0] == "portable"
    assert set(levels) <= {"portable", "sse2", "avx2", "avx512"}
    best = _mix._simd()
    assert best == levels[-1]  # import picks the best level the CPU has
    assert _mix._simd("portable") == best
    assert _mix._simd() == "portable"
    assert _mix._simd(best) == "portable"
    with pytest.raises(ValueError, match="'neon'"):
        _mix._simd("neon")
    assert _mix._simd() == best


def widest_window(src_len: int, dst_len: int, block: int) -> int:
    """The most source columns any block of `block` outputs of an area shrink spans, counted
    from the even column at or before the block's first tap (every output's taps window is as
    wide as the widest output's, moved left where it would end past the source)."""
    lo = [j * src_len // dst_len for j in range(dst_len)]
    hi = [-(-(j + 1) * src_len // dst_len) - 1 for j in range(dst_len)]
    taps = max(h - lo_j + 1 for lo_j, h in zip(lo, hi))
    start = [min(lo_j, src_len - taps) for lo_j in lo]
    return max(
        start[min(j + block, dst_len) - 1] + taps - (start[j] & ~1)
        for j in range(0, dst_len, block)
    )


needs_line_path = pytest.mark.skipif(
    "avx512" not in _mix._SIMD_LEVELS, reason="this CPU has no AVX-512 VBMI: no line plans"
)


@needs_line_path
@pytest.mark.parametrize(
    ("src_len", "dst_len"),
    [(640, 426), (320, 213), (1280, 426), (640, 213), (1920, 400), (1280, 256), (999, 31)],
)
def test_line_plan_takes_the_widest_block_whose_windows_fit(src_len: int, dst_len: int) -> None:
    def fits(block: int) -> bool:
        return widest_window(src_len, dst_len, block) <= 64

    want = 32 if fits(32) else 16 if fits(16) else 0
    assert _mix._line_block(src_len, dst_len) == want


@needs_line_path
def test_line_plans_of_the_common_tiles() -> None:
    # the 3x3 tile's columns from 640 and 1280 sources, and a shrink past 3.8x that stays on
    # the band path; enlarging reads fewer columns than it writes
    assert _mix._line_block(640, 426) == 32
    assert _mix._line_block(1280, 426) == 16
    assert _mix._line_block(1920, 400) == 0
    assert _mix._line_block(176, 426) == 32
    assert _mix._line_block(426, 426) == 0  # copied columns need no plan
    with pytest.raises(ValueError, match="positive"):
        _mix._line_block(0, 4)


@needs_line_path
@pytest.mark.parametrize(
    ("src_w", "w", "block"),
    [(89, 45, 32), (92, 46, 32), (83, 21, 16), (95, 24, 16)],
)
def test_line_path_at_the_edge_of_its_window(src_w: int, w: int, block: int) -> None:
    # blocks that read exactly 64 columns, the last the window holds, give the portable bytes
    assert widest_window(src_w, w, block) == 64
    if block == 16:
        assert widest_window(src_w, w, 32) > 64
    assert _mix._line_block(src_w, w) == block
    src = noise(37, src_w + 9, seed=src_w)[:, :src_w]
    want = scaled_at("portable", src, (3, 1, w, 23), 9)
    got = scaled_at("avx512", src, (3, 1, w, 23), 9)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("src_w", "w"), [(50, 3), (20, 15), (64, 1), (7, 5), (130, 17)])
def test_simd_levels_agree_on_narrow_tiles(src_w: int, w: int) -> None:
    # fewer outputs than one block: a single masked store per row
    src = noise(40, src_w, seed=w)
    want = scaled_at("portable", src, (5, 2, w, 9), 4)
    for level in _mix._SIMD_LEVELS[1:]:
        np.testing.assert_array_equal(scaled_at(level, src, (5, 2, w, 9), 4), want, err_msg=level)


@SOME
@given(
    src_h=st.integers(1, 90),
    src_w=st.integers(1, 300),
    shape=st.sampled_from(
        ["any", "half", "quarter", "rows by a whole factor", "rows kept", "columns kept"]
    ),
    data=st.data(),
)
def test_simd_levels_are_bit_identical(
    src_h: int, src_w: int, shape: str, data: st.DataObject
) -> None:
    # sizes past 16 columns and rows reach the vector loops, bands and their tails
    if shape == "half":
        w, h = max(1, src_w // 2), max(1, src_h // 2)
    elif shape == "quarter":
        w, h = max(1, src_w // 4), max(1, src_h // 4)
    elif shape == "rows by a whole factor":
        factor = data.draw(st.integers(2, 9), label="factor")
        src_h = max(src_h, factor)
        h = src_h // factor
        w = data.draw(st.integers(1, 300), label="w")
    elif shape == "rows kept":
        h, w = src_h, data.draw(st.integers(1, 300), label="w")
    elif shape == "columns kept":
        h, w = data.draw(st.integers(1, 90), label="h"), src_w
    else:
        w = data.draw(st.integers(1, 300), label="w")
        h = data.draw(st.integers(1, 90), label="h")
    x = data.draw(st.integers(0, 20), label="x")
    y = data.draw(st.integers(0, 3), label="y")
    pad = data.draw(st.integers(0, 40), label="pad")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    src = noise(src_h, src_w + pad, seed)[:, :src_w]

    want = scaled_at("portable", src, (x, y, w, h), pad)
    assert (outside(want, x, y, w, h) == SENTINEL).all()
    for level in _mix._SIMD_LEVELS[1:]:
        got = scaled_at(level, src, (x, y, w, h), pad)
        assert (outside(got, x, y, w, h) == SENTINEL).all(), level
        np.testing.assert_array_equal(got, want, err_msg=level)


@pytest.mark.parametrize(
    ("src_wh", "tile"),
    [
        ((1280, 720), (0, 0, 426, 240)),  # the 3x3 tile: whole-factor rows, 3.005 columns
        ((1280, 720), (427, 241, 426, 240)),  # odd position: chroma rectangles shift
        ((1280, 720), (640, 360, 640, 360)),  # exact 2x
        ((1280, 720), (960, 540, 320, 180)),  # exact 4x
        ((640, 360), (0, 0, 426, 240)),
        ((176, 144), (11, 7, 1269, 713)),  # enlarge
        ((1920, 1080), (5, 5, 1001, 17)),  # pillarbox, a short last band
        ((1920, 1080), (3, 1, 400, 225)),  # columns past the AVX-512 window: the band path
    ],
)
def test_simd_levels_agree_on_tiles(
    src_wh: tuple[int, int], tile: tuple[int, int, int, int]
) -> None:
    src = i420(*src_wh, seed=tile[0] + tile[2])
    canvases = {}
    for level in _mix._SIMD_LEVELS:
        with simd_level(level):
            canvases[level], _ = check_tile(src, (1280, 720), tile)
    for level, canvas in canvases.items():
        for plane, want in zip(canvas, canvases["portable"]):
            np.testing.assert_array_equal(plane, want, err_msg=level)


def test_simd_paths_keep_flat_planes_flat() -> None:
    # saturated sums are where a wrong width of an intermediate would show
    for level in _mix._SIMD_LEVELS:
        with simd_level(level):
            for value in (0, 255):
                src = np.full((720, 1280), value, np.uint8)
                for w, h in ((640, 360), (320, 180), (426, 240), (1917, 1079), (33, 17)):
                    dst = np.zeros((h, w), np.uint8)
                    _mix.scale_plane(src, dst, 0, 0, w, h)
                    assert (dst == value).all(), (level, value, w, h)
