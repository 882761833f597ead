# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""The compiled kernel: scale decoded frames into canvas tiles, and mix 20 ms of audio.

Every public function checks its arguments in Python, takes its weight tables from a small cache
and its scratch memory from a pool, and then does all of its work under ``with nogil:`` through
the small C helpers below. A steady-state tick allocates nothing.

Planes are typed ``[:, ::view.contiguous]``: each row is contiguous but the row stride may exceed
the width (PyAV pads its lines). ``[:, ::1]`` would demand a fully C-contiguous array instead.

Resizing is separable and done in fixed point, one band of `LANES` output rows at a time:

1. vertical pass, whole rows: each output row of the band is a weighted sum of source rows, kept
   as 16-bit values with 8 fractional bits ("Q8"); weights are 16-bit fractions of 65536 ("Q16")
   and products keep their high half, so the loops are plain 16-bit multiplies GCC vectorises;
2. the band's rows are interleaved, sample by sample, so that the horizontal pass reads `LANES`
   neighbouring rows as one vector per source column;
3. horizontal pass: each output column is a weighted sum of a few interleaved source columns;
4. the results are rounded to bytes and spread back into the band's rows.

Every product drops less than one Q8 unit and every weight is off by less than one Q16 unit, so
a sample with `taps` source samples along both axes is within about `taps` / 256 of the float64
result; resizes that would need more than `MAX_FIXED_TAPS` fall back to a slower path in doubles.
Exact 2x and 4x shrinks have their own loops (means of 2x2 and 4x4 blocks, exact in integers), and
a vertical shrink by a whole factor sums its rows before it scales them.

