"""Site labels and placeholders: every Vietnamese mark drawn, labels fit and blend cleanly."""

from __future__ import annotations

import shutil
import unicodedata

import numpy as np
import pytest

from mcu import labels
from mcu.labels import (
    ELLIPSIS,
    SLATE,
    Label,
    blend_label,
    fit_text,
    label_font_size,
    label_margin,
    label_position,
    placeholder,
    render_label,
    rgb_to_yuv,
    text_bitmap,
    text_width,
    wrap_name,
)

NAME = "Cục THADS tỉnh Thừa Thiên Huế"
LONG_NAME = (
    "Cục Thi hành án dân sự tỉnh Thừa Thiên Huế, Chi cục Thi hành án dân sự thành phố Huế"
)
# one precomposed (NFC) code point each
MARKED = tuple("ạảãầẩẫậềểễệỉịọỏồổỗộớờởỡợụủứừửữựỳỵỷỹđĐ")
# private-use code points: DejaVu has no glyph for them, so they draw its missing-glyph box
MISSING = ("\ue000", "\U0010fffd")


def base_letter(char: str) -> str:
    """The letter without its marks: d/D for đ/Đ (a stroke, not a mark), else NFD minus marks."""
    if char in "đĐ":
        return "d" if char == "đ" else "D"
    return "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c))


