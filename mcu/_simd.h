/* SIMD loops of the video kernel in mcu/_mix.pyx.
 *
 * Every function here computes exactly what the portable Cython loop it replaces computes: the
 * same 16-bit operations in the same modular arithmetic, so results are bit-identical (the tests
 * compare the two paths byte for byte). SSE2 is part of x86-64, so its loops need no check; the
 * AVX2 and AVX-512 loops are compiled for their instruction sets function by function (no global
 * -mavx2) and _mix.pyx calls them only when the CPU reports those sets at import. On other CPUs
 * only the scalar loops are built, and _mix.pyx never calls them there (its level stays
 * portable).
 */
#ifndef MCU_SIMD_H
#define MCU_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define MCU_X86 1
#include <immintrin.h>
#define MCU_TARGET_AVX2 __attribute__((target("avx2")))
#define MCU_TARGET_AVX512 __attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512vbmi")))
#else
#define MCU_X86 0
#endif

/* levels of _mix._simd(): each includes the ones below it */
#define MCU_PORTABLE 0
#define MCU_SSE2 1
#define MCU_AVX2 2
#define MCU_AVX512 3

/* output rows ahead whose source the 2x shrink prefetches (4 to 16 measured alike) */
#define MCU_HALVE_AHEAD 4

/* output rows per band on the AVX2 path: one 256-bit vector of 16-bit samples */
#define MCU_WIDE 16
/* copies of each weight in Table.lane (LANES of _mix.pyx) */
#define MCU_LANES 8

static int mcu_best_level(void)
{
#if MCU_X86
    __builtin_cpu_init();
    /* the AVX-512 level still runs the AVX2 bands where its plans do not fit */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512vbmi"))
        return MCU_AVX512;
    return __builtin_cpu_supports("avx2") ? MCU_AVX2 : MCU_SSE2;
#else
    return MCU_PORTABLE;
#endif
}

#if MCU_X86
/* Source rows needed a few output rows later are fetched while this one is computed: a
 * picture row rarely fills a 4 KiB page, and the hardware prefetcher stops at page edges.
 * Without this the exact shrinks ran at half the memory bandwidth. One fetch per 64 bytes,
 * issued when byte offset k starts a new 64. */
#define MCU_PREFETCH(ahead, stride, rows, k)                                    \
    do {                                                                        \
        if (((k) & 63) == 0) {                                                  \
            ptrdiff_t mcu_r_;                                                   \
            for (mcu_r_ = 0; mcu_r_ < (rows); mcu_r_++)                         \
                _mm_prefetch((const char *)((ahead) + mcu_r_ * (stride) + (k)), \
                             _MM_HINT_T1);                                      \
        }                                                                       \
    } while (0)
#endif

/* ---- exact 2x shrink: (a + b + c + d + 2) >> 2 over each 2x2 block ----------------------- */

#if MCU_X86
/* outputs k .. k + 15 from rows a and b: even bytes masked, odd bytes shifted down, and both
 * pairs summed in 16 bits */
static inline void mcu_halve16(const uint8_t *a, const uint8_t *b, uint8_t *d, ptrdiff_t k)
{
    const __m128i even = _mm_set1_epi16(0x00ff);
    const __m128i two = _mm_set1_epi16(2);
    __m128i a0 = _mm_loadu_si128((const __m128i *)(a + 2 * k));
    __m128i a1 = _mm_loadu_si128((const __m128i *)(a + 2 * k + 16));
    __m128i b0 = _mm_loadu_si128((const __m128i *)(b + 2 * k));
    __m128i b1 = _mm_loadu_si128((const __m128i *)(b + 2 * k + 16));
    __m128i s0 = _mm_add_epi16(_mm_add_epi16(_mm_and_si128(a0, even), _mm_srli_epi16(a0, 8)),
                               _mm_add_epi16(_mm_and_si128(b0, even), _mm_srli_epi16(b0, 8)));
    __m128i s1 = _mm_add_epi16(_mm_add_epi16(_mm_and_si128(a1, even), _mm_srli_epi16(a1, 8)),
                               _mm_add_epi16(_mm_and_si128(b1, even), _mm_srli_epi16(b1, 8)));
    s0 = _mm_srli_epi16(_mm_add_epi16(s0, two), 2);
    s1 = _mm_srli_epi16(_mm_add_epi16(s1, two), 2);
    _mm_storeu_si128((__m128i *)(d + k), _mm_packus_epi16(s0, s1));
}
#endif

/* ---- exact 4x shrink: the sum of each 4x4 block, (sum + 8) >> 4 ------------------------- */

#if MCU_X86
/* 16 source bytes of four rows to the 4 sums of their 4x4 blocks, as 32-bit lanes */
static inline __m128i mcu_quarter_sums(const uint8_t *a, ptrdiff_t stride)
{
    const __m128i even = _mm_set1_epi16(0x00ff);
    const __m128i ones = _mm_set1_epi16(1);
    __m128i pairs = _mm_setzero_si128();
    int t;
    for (t = 0; t < 4; t++) {
        __m128i x = _mm_loadu_si128((const __m128i *)(a + t * stride));
        x = _mm_add_epi16(_mm_and_si128(x, even), _mm_srli_epi16(x, 8));
        pairs = _mm_add_epi16(pairs, x);
    }
    return _mm_madd_epi16(pairs, ones);
}

/* outputs k .. k + 15 from the four rows at a: (sum + 8) >> 4, packed to bytes */
static inline void mcu_quarter16(const uint8_t *a, ptrdiff_t stride, uint8_t *d, ptrdiff_t k)
{
    const __m128i eight = _mm_set1_epi32(8);
    __m128i s0 = mcu_quarter_sums(a + 4 * k, stride);
    __m128i s1 = mcu_quarter_sums(a + 4 * k + 16, stride);
    __m128i s2 = mcu_quarter_sums(a + 4 * k + 32, stride);
    __m128i s3 = mcu_quarter_sums(a + 4 * k + 48, stride);
    s0 = _mm_srli_epi32(_mm_add_epi32(s0, eight), 4);
    s1 = _mm_srli_epi32(_mm_add_epi32(s1, eight), 4);
    s2 = _mm_srli_epi32(_mm_add_epi32(s2, eight), 4);
    s3 = _mm_srli_epi32(_mm_add_epi32(s3, eight), 4);
    /* the means fit a byte, so the signed 32 -> 16 pack loses nothing */
    s0 = _mm_packs_epi32(s0, s1);
    s2 = _mm_packs_epi32(s2, s3);
    _mm_storeu_si128((__m128i *)(d + k), _mm_packus_epi16(s0, s2));
}
#endif