On x86-64 the loops of ``_simd.h`` take over where they pay: SSE2 for the exact shrinks, and,
when the CPU has AVX2, bands of 16 rows whose vertical pass is transposed in registers. With
AVX-512 (BW, VL and VBMI: Ice Lake, Sapphire Rapids, Zen 4) there is no band and no transpose:
each output row is resized on its own, its horizontal taps picked out of the row by byte
permutes. They give the same bytes as the portable loops here (16-bit sums wrap alike in any
order); ``_simd()`` picks the level (tests compare them).
"""

import logging
from collections import OrderedDict

from cython cimport view
from libc.math cimport floor, isfinite, log10, sqrt
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

logger = logging.getLogger(__name__)

cdef double FLOOR_DBOV = -127.0
cdef double FULL_SCALE = 32768.0

# the soft limiter of mix_minus_limited: linear up to the knee, then compressed toward the ceiling
LIMITER_KNEE = 0.7 * FULL_SCALE
LIMITER_CEILING = 0.9 * FULL_SCALE
cdef float KNEE = LIMITER_KNEE
cdef float CEILING = LIMITER_CEILING
cdef float MAX_GAIN = 16.0

cdef extern from *:
    # a byte pointer the compiler may assume no other pointer in the loop writes through;
    # without it, stores to eight rows of bytes could alias each other and are not vectorised
    ctypedef uint8_t *bytes_out "uint8_t *CYTHON_RESTRICT"
    ctypedef const uint8_t *const_bytes_in "const uint8_t *CYTHON_RESTRICT"

cdef extern from "_simd.h":
    # SIMD loops, bit-identical to the portable ones below (see the header)
    int MCU_PORTABLE, MCU_SSE2, MCU_AVX2, MCU_AVX512
    enum: MCU_WIDE
    int MCU_BAND_COPY, MCU_BAND_WEIGHTED, MCU_BAND_EQUAL
    ctypedef struct mcu_band:
        const uint8_t *first[MCU_WIDE]
        Py_ssize_t count[MCU_WIDE]
        const uint16_t *weight[MCU_WIDE]
        int mode
        uint16_t bias, lift, scale
        const uint8_t *ahead
        Py_ssize_t ahead_rows
    ctypedef struct mcu_plan:
        Py_ssize_t block
    ctypedef struct mcu_line:
        const uint8_t *first
        Py_ssize_t count
        const uint16_t *weight
        int mode
        uint16_t bias, lift, scale
        const uint8_t *ahead
        Py_ssize_t ahead_rows
    int mcu_best_level() noexcept nogil
    void *mcu_alloc64(size_t size) noexcept nogil
    int mcu_plan_build(
        mcu_plan *p, const int32_t *start, const uint16_t *weight, Py_ssize_t taps,
        Py_ssize_t dst_len,
    ) noexcept nogil
    void mcu_plan_free(mcu_plan *p) noexcept nogil
    void mcu_prefetch_row(uint8_t *p, Py_ssize_t len) noexcept nogil
    void mcu_line_down(
        const mcu_line *l, Py_ssize_t stride, Py_ssize_t width, uint16_t *even, uint16_t *odd
    ) noexcept nogil
    void mcu_line_across(
        const mcu_plan *p, Py_ssize_t dst_len, const uint16_t *even, const uint16_t *odd,
        uint8_t *dst,
    ) noexcept nogil
    void mcu_halve_sse2(
        const uint8_t *src, Py_ssize_t src_stride, uint8_t *dst, Py_ssize_t dst_stride,
        Py_ssize_t w, Py_ssize_t h,
    ) noexcept nogil
    void mcu_quarter_sse2(
        const uint8_t *src, Py_ssize_t src_stride, uint8_t *dst, Py_ssize_t dst_stride,
        Py_ssize_t w, Py_ssize_t h,
    ) noexcept nogil
    void mcu_vertical_band_wide(
        const mcu_band *b, Py_ssize_t stride, Py_ssize_t width, uint16_t *mixed
    ) noexcept nogil
    void mcu_horizontal_wide(
        const int32_t *start, const uint16_t *weight, const uint16_t *lane, Py_ssize_t taps,
        Py_ssize_t dst_len, const uint16_t *mixed, uint8_t *out,
        const uint8_t *next, Py_ssize_t next_stride, Py_ssize_t next_rows,
    ) noexcept nogil
    void mcu_spread_wide(
        const uint8_t *out, Py_ssize_t width, uint8_t *dst, Py_ssize_t stride, Py_ssize_t rows
    ) noexcept nogil

cdef enum:
    LANES = 8  # output rows per band: one 128-bit vector of 16-bit samples
    ONE_Q16 = 65536
    MAX_FIXED_TAPS = 200  # vertical + horizontal taps the 16-bit path keeps within +-1
    CACHE_SIZE = 64  # weight tables kept (one per axis length pair)
    POOL_SIZE = 8  # scratch buffers kept for reuse
    LINES_AHEAD = 2  # output rows ahead whose source rows the AVX-512 path prefetches

cdef enum Kind:
    COPY = 0
    AREA = 1
    BILINEAR = 2


# ---------------------------------------------------------------------------------------------
# weight tables, cached per (source length, output length)


cdef struct Table:
    # one axis of a resize: output i reads source samples start[i] .. start[i] + taps - 1,
    # weighted by weight[i * taps + t] (Q16, zero outside the samples it really covers);
    # lane[] repeats every weight LANES times for the interleaved horizontal pass
    int kind
    Py_ssize_t src_len
    Py_ssize_t dst_len
    Py_ssize_t taps
    int32_t *start
    int32_t *lead  # first tap with a weight, relative to start
    int32_t *count  # taps with a weight
    uint16_t *weight
    uint16_t *lane
    # an exact integer shrink (`factor` samples per output) averages with equal weights: the
    # samples are summed first, then scaled once, as mulhi(sum << pre_shift, scale) * 2
    Py_ssize_t factor
    int pre_shift
    uint16_t scale
    # the horizontal pass of the AVX-512 line path (plan.block 0: the axis cannot take it)
    mcu_plan plan


cdef class _Weights:
    """An owned `Table`: built once, shared read-only by every call that resizes alike."""

    cdef Table t

    def __cinit__(self, Py_ssize_t src_len, Py_ssize_t dst_len):
        memset(&self.t, 0, sizeof(Table))
        self.t.src_len = src_len
        self.t.dst_len = dst_len
        if dst_len == src_len:
            self.t.kind = COPY
        elif dst_len < src_len:
            self.t.kind = AREA
        else:
            self.t.kind = BILINEAR
        self.t.taps = _count_taps(&self.t)
        if self.t.kind == AREA and src_len % dst_len == 0 and src_len // dst_len <= 257:
            _set_factor(&self.t, src_len // dst_len)
        n = dst_len * self.t.taps
        self.t.start = <int32_t *>malloc(dst_len * sizeof(int32_t))
        self.t.lead = <int32_t *>malloc(dst_len * sizeof(int32_t))
        self.t.count = <int32_t *>malloc(dst_len * sizeof(int32_t))
        self.t.weight = <uint16_t *>malloc(n * sizeof(uint16_t))
        self.t.lane = <uint16_t *>malloc(n * LANES * sizeof(uint16_t))
        if (
            self.t.start == NULL or self.t.lead == NULL or self.t.count == NULL
            or self.t.weight == NULL or self.t.lane == NULL
        ):
            raise MemoryError(f"no memory for a {src_len} -> {dst_len} weight table")
        _fill_table(&self.t)
        # only where the line path can run: elsewhere the plan would never be read
        if _best >= MCU_AVX512 and self.t.kind != COPY and mcu_plan_build(
            &self.t.plan, self.t.start, self.t.weight, self.t.taps, dst_len
        ) != 0:
            raise MemoryError(f"no memory for a {src_len} -> {dst_len} line plan")

    def __dealloc__(self):
        mcu_plan_free(&self.t.plan)
        free(self.t.start)
        free(self.t.lead)
        free(self.t.count)
        free(self.t.weight)
        free(self.t.lane)


_CACHE_CAPACITY = CACHE_SIZE
cdef object _tables = OrderedDict()
cdef Py_ssize_t _hits = 0
cdef Py_ssize_t _misses = 0


cdef _Weights _weights(Py_ssize_t src_len, Py_ssize_t dst_len):
    """The table for one axis, from the cache (least recently used entries leave first)."""
    global _hits, _misses
    key = (src_len, dst_len)
    entry = _tables.get(key)
    if entry is not None:
        _hits += 1
        _tables.move_to_end(key)
        return <_Weights>entry
    _misses += 1
    entry = _Weights(src_len, dst_len)
    _tables[key] = entry
    if len(_tables) > CACHE_SIZE:
        # a call still holding the evicted table keeps it alive until it returns
        _tables.popitem(last=False)
    return <_Weights>entry


def _cache_stats():
    """(hits, misses, entries) of the weight-table cache."""
    return (_hits, _misses, len(_tables))


def _line_block(Py_ssize_t src_len, Py_ssize_t dst_len):
    """Outputs per block of the AVX-512 line path's horizontal plan for this axis: 32 or 16,
    or 0 when its blocks would read more than a 64-column window (the band path takes it)."""
    if src_len < 1 or dst_len < 1:
        raise ValueError(f"axis lengths must be positive, got {src_len} -> {dst_len}")
    return _weights(src_len, dst_len).t.plan.block


def _cache_clear():
    """Drop every cached weight table (tests use it to start from a known state)."""
    global _hits, _misses
    _tables.clear()
    _hits = 0
    _misses = 0


cdef Py_ssize_t _count_taps(Table *t) noexcept:
    """The most source samples any output sample of this axis reads."""
    cdef Py_ssize_t i, first, last, most = 1
    cdef int64_t s_len = t.src_len
    cdef int64_t d_len = t.dst_len
    if t.kind == AREA:
        for i in range(t.dst_len):
            first = <Py_ssize_t>((i * s_len) // d_len)
            last = <Py_ssize_t>(((i + 1) * s_len - 1) // d_len)
            if last - first + 1 > most:
                most = last - first + 1
    elif t.kind == BILINEAR and t.src_len > 1:
        most = 2
    return most


cdef void _set_factor(Table *t, Py_ssize_t factor) noexcept:
    """Constants of the equal-weight path: sum << pre_shift stays below 2**16, and
    mulhi(sum << pre_shift, scale) * 2 is sum * 256 / factor (Q8) within two units."""
    cdef int shift = 0
    while 255 * factor * (2 << shift) <= 65535:
        shift += 1
    t.factor = factor
    t.pre_shift = shift
    # 2**(23 - shift) / factor lies in (32640, 65281]: it fits 16 bits, with 15 bits to spare
    t.scale = <uint16_t>(((<int64_t>1 << (23 - shift)) + factor // 2) // factor)


cdef void _place(Table *t, Py_ssize_t i, Py_ssize_t first, Py_ssize_t count) noexcept:
    """Put output i's taps at `first`, moving the window left if it would end past the source."""
    cdef Py_ssize_t start = first
    if start > t.src_len - t.taps:
        start = t.src_len - t.taps
    t.start[i] = <int32_t>start
    t.lead[i] = <int32_t>(first - start)
    t.count[i] = <int32_t>count


