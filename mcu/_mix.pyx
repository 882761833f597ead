# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""The compiled kernel: scale decoded frames into canvas tiles, and mix 20 ms of audio.

Every public function checks its arguments in Python, allocates the scratch memory it needs, and
then does all of its work under ``with nogil:`` through the small C helpers below.

Planes are typed ``[:, ::view.contiguous]``: each row is contiguous but the row stride may exceed
the width (PyAV pads its lines). ``[:, ::1]`` would demand a fully C-contiguous array instead.
"""

import logging

from cython cimport view
from libc.math cimport floor, log10, sqrt
from libc.stdint cimport int16_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

logger = logging.getLogger(__name__)

cdef double FLOOR_DBOV = -127.0
cdef double FULL_SCALE = 32768.0


# ---------------------------------------------------------------------------------------------
# resampling


cdef struct Axis:
    # one axis of a resize: for output sample i, `count[i]` source samples starting at
    # `start[i]`, weighted by weight[i * taps + t]
    Py_ssize_t src_len
    Py_ssize_t dst_len
    Py_ssize_t taps
    Py_ssize_t *start
    Py_ssize_t *count
    float *weight


cdef struct Resampler:
    Axis horiz
    Axis vert
    float *rows    # src_h x dst_w, output of the horizontal pass
    float *acc     # dst_w, one output row being summed


cdef inline Py_ssize_t _max_taps(Py_ssize_t src_len, Py_ssize_t dst_len) noexcept nogil:
    """Upper bound of the source samples one output sample reads."""
    cdef Py_ssize_t taps
    if dst_len == src_len:
        return 1
    if dst_len > src_len:
        return 2
    # an interval of length S/D touches at most ceil(S/D) + 1 samples, and never more than S
    taps = (src_len + dst_len - 1) // dst_len + 1
    return taps if taps < src_len else src_len


cdef int _axis_alloc(Axis *axis, Py_ssize_t src_len, Py_ssize_t dst_len) except -1:
    axis.src_len = src_len
    axis.dst_len = dst_len
    axis.taps = _max_taps(src_len, dst_len)
    axis.start = <Py_ssize_t *>malloc(dst_len * sizeof(Py_ssize_t))
    axis.count = <Py_ssize_t *>malloc(dst_len * sizeof(Py_ssize_t))
    axis.weight = <float *>malloc(dst_len * axis.taps * sizeof(float))
    if axis.start == NULL or axis.count == NULL or axis.weight == NULL:
        raise MemoryError(f"no memory for a {src_len} -> {dst_len} weight table")
    return 0


cdef void _axis_free(Axis *axis) noexcept nogil:
    free(axis.start)
    free(axis.count)
    free(axis.weight)
    axis.start = NULL
    axis.count = NULL
    axis.weight = NULL


cdef int _resampler_alloc(
    Resampler *r, Py_ssize_t src_h, Py_ssize_t src_w, Py_ssize_t dst_h, Py_ssize_t dst_w
) except -1:
    """Allocate the tables and buffers of one resize; on failure free what was taken."""
    memset(r, 0, sizeof(Resampler))
    try:
        _axis_alloc(&r.horiz, src_w, dst_w)
        _axis_alloc(&r.vert, src_h, dst_h)
        r.rows = <float *>malloc(src_h * dst_w * sizeof(float))
        r.acc = <float *>malloc(dst_w * sizeof(float))
        if r.rows == NULL or r.acc == NULL:
            raise MemoryError(f"no memory to resize {src_w}x{src_h} to {dst_w}x{dst_h}")
    except MemoryError:
        _resampler_free(r)
        raise
    return 0


cdef void _resampler_free(Resampler *r) noexcept nogil:
    _axis_free(&r.horiz)
    _axis_free(&r.vert)
    free(r.rows)
    free(r.acc)
    r.rows = NULL
    r.acc = NULL


cdef void _axis_area(Axis *axis) noexcept nogil:
    """Area-average weights, exact in integers: all positions are scaled by D."""
    cdef Py_ssize_t s_len = axis.src_len
    cdef Py_ssize_t d_len = axis.dst_len
    cdef Py_ssize_t i, k, first, last
    cdef int64_t lo, hi, seg_lo, seg_hi
    cdef float *w
    for i in range(d_len):
        # output i covers [i*S, (i+1)*S) and source k covers [k*D, (k+1)*D), both in 1/D units
        lo = <int64_t>i * s_len
        hi = lo + s_len
        first = <Py_ssize_t>(lo // d_len)
        last = <Py_ssize_t>((hi - 1) // d_len)
        axis.start[i] = first
        axis.count[i] = last - first + 1
        w = axis.weight + i * axis.taps
        for k in range(first, last + 1):
            seg_lo = lo if lo > <int64_t>k * d_len else <int64_t>k * d_len
            seg_hi = hi if hi < <int64_t>(k + 1) * d_len else <int64_t>(k + 1) * d_len
            w[k - first] = <float>(<double>(seg_hi - seg_lo) / <double>s_len)


cdef void _axis_bilinear(Axis *axis) noexcept nogil:
    """Two-tap weights between the neighbours of each output pixel centre."""
    cdef Py_ssize_t s_len = axis.src_len
    cdef Py_ssize_t d_len = axis.dst_len
    cdef Py_ssize_t i, k
    cdef double pos, frac
    cdef float *w
    for i in range(d_len):
        pos = (i + 0.5) * s_len / d_len - 0.5
        if pos < 0.0:
            pos = 0.0
        elif pos > s_len - 1:
            pos = s_len - 1
        k = <Py_ssize_t>floor(pos)
        frac = pos - k
        w = axis.weight + i * axis.taps
        axis.start[i] = k
        if k >= s_len - 1:
            axis.count[i] = 1
            w[0] = 1.0
        else:
            axis.count[i] = 2
            w[0] = <float>(1.0 - frac)
            w[1] = <float>frac


cdef void _axis_weights(Axis *axis) noexcept nogil:
    cdef Py_ssize_t i
    if axis.dst_len < axis.src_len:
        _axis_area(axis)
    elif axis.dst_len > axis.src_len:
        _axis_bilinear(axis)
    else:
        for i in range(axis.dst_len):
            axis.start[i] = i
            axis.count[i] = 1
            axis.weight[i] = 1.0


cdef inline uint8_t _to_u8(float v) noexcept nogil:
    """Round half up and clamp to a byte."""
    v = v + 0.5
    if v <= 0.0:
        return 0
    if v >= 255.0:
        return 255
    return <uint8_t>v


cdef void _resample(
    Resampler *r,
    const uint8_t *src, Py_ssize_t src_stride,
    uint8_t *dst, Py_ssize_t dst_stride,
) noexcept nogil:
    """Resize the source plane into `dst`, which points at the rectangle's top-left byte."""
    cdef Py_ssize_t src_h = r.vert.src_len
    cdef Py_ssize_t out_w = r.horiz.dst_len
    cdef Py_ssize_t out_h = r.vert.dst_len
    cdef Py_ssize_t row, col, t, first, n
    cdef const uint8_t *src_row
    cdef float *tmp_row
    cdef float *w
    cdef float *acc = r.acc
    cdef float total, wt
    cdef uint8_t *dst_row

    _axis_weights(&r.horiz)
    _axis_weights(&r.vert)

    # horizontal pass: every source row, resized to the output width
    for row in range(src_h):
        src_row = src + row * src_stride
        tmp_row = r.rows + row * out_w
        for col in range(out_w):
            first = r.horiz.start[col]
            n = r.horiz.count[col]
            w = r.horiz.weight + col * r.horiz.taps
            total = 0.0
            for t in range(n):
                total = total + w[t] * src_row[first + t]
            tmp_row[col] = total

    # vertical pass: each output row is a weighted sum of whole intermediate rows
    for row in range(out_h):
        first = r.vert.start[row]
        n = r.vert.count[row]
        w = r.vert.weight + row * r.vert.taps
        wt = w[0]
        tmp_row = r.rows + first * out_w
        for col in range(out_w):
            acc[col] = wt * tmp_row[col]
        for t in range(1, n):
            wt = w[t]
            tmp_row = r.rows + (first + t) * out_w
            for col in range(out_w):
                acc[col] = acc[col] + wt * tmp_row[col]
        dst_row = dst + row * dst_stride
        for col in range(out_w):
            dst_row[col] = _to_u8(acc[col])


