/* Decode side of one OM chunk (codec spec 2.5, 3, 11), of the look-up table
 * (container spec 6 and Appendix A) and of many chunks into one selection
 * (om_chunks.h). Written from the specifications.
 *
 * Chunk pipeline: coder -> inverse 2-D filter -> inverse value step. The
 * delta2d filter is fused into the PFor prefix sums and the value step runs
 * in batches while the stream is decoded, so the integers are still in cache
 * when they are converted. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "om_chunks.h"
#include "om_dec_internal.h"
#include "om_dispatch.h"
#include "om_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define OM_X86 1
#include <immintrin.h>
#else
#define OM_X86 0
#endif

/* Default quiet NaNs (codec spec 2.5). */
#define NAN32_BITS 0x7FC00000u
#define NAN64_BITS 0x7FF8000000000000ull

OM_INLINE float f32_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
OM_INLINE double f64_bits(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }

/* ------------------------------------------------------------------------ */
/* Inverse xor2d filter on a flat buffer: byte i (i >= dist) gets byte        */
/* i - dist XORed in. Processing i upwards in vectors is exact as long as the */
/* vector is no wider than dist. (delta2d is fused into the stream decoder.)  */

static void xor_bytes_c(uint8_t *q, size_t s, size_t e, size_t dist)
{
    size_t i = s;
    for (; i + 8 <= e && dist >= 8; i += 8)
        om_st64(q + i, om_ld64(q + i) ^ om_ld64(q + i - dist));
    for (; i < e; i++)
        q[i] ^= q[i - dist];
}

#if OM_X86
/* Byte offsets; dist >= the vector width. */
#define DEFINE_FILTER_AVX2(NAME, OPEXPR)                                                  \
    __attribute__((target("avx2"))) static size_t NAME(uint8_t *q, size_t s, size_t e,   \
                                                       size_t dist)                       \
    {                                                                                     \
        size_t i = s;                                                                     \
        for (; i + 32 <= e; i += 32) {                                                    \
            const __m256i a = _mm256_loadu_si256((const __m256i *)(q + i));               \
            const __m256i b = _mm256_loadu_si256((const __m256i *)(q + i - dist));        \
            _mm256_storeu_si256((__m256i *)(q + i), OPEXPR);                              \
        }                                                                                 \
        return i;                                                                         \
    }
DEFINE_FILTER_AVX2(xor_avx2, _mm256_xor_si256(a, b))

#define DEFINE_FILTER_SSE2(NAME, OPEXPR)                                                  \
    static size_t NAME(uint8_t *q, size_t s, size_t e, size_t dist)                       \
    {                                                                                     \
        size_t i = s;                                                                     \
        for (; i + 16 <= e; i += 16) {                                                    \
            const __m128i a = _mm_loadu_si128((const __m128i *)(q + i));                  \
            const __m128i b = _mm_loadu_si128((const __m128i *)(q + i - dist));           \
            _mm_storeu_si128((__m128i *)(q + i), OPEXPR);                                 \
        }                                                                                 \
        return i;                                                                         \
    }
DEFINE_FILTER_SSE2(xor_sse2, _mm_xor_si128(a, b))
#endif

/* xor2d decode of bytes [s, e) with distance dist bytes (s >= dist). */
static void xor_range(uint8_t *q, size_t s, size_t e, size_t dist, int level)
{
    size_t i = s;
#if OM_X86
    if (level >= 3 && dist >= 32)
        i = xor_avx2(q, i, e, dist);
    if (level >= 1 && dist >= 16)
        i = xor_sse2(q, i, e, dist);
#else
    (void)level;
#endif
    if (i < e)
        xor_bytes_c(q, i, e, dist);
}

/* ------------------------------------------------------------------------ */
/* Inverse value step (codec spec 2.5): float32 / float64 operations, one     */
/* rounding per operation, so the SIMD kernels are bit-identical to C.        */