#if MCU_X86
/* outputs k .. k + 15 of an exact shrink by `factor` (2 or 4) from the rows at a */
static inline __attribute__((always_inline)) void mcu_shrink16(
    const uint8_t *a, ptrdiff_t stride, uint8_t *d, ptrdiff_t k, const int factor)
{
    if (factor == 2)
        mcu_halve16(a, a + stride, d, k);
    else
        mcu_quarter16(a, stride, d, k);
}
#endif

/* The row loop of both exact shrinks, inlined with `factor` (2 or 4) constant: 16 outputs at a
 * time, then the block ending at the edge (a few outputs written twice alike) rather than a slow
 * tail; the scalar loop takes rows under 16 outputs and other CPUs. Each output row reads
 * `factor` source rows, so the prefetch looks 2 * AHEAD / factor output rows ahead: the same
 * source distance for both. */
static inline __attribute__((always_inline)) void mcu_shrink_sse2(
    const uint8_t *src, ptrdiff_t src_stride, uint8_t *dst, ptrdiff_t dst_stride, ptrdiff_t w,
    ptrdiff_t h, const int factor)
{
    const int shift = factor == 2 ? 2 : 4; /* log2 of the factor * factor samples summed */
    ptrdiff_t row, k;
    for (row = 0; row < h; row++) {
        const uint8_t *a = src + factor * row * src_stride;
        uint8_t *d = dst + row * dst_stride;
        k = 0;
#if MCU_X86
        for (; k + 16 <= w; k += 16) {
            if (row + 2 * MCU_HALVE_AHEAD / factor < h)
                MCU_PREFETCH(a + 2 * MCU_HALVE_AHEAD * src_stride, src_stride, factor,
                             factor * k);
            mcu_shrink16(a, src_stride, d, k, factor);
        }
        if (k < w && w >= 16) {
            mcu_shrink16(a, src_stride, d, w - 16, factor);
            k = w;
        }
#endif
        for (; k < w; k++) {
            unsigned sum = 0;
            int t, c;
            for (t = 0; t < factor; t++)
                for (c = 0; c < factor; c++)
                    sum += a[t * src_stride + factor * k + c];
            d[k] = (uint8_t)((sum + (1u << (shift - 1))) >> shift);
        }
    }
}

static void mcu_halve_sse2(const uint8_t *src, ptrdiff_t src_stride, uint8_t *dst,
                           ptrdiff_t dst_stride, ptrdiff_t w, ptrdiff_t h)
{
    mcu_shrink_sse2(src, src_stride, dst, dst_stride, w, h, 2);
}

static void mcu_quarter_sse2(const uint8_t *src, ptrdiff_t src_stride, uint8_t *dst,
                             ptrdiff_t dst_stride, ptrdiff_t w, ptrdiff_t h)
{
    mcu_shrink_sse2(src, src_stride, dst, dst_stride, w, h, 4);
}

/* ---- the AVX2 band pipeline: WIDE rows per band -------------------------------------------- */

static inline uint16_t mcu_mulhi(uint16_t a, uint16_t b)
{
    return (uint16_t)(((uint32_t)a * b) >> 16);
}

#if MCU_X86
/* rows 0..7 of eight 16-column blocks transposed: out[c] holds column c (low lane) and column
 * c + 8 (high lane), rows 0..7 each */
MCU_TARGET_AVX2
static inline void mcu_transpose8x16(const __m256i in[8], __m256i out[8])
{
    __m256i p[8], q[8];
    int i;
    for (i = 0; i < 4; i++) {
        p[2 * i] = _mm256_unpacklo_epi16(in[2 * i], in[2 * i + 1]);
        p[2 * i + 1] = _mm256_unpackhi_epi16(in[2 * i], in[2 * i + 1]);
    }
    /* p[2i]: row pair i, columns 0-3 | 8-11; p[2i+1]: columns 4-7 | 12-15 */
    for (i = 0; i < 2; i++) {
        q[4 * i + 0] = _mm256_unpacklo_epi32(p[4 * i], p[4 * i + 2]);
        q[4 * i + 1] = _mm256_unpackhi_epi32(p[4 * i], p[4 * i + 2]);
        q[4 * i + 2] = _mm256_unpacklo_epi32(p[4 * i + 1], p[4 * i + 3]);
        q[4 * i + 3] = _mm256_unpackhi_epi32(p[4 * i + 1], p[4 * i + 3]);
    }
    /* q[4i + j]: rows 4i..4i+3, columns 2j, 2j+1 | 2j+8, 2j+9 */
    for (i = 0; i < 4; i++) {
        out[2 * i] = _mm256_unpacklo_epi64(q[i], q[4 + i]);
        out[2 * i + 1] = _mm256_unpackhi_epi64(q[i], q[4 + i]);
    }
}
#endif

/* The vertical pass of a whole band (_vertical and _vertical_equal of _mix.pyx), written
 * straight into the interleaved layout mixed[k * WIDE + r]: each block of columns of the band's
 * 16 rows is computed in registers and transposed there, so the rows never go through memory.
 * Band row r reads count[r] source rows from first[r]; mode COPY takes one row as it is,
 * WEIGHTED weighs them by weight[r][t], EQUAL sums them for a whole-factor shrink. */
#define MCU_BAND_COPY 0
#define MCU_BAND_WEIGHTED 1
#define MCU_BAND_EQUAL 2