cdef void _fill_table(Table *t) noexcept:
    """Q16 weights of every output sample; each output's weights add up to exactly 65536."""
    cdef Py_ssize_t i, k, first, last, r
    cdef int64_t s_len = t.src_len
    cdef int64_t d_len = t.dst_len
    cdef int64_t lo, hi, seg_lo, seg_hi, covered, before, after
    cdef double pos, frac
    cdef uint16_t *w
    memset(t.weight, 0, t.dst_len * t.taps * sizeof(uint16_t))
    for i in range(t.dst_len):
        w = t.weight + i * t.taps
        if t.kind == AREA:
            # output i covers [i*S, (i+1)*S) and source k covers [k*D, (k+1)*D), in 1/D units;
            # rounding the running total keeps every weight within one unit and the sum exact
            lo = i * s_len
            hi = lo + s_len
            first = <Py_ssize_t>(lo // d_len)
            last = <Py_ssize_t>((hi - 1) // d_len)
            _place(t, i, first, last - first + 1)
            covered = 0
            before = 0
            for k in range(first, last + 1):
                seg_lo = lo if lo > k * d_len else k * d_len
                seg_hi = hi if hi < (k + 1) * d_len else (k + 1) * d_len
                covered += seg_hi - seg_lo
                after = (covered * ONE_Q16 + s_len // 2) // s_len
                w[t.lead[i] + k - first] = <uint16_t>(after - before)
                before = after
        elif t.kind == BILINEAR:
            # two taps between the neighbours of the output pixel's centre
            pos = (i + 0.5) * s_len / d_len - 0.5
            if pos < 0.0:
                pos = 0.0
            elif pos > s_len - 1:
                pos = s_len - 1
            first = <Py_ssize_t>floor(pos)
            frac = pos - first
            r = <Py_ssize_t>(frac * ONE_Q16 + 0.5)
            if first >= s_len - 1 or r == 0:
                _place(t, i, first, 1)
                w[t.lead[i]] = ONE_Q16 - 1  # 1.0 does not fit in 16 bits: 1 - 2**-16
            elif r >= ONE_Q16:
                _place(t, i, first + 1, 1)
                w[t.lead[i]] = ONE_Q16 - 1
            else:
                _place(t, i, first, 2)
                w[t.lead[i]] = <uint16_t>(ONE_Q16 - r)
                w[t.lead[i] + 1] = <uint16_t>r
        else:
            _place(t, i, i, 1)
            w[0] = ONE_Q16 - 1
    for i in range(t.dst_len * t.taps):
        for r in range(LANES):
            t.lane[i * LANES + r] = t.weight[i]


# ---------------------------------------------------------------------------------------------
# scratch buffers, pooled so that threads never share one and a steady state allocates nothing


cdef class _Scratch:
    """Band buffers of the 16-bit resize (and the float row of the audio mix)."""

    # room for MCU_WIDE (16) rows: the portable path uses the first LANES of them
    cdef uint16_t *rows  # rows of `width` samples: the vertical pass
    cdef uint16_t *mixed  # width * rows: the band interleaved
    cdef uint8_t *out  # out_width * rows: the horizontal pass, interleaved
    # two lines of the AVX-512 path, each `half` even columns, then `half` odd ones
    cdef uint16_t *halves
    cdef Py_ssize_t half
    cdef float *total  # the audio mix
    cdef Py_ssize_t width
    cdef Py_ssize_t out_width
    cdef Py_ssize_t samples

    def __dealloc__(self):
        free(self.rows)
        free(self.mixed)
        free(self.out)
        free(self.halves)
        free(self.total)

    cdef int fit(self, Py_ssize_t width, Py_ssize_t out_width) except -1:
        """Grow the band buffers to rows of `width` source and `out_width` output samples."""
        cdef void *p
        if width > self.width:
            p = realloc(self.rows, MCU_WIDE * width * sizeof(uint16_t))
            if p == NULL:
                raise MemoryError(f"no memory for a {width}-sample band")
            self.rows = <uint16_t *>p
            # a short last band interleaves rows it never computed: let them be zeros
            memset(self.rows, 0, MCU_WIDE * width * sizeof(uint16_t))
            p = realloc(self.mixed, MCU_WIDE * width * sizeof(uint16_t))
            if p == NULL:
                raise MemoryError(f"no memory for a {width}-sample band")
            self.mixed = <uint16_t *>p
            # each half: the line's columns rounded up to whole 64-column loads, and the 32
            # words a horizontal window may read past them; from a cache-line boundary, since
            # the vertical pass stores 64 bytes at a time
            free(self.halves)
            self.half = (width // 2 + 64 + 31) // 32 * 32
            self.halves = <uint16_t *>mcu_alloc64(4 * self.half * sizeof(uint16_t))
            if self.halves == NULL:
                raise MemoryError(f"no memory for a {width}-sample line")
            # words past the line are read (never used) by the horizontal windows
            memset(self.halves, 0, 4 * self.half * sizeof(uint16_t))
            self.width = width
        if out_width > self.out_width:
            p = realloc(self.out, MCU_WIDE * out_width)
            if p == NULL:
                raise MemoryError(f"no memory for a {out_width}-sample band")
            self.out = <uint8_t *>p
            self.out_width = out_width
        return 0

    cdef int fit_samples(self, Py_ssize_t samples) except -1:
        cdef void *p
        if samples > self.samples or self.total == NULL:
            p = realloc(self.total, (samples + 1) * sizeof(float))
            if p == NULL:
                raise MemoryError(f"no memory for a {samples}-sample mix")
            self.total = <float *>p
            self.samples = samples
        return 0


cdef list _pool = []


cdef _Scratch _take_scratch():
    if _pool:
        return <_Scratch>_pool.pop()
    return _Scratch()


cdef void _give_scratch(_Scratch scratch) noexcept:
    if len(_pool) < POOL_SIZE:
        _pool.append(scratch)


# ---------------------------------------------------------------------------------------------
# SIMD level: the best the CPU has, chosen once at import; tests lower it to compare the paths


_LEVEL_NAMES = ("portable", "sse2", "avx2", "avx512")
cdef int _best = mcu_best_level()
cdef int _level = _best
_SIMD_LEVELS = _LEVEL_NAMES[: _best + 1]


def _simd(name=None):
    """Switch the video loops to SIMD level `name` (one of `_SIMD_LEVELS`); return the old one.

    Without a name, only return the current level. Not thread-safe: a private switch for tests
    and benchmarks.
    """
    global _level
    previous = _LEVEL_NAMES[_level]
    if name is not None:
        if name not in _SIMD_LEVELS:
            raise ValueError(f"SIMD level must be one of {_SIMD_LEVELS}, got {name!r}")
        _level = _LEVEL_NAMES.index(name)
    return previous


# ---------------------------------------------------------------------------------------------
# resampling in 16-bit fixed point


cdef inline uint16_t _mulhi(uint16_t a, uint16_t b) noexcept nogil:
    """High half of a 16 x 16-bit product: a * b / 65536, rounded down."""
    return <uint16_t>((<uint32_t>a * <uint32_t>b) >> 16)


cdef inline uint16_t _q8(uint8_t v) noexcept nogil:
    return <uint16_t>(v << 8)


cdef void _vertical(
    const Table *v, Py_ssize_t i,
    const uint8_t *src, Py_ssize_t stride, uint16_t *row, Py_ssize_t width,
) noexcept nogil:
    """Output row i of the vertical pass, in Q8, over `width` samples."""
    cdef Py_ssize_t k, t
    cdef Py_ssize_t n = v.count[i]
    cdef const uint16_t *w = v.weight + i * v.taps + v.lead[i]
    cdef const uint8_t *a = src + (v.start[i] + v.lead[i]) * stride
    cdef const uint8_t *b
    cdef const uint8_t *c
    cdef const uint8_t *d
    cdef uint16_t w0 = w[0]
    cdef uint16_t w1, w2, w3, wt
    # truncated products lose up to one unit each: start at half the taps to centre the error
    cdef uint16_t bias = <uint16_t>(v.taps // 2)

    if v.kind == COPY:
        for k in range(width):
            row[k] = _q8(a[k])
        return
    if v.factor:
        _vertical_equal(v, a, stride, row, width)
        return
    if n == 1:
        for k in range(width):
            row[k] = bias + _mulhi(_q8(a[k]), w0)
        return
    b = a + stride
    w1 = w[1]
    if n == 2:
        for k in range(width):
            row[k] = bias + _mulhi(_q8(a[k]), w0) + _mulhi(_q8(b[k]), w1)
        return
    c = b + stride
    w2 = w[2]
    if n == 3:
        for k in range(width):
            row[k] = bias + _mulhi(_q8(a[k]), w0) + _mulhi(_q8(b[k]), w1) + _mulhi(_q8(c[k]), w2)
        return
    d = c + stride
    w3 = w[3]
    for k in range(width):
        row[k] = (
            bias + _mulhi(_q8(a[k]), w0) + _mulhi(_q8(b[k]), w1)
            + _mulhi(_q8(c[k]), w2) + _mulhi(_q8(d[k]), w3)
        )
    for t in range(4, n):
        a = d + (t - 3) * stride
        wt = w[t]
        for k in range(width):
            row[k] = row[k] + _mulhi(_q8(a[k]), wt)


cdef void _vertical_equal(
    const Table *v, const uint8_t *a, Py_ssize_t stride, uint16_t *row, Py_ssize_t width
) noexcept nogil:
    """A row of an exact integer shrink: the plain sum of `factor` rows, scaled once."""
    cdef Py_ssize_t k, t
    cdef Py_ssize_t n = v.factor
    # a multiply rather than a shift by a variable: it keeps GCC's vectors at 16 bits
    cdef uint16_t lift = <uint16_t>(1 << v.pre_shift)
    cdef uint16_t scale = v.scale
    cdef const uint8_t *b = a + stride
    cdef const uint8_t *c = b + stride
    cdef const uint8_t *d = c + stride
    # the truncated product is up to two units low: add one to centre the error
    if n == 2:
        for k in range(width):
            row[k] = 1 + 2 * _mulhi(<uint16_t>((a[k] + b[k]) * lift), scale)
    elif n == 3:
        for k in range(width):
            row[k] = 1 + 2 * _mulhi(<uint16_t>((a[k] + b[k] + c[k]) * lift), scale)
    elif n == 4:
        for k in range(width):
            row[k] = 1 + 2 * _mulhi(<uint16_t>((a[k] + b[k] + c[k] + d[k]) * lift), scale)
    else:
        for k in range(width):
            row[k] = a[k]
        for t in range(1, n):
            b = a + t * stride
            for k in range(width):
                row[k] = row[k] + b[k]
        for k in range(width):
            row[k] = 1 + 2 * _mulhi(<uint16_t>(row[k] * lift), scale)


cdef inline uint8_t _round_q8(uint16_t v) noexcept nogil:
    """Q8 to a byte, halves up (callers keep v <= 65407, so it cannot overflow)."""
    return <uint8_t>((v + 128) >> 8)


cdef void _narrow(const uint16_t *row, uint8_t *dst, Py_ssize_t width) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(width):
        dst[k] = _round_q8(row[k])


cdef void _interleave(
    const uint16_t *rows, Py_ssize_t width, uint16_t *mixed
) noexcept nogil:
    """mixed[k * LANES + r] = rows[r][k]: the band's LANES rows, column by column."""
    cdef Py_ssize_t k
    cdef const uint16_t *r0 = rows
    cdef const uint16_t *r1 = r0 + width
    cdef const uint16_t *r2 = r1 + width
    cdef const uint16_t *r3 = r2 + width
    cdef const uint16_t *r4 = r3 + width
    cdef const uint16_t *r5 = r4 + width
    cdef const uint16_t *r6 = r5 + width
    cdef const uint16_t *r7 = r6 + width
    for k in range(width):
        mixed[k * LANES + 0] = r0[k]
        mixed[k * LANES + 1] = r1[k]
        mixed[k * LANES + 2] = r2[k]
        mixed[k * LANES + 3] = r3[k]
        mixed[k * LANES + 4] = r4[k]
        mixed[k * LANES + 5] = r5[k]
        mixed[k * LANES + 6] = r6[k]
        mixed[k * LANES + 7] = r7[k]


cdef void _horizontal(const Table *h, const uint16_t *mixed, uint8_t *out) noexcept nogil:
    """The horizontal pass over an interleaved band: out[i * LANES + r] for every column i."""
    cdef Py_ssize_t i, t, r
    cdef Py_ssize_t taps = h.taps
    cdef const uint16_t *p
    cdef const uint16_t *w
    cdef uint16_t acc[LANES]
    cdef uint16_t bias = <uint16_t>(taps // 2)
    for i in range(h.dst_len):
        p = mixed + h.start[i] * LANES
        w = h.lane + i * taps * LANES
        for r in range(LANES):
            acc[r] = bias + _mulhi(p[r], w[r])
        for t in range(1, taps):
            for r in range(LANES):
                acc[r] = acc[r] + _mulhi(p[t * LANES + r], w[t * LANES + r])
        for r in range(LANES):
            out[i * LANES + r] = _round_q8(acc[r])


cdef void _spread_band(
    const_bytes_in out, Py_ssize_t width,
    bytes_out d0, bytes_out d1, bytes_out d2, bytes_out d3,
    bytes_out d4, bytes_out d5, bytes_out d6, bytes_out d7,
) noexcept nogil:
    """out[k * LANES + r] to row r of a whole band (pointers that must not overlap)."""
    cdef Py_ssize_t k
    for k in range(width):
        d0[k] = out[k * LANES + 0]
        d1[k] = out[k * LANES + 1]
        d2[k] = out[k * LANES + 2]
        d3[k] = out[k * LANES + 3]
        d4[k] = out[k * LANES + 4]
        d5[k] = out[k * LANES + 5]
        d6[k] = out[k * LANES + 6]
        d7[k] = out[k * LANES + 7]


cdef void _spread(
    const uint8_t *out, Py_ssize_t width, uint8_t *dst, Py_ssize_t stride, Py_ssize_t rows
) noexcept nogil:
    """Undo the interleaving: the first `rows` of the band's rows into the destination."""
    cdef Py_ssize_t k, r
    cdef uint8_t *d
    if rows == LANES:
        _spread_band(
            out, width, dst, dst + stride, dst + 2 * stride, dst + 3 * stride,
            dst + 4 * stride, dst + 5 * stride, dst + 6 * stride, dst + 7 * stride,
        )
        return
    for r in range(rows):
        d = dst + r * stride
        for k in range(width):
            d[k] = out[k * LANES + r]


cdef void _resample_fixed(
    const Table *h, const Table *v, _Scratch scratch,
    const uint8_t *src, Py_ssize_t src_stride,
    uint8_t *dst, Py_ssize_t dst_stride,
) noexcept nogil:
    """Resize a plane through the band pipeline; `dst` is the rectangle's top-left byte."""
    cdef Py_ssize_t width = h.src_len
    cdef Py_ssize_t out_w = h.dst_len
    cdef Py_ssize_t out_h = v.dst_len
    cdef Py_ssize_t index, top, r, rows
    cdef uint16_t *band = scratch.rows
    for index in range((out_h + LANES - 1) // LANES):
        top = index * LANES
        rows = out_h - top if out_h - top < LANES else LANES
        for r in range(rows):
            _vertical(v, top + r, src, src_stride, band + r * width, width)
        if h.kind == COPY:
            for r in range(rows):
                _narrow(band + r * width, dst + (top + r) * dst_stride, out_w)
            continue
        # rows past the end of a short last band hold stale samples: computed, never stored
        _interleave(band, width, scratch.mixed)
        _horizontal(h, scratch.mixed, scratch.out)
        _spread(scratch.out, out_w, dst + top * dst_stride, dst_stride, rows)


cdef void _describe_band(
    const Table *v, Py_ssize_t top, Py_ssize_t rows,
    const uint8_t *src, Py_ssize_t stride, mcu_band *b,
) noexcept nogil:
    """The source rows and weights of output rows top .. top + rows - 1, for _simd.h."""
    cdef Py_ssize_t r, i, first, last
    b.mode = MCU_BAND_COPY if v.kind == COPY else (
        MCU_BAND_EQUAL if v.factor else MCU_BAND_WEIGHTED
    )
    b.bias = <uint16_t>(v.taps // 2)
    b.lift = <uint16_t>(1 << v.pre_shift)
    b.scale = v.scale
    for r in range(MCU_WIDE):
        # rows past a short last band repeat its last row: computed, never stored
        i = top + r if r < rows else top + rows - 1
        if v.factor:
            b.first[r] = src + (v.start[i] + v.lead[i]) * stride
            b.count[r] = v.factor
        else:
            # all `taps` rows, zero weights included: a product with 0 adds nothing, and one
            # row count for the whole band lets the loop be unrolled
            b.first[r] = src + v.start[i] * stride
            b.count[r] = v.taps
        b.weight[r] = v.weight + i * v.taps
    b.ahead = src
    b.ahead_rows = 0
    if top + MCU_WIDE < v.dst_len:
        i = top + MCU_WIDE
        first = v.start[i] + (v.lead[i] if v.factor else 0)
        i = top + 2 * MCU_WIDE - 1 if top + 2 * MCU_WIDE <= v.dst_len else v.dst_len - 1
        last = v.start[i] + (v.lead[i] + v.factor if v.factor else v.taps)
        b.ahead = src + first * stride
        b.ahead_rows = last - first


cdef void _resample_wide(
    const Table *h, const Table *v, _Scratch scratch,
    const uint8_t *src, Py_ssize_t src_stride,
    uint8_t *dst, Py_ssize_t dst_stride,
) noexcept nogil:
    """`_resample_fixed` with AVX2: bands of MCU_WIDE rows, transposed with vector shuffles.
    Not for copied columns: `_resample_fixed` narrows those row by row, with no transposes."""
    cdef Py_ssize_t width = h.src_len
    cdef Py_ssize_t out_w = h.dst_len
    cdef Py_ssize_t out_h = v.dst_len
    cdef Py_ssize_t index, top, rows, later
    cdef mcu_band b
    for index in range((out_h + MCU_WIDE - 1) // MCU_WIDE):
        top = index * MCU_WIDE
        rows = out_h - top if out_h - top < MCU_WIDE else MCU_WIDE
        _describe_band(v, top, rows, src, src_stride, &b)
        mcu_vertical_band_wide(&b, src_stride, width, scratch.mixed)
        # the next band's canvas rows are prefetched on the way
        later = out_h - top - MCU_WIDE
        mcu_horizontal_wide(
            h.start, h.weight, h.lane, h.taps, out_w, scratch.mixed, scratch.out,
            dst + (top + MCU_WIDE) * dst_stride, dst_stride,
            0 if later < 0 else (later if later < MCU_WIDE else MCU_WIDE),
        )
        mcu_spread_wide(scratch.out, out_w, dst + top * dst_stride, dst_stride, rows)


cdef void _resample_lines(
    const Table *h, const Table *v, _Scratch scratch,
    const uint8_t *src, Py_ssize_t src_stride,
    uint8_t *dst, Py_ssize_t dst_stride,
) noexcept nogil:
    """`_resample_fixed` with AVX-512, one output row at a time (`mcu_line_down`, then
    `mcu_line_across`): the horizontal pass permutes its taps out of the row, so nothing is
    transposed. For axes whose plan fits (`h.plan.block`), not for copied columns."""
    cdef Py_ssize_t i, later
    cdef mcu_line line
    cdef uint16_t *even
    line.mode = MCU_BAND_COPY if v.kind == COPY else (
        MCU_BAND_EQUAL if v.factor else MCU_BAND_WEIGHTED
    )
    line.bias = <uint16_t>(v.taps // 2)
    line.lift = <uint16_t>(1 << v.pre_shift)
    line.scale = v.scale
    for i in range(v.dst_len):
        line.first = src + (v.start[i] + v.lead[i]) * src_stride
        line.count = v.factor if v.factor else v.count[i]
        line.weight = v.weight + i * v.taps + v.lead[i]
        # the rows of a later line are fetched while this one is computed
        later = i + LINES_AHEAD
        if later < v.dst_len:
            line.ahead = src + (v.start[later] + v.lead[later]) * src_stride
            line.ahead_rows = v.factor if v.factor else v.count[later]
            if line.ahead_rows > MCU_WIDE:
                # a big shrink: the hardware prefetcher follows the rest of its rows
                line.ahead_rows = MCU_WIDE
        else:
            line.ahead = src
            line.ahead_rows = 0
        # two lines in flight: the stores of one have left the core before the other's
        # horizontal pass loads across them
        even = scratch.halves + (i & 1) * 2 * scratch.half
        mcu_line_down(&line, src_stride, h.src_len, even, even + scratch.half)
        if later < v.dst_len:
            # the canvas row the later line writes, too (5-10 % of a 3x3 canvas of 640x360)
            mcu_prefetch_row(dst + later * dst_stride, h.dst_len)
        if i > 0:
            even = scratch.halves + ((i - 1) & 1) * 2 * scratch.half
            mcu_line_across(
                &h.plan, h.dst_len, even, even + scratch.half, dst + (i - 1) * dst_stride
            )
    i = v.dst_len - 1
    even = scratch.halves + (i & 1) * 2 * scratch.half
    mcu_line_across(&h.plan, h.dst_len, even, even + scratch.half, dst + i * dst_stride)


cdef void _copy_plane(
    const uint8_t *src, Py_ssize_t src_stride, uint8_t *dst, Py_ssize_t dst_stride,
    Py_ssize_t w, Py_ssize_t h,
) noexcept nogil:
    cdef Py_ssize_t row
    for row in range(h):
        memcpy(dst + row * dst_stride, src + row * src_stride, w)


cdef void _halve(
    const uint8_t *src, Py_ssize_t src_stride, uint8_t *dst, Py_ssize_t dst_stride,
    Py_ssize_t w, Py_ssize_t h,
) noexcept nogil:
    """Exact 2x shrink: each output sample is the mean of a 2x2 block, halves rounded up."""
    cdef Py_ssize_t row, k
    cdef const uint8_t *a
    cdef const uint8_t *b
    cdef uint8_t *d
    for row in range(h):
        a = src + 2 * row * src_stride
        b = a + src_stride
        d = dst + row * dst_stride
        for k in range(w):
            d[k] = <uint8_t>((a[2 * k] + a[2 * k + 1] + b[2 * k] + b[2 * k + 1] + 2) >> 2)


cdef void _quarter(
    const uint8_t *src, Py_ssize_t src_stride, uint8_t *dst, Py_ssize_t dst_stride,
    Py_ssize_t w, Py_ssize_t h, uint16_t *sums,
) noexcept nogil:
    """Exact 4x shrink: sum four rows, then each group of four columns; mean of 16, rounded."""
    cdef Py_ssize_t row, k
    cdef const uint8_t *a
    cdef const uint8_t *b
    cdef const uint8_t *c
    cdef const uint8_t *e
    cdef uint8_t *d
    for row in range(h):
        a = src + 4 * row * src_stride
        b = a + src_stride
        c = b + src_stride
        e = c + src_stride
        for k in range(4 * w):
            sums[k] = <uint16_t>(a[k] + b[k] + c[k] + e[k])
        d = dst + row * dst_stride
        for k in range(w):
            d[k] = <uint8_t>(
                (sums[4 * k] + sums[4 * k + 1] + sums[4 * k + 2] + sums[4 * k + 3] + 8) >> 4
            )


cdef void _resample(
    const Table *h, const Table *v, _Scratch scratch,
    const uint8_t *src, Py_ssize_t src_stride,
    uint8_t *dst, Py_ssize_t dst_stride,
) noexcept nogil:
    """Resize the source plane into `dst` (the rectangle's top-left byte) by the fastest path."""
    cdef Py_ssize_t sw = h.src_len
    cdef Py_ssize_t sh = v.src_len
    cdef Py_ssize_t w = h.dst_len
    cdef Py_ssize_t hh = v.dst_len
    if h.kind == COPY and v.kind == COPY:
        _copy_plane(src, src_stride, dst, dst_stride, w, hh)
    elif sw == 2 * w and sh == 2 * hh:
        if _level >= MCU_SSE2:
            mcu_halve_sse2(src, src_stride, dst, dst_stride, w, hh)
        else:
            _halve(src, src_stride, dst, dst_stride, w, hh)
    elif sw == 4 * w and sh == 4 * hh:
        if _level >= MCU_SSE2:
            mcu_quarter_sse2(src, src_stride, dst, dst_stride, w, hh)
        else:
            _quarter(src, src_stride, dst, dst_stride, w, hh, scratch.rows)
    elif h.taps + v.taps <= MAX_FIXED_TAPS:
        if _level >= MCU_AVX512 and h.plan.block:
            _resample_lines(h, v, scratch, src, src_stride, dst, dst_stride)
        elif _level >= MCU_AVX2 and h.kind != COPY:
            _resample_wide(h, v, scratch, src, src_stride, dst, dst_stride)
        else:
            _resample_fixed(h, v, scratch, src, src_stride, dst, dst_stride)
    else:
        _resample_float(h, v, scratch, src, src_stride, dst, dst_stride)


cdef double _weight(const Table *t, Py_ssize_t i, Py_ssize_t k) noexcept nogil:
    """Exact weight of source sample k in output i (k among the output's taps)."""
    cdef int64_t lo, hi, seg_lo, seg_hi
    if t.kind == AREA:
        lo = <int64_t>i * t.src_len
        hi = lo + t.src_len
        seg_lo = lo if lo > <int64_t>k * t.dst_len else <int64_t>k * t.dst_len
        seg_hi = hi if hi < <int64_t>(k + 1) * t.dst_len else <int64_t>(k + 1) * t.dst_len
        return <double>(seg_hi - seg_lo) / <double>t.src_len
    if t.count[i] == 1:
        return 1.0
    return t.weight[i * t.taps + k - t.start[i]] / <double>ONE_Q16


cdef void _resample_float(
    const Table *h, const Table *v, _Scratch scratch,
    const uint8_t *src, Py_ssize_t src_stride,
    uint8_t *dst, Py_ssize_t dst_stride,
) noexcept nogil:
    """Resizes with many taps (huge shrinks), in doubles: slower, allocates, and rare."""
    cdef Py_ssize_t width = h.src_len
    cdef Py_ssize_t i, j, k, first, n
    cdef double total, wt
    cdef double *acc = <double *>malloc((width + h.dst_len * h.taps) * sizeof(double))
    cdef double *hw = acc + width
    cdef const uint8_t *row
    if acc == NULL:
        return  # no memory: leave the rectangle as it was rather than fail in a video tick
    for j in range(h.dst_len):
        first = h.start[j] + h.lead[j]
        for k in range(h.count[j]):
            hw[j * h.taps + k] = _weight(h, j, first + k)
    for i in range(v.dst_len):
        first = v.start[i] + v.lead[i]
        n = v.count[i]
        for k in range(width):
            acc[k] = 0.0
        for j in range(first, first + n):
            wt = _weight(v, i, j)
            row = src + j * src_stride
            for k in range(width):
                acc[k] += wt * row[k]
        for j in range(h.dst_len):
            first = h.start[j] + h.lead[j]
            total = 0.0
            for k in range(h.count[j]):
                total += hw[j * h.taps + k] * acc[first + k]
            dst[i * dst_stride + j] = _to_u8(total)
    free(acc)


cdef inline uint8_t _to_u8(double v) noexcept nogil:
    """Round half up and clamp to a byte."""
    v = floor(v + 0.5)
    if v <= 0.0:
        return 0
    if v >= 255.0:
        return 255
    return <uint8_t>v


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


cdef int _resize(
    const uint8_t[:, ::view.contiguous] src,
    uint8_t[:, ::view.contiguous] dst,
    Py_ssize_t x, Py_ssize_t y, Py_ssize_t w, Py_ssize_t h,
    _Scratch scratch,
) except -1:
    """Resize the whole of `src` into dst[y:y+h, x:x+w] (arguments already checked)."""
    cdef _Weights horiz = _weights(src.shape[1], w)
    cdef _Weights vert = _weights(src.shape[0], h)
    scratch.fit(src.shape[1], w)
    with nogil:
        _resample(
            &horiz.t, &vert.t, scratch, &src[0, 0], src.strides[0], &dst[y, x], dst.strides[0]
        )
    return 0


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
    _check_source(src.shape[0], src.shape[1], "src")
    _check_rect(dst.shape[0], dst.shape[1], x, y, w, h, "dst")
    scratch = _take_scratch()
    _resize(src, dst, x, y, w, h, scratch)
    _give_scratch(scratch)


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
    cdef _Weights luma_h, luma_v, chroma_h, chroma_v
    cdef _Scratch scratch
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

    # U and V share a size, so they share the chroma tables
    luma_h = _weights(sy.shape[1], iw)
    luma_v = _weights(sy.shape[0], ih)
    chroma_h = _weights(su.shape[1], icw)
    chroma_v = _weights(su.shape[0], ich)
    scratch = _take_scratch()
    scratch.fit(sy.shape[1], iw)
    with nogil:
        _fill_around(&dy[0, 0], dy.strides[0], x, y, w, h, ix, iy, iw, ih, fill_y)
        _resample(
            &luma_h.t, &luma_v.t, scratch, &sy[0, 0], sy.strides[0], &dy[iy, ix], dy.strides[0]
        )
        _fill_around(&du[0, 0], du.strides[0], tcx, tcy, tcw, tch, icx, icy, icw, ich, fill_u)
        _fill_around(&dv[0, 0], dv.strides[0], tcx, tcy, tcw, tch, icx, icy, icw, ich, fill_v)
        _resample(
            &chroma_h.t, &chroma_v.t, scratch,
            &su[0, 0], su.strides[0], &du[icy, icx], du.strides[0],
        )
        _resample(
            &chroma_h.t, &chroma_v.t, scratch,
            &sv[0, 0], sv.strides[0], &dv[icy, icx], dv.strides[0],
        )
    _give_scratch(scratch)
    return (ix, iy, iw, ih)


def draw_border(
    uint8_t[:, ::view.contiguous] dy,
    uint8_t[:, ::view.contiguous] du,
    uint8_t[:, ::view.contiguous] dv,
    Py_ssize_t x,
    Py_ssize_t y,
    Py_ssize_t w,
    Py_ssize_t h,
    Py_ssize_t thickness,
    int y_val,
    int u_val,
    int v_val,
):
    """Paint a frame `thickness` luma pixels wide just inside rectangle (x, y, w, h).

    A chroma sample is painted when any luma sample it covers inside the rectangle is on the
    frame; nothing outside the rectangle and its chroma rectangle is written.
    """
    cdef Py_ssize_t ix, iy, iw, ih, cx0, cy0, cx1, cy1
    cdef Py_ssize_t tcx, tcy, tcw, tch
    _check_i420(
        dy.shape[0], dy.shape[1], du.shape[0], du.shape[1], dv.shape[0], dv.shape[1], "canvas"
    )
    _check_rect(dy.shape[0], dy.shape[1], x, y, w, h, "border")
    if thickness < 1:
        raise ValueError(f"border thickness must be at least 1, got {thickness}")
    _check_byte(y_val, "y_val")
    _check_byte(u_val, "u_val")
    _check_byte(v_val, "v_val")

    # the untouched inside, in luma; a frame thicker than half the rectangle covers all of it
    ix = x + thickness
    iy = y + thickness
    iw = w - 2 * thickness if w > 2 * thickness else 0
    ih = h - 2 * thickness if h > 2 * thickness else 0
    # chroma samples whose luma samples inside the rectangle all lie in that inside
    tcx, tcy, tcw, tch = _chroma_rect(x, y, w, h)
    cx0 = (ix + 1) // 2
    cy0 = (iy + 1) // 2
    cx1 = (ix + iw) // 2
    cy1 = (iy + ih) // 2
    if iw == 0 or ih == 0 or cx1 <= cx0 or cy1 <= cy0:
        cx0, cy0, cx1, cy1 = tcx, tcy, tcx, tcy
    with nogil:
        _frame(&dy[0, 0], dy.strides[0], x, y, w, h, ix, iy, iw, ih, <uint8_t>y_val)
        _frame(
            &du[0, 0], du.strides[0], tcx, tcy, tcw, tch, cx0, cy0, cx1 - cx0, cy1 - cy0,
            <uint8_t>u_val,
        )
        _frame(
            &dv[0, 0], dv.strides[0], tcx, tcy, tcw, tch, cx0, cy0, cx1 - cx0, cy1 - cy0,
            <uint8_t>v_val,
        )


cdef void _frame(
    uint8_t *plane, Py_ssize_t stride,
    Py_ssize_t tx, Py_ssize_t ty, Py_ssize_t tw, Py_ssize_t th,
    Py_ssize_t ix, Py_ssize_t iy, Py_ssize_t iw, Py_ssize_t ih,
    uint8_t value,
) noexcept nogil:
    """Fill rectangle (tx, ty, tw, th) but for its inside (ix, iy, iw, ih), which may be empty."""
    if iw <= 0 or ih <= 0:
        _fill(plane + ty * stride + tx, stride, tw, th, value)
    else:
        _fill_around(plane, stride, tx, ty, tw, th, ix, iy, iw, ih, value)


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


cdef inline int16_t _limit(float y) noexcept nogil:
    """The soft limiter: y below the knee unchanged, above it bent toward the ceiling, rounded.

    Above the knee K the excess e becomes e * D / (D + e), with D = ceiling - K: slope 1 at the
    knee, ever flatter after it, and never reaching the ceiling, so loud sums are not flat-topped.
    """
    cdef float zero = 0.0
    cdef float half = 0.5
    cdef float size = y if y >= zero else -y
    cdef float over = size - KNEE
    cdef float room = CEILING - KNEE
    cdef int32_t level
    # float constants throughout: a double literal would widen the whole loop to doubles
    over = over if over > zero else zero
    size = size if size < KNEE else KNEE
    level = <int32_t>(size + over * room / (room + over) + half)
    return <int16_t>(level if y >= zero else -level)


cdef int _check_gains(const float[::1] gains) except -1:
    cdef Py_ssize_t i
    for i in range(gains.shape[0]):
        if not (isfinite(gains[i]) and 0.0 <= gains[i] <= MAX_GAIN):
            raise ValueError(f"gains[{i}] must be in 0..{MAX_GAIN:g}, got {gains[i]}")
    return 0


def mix_minus_limited(
    const int16_t[:, ::1] inputs,
    const float[::1] gains,
    int16_t[:, ::1] out,
    double[::1] levels,
):
    """N-1 mixes with per-site gains and a soft limiter, and each site's level, in O(N).

    ``out[i]`` = limit(sum over j != i of gains[j] * inputs[j]); ``levels[i]`` = RMS of
    gains[i] * inputs[i] in dB relative to full scale (32768), floored at -127.
    """
    cdef Py_ssize_t n_sites = inputs.shape[0]
    cdef Py_ssize_t n_samples = inputs.shape[1]
    cdef Py_ssize_t i, s, r, chunk, whole
    cdef float g, energy
    cdef float part[LANES]
    cdef float *total
    cdef const int16_t *x
    cdef int16_t *o
    cdef double rms, level
    cdef _Scratch scratch
    if out.shape[0] != n_sites or out.shape[1] != n_samples:
        raise ValueError(
            f"out shape ({out.shape[0]}, {out.shape[1]}) does not match inputs shape "
            f"({n_sites}, {n_samples})"
        )
    if gains.shape[0] != n_sites:
        raise ValueError(f"gains has {gains.shape[0]} entries, inputs have {n_sites} rows")
    if levels.shape[0] != n_sites:
        raise ValueError(f"levels has {levels.shape[0]} entries, inputs have {n_sites} rows")
    _check_gains(gains)
    if n_sites == 0:
        return
    scratch = _take_scratch()
    scratch.fit_samples(n_samples)
    total = scratch.total
    whole = n_samples - n_samples % LANES
    with nogil:
        # first sweep: everyone's gained sum, and each site's energy on the way
        for s in range(n_samples):
            total[s] = 0.0
        for i in range(n_sites):
            g = gains[i]
            x = &inputs[i, 0]
            for r in range(LANES):
                part[r] = 0.0
            for chunk in range(whole // LANES):
                s = chunk * LANES
                for r in range(LANES):
                    total[s + r] = total[s + r] + g * x[s + r]
                    part[r] = part[r] + <float>x[s + r] * <float>x[s + r]
            energy = 0.0
            for s in range(whole, n_samples):
                total[s] = total[s] + g * x[s]
                energy = energy + <float>x[s] * <float>x[s]
            for r in range(LANES):
                energy = energy + part[r]
            level = FLOOR_DBOV
            if energy > 0.0 and g > 0.0 and n_samples > 0:
                rms = g * sqrt(<double>energy / <double>n_samples)
                level = 20.0 * log10(rms / FULL_SCALE)
                if level < FLOOR_DBOV:
                    level = FLOOR_DBOV
            levels[i] = level

        # second sweep: take each site's own part back out, and limit
        for i in range(n_sites):
            g = gains[i]
            x = &inputs[i, 0]
            o = &out[i, 0]
            for s in range(n_samples):
                o[s] = _limit(total[s] - g * x[s])
    _give_scratch(scratch)