static void conv16_c(const uint16_t *q, float *out, size_t n, float sf, float ao)
{
    const float nan = f32_bits(NAN32_BITS);
    for (size_t i = 0; i < n; i++) {
        const int16_t v = (int16_t)q[i];
        out[i] = v == 32767 ? nan : (float)v / sf - ao;
    }
}

/* powf is by far the slowest step; a chunk holds few distinct int16 values
 * (precipitation: mostly small non-negative ones), so results for the common
 * range are memoised when the caller's scratch has room. Same inputs, same
 * powf calls: bit-identical. */
#define LOG_MEMO_LO (-1024)
#define LOG_MEMO_N 8192
#define LOG_MEMO_BYTES (LOG_MEMO_N * 5)

typedef struct {
    float *val;     /* LOG_MEMO_N results */
    uint8_t *known; /* LOG_MEMO_N flags */
} log_memo_t;

static void conv16_log_c(const uint16_t *q, float *out, size_t n, float sf, log_memo_t *memo)
{
    const float nan = f32_bits(NAN32_BITS);
    for (size_t i = 0; i < n; i++) {
        const int16_t v = (int16_t)q[i];
        if (v == 32767) {
            out[i] = nan;
            continue;
        }
        const unsigned k = (unsigned)(v - LOG_MEMO_LO);
        if (memo && k < LOG_MEMO_N) {
            if (!memo->known[k]) {
                memo->val[k] = powf(10.0f, (float)v / sf) - 1.0f;
                memo->known[k] = 1;
            }
            out[i] = memo->val[k];
        } else {
            out[i] = powf(10.0f, (float)v / sf) - 1.0f;
        }
    }
}

/* int32 -> float32 in place (the buffer holds int32 on entry). */
static void conv32_c(uint32_t *q, size_t n, float sf, float ao)
{
    for (size_t i = 0; i < n; i++) {
        const int32_t v = (int32_t)q[i];
        const float f = v == INT32_MAX ? f32_bits(NAN32_BITS) : (float)v / sf - ao;
        memcpy(q + i, &f, 4);
    }
}

static void conv64_c(uint64_t *q, size_t n, double sf, double ao)
{
    for (size_t i = 0; i < n; i++) {
        const int64_t v = (int64_t)q[i];
        const double d = v == INT64_MAX ? f64_bits(NAN64_BITS) : (double)v / sf - ao;
        memcpy(q + i, &d, 8);
    }
}

#if OM_X86
static void conv16_sse2(const uint16_t *q, float *out, size_t n, float sf, float ao)
{
    const __m128 vsf = _mm_set1_ps(sf), vao = _mm_set1_ps(ao);
    const __m128 vnan = _mm_castsi128_ps(_mm_set1_epi32((int)NAN32_BITS));
    const __m128i sent = _mm_set1_epi16(32767);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i x = _mm_loadu_si128((const __m128i *)(q + i));
        const __m128i isn = _mm_cmpeq_epi16(x, sent);
        const __m128i lo = _mm_srai_epi32(_mm_unpacklo_epi16(x, x), 16);
        const __m128i hi = _mm_srai_epi32(_mm_unpackhi_epi16(x, x), 16);
        __m128 flo = _mm_sub_ps(_mm_div_ps(_mm_cvtepi32_ps(lo), vsf), vao);
        __m128 fhi = _mm_sub_ps(_mm_div_ps(_mm_cvtepi32_ps(hi), vsf), vao);
        const __m128 mlo = _mm_castsi128_ps(_mm_unpacklo_epi16(isn, isn));
        const __m128 mhi = _mm_castsi128_ps(_mm_unpackhi_epi16(isn, isn));
        flo = _mm_or_ps(_mm_and_ps(mlo, vnan), _mm_andnot_ps(mlo, flo));
        fhi = _mm_or_ps(_mm_and_ps(mhi, vnan), _mm_andnot_ps(mhi, fhi));
        _mm_storeu_ps(out + i, flo);
        _mm_storeu_ps(out + i + 4, fhi);
    }
    conv16_c(q + i, out + i, n - i, sf, ao);
}