typedef struct {
    const uint8_t *first[MCU_WIDE];
    ptrdiff_t count[MCU_WIDE];
    const uint16_t *weight[MCU_WIDE];
    int mode;
    uint16_t bias, lift, scale;
    const uint8_t *ahead; /* first source row of the next band, and how many rows it reads */
    ptrdiff_t ahead_rows;
} mcu_band;

static inline uint16_t mcu_band_sample(const mcu_band *b, int r, ptrdiff_t stride, ptrdiff_t k)
{
    const uint8_t *a = b->first[r] + k;
    ptrdiff_t t, n = b->count[r];
    uint16_t sum = 0;
    if (b->mode == MCU_BAND_COPY)
        return (uint16_t)(a[0] << 8);
    if (b->mode == MCU_BAND_EQUAL) {
        for (t = 0; t < n; t++)
            sum = (uint16_t)(sum + a[t * stride]);
        return (uint16_t)(1 + 2 * mcu_mulhi((uint16_t)(sum * b->lift), b->scale));
    }
    sum = b->bias;
    for (t = 0; t < n; t++)
        sum = (uint16_t)(sum + mcu_mulhi((uint16_t)(a[t * stride] << 8), b->weight[r][t]));
    return sum;
}

#if MCU_X86
/* Columns k .. k + 31 of the band, read as 16-bit words: the even columns are the low bytes
 * and the odd ones the high bytes, so a mask or a shift widens them (no byte shuffles, which
 * compete with the transposes for one port). Each half of the band is transposed twice, even
 * columns then odd. Inlined with mode and the row count n constant; wv holds the weights. */
MCU_TARGET_AVX2
static inline __attribute__((always_inline)) void mcu_band_block32(
    const mcu_band *b, ptrdiff_t stride, uint16_t *mixed, ptrdiff_t k, const int mode,
    const ptrdiff_t n, const __m256i wv[][4])
{
    const __m256i bias = _mm256_set1_epi16((short)b->bias);
    const __m256i lift = _mm256_set1_epi16((short)b->lift);
    const __m256i scale = _mm256_set1_epi16((short)b->scale);
    const __m256i one = _mm256_set1_epi16(1);
    const __m256i low = _mm256_set1_epi16(0x00ff);
    const __m256i high = _mm256_set1_epi16((short)0xff00);
    __m256i ev[8], od[8], out[8];
    ptrdiff_t t;
    int r, half, c, odd;
    /* the next band's source rows, half of them per 32 columns: each 64 bytes of them is
     * fetched once, and the fetches do not come in one burst */
    for (t = (k >> 5) & 1; t < b->ahead_rows; t += 2)
        _mm_prefetch((const char *)(b->ahead + t * stride + (k & ~(ptrdiff_t)63)), _MM_HINT_T1);
    for (half = 0; half < 2; half++) {
        for (r = 0; r < 8; r++) {
            const uint8_t *a = b->first[8 * half + r] + k;
            __m256i x = _mm256_loadu_si256((const __m256i *)a);
            __m256i e, o, x0, x1;
            if (mode == MCU_BAND_COPY) {
                e = _mm256_slli_epi16(x, 8);
                o = _mm256_and_si256(x, high);
            } else if (mode == MCU_BAND_EQUAL) {
                e = _mm256_and_si256(x, low);
                o = _mm256_srli_epi16(x, 8);
                for (t = 1; t < n; t++) {
                    x = _mm256_loadu_si256((const __m256i *)(a + t * stride));
                    e = _mm256_add_epi16(e, _mm256_and_si256(x, low));
                    o = _mm256_add_epi16(o, _mm256_srli_epi16(x, 8));
                }
                e = _mm256_mulhi_epu16(_mm256_mullo_epi16(e, lift), scale);
                o = _mm256_mulhi_epu16(_mm256_mullo_epi16(o, lift), scale);
                e = _mm256_add_epi16(_mm256_add_epi16(e, e), one);
                o = _mm256_add_epi16(_mm256_add_epi16(o, o), one);
            } else {
                const __m256i *w = wv[8 * half + r];
                e = bias;
                o = bias;
                for (t = 0; t < n; t++) {
                    /* the Q8 samples: even columns shifted up, odd ones masked in place */
                    x = _mm256_loadu_si256((const __m256i *)(a + t * stride));
                    x0 = _mm256_mulhi_epu16(_mm256_slli_epi16(x, 8), w[t]);
                    x1 = _mm256_mulhi_epu16(_mm256_and_si256(x, high), w[t]);
                    e = _mm256_add_epi16(e, x0);
                    o = _mm256_add_epi16(o, x1);
                }
            }
            ev[r] = e;
            od[r] = o;
        }
        for (odd = 0; odd < 2; odd++) {
            /* out[c]: word c (low lane) and word c + 8 (high lane), i.e. columns
             * k + 2c + odd and k + 2c + 16 + odd */
            mcu_transpose8x16(odd ? od : ev, out);
            for (c = 0; c < 8; c++) {
                uint16_t *at = mixed + (k + 2 * c + odd) * MCU_WIDE + 8 * half;
                _mm_storeu_si128((__m128i *)at, _mm256_castsi256_si128(out[c]));
                _mm_storeu_si128((__m128i *)(at + 16 * MCU_WIDE),
                                 _mm256_extracti128_si256(out[c], 1));
            }
        }
    }
}

/* Columns k .. k + 15 of the band, for row counts without their own copy of the loop above
 * (any count per row). */