cdef inline void _fill(
    uint8_t *dst, Py_ssize_t dst_stride, Py_ssize_t w, Py_ssize_t h, uint8_t value
) noexcept nogil:
    cdef Py_ssize_t row
    if w <= 0 or h <= 0:
        return
    for row in range(h):
        memset(dst + row * dst_stride, value, w)


# ---------------------------------------------------------------------------------------------
# argument checks (Python level, before any nogil section)


cdef int _check_source(Py_ssize_t h, Py_ssize_t w, str name) except -1:
    if h < 1 or w < 1:
        raise ValueError(f"{name} plane is empty: {w}x{h}")
    return 0


cdef int _check_rect(
    Py_ssize_t plane_h, Py_ssize_t plane_w,
    Py_ssize_t x, Py_ssize_t y, Py_ssize_t w, Py_ssize_t h, str name,
) except -1:
    if w < 1 or h < 1:
        raise ValueError(f"{name} rectangle is empty: w={w}, h={h}")
    if x < 0 or y < 0:
        raise ValueError(f"{name} rectangle starts outside the plane: x={x}, y={y}")
    if x + w > plane_w or y + h > plane_h:
        raise ValueError(
            f"{name} rectangle (x={x}, y={y}, w={w}, h={h}) does not fit in a "
            f"{plane_w}x{plane_h} plane"
        )
    return 0