__attribute__((target("avx2"))) static void conv16_avx2(const uint16_t *q, float *out, size_t n,
                                                        float sf, float ao)
{
    const __m256 vsf = _mm256_set1_ps(sf), vao = _mm256_set1_ps(ao);
    const __m256 vnan = _mm256_castsi256_ps(_mm256_set1_epi32((int)NAN32_BITS));
    const __m256i sent = _mm256_set1_epi32(32767);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i a = _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(q + i)));
        const __m256i b = _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(q + i + 8)));
        const __m256 fa = _mm256_sub_ps(_mm256_div_ps(_mm256_cvtepi32_ps(a), vsf), vao);
        const __m256 fb = _mm256_sub_ps(_mm256_div_ps(_mm256_cvtepi32_ps(b), vsf), vao);
        _mm256_storeu_ps(out + i, _mm256_blendv_ps(fa, vnan, _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, sent))));
        _mm256_storeu_ps(out + i + 8, _mm256_blendv_ps(fb, vnan, _mm256_castsi256_ps(_mm256_cmpeq_epi32(b, sent))));
    }
    conv16_c(q + i, out + i, n - i, sf, ao);
}

static void conv32_sse2(uint32_t *q, size_t n, float sf, float ao)
{
    const __m128 vsf = _mm_set1_ps(sf), vao = _mm_set1_ps(ao);
    const __m128 vnan = _mm_castsi128_ps(_mm_set1_epi32((int)NAN32_BITS));
    const __m128i sent = _mm_set1_epi32(INT32_MAX);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m128i x = _mm_loadu_si128((const __m128i *)(q + i));
        const __m128 m = _mm_castsi128_ps(_mm_cmpeq_epi32(x, sent));
        const __m128 f = _mm_sub_ps(_mm_div_ps(_mm_cvtepi32_ps(x), vsf), vao);
        _mm_storeu_si128((__m128i *)(q + i),
                         _mm_castps_si128(_mm_or_ps(_mm_and_ps(m, vnan), _mm_andnot_ps(m, f))));
    }
    conv32_c(q + i, n - i, sf, ao);
}

__attribute__((target("avx2"))) static void conv32_avx2(uint32_t *q, size_t n, float sf, float ao)
{
    const __m256 vsf = _mm256_set1_ps(sf), vao = _mm256_set1_ps(ao);
    const __m256 vnan = _mm256_castsi256_ps(_mm256_set1_epi32((int)NAN32_BITS));
    const __m256i sent = _mm256_set1_epi32(INT32_MAX);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(q + i));
        const __m256 f = _mm256_sub_ps(_mm256_div_ps(_mm256_cvtepi32_ps(x), vsf), vao);
        const __m256 r = _mm256_blendv_ps(f, vnan, _mm256_castsi256_ps(_mm256_cmpeq_epi32(x, sent)));
        _mm256_storeu_si256((__m256i *)(q + i), _mm256_castps_si256(r));
    }
    conv32_c(q + i, n - i, sf, ao);
}

/* int64 -> float64 without AVX-512: q = hi * 2^32 + lo with hi signed and lo
 * unsigned 32-bit; both convert exactly, hi * 2^32 is exact, and the one
 * rounding of the sum is the rounding of (double)q. */