MCU_TARGET_AVX2
static inline void mcu_band_block16(const mcu_band *b, ptrdiff_t stride, uint16_t *mixed,
                                    ptrdiff_t k)
{
    const __m256i bias = _mm256_set1_epi16((short)b->bias);
    const __m256i lift = _mm256_set1_epi16((short)b->lift);
    const __m256i scale = _mm256_set1_epi16((short)b->scale);
    const __m256i one = _mm256_set1_epi16(1);
    __m256i in[MCU_WIDE], out[8];
    ptrdiff_t t;
    int r, half, c;
    /* as above, a quarter of the rows per 16 columns */
    for (t = (k >> 4) & 3; t < b->ahead_rows; t += 4)
        _mm_prefetch((const char *)(b->ahead + t * stride + (k & ~(ptrdiff_t)63)), _MM_HINT_T1);
    for (r = 0; r < MCU_WIDE; r++) {
        const uint8_t *a = b->first[r] + k;
        __m256i acc;
        if (b->mode == MCU_BAND_COPY) {
            acc = _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)a)), 8);
        } else if (b->mode == MCU_BAND_EQUAL) {
            acc = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)a));
            for (t = 1; t < b->count[r]; t++) {
                __m128i x = _mm_loadu_si128((const __m128i *)(a + t * stride));
                acc = _mm256_add_epi16(acc, _mm256_cvtepu8_epi16(x));
            }
            acc = _mm256_mulhi_epu16(_mm256_mullo_epi16(acc, lift), scale);
            acc = _mm256_add_epi16(_mm256_add_epi16(acc, acc), one);
        } else {
            const uint16_t *w = b->weight[r];
            acc = bias;
            for (t = 0; t < b->count[r]; t++) {
                __m128i x = _mm_loadu_si128((const __m128i *)(a + t * stride));
                __m256i q8 = _mm256_slli_epi16(_mm256_cvtepu8_epi16(x), 8);
                acc = _mm256_add_epi16(acc, _mm256_mulhi_epu16(q8, _mm256_set1_epi16((short)w[t])));
            }
        }
        in[r] = acc;
    }
    for (half = 0; half < 2; half++) {
        mcu_transpose8x16(in + 8 * half, out);
        for (c = 0; c < 8; c++) {
            uint16_t *at = mixed + (k + c) * MCU_WIDE + 8 * half;
            _mm_storeu_si128((__m128i *)at, _mm256_castsi256_si128(out[c]));
            _mm_storeu_si128((__m128i *)(at + 8 * MCU_WIDE), _mm256_extracti128_si256(out[c], 1));
        }
    }
}

/* All 32-column blocks of a band, the last one ending at the edge (redoing a few columns,
 * alike) rather than leaving a slow tail. */
MCU_TARGET_AVX2
static inline __attribute__((always_inline)) void mcu_band_avx2(
    const mcu_band *b, ptrdiff_t stride, ptrdiff_t width, uint16_t *mixed, const int mode,
    const ptrdiff_t n)
{
    __m256i wv[MCU_WIDE][4];
    ptrdiff_t k, t;
    int r;
    if (mode == MCU_BAND_WEIGHTED)
        for (r = 0; r < MCU_WIDE; r++)
            for (t = 0; t < n; t++)
                wv[r][t] = _mm256_set1_epi16((short)b->weight[r][t]);
    for (k = 0; k + 32 <= width; k += 32)
        mcu_band_block32(b, stride, mixed, k, mode, n, (const __m256i(*)[4])wv);
    if (k < width)
        mcu_band_block32(b, stride, mixed, width - 32, mode, n, (const __m256i(*)[4])wv);
}
#endif

#if MCU_X86
MCU_TARGET_AVX2
#endif
static void mcu_vertical_band_wide(const mcu_band *b, ptrdiff_t stride, ptrdiff_t width,
                                   uint16_t *mixed)
{
    ptrdiff_t k = 0;
    int r;
#if MCU_X86
    /* the common modes and row counts get their own copies of the loop */
    int equal = b->mode == MCU_BAND_EQUAL, weighted = b->mode == MCU_BAND_WEIGHTED;
    ptrdiff_t n = b->count[0];
    k = width; /* unless no copy below fits */
    if (width >= 32 && b->mode == MCU_BAND_COPY)
        mcu_band_avx2(b, stride, width, mixed, MCU_BAND_COPY, 1);
    else if (width >= 32 && equal && n == 2)
        mcu_band_avx2(b, stride, width, mixed, MCU_BAND_EQUAL, 2);
    else if (width >= 32 && equal && n == 3)
        mcu_band_avx2(b, stride, width, mixed, MCU_BAND_EQUAL, 3);
    else if (width >= 32 && equal && n == 4)
        mcu_band_avx2(b, stride, width, mixed, MCU_BAND_EQUAL, 4);
    else if (width >= 32 && weighted && n == 2)
        mcu_band_avx2(b, stride, width, mixed, MCU_BAND_WEIGHTED, 2);
    else if (width >= 32 && weighted && n == 3)
        mcu_band_avx2(b, stride, width, mixed, MCU_BAND_WEIGHTED, 3);
    else if (width >= 32 && weighted && n == 4)
        mcu_band_avx2(b, stride, width, mixed, MCU_BAND_WEIGHTED, 4);
    else if (width >= 16) {
        for (k = 0; k + 16 <= width; k += 16)
            mcu_band_block16(b, stride, mixed, k);
        if (k < width)
            mcu_band_block16(b, stride, mixed, width - 16);
        k = width;
    } else {
        k = 0;
    }
#endif
    for (; k < width; k++)
        for (r = 0; r < MCU_WIDE; r++)
            mixed[k * MCU_WIDE + r] = mcu_band_sample(b, r, stride, k);
}

#if MCU_X86
/* Output columns j and j + 1 of the band, n taps each: two columns, so that one pack gives
 * 32 bytes in order. */