cdef int _check_byte(object value, str name) except -1:
    if not 0 <= value <= 255:
        raise ValueError(f"{name} must be in 0..255, got {value}")
    return 0


cdef inline Py_ssize_t _half_up(Py_ssize_t n) noexcept nogil:
    return (n + 1) // 2


cdef int _check_i420(
    Py_ssize_t y_h, Py_ssize_t y_w,
    Py_ssize_t u_h, Py_ssize_t u_w,
    Py_ssize_t v_h, Py_ssize_t v_w, str name,
) except -1:
    if u_h != _half_up(y_h) or u_w != _half_up(y_w) or v_h != u_h or v_w != u_w:
        raise ValueError(
            f"{name} is not I420: luma {y_w}x{y_h} needs chroma "
            f"{_half_up(y_w)}x{_half_up(y_h)}, got U {u_w}x{u_h} and V {v_w}x{v_h}"
        )
    return 0


# ---------------------------------------------------------------------------------------------
# video: public functions


def scale_plane(
    const uint8_t[:, ::view.contiguous] src,
    uint8_t[:, ::view.contiguous] dst,
    Py_ssize_t x,
    Py_ssize_t y,
    Py_ssize_t w,
    Py_ssize_t h,
):
    """Resize the whole of `src` into ``dst[y:y+h, x:x+w]``.

    Each axis shrinks by area averaging, grows bilinearly (pixel centres aligned), or is copied.
    """
    cdef Resampler r
    _check_source(src.shape[0], src.shape[1], "src")
    _check_rect(dst.shape[0], dst.shape[1], x, y, w, h, "dst")
    _resampler_alloc(&r, src.shape[0], src.shape[1], h, w)
    try:
        with nogil:
            _resample(&r, &src[0, 0], src.strides[0], &dst[y, x], dst.strides[0])
    finally:
        _resampler_free(&r)


def fill_plane(
    uint8_t[:, ::view.contiguous] dst,
    Py_ssize_t x,
    Py_ssize_t y,
    Py_ssize_t w,
    Py_ssize_t h,
    int value,
):
    """Set ``dst[y:y+h, x:x+w]`` to `value`."""
    _check_rect(dst.shape[0], dst.shape[1], x, y, w, h, "dst")
    _check_byte(value, "value")
    with nogil:
        _fill(&dst[y, x], dst.strides[0], w, h, <uint8_t>value)


def fit_rect(
    Py_ssize_t src_w,
    Py_ssize_t src_h,
    Py_ssize_t x,
    Py_ssize_t y,
    Py_ssize_t w,
    Py_ssize_t h,
):
    """Largest centred rectangle inside tile (x, y, w, h) with the aspect ratio of the source.

    The fitted side is rounded to the nearest pixel; when the tile's position and size are all
    even it is rounded to the nearest even number and the offsets are kept even, so chroma lines
    up. A side that would round to 0 becomes 1.
    """
    cdef object sw, sh, tw, th, fit_w, fit_h, left, top
    cdef bint even
    if src_w < 1 or src_h < 1:
        raise ValueError(f"source size must be at least 1x1, got {src_w}x{src_h}")
    if w < 1 or h < 1:
        raise ValueError(f"tile size must be at least 1x1, got {w}x{h}")
    if x < 0 or y < 0:
        raise ValueError(f"tile position must not be negative, got x={x}, y={y}")

    # Python integers: the cross products below cannot overflow
    sw, sh, tw, th = src_w, src_h, w, h
    even = x % 2 == 0 and y % 2 == 0 and w % 2 == 0 and h % 2 == 0
    if sw * th >= sh * tw:
        # source is relatively wider: full tile width, exact height tw * sh / sw
        fit_w = tw
        fit_h = _round_ratio(tw * sh, sw, even)
    else:
        fit_h = th
        fit_w = _round_ratio(th * sw, sh, even)
    left = _centre(tw, fit_w, even)
    top = _centre(th, fit_h, even)
    return (x + left, y + top, fit_w, fit_h)