__attribute__((target("avx2"))) static void conv64_avx2(uint64_t *q, size_t n, double sf, double ao)
{
    const __m256d vsf = _mm256_set1_pd(sf), vao = _mm256_set1_pd(ao);
    const __m256d vnan = _mm256_castsi256_pd(_mm256_set1_epi64x((long long)NAN64_BITS));
    const __m256i sent = _mm256_set1_epi64x(INT64_MAX);
    const __m256i odd = _mm256_setr_epi32(1, 3, 5, 7, 0, 2, 4, 6);
    const __m256i magic = _mm256_set1_epi64x(0x4330000000000000ll); /* 2^52 */
    const __m256d two52 = _mm256_set1_pd(4503599627370496.0);
    const __m256d two32 = _mm256_set1_pd(4294967296.0);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(q + i));
        const __m128i hi = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(x, odd));
        const __m256d dhi = _mm256_mul_pd(_mm256_cvtepi32_pd(hi), two32);
        const __m256d dlo = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_blend_epi32(x, magic, 0xAA)), two52);
        const __m256d d = _mm256_add_pd(dhi, dlo);
        const __m256d f = _mm256_sub_pd(_mm256_div_pd(d, vsf), vao);
        const __m256d r = _mm256_blendv_pd(f, vnan, _mm256_castsi256_pd(_mm256_cmpeq_epi64(x, sent)));
        _mm256_storeu_si256((__m256i *)(q + i), _mm256_castpd_si256(r));
    }
    conv64_c(q + i, n - i, sf, ao);
}
#endif

static void conv16(const uint16_t *q, float *out, size_t n, float sf, float ao, int level)
{
#if OM_X86
    if (level >= 3) { conv16_avx2(q, out, n, sf, ao); return; }
    if (level >= 1) { conv16_sse2(q, out, n, sf, ao); return; }
#endif
    (void)level;
    conv16_c(q, out, n, sf, ao);
}

static void conv32(uint32_t *q, size_t n, float sf, float ao, int level)
{
#if OM_X86
    if (level >= 3) { conv32_avx2(q, n, sf, ao); return; }
    if (level >= 1) { conv32_sse2(q, n, sf, ao); return; }
#endif
    (void)level;
    conv32_c(q, n, sf, ao);
}

static void conv64(uint64_t *q, size_t n, double sf, double ao, int level)
{
#if OM_X86
    if (level >= 3) { conv64_avx2(q, n, sf, ao); return; }
#endif
    (void)level;
    conv64_c(q, n, sf, ao);
}

/* ------------------------------------------------------------------------ */
/* One chunk                                                                  */

/* Converts decoded integers to floats while the stream decoder runs, in
 * batches of whole vectors so the integers are still in cache. In place
 * (W = 32/64) the integers of element i are needed until element i + L is
 * filtered, so conversion lags one row behind. */
typedef struct {
    int kind; /* 0: int16 -> float (q separate), 1: int16 log, 2: int32 in place, 3: int64 in place */
    const uint16_t *q;
    void *out;
    size_t lag, done;
    float sf, ao;
    int level;
    log_memo_t *memo;
} conv_ctx_t;

static void conv_upto(conv_ctx_t *c, size_t upto)
{
    const size_t k = upto - c->done;
    switch (c->kind) {
    case 0: conv16(c->q + c->done, (float *)c->out + c->done, k, c->sf, c->ao, c->level); break;
    case 1: conv16_log_c(c->q + c->done, (float *)c->out + c->done, k, c->sf, c->memo); break;
    case 2: conv32((uint32_t *)c->out + c->done, k, c->sf, c->ao, c->level); break;
    default: conv64((uint64_t *)c->out + c->done, k, (double)c->sf, (double)c->ao, c->level); break;
    }
    c->done = upto;
}

static void conv_sink(void *ctx, size_t avail)
{
    conv_ctx_t *c = (conv_ctx_t *)ctx;
    if (avail <= c->lag)
        return;
    const size_t ready = avail - c->lag - c->done;
    if (ready >= 1024)
        conv_upto(c, c->done + (ready & ~(size_t)15));
}