MCU_TARGET_AVX2
static inline __attribute__((always_inline)) void mcu_horizontal_pair(
    const int32_t *start, const uint16_t *lane, const ptrdiff_t n, const uint16_t *mixed,
    uint8_t *out, ptrdiff_t j)
{
    const __m256i half = _mm256_set1_epi16(128);
    const uint16_t *p0 = mixed + (ptrdiff_t)start[j] * MCU_WIDE;
    const uint16_t *p1 = mixed + (ptrdiff_t)start[j + 1] * MCU_WIDE;
    /* lane[] holds each weight 8 times: a 128-bit broadcast is a plain load */
    const __m128i *w0 = (const __m128i *)(lane + j * n * MCU_LANES);
    const __m128i *w1 = w0 + n;
    __m256i acc0 = _mm256_set1_epi16((short)(n / 2)), acc1 = acc0, packed;
    ptrdiff_t t;
    for (t = 0; t < n; t++) {
        __m256i x0 = _mm256_loadu_si256((const __m256i *)(p0 + t * MCU_WIDE));
        __m256i x1 = _mm256_loadu_si256((const __m256i *)(p1 + t * MCU_WIDE));
        __m256i v0 = _mm256_broadcastsi128_si256(_mm_loadu_si128(w0 + t));
        __m256i v1 = _mm256_broadcastsi128_si256(_mm_loadu_si128(w1 + t));
        acc0 = _mm256_add_epi16(acc0, _mm256_mulhi_epu16(x0, v0));
        acc1 = _mm256_add_epi16(acc1, _mm256_mulhi_epu16(x1, v1));
    }
    acc0 = _mm256_srli_epi16(_mm256_add_epi16(acc0, half), 8);
    acc1 = _mm256_srli_epi16(_mm256_add_epi16(acc1, half), 8);
    /* packs per 128-bit lane: 0 lo, 1 lo, 0 hi, 1 hi; reorder the quarters */
    packed = _mm256_permute4x64_epi64(_mm256_packus_epi16(acc0, acc1), 0xd8);
    _mm256_storeu_si256((__m256i *)(out + j * MCU_WIDE), packed);
}

/* The vector loop of mcu_horizontal_wide, inlined with the tap count n constant. An odd last
 * column is done with the pair ending at the edge (one column twice, alike). */
MCU_TARGET_AVX2
static inline __attribute__((always_inline)) ptrdiff_t mcu_horizontal_avx2(
    const int32_t *start, const uint16_t *lane, const ptrdiff_t n, ptrdiff_t dst_len,
    const uint16_t *mixed, uint8_t *out, const uint8_t *next, ptrdiff_t next_stride,
    ptrdiff_t next_rows)
{
    ptrdiff_t i, row = 0, col = 0; /* row, col: the next canvas line to prefetch */
    for (i = 0; i + 2 <= dst_len; i += 2) {
        /* one line of the canvas rows the next band will write, so its stores find them */
        if (row < next_rows) {
            ptrdiff_t at = col < dst_len ? col : dst_len - 1; /* the last byte: its line */
            _mm_prefetch((const char *)(next + row * next_stride + at), _MM_HINT_T0);
            if (col >= dst_len) {
                col = 0;
                row++;
            } else {
                col += 64;
            }
        }
        mcu_horizontal_pair(start, lane, n, mixed, out, i);
    }
    if (i < dst_len && dst_len >= 2) {
        mcu_horizontal_pair(start, lane, n, mixed, out, dst_len - 2);
        i = dst_len;
    }
    return i;
}
#endif

/* The horizontal pass over an interleaved band: out[i * WIDE + r], rounded to bytes. On the
 * way it prefetches the next_rows canvas rows at `next` that the next band will write. */
#if MCU_X86
MCU_TARGET_AVX2
#endif
static void mcu_horizontal_wide(const int32_t *start, const uint16_t *weight,
                                const uint16_t *lane, ptrdiff_t taps, ptrdiff_t dst_len,
                                const uint16_t *mixed, uint8_t *out, const uint8_t *next,
                                ptrdiff_t next_stride, ptrdiff_t next_rows)
{
    ptrdiff_t i = 0, t;
    uint16_t bias = (uint16_t)(taps / 2);
#if MCU_X86
    /* the common tap counts get their own copies of the loop */
#define MCU_HORIZONTAL(n) \
    mcu_horizontal_avx2(start, lane, n, dst_len, mixed, out, next, next_stride, next_rows)
    switch (taps) {
    case 2: i = MCU_HORIZONTAL(2); break;
    case 3: i = MCU_HORIZONTAL(3); break;
    case 4: i = MCU_HORIZONTAL(4); break;
    case 5: i = MCU_HORIZONTAL(5); break;
    default: i = MCU_HORIZONTAL(taps); break;
    }
#undef MCU_HORIZONTAL
#else
    (void)lane, (void)next, (void)next_stride, (void)next_rows;
#endif
    for (; i < dst_len; i++) {
        const uint16_t *p = mixed + (ptrdiff_t)start[i] * MCU_WIDE;
        const uint16_t *w = weight + i * taps;
        int r;
        for (r = 0; r < MCU_WIDE; r++) {
            uint16_t acc = bias;
            for (t = 0; t < taps; t++)
                acc = (uint16_t)(acc + mcu_mulhi(p[t * MCU_WIDE + r], w[t]));
            out[i * MCU_WIDE + r] = (uint8_t)((acc + 128) >> 8);
        }
    }
}

#if MCU_X86
/* 32 columns of a band from k on, back into rows: a 16x16 byte transpose in each 128-bit lane
 * (columns k.. in the low lanes, k + 16.. in the high ones), so each row is one 32-byte store.
 * Bytes, then 16-, 32- and 64-bit pairs are interleaved. */
MCU_TARGET_AVX2
static inline void mcu_spread32(const uint8_t *out, ptrdiff_t k, uint8_t *dst, ptrdiff_t stride,
                                ptrdiff_t rows)
{
    __m256i a[16], b[16], c[16], d[16];
    int i, g, j, r;
    for (i = 0; i < 16; i++) {
        __m128i lo = _mm_loadu_si128((const __m128i *)(out + (k + i) * MCU_WIDE));
        __m128i hi = _mm_loadu_si128((const __m128i *)(out + (k + 16 + i) * MCU_WIDE));
        a[i] = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
    }
    for (i = 0; i < 8; i++) {
        b[i] = _mm256_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
        b[i + 8] = _mm256_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
    }
    /* b[i]: columns 2i, 2i+1 of rows 0-7; b[i + 8]: rows 8-15 */
    for (g = 0; g < 2; g++)
        for (j = 0; j < 4; j++) {
            c[8 * g + j] = _mm256_unpacklo_epi16(b[8 * g + 2 * j], b[8 * g + 2 * j + 1]);
            c[8 * g + j + 4] = _mm256_unpackhi_epi16(b[8 * g + 2 * j], b[8 * g + 2 * j + 1]);
        }
    /* c[4g + j]: columns 4j..4j+3 of rows 4g..4g+3 */
    for (g = 0; g < 4; g++)
        for (j = 0; j < 2; j++) {
            d[4 * g + 2 * j] = _mm256_unpacklo_epi32(c[4 * g + 2 * j], c[4 * g + 2 * j + 1]);
            d[4 * g + 2 * j + 1] = _mm256_unpackhi_epi32(c[4 * g + 2 * j], c[4 * g + 2 * j + 1]);
        }
    /* d[4g + 2j + x]: columns 8j..8j+7 of rows 4g + 2x, 4g + 2x + 1 */
    for (g = 0; g < 4; g++)
        for (j = 0; j < 2; j++) {
            r = 4 * g + 2 * j;
            if (r < rows)
                _mm256_storeu_si256((__m256i *)(dst + r * stride + k),
                                    _mm256_unpacklo_epi64(d[4 * g + j], d[4 * g + 2 + j]));
            if (r + 1 < rows)
                _mm256_storeu_si256((__m256i *)(dst + (r + 1) * stride + k),
                                    _mm256_unpackhi_epi64(d[4 * g + j], d[4 * g + 2 + j]));
        }
}
#endif