cdef object _round_ratio(object num, object den, bint even):
    """num / den rounded half up to an integer (to an even one if asked), at least 1."""
    cdef object n
    if even:
        n = 2 * ((num + den) // (2 * den))
    else:
        n = (2 * num + den) // (2 * den)
    return n if n >= 1 else 1


cdef object _centre(object outer, object inner, bint even):
    """Offset of `inner` centred in `outer`; rounded down to even if asked."""
    if even:
        return 2 * ((outer - inner) // 4)
    return (outer - inner) // 2


ctypedef (Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t) Rect


cdef inline Rect _chroma_rect(Py_ssize_t x, Py_ssize_t y, Py_ssize_t w, Py_ssize_t h) noexcept:
    """The chroma samples a luma rectangle touches, in I420."""
    return (x // 2, y // 2, (x + w + 1) // 2 - x // 2, (y + h + 1) // 2 - y // 2)


cdef void _fill_around(
    uint8_t *plane, Py_ssize_t stride,
    Py_ssize_t tx, Py_ssize_t ty, Py_ssize_t tw, Py_ssize_t th,
    Py_ssize_t ix, Py_ssize_t iy, Py_ssize_t iw, Py_ssize_t ih,
    uint8_t value,
) noexcept nogil:
    """Fill tile (tx, ty, tw, th) except the inner rectangle (ix, iy, iw, ih) it contains."""
    # bars above and below span the tile's width; the side bars only the inner rows
    _fill(plane + ty * stride + tx, stride, tw, iy - ty, value)
    _fill(plane + (iy + ih) * stride + tx, stride, tw, ty + th - iy - ih, value)
    _fill(plane + iy * stride + tx, stride, ix - tx, ih, value)
    _fill(plane + iy * stride + ix + iw, stride, tx + tw - ix - iw, ih, value)


def scale_into_tile(
    const uint8_t[:, ::view.contiguous] sy,
    const uint8_t[:, ::view.contiguous] su,
    const uint8_t[:, ::view.contiguous] sv,
    uint8_t[:, ::view.contiguous] dy,
    uint8_t[:, ::view.contiguous] du,
    uint8_t[:, ::view.contiguous] dv,
    Py_ssize_t x,
    Py_ssize_t y,
    Py_ssize_t w,
    Py_ssize_t h,
    int bg_y=16,
    int bg_u=128,
    int bg_v=128,
):
    """Letterbox an I420 frame into tile (x, y, w, h) of an I420 canvas; return the image rect.

    Nothing outside the tile's luma rectangle and its chroma rectangle is written.
    """
    cdef Resampler luma
    cdef Resampler chroma
    cdef Py_ssize_t ix, iy, iw, ih
    cdef Py_ssize_t tcx, tcy, tcw, tch, icx, icy, icw, ich
    cdef uint8_t fill_y, fill_u, fill_v

    _check_source(sy.shape[0], sy.shape[1], "source luma")
    _check_i420(
        sy.shape[0], sy.shape[1], su.shape[0], su.shape[1], sv.shape[0], sv.shape[1], "source"
    )
    _check_i420(
        dy.shape[0], dy.shape[1], du.shape[0], du.shape[1], dv.shape[0], dv.shape[1], "canvas"
    )
    _check_rect(dy.shape[0], dy.shape[1], x, y, w, h, "tile")
    _check_byte(bg_y, "bg_y")
    _check_byte(bg_u, "bg_u")
    _check_byte(bg_v, "bg_v")
    fill_y = <uint8_t>bg_y
    fill_u = <uint8_t>bg_u
    fill_v = <uint8_t>bg_v

    ix, iy, iw, ih = fit_rect(sy.shape[1], sy.shape[0], x, y, w, h)
    tcx, tcy, tcw, tch = _chroma_rect(x, y, w, h)
    icx, icy, icw, ich = _chroma_rect(ix, iy, iw, ih)

    memset(&chroma, 0, sizeof(Resampler))
    _resampler_alloc(&luma, sy.shape[0], sy.shape[1], ih, iw)
    try:
        _resampler_alloc(&chroma, su.shape[0], su.shape[1], ich, icw)
        with nogil:
            _fill_around(&dy[0, 0], dy.strides[0], x, y, w, h, ix, iy, iw, ih, fill_y)
            _resample(&luma, &sy[0, 0], sy.strides[0], &dy[iy, ix], dy.strides[0])

            _fill_around(&du[0, 0], du.strides[0], tcx, tcy, tcw, tch, icx, icy, icw, ich, fill_u)
            _fill_around(&dv[0, 0], dv.strides[0], tcx, tcy, tcw, tch, icx, icy, icw, ich, fill_v)

            # U and V share a size, so they share the weight tables (rebuilt per call, cheap)
            _resample(&chroma, &su[0, 0], su.strides[0], &du[icy, icx], du.strides[0])
            _resample(&chroma, &sv[0, 0], sv.strides[0], &dv[icy, icx], dv.strides[0])
    finally:
        _resampler_free(&luma)
        _resampler_free(&chroma)
    return (ix, iy, iw, ih)


# ---------------------------------------------------------------------------------------------
# audio


cdef inline int16_t _clip16(int64_t v) noexcept nogil:
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return <int16_t>v


cdef void _sum_rows(
    const int16_t[:, ::1] inputs, int64_t *total, Py_ssize_t n_sites, Py_ssize_t n_samples
) noexcept nogil:
    cdef Py_ssize_t j, s
    for s in range(n_samples):
        total[s] = 0
    for j in range(n_sites):
        for s in range(n_samples):
            total[s] += inputs[j, s]


cdef int64_t *_alloc_total(Py_ssize_t n_samples) except NULL:
    # one extra slot so that zero samples still gives a valid pointer
    cdef int64_t *total = <int64_t *>malloc((n_samples + 1) * sizeof(int64_t))
    if total == NULL:
        raise MemoryError(f"no memory for a {n_samples}-sample mix")
    return total


def mix_minus(const int16_t[:, ::1] inputs, int16_t[:, ::1] out):
    """``out[i] = clip(sum of all rows - inputs[i])``: what site i hears (everyone but itself)."""
    cdef Py_ssize_t n_sites = inputs.shape[0]
    cdef Py_ssize_t n_samples = inputs.shape[1]
    cdef Py_ssize_t i, s
    cdef int64_t *total
    if out.shape[0] != n_sites or out.shape[1] != n_samples:
        raise ValueError(
            f"out shape ({out.shape[0]}, {out.shape[1]}) does not match inputs shape "
            f"({n_sites}, {n_samples})"
        )
    total = _alloc_total(n_samples)
    try:
        with nogil:
            _sum_rows(inputs, total, n_sites, n_samples)
            for i in range(n_sites):
                for s in range(n_samples):
                    out[i, s] = _clip16(total[s] - inputs[i, s])
    finally:
        free(total)


def mix_all(const int16_t[:, ::1] inputs, int16_t[::1] out_row):
    """``out_row = clip(sum of all rows)``: the mix a receive-only listener hears."""
    cdef Py_ssize_t n_sites = inputs.shape[0]
    cdef Py_ssize_t n_samples = inputs.shape[1]
    cdef Py_ssize_t s
    cdef int64_t *total
    if out_row.shape[0] != n_samples:
        raise ValueError(f"out_row has {out_row.shape[0]} samples, inputs have {n_samples}")
    total = _alloc_total(n_samples)
    try:
        with nogil:
            _sum_rows(inputs, total, n_sites, n_samples)
            for s in range(n_samples):
                out_row[s] = _clip16(total[s])
    finally:
        free(total)


def levels_dbov(const int16_t[:, ::1] inputs, double[::1] out):
    """``out[i]`` = RMS level of row i in dB relative to full scale (32768), floored at -127."""
    cdef Py_ssize_t n_sites = inputs.shape[0]
    cdef Py_ssize_t n_samples = inputs.shape[1]
    cdef Py_ssize_t i, s
    cdef int64_t energy, v
    cdef double rms, level
    if out.shape[0] != n_sites:
        raise ValueError(f"out has {out.shape[0]} entries, inputs have {n_sites} rows")
    with nogil:
        for i in range(n_sites):
            energy = 0
            for s in range(n_samples):
                v = inputs[i, s]
                energy += v * v
            level = FLOOR_DBOV
            if energy > 0:
                rms = sqrt(<double>energy / <double>n_samples)
                level = 20.0 * log10(rms / FULL_SCALE)
                if level < FLOOR_DBOV:
                    level = FLOOR_DBOV
            out[i] = level