int64_t om_decode_chunk(int dtype, int compression, float scale_factor, float add_offset,
                        int flags, const uint8_t *in, size_t in_len, size_t n, size_t row_len,
                        void *out, void *scratch, size_t scratch_len)
{
    if (om_check_pair(dtype, compression) != OM_OK)
        return OM_E_INVALID;
    if (n == 0 || row_len == 0 || n % row_len != 0)
        return OM_E_GEOMETRY;
    if (out == NULL || (in == NULL && in_len))
        return OM_E_INVALID;
    const int level = om_simd_level();
    const size_t L = row_len;
    const size_t F = L < n ? L : 0; /* delta2d row length, 0 if there is one row */
    int64_t r;

    if (compression == OM_FPX_XOR) {
        if (dtype == OM_FLOAT) /* xor2d fused into the decoder */
            return om_fpx_decode_rows32(in, in_len, n, (uint32_t *)out, F);
        r = om_fpx_decode64(in, in_len, n, (flags & OM_FLAG_X86_LANES) != 0, (uint64_t *)out);
        if (r < 0)
            return r;
        /* float64: xor2d on the first n 32-bit words only, rows of L words
         * (quirk K2): bytes [4L, 4n). */
        xor_range((uint8_t *)out, 4 * L, 4 * n, 4 * L, level);
        return r;
    }

    conv_ctx_t c = {0, NULL, out, 0, 0, scale_factor, add_offset, level, NULL};
    log_memo_t memo;
    if (compression == OM_PFOR_INT16 || compression == OM_PFOR_INT16_LOG) {
        /* the int16 values live in scratch, aligned for 16-bit access */
        const uintptr_t a = ((uintptr_t)scratch + 63) & ~(uintptr_t)63;
        if (scratch == NULL || a - (uintptr_t)scratch > scratch_len ||
            (scratch_len - (a - (uintptr_t)scratch)) / 2 < n)
            return OM_E_OUTPUT;
        c.kind = compression == OM_PFOR_INT16 ? 0 : 1;
        c.q = (const uint16_t *)a;
        /* memo after the int16 values, if the scratch is large enough */
        const uintptr_t mem = (a + 2 * n + 63) & ~(uintptr_t)63;
        if (c.kind == 1 && n >= 512 &&
            mem + LOG_MEMO_BYTES <= (uintptr_t)scratch + scratch_len) {
            memo.val = (float *)mem;
            memo.known = (uint8_t *)(mem + 4 * LOG_MEMO_N);
            memset(memo.known, 0, LOG_MEMO_N);
            c.memo = &memo;
        }
        r = om_pfor_decode_rows(in, in_len, n, 1, 16, (void *)a, F, conv_sink, &c);
    } else if (dtype == OM_FLOAT) {
        c.kind = 2;
        c.lag = F;
        r = om_pfor_decode_rows(in, in_len, n, 1, 32, out, F, conv_sink, &c);
    } else if (dtype == OM_DOUBLE) {
        c.kind = 3;
        c.lag = F;
        r = om_pfor_decode_rows(in, in_len, n, 1, 64, out, F, conv_sink, &c);
    } else { /* integer arrays: no value step */
        const int zz = dtype == OM_INT8 || dtype == OM_INT16 || dtype == OM_INT32 || dtype == OM_INT64;
        return om_pfor_decode_rows(in, in_len, n, zz, (int)om_dtype_size(dtype) * 8, out, F, NULL, NULL);
    }
    if (r >= 0)
        conv_upto(&c, n);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Look-up table (container spec 6.2)                                         */

int om_lut_decode(const uint8_t *in, size_t in_len, size_t n_entries, uint64_t stride,
                  uint64_t *out)
{
    if (n_entries == 0)
        return OM_OK;
    if (out == NULL || (in == NULL && in_len))
        return OM_E_INVALID;
    if (stride == 0)
        return OM_E_CORRUPT;
    const size_t groups = (n_entries + 63) / 64;
    for (size_t g = 0; g < groups; g++) {
        /* start = g * stride, without overflow */
        if (g && stride > (uint64_t)in_len / g)
            return OM_E_TRUNCATED;
        const uint64_t start = (uint64_t)g * stride;
        if (start >= in_len)
            return OM_E_TRUNCATED;
        const size_t avail = (size_t)(stride < in_len - start ? stride : in_len - start);
        const size_t cnt = n_entries - 64 * g < 64 ? n_entries - 64 * g : 64;
        const int64_t r = om_pfor_decode64(in + start, avail, cnt, 0, out + 64 * g);
        if (r < 0)
            return (int)r;
    }
    return OM_OK;
}

/* ------------------------------------------------------------------------ */
/* Many chunks into one selection                                             */

typedef struct {
    int64_t v;  /* global index along the dimension */
    uint64_t i; /* output position */
} selpair_t;

static int cmp_selpair(const void *pa, const void *pb)
{
    const selpair_t *a = (const selpair_t *)pa, *b = (const selpair_t *)pb;
    if (a->v != b->v)
        return a->v < b->v ? -1 : 1;
    return a->i < b->i ? -1 : (a->i > b->i);
}

/* First index in p[0, len) with p.v >= x (p sorted by v). */
static size_t lower_bound(const selpair_t *p, size_t len, int64_t x)
{
    size_t lo = 0, hi = len;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (p[mid].v < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

typedef struct {
    uint64_t i;   /* output position along the last dimension */
    uint64_t j;   /* position inside the chunk */
    uint64_t len; /* elements */
} run_t;

OM_INLINE int mul_ovf(uint64_t a, uint64_t b, uint64_t *r)
{
    return __builtin_mul_overflow(a, b, r);
}

/* Copy one run of `len` elements of size es. */
OM_INLINE void copy_run(uint8_t *dst, const uint8_t *src, uint64_t len, size_t es)
{
    if (len == 1) {
        switch (es) {
        case 1: *dst = *src; return;
        case 2: memcpy(dst, src, 2); return;
        case 4: memcpy(dst, src, 4); return;
        default: memcpy(dst, src, 8); return;
        }
    }
    memcpy(dst, src, (size_t)len * es);
}

int om_decode_select(const om_array_t *a, const int64_t *const *sel, const uint64_t *sel_len,
                     void *out, size_t n, const uint64_t *chunk_idx, const uint8_t *data,
                     size_t data_len, const uint64_t *chunk_off, const uint64_t *chunk_len,
                     size_t *bad)
{
    size_t bad_dummy;
    if (bad == NULL)
        bad = &bad_dummy;
    *bad = (size_t)-1; /* "no particular chunk" */
    if (a == NULL || a->ndim < 1 || a->ndim > OM_MAX_DIMS || a->dims == NULL || a->chunks == NULL)
        return OM_E_GEOMETRY;
    if (om_check_pair(a->dtype, a->compression) != OM_OK)
        return OM_E_INVALID;
    if (n == 0)
        return OM_OK;
    if (sel == NULL || sel_len == NULL || out == NULL || chunk_idx == NULL || chunk_off == NULL ||
        chunk_len == NULL || (data == NULL && data_len))
        return OM_E_INVALID;

    const int D = a->ndim;
    const size_t es = om_dtype_size(a->dtype);
    uint64_t nchk[OM_MAX_DIMS], ostride[OM_MAX_DIMS];
    uint64_t n_chunks = 1, n_out = 1;
    for (int d = 0; d < D; d++) {
        const uint64_t dim = a->dims[d], ch = a->chunks[d];
        if (dim < 1 || ch < 1 || ch > dim || dim > (uint64_t)INT64_MAX)
            return OM_E_GEOMETRY;
        nchk[d] = dim / ch + (dim % ch != 0);
        if (mul_ovf(n_chunks, nchk[d], &n_chunks) || mul_ovf(n_out, sel_len[d], &n_out))
            return OM_E_GEOMETRY;
        if (sel_len[d] && sel[d] == NULL)
            return OM_E_INVALID;
    }
    if (n_out == 0)
        return OM_OK;
    if (n_out > SIZE_MAX / es)
        return OM_E_GEOMETRY;
    ostride[D - 1] = 1;
    for (int d = D - 1; d > 0; d--)
        ostride[d - 1] = ostride[d] * sel_len[d];

    /* Pass 1: validate the listed chunks and size the buffers. */
    uint64_t max_count = 0;
    for (size_t k = 0; k < n; k++) {
        uint64_t idx = chunk_idx[k];
        if (idx >= n_chunks) {
            *bad = k;
            return OM_E_GEOMETRY;
        }
        if (chunk_off[k] > data_len || chunk_len[k] > data_len - chunk_off[k]) {
            *bad = k;
            return OM_E_TRUNCATED;
        }
        uint64_t count = 1;
        for (int d = D - 1; d >= 0; d--) {
            const uint64_t c = idx % nchk[d];
            idx /= nchk[d];
            const uint64_t start = c * a->chunks[d];
            const uint64_t len = a->dims[d] - start < a->chunks[d] ? a->dims[d] - start : a->chunks[d];
            if (mul_ovf(count, len, &count)) {
                *bad = k;
                return OM_E_GEOMETRY;
            }
        }
        /* Every coder spends at least one byte per 128 values: a chunk claiming
         * more values than that is corrupt, and must not size an allocation. */
        if (count / 128 > chunk_len[k]) {
            *bad = k;
            return OM_E_TRUNCATED;
        }
        if (count > max_count)
            max_count = count;
    }

    /* Per dimension: (index, output position) pairs sorted by index. */
    size_t total_sel = 0;
    for (int d = 0; d < D; d++)
        total_sel += (size_t)sel_len[d]; /* each fits: n_out did not overflow */
    if (max_count > SIZE_MAX / 32 || total_sel > SIZE_MAX / 64)
        return OM_E_NOMEM;
    const size_t val_bytes = (size_t)max_count * es;
    const size_t scr_bytes = om_chunk_scratch(a->dtype, a->compression, (size_t)max_count);
    const size_t pair_bytes = total_sel * sizeof(selpair_t);
    const size_t run_bytes = (size_t)sel_len[D - 1] * sizeof(run_t);
    const size_t off_scr = (val_bytes + 63) & ~(size_t)63;
    const size_t off_pairs = (off_scr + scr_bytes + 63) & ~(size_t)63;
    const size_t off_runs = (off_pairs + pair_bytes + 63) & ~(size_t)63;
    uint8_t *mem = (uint8_t *)malloc(off_runs + run_bytes + 64);
    if (mem == NULL)
        return OM_E_NOMEM;
    uint8_t *vals = mem;
    uint8_t *scratch = mem + off_scr;
    selpair_t *pairs[OM_MAX_DIMS];
    run_t *runs = (run_t *)(mem + off_runs);
    int rc = OM_OK;

    selpair_t *pp = (selpair_t *)(mem + off_pairs);
    for (int d = 0; d < D; d++) {
        const uint64_t len = sel_len[d];
        const int64_t *s = sel[d];
        int up = 1, down = 1;
        pairs[d] = pp;
        for (uint64_t t = 0; t < len; t++) {
            if (s[t] < 0 || (uint64_t)s[t] >= a->dims[d]) {
                rc = OM_E_GEOMETRY;
                goto done;
            }
            if (t) {
                up &= s[t] >= s[t - 1];
                down &= s[t] < s[t - 1];
            }
        }
        if (down && !up) { /* reversed slice: reverse instead of sorting */
            for (uint64_t t = 0; t < len; t++) {
                pp[t].v = s[len - 1 - t];
                pp[t].i = len - 1 - t;
            }
        } else {
            for (uint64_t t = 0; t < len; t++) {
                pp[t].v = s[t];
                pp[t].i = t;
            }
            if (!up)
                qsort(pp, (size_t)len, sizeof(selpair_t), cmp_selpair);
        }
        pp += len;
    }

    /* Pass 2: decode and scatter. */
    for (size_t k = 0; k < n; k++) {
        uint64_t idx = chunk_idx[k];
        uint64_t start[OM_MAX_DIMS], clen[OM_MAX_DIMS], lo[OM_MAX_DIMS], hi[OM_MAX_DIMS];
        uint64_t count = 1;
        int empty = 0;
        for (int d = D - 1; d >= 0; d--) {
            const uint64_t c = idx % nchk[d];
            idx /= nchk[d];
            start[d] = c * a->chunks[d];
            clen[d] = a->dims[d] - start[d] < a->chunks[d] ? a->dims[d] - start[d] : a->chunks[d];
            count *= clen[d];
            lo[d] = lower_bound(pairs[d], (size_t)sel_len[d], (int64_t)start[d]);
            hi[d] = lower_bound(pairs[d], (size_t)sel_len[d], (int64_t)(start[d] + clen[d]));
            empty |= lo[d] == hi[d];
        }
        if (empty)
            continue;

        /* Decode straight into out when the chunk is selected whole, in
         * order, and lands on one contiguous stretch of out. */
        int direct = 1;
        uint64_t base = 0;
        for (int d = 0; d < D && direct; d++) {
            const selpair_t *p = pairs[d];
            if (hi[d] - lo[d] != clen[d]) {
                direct = 0;
                break;
            }
            for (uint64_t t = lo[d]; t < hi[d]; t++)
                if (p[t].v != (int64_t)(start[d] + (t - lo[d])) || p[t].i != p[lo[d]].i + (t - lo[d])) {
                    direct = 0;
                    break;
                }
            base += p[lo[d]].i * ostride[d];
        }
        if (direct) {
            int d = D - 1;
            while (d > 0 && clen[d] == sel_len[d])
                d--;
            for (int e = 0; e < d; e++)
                if (clen[e] != 1)
                    direct = 0;
        }

        uint8_t *dst = direct ? (uint8_t *)out + (size_t)base * es : vals;
        const int64_t r = om_decode_chunk(a->dtype, a->compression, a->scale_factor, a->add_offset,
                                          a->flags, data + chunk_off[k], (size_t)chunk_len[k],
                                          (size_t)count, (size_t)clen[D - 1], dst, scratch,
                                          scr_bytes);
        if (r < 0 || (uint64_t)r != chunk_len[k]) {
            *bad = k;
            rc = r < 0 ? (int)r : OM_E_SIZE_MISMATCH;
            goto done;
        }
        if (direct)
            continue;

        /* Runs of the last dimension: consecutive output and chunk positions. */
        size_t nruns = 0;
        {
            const selpair_t *p = pairs[D - 1];
            for (uint64_t t = lo[D - 1]; t < hi[D - 1]; t++) {
                const uint64_t j = (uint64_t)p[t].v - start[D - 1];
                if (nruns && runs[nruns - 1].i + runs[nruns - 1].len == p[t].i &&
                    runs[nruns - 1].j + runs[nruns - 1].len == j)
                    runs[nruns - 1].len++;
                else
                    runs[nruns++] = (run_t){p[t].i, j, 1};
            }
        }
        /* Odometer over the selected positions of the other dimensions. */
        uint64_t cstride[OM_MAX_DIMS], t[OM_MAX_DIMS];
        cstride[D - 1] = 1;
        for (int d = D - 1; d > 0; d--)
            cstride[d - 1] = cstride[d] * clen[d];
        for (int d = 0; d < D - 1; d++)
            t[d] = lo[d];
        for (;;) {
            uint64_t src = 0, dsto = 0;
            for (int d = 0; d < D - 1; d++) {
                src += ((uint64_t)pairs[d][t[d]].v - start[d]) * cstride[d];
                dsto += pairs[d][t[d]].i * ostride[d];
            }
            uint8_t *ob = (uint8_t *)out + (size_t)dsto * es;
            const uint8_t *vb = vals + (size_t)src * es;
            for (size_t u = 0; u < nruns; u++)
                copy_run(ob + (size_t)runs[u].i * es, vb + (size_t)runs[u].j * es, runs[u].len, es);
            int d = D - 2;
            while (d >= 0 && ++t[d] == hi[d]) {
                t[d] = lo[d];
                d--;
            }
            if (d < 0)
                break;
        }
    }
done:
    free(mem);
    return rc;
}