def same_bitmap(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def bt601(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """Limited-range BT.601 in floating point, from the standard's matrix."""
    r, g, b = (c / 255 for c in rgb)
    return (
        16 + 65.481 * r + 128.553 * g + 24.966 * b,
        128 - 37.797 * r - 74.203 * g + 112.0 * b,
        128 + 112.0 * r - 93.786 * g - 18.214 * b,
    )


@pytest.mark.parametrize("size", [label_font_size(0), 20, label_font_size(10_000)])
def test_missing_glyph_box_is_what_unknown_code_points_draw(size: int) -> None:
    boxes = [text_bitmap(char, size) for char in MISSING]
    assert same_bitmap(boxes[0], boxes[1])
    assert boxes[0].max() == 255  # the box has ink
    assert not same_bitmap(boxes[0], text_bitmap("a", size))


@pytest.mark.parametrize("size", [label_font_size(0), 20, label_font_size(10_000)])
@pytest.mark.parametrize("char", MARKED)
def test_every_vietnamese_letter_draws_its_marks(char: str, size: int) -> None:
    glyph = text_bitmap(char, size)
    base = text_bitmap(base_letter(char), size)
    missing = text_bitmap(MISSING[0], size)
    assert base_letter(char) != char
    assert not same_bitmap(glyph, base)
    assert not same_bitmap(glyph, missing)
    # the marks (or the stroke of đ) add ink to the letter; the hook of "ỉ" replaces the dot
    # of "i", so compare i-letters with a dotless "ı"
    bare = text_bitmap("ı" if base_letter(char) == "i" else base_letter(char), size)
    assert int(glyph.sum()) > int(bare.sum())


def test_label_font_size_follows_the_tile_within_bounds() -> None:
    assert label_font_size(180) == 13  # 180 / 14 = 12.9
    assert label_font_size(360) == 26
    assert label_font_size(60) == 10
    assert label_font_size(1080) == 28


def test_label_of_a_vietnamese_name_fits_a_small_tile() -> None:
    label = render_label(NAME, 320, 180)
    margin = label_margin(180)
    assert label.text == NAME
    assert label.width % 2 == 0 and label.height % 2 == 0
    assert label.width <= 320 - 2 * margin
    for plane in (label.alpha, label.luma):
        assert plane.shape == (label.height, label.width) and plane.dtype == np.uint8
    for plane in (label.alpha_chroma, label.u, label.v):
        assert plane.shape == (label.height // 2, label.width // 2) and plane.dtype == np.uint8

    x, y = label_position((0, 0, 320, 180), label)
    assert x % 2 == 0 and y % 2 == 0
    assert x > 0 and x + label.width < 320
    assert y > 0 and y + label.height < 180
    assert y > 180 // 2  # bottom of the tile

    # in a tile elsewhere on the canvas the label moves with it
    assert label_position((320, 180, 320, 180), label) == (x + 320, y + 180)

    # rows with pixels more opaque than the box hold letters: from the marks above the
    # capitals to the dot under "ụ", a little more than the 13 px font size
    rows = np.flatnonzero((label.alpha > 200).any(axis=1))
    assert 13 <= rows[-1] - rows[0] + 1 <= 13 * 1.5


def test_labels_are_cached_per_name_and_size() -> None:
    first = render_label(NAME, 320, 180)
    assert render_label(NAME, 320, 180) is first
    assert render_label(unicodedata.normalize("NFD", NAME), 320, 180) is first
    assert render_label(NAME, 640, 360) is not first
    assert not first.luma.flags.writeable


def test_blank_names_give_a_transparent_label() -> None:
    label = render_label("  ", 320, 180)
    assert label.text == ""
    assert not label.alpha.any() and not label.alpha_chroma.any()
    assert render_label(f"  {NAME} ", 320, 180) is render_label(NAME, 320, 180)


def test_long_names_are_shortened_with_an_ellipsis() -> None:
    label = render_label(LONG_NAME, 320, 180)
    room = 320 - 2 * label_margin(180)
    assert text_width(LONG_NAME, label_font_size(180)) > room
    assert label.text.endswith(ELLIPSIS)
    assert LONG_NAME.startswith(label.text[:-1])
    assert len(label.text) < len(LONG_NAME)
    assert 0.8 * room <= label.width <= room


def test_fit_text_keeps_combining_marks_with_their_letter() -> None:
    text = "x\u0302" * 60  # x with circumflex has no precomposed form
    shown = fit_text(text, 14, 100)
    assert shown.endswith(ELLIPSIS) and text_width(shown, 14) <= 100
    assert shown[-2] == "\u0302"
    assert fit_text("ngắn", 14, 500) == "ngắn"


def test_label_text_is_readable_over_white_and_black() -> None:
    label = render_label(NAME, 640, 360)
    for background in (16, 235):
        y = np.full((360, 640), background, np.uint8)
        u = np.full((180, 320), 128, np.uint8)
        v = u.copy()
        x0, y0 = label_position((0, 0, 640, 360), label)
        blend_label(label, y, u, v, x0, y0)
        area = y[y0:y0 + label.height, x0:x0 + label.width].astype(int)

        # the left padding of the box holds no text; the brightest pixels are the letters
        box = area[label.height // 4: 3 * label.height // 4, 1:3]
        letters = np.percentile(area[:, label.width // 4: 3 * label.width // 4], 98)
        assert letters >= 220
        assert letters - box.max() >= 100
        # the box darkens whatever is behind it
        assert box.max() <= max(background - 60, 40)


def test_blend_changes_only_the_label_rectangle() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 256, (180, 320), np.uint8)
    u = rng.integers(0, 256, (90, 160), np.uint8)
    v = rng.integers(0, 256, (90, 160), np.uint8)
    before = y.copy(), u.copy(), v.copy()
    label = render_label(NAME, 320, 180)
    x0, y0 = 20, 140

    blend_label(label, y, u, v, x0, y0)
    inside = np.zeros(y.shape, bool)
    inside[y0:y0 + label.height, x0:x0 + label.width] = True
    inside_c = np.zeros(u.shape, bool)
    inside_c[y0 // 2:(y0 + label.height) // 2, x0 // 2:(x0 + label.width) // 2] = True
    assert np.array_equal(y[~inside], before[0][~inside])
    assert np.array_equal(u[~inside_c], before[1][~inside_c])
    assert np.array_equal(v[~inside_c], before[2][~inside_c])
    assert (y[inside] != before[0][inside]).mean() > 0.5

    # against the blend formula in floating point
    a = label.alpha.astype(float)
    dst = before[0][inside].reshape(label.height, label.width).astype(float)
    expected = np.rint((label.luma * a + dst * (255 - a)) / 255)
    assert np.abs(y[inside].reshape(expected.shape) - expected).max() <= 1

    # the rounded corners are transparent: the canvas shows through untouched
    assert label.alpha[0, 0] == 0
    assert y[y0, x0] == before[0][y0, x0]


@pytest.mark.parametrize("x0, y0", [(-40, 170), (300, -10), (310, 176), (-400, 0), (0, 400)])
def test_blend_is_clipped_to_the_canvas(x0: int, y0: int) -> None:
    rng = np.random.default_rng(11)
    y = rng.integers(0, 256, (180, 320), np.uint8)
    u = rng.integers(0, 256, (90, 160), np.uint8)
    v = u.copy()
    before = y.copy()
    label = render_label(NAME, 320, 180)
    blend_label(label, y, u, v, x0, y0)

    inside = np.zeros(y.shape, bool)
    inside[max(y0, 0):max(y0 + label.height, 0), max(x0, 0):max(x0 + label.width, 0)] = True
    assert np.array_equal(y[~inside], before[~inside])


def test_transparent_label_leaves_the_canvas_unchanged() -> None:
    rng = np.random.default_rng(3)
    h, w = 20, 40
    clear = Label(
        text="",
        width=w,
        height=h,
        alpha=np.zeros((h, w), np.uint8),
        luma=rng.integers(0, 256, (h, w), np.uint8),
        alpha_chroma=np.zeros((h // 2, w // 2), np.uint8),
        u=rng.integers(0, 256, (h // 2, w // 2), np.uint8),
        v=rng.integers(0, 256, (h // 2, w // 2), np.uint8),
    )
    y = rng.integers(0, 256, (64, 64), np.uint8)
    u = rng.integers(0, 256, (32, 32), np.uint8)
    v = rng.integers(0, 256, (32, 32), np.uint8)
    before = y.copy(), u.copy(), v.copy()
    blend_label(clear, y, u, v, 10, 12)
    assert all(np.array_equal(a, b) for a, b in zip((y, u, v), before))


def test_blend_refuses_odd_positions() -> None:
    y = np.zeros((180, 320), np.uint8)
    u = np.zeros((90, 160), np.uint8)
    with pytest.raises(ValueError, match="even"):
        blend_label(render_label(NAME, 320, 180), y, u, u.copy(), 3, 4)


def test_rgb_to_yuv_is_bt601_limited_range() -> None:
    rng = np.random.default_rng(5)
    colours = rng.integers(0, 256, (64, 3))
    y, u, v = rgb_to_yuv(colours.astype(np.uint8)[None, :, :])
    for i, colour in enumerate(colours):
        expected = bt601((int(colour[0]), int(colour[1]), int(colour[2])))
        for got, want in zip((y[0, i], u[0, i], v[0, i]), expected):
            assert abs(int(got) - want) <= 1.01
    white = rgb_to_yuv(np.full((1, 1, 3), 255, np.uint8))
    black = rgb_to_yuv(np.zeros((1, 1, 3), np.uint8))
    assert [int(p[0, 0]) for p in white] == [235, 128, 128]
    assert [int(p[0, 0]) for p in black] == [16, 128, 128]


def test_placeholder_planes_show_the_name() -> None:
    y, u, v = placeholder(NAME, 320, 180)
    assert y.shape == (180, 320) and u.shape == (90, 160) and v.shape == (90, 160)
    assert y.dtype == u.dtype == v.dtype == np.uint8
    assert not y.flags.writeable

    # mostly slate, but not flat
    values, counts = np.unique(y, return_counts=True)
    assert abs(int(values[counts.argmax()]) - bt601(SLATE)[0]) <= 1
    assert y.std() > 10

    # the name: bright letters in the lower part of the tile, different for another name
    assert (y[110:] > 200).sum() > 200
    other, _, _ = placeholder("Huế", 320, 180)
    assert not np.array_equal(y[110:], other[110:])


def test_placeholders_are_cached_and_checked() -> None:
    assert placeholder(NAME, 320, 180)[0] is placeholder(NAME, 320, 180)[0]
    with pytest.raises(ValueError, match="even"):
        placeholder(NAME, 321, 180)


def test_long_names_wrap_on_two_balanced_lines() -> None:
    lines = wrap_name(NAME, 20, 220)
    assert len(lines) == 2
    assert " ".join(lines) == NAME
    assert all(text_width(line, 20) <= 220 for line in lines)
    assert wrap_name("Huế", 20, 220) == ("Huế",)
    assert wrap_name("Thừa-Thiên-Huế-Đà-Nẵng-Quảng-Nam", 20, 120)[0].endswith(ELLIPSIS)


def test_missing_font_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    labels.font_path.cache_clear()
    try:
        with monkeypatch.context() as patch:
            patch.setattr(labels, "_FONT_DIRS", ())
            patch.setattr(shutil, "which", lambda name: None)
            with pytest.raises(FileNotFoundError, match="fonts-dejavu-core"):
                labels.font_path(True)
    finally:
        labels.font_path.cache_clear()
    assert labels.font_path(True).name == "DejaVuSans-Bold.ttf"


@pytest.mark.skipif(shutil.which("fc-match") is None, reason="fontconfig not installed")
def test_font_is_found_through_fontconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    labels.font_path.cache_clear()
    try:
        with monkeypatch.context() as patch:
            patch.setattr(labels, "_FONT_DIRS", ())
            found = labels.font_path(False)
    finally:
        labels.font_path.cache_clear()
    assert found.name == "DejaVuSans.ttf" and found.is_file()