/* Undo the interleaving: dst row r (r < rows) gets out[k * WIDE + r] for k < width. */
#if MCU_X86
MCU_TARGET_AVX2
#endif
static void mcu_spread_wide(const uint8_t *out, ptrdiff_t width, uint8_t *dst,
                            ptrdiff_t stride, ptrdiff_t rows)
{
    ptrdiff_t k = 0, r;
#if MCU_X86
    for (; k + 32 <= width; k += 32)
        mcu_spread32(out, k, dst, stride, rows);
    /* the rest: the block ending at the edge, a few bytes written twice alike */
    if (k < width && width >= 32) {
        mcu_spread32(out, width - 32, dst, stride, rows);
        k = width;
    }
#endif
    for (r = 0; r < rows; r++) {
        ptrdiff_t col;
        for (col = k; col < width; col++)
            dst[r * stride + col] = out[col * MCU_WIDE + r];
    }
}

/* ---- the AVX-512 line pipeline: one output row at a time, no transposes ------------------ */

/* With AVX-512 VBMI one instruction (vpermt2b) picks any 64 bytes out of 128, i.e. any 32 words
 * out of 64, so the horizontal pass can gather its taps straight out of a row instead of
 * transposing bands. (vpermt2w, in plain AVX-512BW, does the same with word indices but takes
 * three micro-ops where vpermt2b takes one, and was measured slower.) Each output row is
 * computed in two steps:
 *   1. the vertical pass of the row (as _vertical of _mix.pyx), split into its even and odd
 *      columns, which is how a 64-byte load widens to 16 bits without byte shuffles;
 *   2. the horizontal pass in blocks of `block` outputs: the block's source columns lie in a
 *      window of 64 columns from an even column, i.e. 32 even and 32 odd words, and each tap is
 *      one permute of that window, one multiply and one add; the result is narrowed to bytes
 *      and stored into the canvas row.
 * The plan of a horizontal axis holds, per block, its window and per tap the byte indices of
 * every output's source column in the window and its weight. */
#define MCU_WINDOW 64

typedef struct {
    ptrdiff_t block;   /* outputs per block: 32 or 16; 0 when no block fits its window */
    ptrdiff_t blocks;
    ptrdiff_t taps;
    int32_t *half;     /* per block: the window's first column / 2 */
    uint16_t *index;   /* [block][tap][output]: the column in the window, even/odd split */
    uint16_t *weight;  /* [block][tap][output]: its weight, 0 past the end of the row */
} mcu_plan;

/* `size` bytes on a 64-byte boundary (one cache line: a 512-bit load or store from there
 * touches one line, not two), or NULL; release with free() */
static void *mcu_alloc64(size_t size)
{
    void *p = NULL;
    return posix_memalign(&p, 64, size ? size : 64) == 0 ? p : NULL;
}

/* whether every block of `block` outputs reads only its window */
static int mcu_plan_fits(const int32_t *start, ptrdiff_t taps, ptrdiff_t dst_len,
                         ptrdiff_t block)
{
    ptrdiff_t first, j;
    for (first = 0; first < dst_len; first += block) {
        int32_t from = start[first] & ~1;
        for (j = first; j < first + block && j < dst_len; j++)
            if (start[j] < from || start[j] + taps - 1 - from >= MCU_WINDOW)
                return 0;
    }
    return 1;
}

/* Fill a plan for one axis (start, weight as in Table of _mix.pyx). Leaves block 0 when the
 * axis reads too widely; returns -1 when out of memory, else 0. */
static int mcu_plan_build(mcu_plan *p, const int32_t *start, const uint16_t *weight,
                          ptrdiff_t taps, ptrdiff_t dst_len)
{
    ptrdiff_t b, t, o, block = 0;
    size_t n;
    p->block = 0;
    p->blocks = 0;
    p->taps = taps;
    p->half = NULL;
    p->index = NULL;
    p->weight = NULL;
    if (mcu_plan_fits(start, taps, dst_len, 32))
        block = 32;
    else if (mcu_plan_fits(start, taps, dst_len, 16))
        block = 16;
    else
        return 0;
    p->blocks = (dst_len + block - 1) / block;
    n = (size_t)(p->blocks * taps * block);
    p->half = (int32_t *)malloc((size_t)p->blocks * sizeof(int32_t));
    p->index = (uint16_t *)mcu_alloc64(n * sizeof(uint16_t));
    p->weight = (uint16_t *)mcu_alloc64(n * sizeof(uint16_t));
    if (p->half == NULL || p->index == NULL || p->weight == NULL)
        return -1;
    for (b = 0; b < p->blocks; b++) {
        int32_t from = start[b * block] & ~1;
        p->half[b] = from / 2;
        for (t = 0; t < taps; t++)
            for (o = 0; o < block; o++) {
                ptrdiff_t j = b * block + o, at = (b * taps + t) * block + o, c;
                if (j >= dst_len) {
                    p->index[at] = 0;
                    p->weight[at] = 0;
                    continue;
                }
                c = start[j] + t - from;
                /* even columns are words 0..31 of the window, odd ones 32..63; the index
                 * is of the word's two bytes, low then high (vpermt2b permutes bytes) */
                c = (c & 1) ? MCU_WINDOW / 2 + c / 2 : c / 2;
                p->index[at] = (uint16_t)(2 * c | (2 * c + 1) << 8);
                p->weight[at] = weight[j * taps + t];
            }
    }
    p->block = block;
    return 0;
}

static void mcu_plan_free(mcu_plan *p)
{
    free(p->half);
    free(p->index);
    free(p->weight);
    p->half = NULL;
    p->index = NULL;
    p->weight = NULL;
    p->block = 0;
}

/* Fetch the `len` bytes at `p`, which are about to be written (a canvas row a few lines ahead:
 * its stores then find their cache lines present). */
static inline void mcu_prefetch_row(uint8_t *p, ptrdiff_t len)
{
    ptrdiff_t k;
    for (k = 0; k < len; k += 64)
        __builtin_prefetch(p + k, 1, 3);
    if (len > 0)
        __builtin_prefetch(p + len - 1, 1, 3);
}

/* One output row of the vertical pass: `count` source rows from `first` (modes as mcu_band).
 * `ahead` and `ahead_rows`: the source rows a later output row reads, prefetched on the way. */
typedef struct {
    const uint8_t *first;
    ptrdiff_t count;
    const uint16_t *weight;
    int mode;
    uint16_t bias, lift, scale;
    const uint8_t *ahead;
    ptrdiff_t ahead_rows;
} mcu_line;

#if MCU_X86
/* the vertical pass of the line, inlined with mode and count n constant */
MCU_TARGET_AVX512
static inline __attribute__((always_inline)) void mcu_line_avx512(
    const mcu_line *l, ptrdiff_t stride, ptrdiff_t width, uint16_t *even, uint16_t *odd,
    const int mode, const ptrdiff_t n)
{
    const __m512i low = _mm512_set1_epi16(0x00ff);
    const __m512i high = _mm512_set1_epi16((short)0xff00);
    const __m512i bias = _mm512_set1_epi16((short)l->bias);
    const __m512i lift = _mm512_set1_epi16((short)l->lift);
    const __m512i scale = _mm512_set1_epi16((short)l->scale);
    const __m512i one = _mm512_set1_epi16(1);
    __m512i wv[4];
    ptrdiff_t k, t;
    if (mode == MCU_BAND_WEIGHTED)
        for (t = 0; t < n && t < 4; t++)
            wv[t] = _mm512_set1_epi16((short)l->weight[t]);
    for (k = 0; k < width; k += 64) {
        /* the tail is loaded under a mask: no byte past the row is read */
        __mmask64 m = width - k >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (width - k)) - 1);
        const uint8_t *a = l->first + k;
        __m512i x = _mm512_maskz_loadu_epi8(m, a), e, o;
        for (t = 0; t < l->ahead_rows; t++)
            _mm_prefetch((const char *)(l->ahead + t * stride + k), _MM_HINT_T0);
        if (mode == MCU_BAND_COPY) {
            e = _mm512_slli_epi16(x, 8);
            o = _mm512_and_si512(x, high);
        } else if (mode == MCU_BAND_EQUAL) {
            e = _mm512_and_si512(x, low);
            o = _mm512_srli_epi16(x, 8);
            for (t = 1; t < n; t++) {
                x = _mm512_maskz_loadu_epi8(m, a + t * stride);
                e = _mm512_add_epi16(e, _mm512_and_si512(x, low));
                o = _mm512_add_epi16(o, _mm512_srli_epi16(x, 8));
            }
            e = _mm512_mulhi_epu16(_mm512_mullo_epi16(e, lift), scale);
            o = _mm512_mulhi_epu16(_mm512_mullo_epi16(o, lift), scale);
            e = _mm512_add_epi16(_mm512_add_epi16(e, e), one);
            o = _mm512_add_epi16(_mm512_add_epi16(o, o), one);
        } else {
            e = bias;
            o = bias;
            for (t = 0; t < n; t++) {
                __m512i w = t < 4 ? wv[t] : _mm512_set1_epi16((short)l->weight[t]);
                if (t > 0)
                    x = _mm512_maskz_loadu_epi8(m, a + t * stride);
                e = _mm512_add_epi16(e, _mm512_mulhi_epu16(_mm512_slli_epi16(x, 8), w));
                o = _mm512_add_epi16(o, _mm512_mulhi_epu16(_mm512_and_si512(x, high), w));
            }
        }
        _mm512_storeu_si512((void *)(even + k / 2), e);
        _mm512_storeu_si512((void *)(odd + k / 2), o);
    }
}

/* The horizontal pass of a line, blocks of `size` outputs (32 in 512-bit vectors, 16 in 256-bit
 * ones), inlined with the tap count constant. Blocks go in pairs: one pack and one permute
 * narrow both to bytes (vpmovwb would take two shuffles per block, on the one port that also
 * does the permutes). */
#define MCU_ACROSS_BODY(size, vec, sfx, load, store)                                          \
    do {                                                                                      \
        const vec bias = sfx##_set1_epi16((short)(taps / 2));                                 \
        const vec half = sfx##_set1_epi16(128);                                               \
        ptrdiff_t b, t;                                                                       \
        for (b = 0; b < p->blocks; b += 2) {                                                  \
            vec acc[2];                                                                       \
            int pair;                                                                         \
            for (pair = 0; pair < 2; pair++) {                                                \
                /* the second of a lone last block repeats it: computed, never stored */      \
                ptrdiff_t c = b + pair < p->blocks ? b + pair : b;                            \
                const uint16_t *index = p->index + c * taps * size;                           \
                const uint16_t *weight = p->weight + c * taps * size;                         \
                __m512i e = _mm512_loadu_si512((const void *)(even + p->half[c]));            \
                __m512i o = _mm512_loadu_si512((const void *)(odd + p->half[c]));             \
                vec sum = bias;                                                               \
                for (t = 0; t < taps; t++) {                                                  \
                    vec w = load((const vec *)(weight + size * t));                           \
                    vec x = MCU_PICK##size(e, index + size * t, o);                           \
                    sum = sfx##_add_epi16(sum, sfx##_mulhi_epu16(x, w));                      \
                }                                                                             \
                acc[pair] = sfx##_srli_epi16(sfx##_add_epi16(sum, half), 8);                  \
            }                                                                                 \
            store(dst + size * b, dst_len - size * b, sfx##_packus_epi16(acc[0], acc[1]));    \
        }                                                                                     \
    } while (0)

/* tap x of 32 outputs: the words of the window (e, o) at the 32 indices at `at` */
#define MCU_PICK32(e, at, o) \
    _mm512_permutex2var_epi8(e, _mm512_loadu_si512((const void *)(at)), o)
/* the same for 16 outputs: the index vector's upper half is never used */
#define MCU_PICK16(e, at, o)                                                                  \
    _mm512_castsi512_si256(_mm512_permutex2var_epi8(                                          \
        e, _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(at))), o))

/* packed bytes of two blocks, per 128-bit lane, into order; `left` outputs still to store */
MCU_TARGET_AVX512
static inline void mcu_store64(uint8_t *dst, ptrdiff_t left, __m512i packed)
{
    const __m512i order = _mm512_set_epi64(7, 5, 3, 1, 6, 4, 2, 0);
    packed = _mm512_permutexvar_epi64(order, packed);
    if (left >= 64)
        _mm512_storeu_si512((void *)dst, packed);
    else
        _mm512_mask_storeu_epi8(dst, ((__mmask64)1 << left) - 1, packed);
}

MCU_TARGET_AVX512
static inline void mcu_store32(uint8_t *dst, ptrdiff_t left, __m256i packed)
{
    packed = _mm256_permute4x64_epi64(packed, 0xd8);
    if (left >= 32)
        _mm256_storeu_si256((__m256i *)dst, packed);
    else
        _mm256_mask_storeu_epi8(dst, ((__mmask32)1 << left) - 1, packed);
}

MCU_TARGET_AVX512
static inline __attribute__((always_inline)) void mcu_across32(
    const mcu_plan *p, const ptrdiff_t taps, const uint16_t *even, const uint16_t *odd,
    uint8_t *dst, ptrdiff_t dst_len)
{
    MCU_ACROSS_BODY(32, __m512i, _mm512, _mm512_loadu_si512, mcu_store64);
}

MCU_TARGET_AVX512
static inline __attribute__((always_inline)) void mcu_across16(
    const mcu_plan *p, const ptrdiff_t taps, const uint16_t *even, const uint16_t *odd,
    uint8_t *dst, ptrdiff_t dst_len)
{
    MCU_ACROSS_BODY(16, __m256i, _mm256, _mm256_loadu_si256, mcu_store32);
}
#endif

/* The vertical pass of one output row into `even` and `odd` (each at least width / 2 + 64
 * words long). */
#if MCU_X86
MCU_TARGET_AVX512
#endif
static void mcu_line_down(const mcu_line *l, ptrdiff_t stride, ptrdiff_t width, uint16_t *even,
                          uint16_t *odd)
{
#if MCU_X86
    ptrdiff_t n = l->count;
    /* the common modes and row counts get their own copies of the loop */
    if (l->mode == MCU_BAND_COPY)
        mcu_line_avx512(l, stride, width, even, odd, MCU_BAND_COPY, 1);
    else if (l->mode == MCU_BAND_EQUAL && n == 2)
        mcu_line_avx512(l, stride, width, even, odd, MCU_BAND_EQUAL, 2);
    else if (l->mode == MCU_BAND_EQUAL && n == 3)
        mcu_line_avx512(l, stride, width, even, odd, MCU_BAND_EQUAL, 3);
    else if (l->mode == MCU_BAND_EQUAL)
        mcu_line_avx512(l, stride, width, even, odd, MCU_BAND_EQUAL, n);
    else if (n == 1)
        mcu_line_avx512(l, stride, width, even, odd, MCU_BAND_WEIGHTED, 1);
    else if (n == 2)
        mcu_line_avx512(l, stride, width, even, odd, MCU_BAND_WEIGHTED, 2);
    else if (n == 3)
        mcu_line_avx512(l, stride, width, even, odd, MCU_BAND_WEIGHTED, 3);
    else if (n == 4)
        mcu_line_avx512(l, stride, width, even, odd, MCU_BAND_WEIGHTED, 4);
    else
        mcu_line_avx512(l, stride, width, even, odd, MCU_BAND_WEIGHTED, n);
#else
    /* only called at level MCU_AVX512, which other CPUs never reach */
    (void)l, (void)stride, (void)width, (void)even, (void)odd;
#endif
}

/* The horizontal pass of plan `p` over a row from mcu_line_down, into the dst_len bytes at
 * dst. */
#if MCU_X86
MCU_TARGET_AVX512
#endif
static void mcu_line_across(const mcu_plan *p, ptrdiff_t dst_len, const uint16_t *even,
                            const uint16_t *odd, uint8_t *dst)
{
#if MCU_X86
#define MCU_ACROSS(size, taps) mcu_across##size(p, taps, even, odd, dst, dst_len)
    if (p->block == 32) {
        switch (p->taps) {
        case 2: MCU_ACROSS(32, 2); break;
        case 3: MCU_ACROSS(32, 3); break;
        case 4: MCU_ACROSS(32, 4); break;
        default: MCU_ACROSS(32, p->taps); break;
        }
    } else {
        switch (p->taps) {
        case 2: MCU_ACROSS(16, 2); break;
        case 3: MCU_ACROSS(16, 3); break;
        case 4: MCU_ACROSS(16, 4); break;
        case 5: MCU_ACROSS(16, 5); break;
        default: MCU_ACROSS(16, p->taps); break;
        }
    }
#undef MCU_ACROSS
#else
    (void)p, (void)dst_len, (void)even, (void)odd, (void)dst;
#endif
}

#endif /* MCU_SIMD_H */
