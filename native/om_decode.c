/* Decode side of one OM chunk (codec spec 2.5, 3, 11), of the look-up table
 * (container spec 6 and Appendix A) and of many chunks into one selection
 * (om_chunks.h). Written from the specifications.
 *
 * Chunk pipeline: coder -> inverse 2-D filter -> inverse value step. The
 * delta2d filter is fused into the PFor prefix sums and the value step runs
 * in batches while the stream is decoded, so the integers are still in cache
 * when they are converted. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* pread */
#endif
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "om_chunks.h"
#include "om_dec_internal.h"
#include "om_dispatch.h"
#include "om_internal.h"
#if !defined(_WIN32)
#include <unistd.h>
#endif

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
/* q and out may be the same buffer (in place; elementwise, loads first).     */

static void conv16_c(const uint16_t *q, float *out, size_t n, float sf, float ao)
{
    const float nan = f32_bits(NAN32_BITS);
    for (size_t i = 0; i < n; i++) {
        const int16_t v = (int16_t)q[i];
        out[i] = v == 32767 ? nan : (float)v / sf - ao;
    }
}

/* powf is by far the slowest step; a chunk holds few distinct int16 values
 * (precipitation, sf 1000: 0 .. ~2000 for up to 100 mm), so the results for
 * that range are memoised (on the stack, ~11 KiB). Same inputs, same powf
 * calls: bit-identical. */
#define LOG_MEMO_LO (-256)
#define LOG_MEMO_N 2304

typedef struct {
    float val[LOG_MEMO_N];
    uint8_t known[LOG_MEMO_N];
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

static void conv32_c(const uint32_t *q, float *out, size_t n, float sf, float ao)
{
    for (size_t i = 0; i < n; i++) {
        const int32_t v = (int32_t)q[i];
        const float f = v == INT32_MAX ? f32_bits(NAN32_BITS) : (float)v / sf - ao;
        memcpy(out + i, &f, 4); /* out may alias q */
    }
}

static void conv64_c(const uint64_t *q, double *out, size_t n, double sf, double ao)
{
    for (size_t i = 0; i < n; i++) {
        const int64_t v = (int64_t)q[i];
        const double d = v == INT64_MAX ? f64_bits(NAN64_BITS) : (double)v / sf - ao;
        memcpy(out + i, &d, 8);
    }
}

#if OM_X86
/* The vector loops leave a tail of fewer than one vector. When q and out are
 * different buffers the tail is done by redoing the last whole vector (the
 * conversion is a pure function of q), otherwise in C. */
#define CONV_TAIL(VEC, BODY, CFUN, ...)                                 \
    if (i < n) {                                                        \
        if ((const void *)q != (const void *)out && n >= (VEC)) {       \
            i = n - (VEC);                                              \
            BODY                                                        \
        } else {                                                        \
            CFUN(q + i, out + i, n - i, __VA_ARGS__);                   \
        }                                                               \
    }

static void conv16_sse2(const uint16_t *q, float *out, size_t n, float sf, float ao)
{
    const __m128 vsf = _mm_set1_ps(sf), vao = _mm_set1_ps(ao);
    const __m128 vnan = _mm_castsi128_ps(_mm_set1_epi32((int)NAN32_BITS));
    const __m128i sent = _mm_set1_epi16(32767);
    size_t i = 0;
#define CONV16_SSE2_BODY                                                               \
    {                                                                                  \
        const __m128i x = _mm_loadu_si128((const __m128i *)(q + i));                   \
        const __m128i isn = _mm_cmpeq_epi16(x, sent);                                  \
        const __m128i lo = _mm_srai_epi32(_mm_unpacklo_epi16(x, x), 16);               \
        const __m128i hi = _mm_srai_epi32(_mm_unpackhi_epi16(x, x), 16);               \
        __m128 flo = _mm_sub_ps(_mm_div_ps(_mm_cvtepi32_ps(lo), vsf), vao);            \
        __m128 fhi = _mm_sub_ps(_mm_div_ps(_mm_cvtepi32_ps(hi), vsf), vao);            \
        const __m128 mlo = _mm_castsi128_ps(_mm_unpacklo_epi16(isn, isn));             \
        const __m128 mhi = _mm_castsi128_ps(_mm_unpackhi_epi16(isn, isn));             \
        flo = _mm_or_ps(_mm_and_ps(mlo, vnan), _mm_andnot_ps(mlo, flo));               \
        fhi = _mm_or_ps(_mm_and_ps(mhi, vnan), _mm_andnot_ps(mhi, fhi));               \
        _mm_storeu_ps(out + i, flo);                                                   \
        _mm_storeu_ps(out + i + 4, fhi);                                               \
    }
    for (; i + 8 <= n; i += 8)
        CONV16_SSE2_BODY
    CONV_TAIL(8, CONV16_SSE2_BODY, conv16_c, sf, ao)
}

__attribute__((target("avx2"))) static void conv16_avx2(const uint16_t *q, float *out, size_t n,
                                                        float sf, float ao)
{
    const __m256 vsf = _mm256_set1_ps(sf), vao = _mm256_set1_ps(ao);
    const __m256 vnan = _mm256_castsi256_ps(_mm256_set1_epi32((int)NAN32_BITS));
    const __m256i sent = _mm256_set1_epi32(32767);
    size_t i = 0;
#define CONV16_AVX2_BODY                                                                       \
    {                                                                                          \
        const __m256i a = _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(q + i)));     \
        const __m256i b = _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(q + i + 8))); \
        const __m256 fa = _mm256_sub_ps(_mm256_div_ps(_mm256_cvtepi32_ps(a), vsf), vao);       \
        const __m256 fb = _mm256_sub_ps(_mm256_div_ps(_mm256_cvtepi32_ps(b), vsf), vao);       \
        _mm256_storeu_ps(out + i, _mm256_blendv_ps(fa, vnan, _mm256_castsi256_ps(              \
                                                                 _mm256_cmpeq_epi32(a, sent)))); \
        _mm256_storeu_ps(out + i + 8, _mm256_blendv_ps(fb, vnan, _mm256_castsi256_ps(          \
                                                                     _mm256_cmpeq_epi32(b, sent)))); \
    }
    for (; i + 16 <= n; i += 16)
        CONV16_AVX2_BODY
    CONV_TAIL(16, CONV16_AVX2_BODY, conv16_c, sf, ao)
}

static void conv32_sse2(const uint32_t *q, float *out, size_t n, float sf, float ao)
{
    const __m128 vsf = _mm_set1_ps(sf), vao = _mm_set1_ps(ao);
    const __m128 vnan = _mm_castsi128_ps(_mm_set1_epi32((int)NAN32_BITS));
    const __m128i sent = _mm_set1_epi32(INT32_MAX);
    size_t i = 0;
#define CONV32_SSE2_BODY                                                                    \
    {                                                                                       \
        const __m128i x = _mm_loadu_si128((const __m128i *)(q + i));                        \
        const __m128 m = _mm_castsi128_ps(_mm_cmpeq_epi32(x, sent));                        \
        const __m128 f = _mm_sub_ps(_mm_div_ps(_mm_cvtepi32_ps(x), vsf), vao);              \
        _mm_storeu_ps(out + i, _mm_or_ps(_mm_and_ps(m, vnan), _mm_andnot_ps(m, f)));        \
    }
    for (; i + 4 <= n; i += 4)
        CONV32_SSE2_BODY
    CONV_TAIL(4, CONV32_SSE2_BODY, conv32_c, sf, ao)
}

__attribute__((target("avx2"))) static void conv32_avx2(const uint32_t *q, float *out, size_t n,
                                                        float sf, float ao)
{
    const __m256 vsf = _mm256_set1_ps(sf), vao = _mm256_set1_ps(ao);
    const __m256 vnan = _mm256_castsi256_ps(_mm256_set1_epi32((int)NAN32_BITS));
    const __m256i sent = _mm256_set1_epi32(INT32_MAX);
    size_t i = 0;
#define CONV32_AVX2_BODY                                                                      \
    {                                                                                         \
        const __m256i x = _mm256_loadu_si256((const __m256i *)(q + i));                       \
        const __m256 f = _mm256_sub_ps(_mm256_div_ps(_mm256_cvtepi32_ps(x), vsf), vao);       \
        _mm256_storeu_ps(out + i, _mm256_blendv_ps(f, vnan, _mm256_castsi256_ps(              \
                                                                _mm256_cmpeq_epi32(x, sent)))); \
    }
    for (; i + 8 <= n; i += 8)
        CONV32_AVX2_BODY
    CONV_TAIL(8, CONV32_AVX2_BODY, conv32_c, sf, ao)
}

/* int64 -> float64 without AVX-512: q = hi * 2^32 + lo with hi signed and lo
 * unsigned 32-bit; both convert exactly, hi * 2^32 is exact, and the one
 * rounding of the sum is the rounding of (double)q. */
__attribute__((target("avx2"))) static void conv64_avx2(const uint64_t *q, double *out, size_t n,
                                                        double sf, double ao)
{
    const __m256d vsf = _mm256_set1_pd(sf), vao = _mm256_set1_pd(ao);
    const __m256d vnan = _mm256_castsi256_pd(_mm256_set1_epi64x((long long)NAN64_BITS));
    const __m256i sent = _mm256_set1_epi64x(INT64_MAX);
    const __m256i odd = _mm256_setr_epi32(1, 3, 5, 7, 0, 2, 4, 6);
    const __m256i magic = _mm256_set1_epi64x(0x4330000000000000ll); /* 2^52 */
    const __m256d two52 = _mm256_set1_pd(4503599627370496.0);
    const __m256d two32 = _mm256_set1_pd(4294967296.0);
    size_t i = 0;
#define CONV64_AVX2_BODY                                                                        \
    {                                                                                           \
        const __m256i x = _mm256_loadu_si256((const __m256i *)(q + i));                         \
        const __m128i hi = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(x, odd));         \
        const __m256d dhi = _mm256_mul_pd(_mm256_cvtepi32_pd(hi), two32);                       \
        const __m256d dlo =                                                                     \
            _mm256_sub_pd(_mm256_castsi256_pd(_mm256_blend_epi32(x, magic, 0xAA)), two52);      \
        const __m256d f = _mm256_sub_pd(_mm256_div_pd(_mm256_add_pd(dhi, dlo), vsf), vao);      \
        _mm256_storeu_pd(out + i, _mm256_blendv_pd(f, vnan, _mm256_castsi256_pd(                \
                                                                _mm256_cmpeq_epi64(x, sent)))); \
    }
    for (; i + 4 <= n; i += 4)
        CONV64_AVX2_BODY
    CONV_TAIL(4, CONV64_AVX2_BODY, conv64_c, sf, ao)
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

static void conv32(const uint32_t *q, float *out, size_t n, float sf, float ao, int level)
{
#if OM_X86
    if (level >= 3) { conv32_avx2(q, out, n, sf, ao); return; }
    if (level >= 1) { conv32_sse2(q, out, n, sf, ao); return; }
#endif
    (void)level;
    conv32_c(q, out, n, sf, ao);
}

static void conv64(const uint64_t *q, double *out, size_t n, double sf, double ao, int level)
{
#if OM_X86
    if (level >= 3) { conv64_avx2(q, out, n, sf, ao); return; }
#endif
    (void)level;
    conv64_c(q, out, n, sf, ao);
}

/* ------------------------------------------------------------------------ */
/* One chunk                                                                  */

/* Converts decoded integers to floats while the stream decoder runs, in
 * batches of whole vectors so the integers are still in cache. The output is
 * either contiguous or, for decode_select, row r of the chunk goes to
 * out + row_off[r] (elements). In place (q == out) the integers of element i
 * are needed until element i + L is filtered, so conversion lags one row. */
typedef struct {
    int kind; /* 0: int16 -> float32, 1: int16 log, 2: int32 -> float32, 3: int64 -> float64 */
    const void *q;
    void *out;
    const uint64_t *row_off; /* NULL: contiguous */
    size_t L, lag, done;
    float sf, ao;
    int level;
    log_memo_t *memo;
} conv_ctx_t;

static void conv_run(conv_ctx_t *c, size_t s, void *dst, size_t k)
{
    switch (c->kind) {
    case 0: conv16((const uint16_t *)c->q + s, (float *)dst, k, c->sf, c->ao, c->level); break;
    case 1: conv16_log_c((const uint16_t *)c->q + s, (float *)dst, k, c->sf, c->memo); break;
    case 2: conv32((const uint32_t *)c->q + s, (float *)dst, k, c->sf, c->ao, c->level); break;
    default:
        conv64((const uint64_t *)c->q + s, (double *)dst, k, (double)c->sf, (double)c->ao, c->level);
        break;
    }
}

static void conv_upto(conv_ctx_t *c, size_t upto)
{
    const size_t es = c->kind == 3 ? 8 : 4;
    size_t s = c->done;
    if (c->row_off == NULL) {
        if (upto > s)
            conv_run(c, s, (uint8_t *)c->out + s * es, upto - s);
    } else {
        while (s < upto) { /* row by row */
            const size_t r = s / c->L, col = s % c->L;
            const size_t k = c->L - col < upto - s ? c->L - col : upto - s;
            conv_run(c, s, (uint8_t *)c->out + (size_t)(c->row_off[r] + col) * es, k);
            s += k;
        }
    }
    c->done = upto;
}

static void conv_sink(void *ctx, size_t avail)
{
    conv_ctx_t *c = (conv_ctx_t *)ctx;
    if (avail <= c->lag)
        return;
    const size_t ready = avail - c->lag - c->done;
    if (c->row_off ? ready >= 1024 && ready >= c->L : ready >= 1024)
        conv_upto(c, c->row_off ? avail - c->lag - (avail - c->lag) % c->L
                                : c->done + (ready & ~(size_t)15));
}

/* 64-byte aligned sub-buffer of scratch at byte offset *used, or NULL. */
static void *scratch_take(void *scratch, size_t scratch_len, size_t *used, size_t bytes)
{
    const uintptr_t base = (uintptr_t)scratch;
    const uintptr_t a = (base + *used + 63) & ~(uintptr_t)63;
    if (scratch == NULL || a - base > scratch_len || scratch_len - (a - base) < bytes)
        return NULL;
    *used = a - base + bytes;
    return (void *)a;
}

/* Whether (dtype, compression) decodes through the value step (and so can
 * write its output rows anywhere). */
static int converts(int dtype, int compression)
{
    return compression == OM_PFOR_INT16 || compression == OM_PFOR_INT16_LOG ||
           (compression == OM_PFOR && (dtype == OM_FLOAT || dtype == OM_DOUBLE));
}

static int64_t decode_chunk_impl(int dtype, int compression, float scale_factor, float add_offset,
                                 int flags, const uint8_t *in, size_t in_len, size_t n,
                                 size_t row_len, void *out, const uint64_t *row_off,
                                 void *scratch, size_t scratch_len)
{
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
    if (!converts(dtype, compression)) { /* integer arrays: no value step */
        const int zz = dtype == OM_INT8 || dtype == OM_INT16 || dtype == OM_INT32 || dtype == OM_INT64;
        return om_pfor_decode_rows(in, in_len, n, zz, (int)om_dtype_size(dtype) * 8, out, F, NULL, NULL);
    }

    conv_ctx_t c = {0, NULL, out, row_off, L, 0, 0, scale_factor, add_offset, level, NULL};
    log_memo_t memo;
    size_t used = 0;
    int width;
    if (compression == OM_PFOR_INT16 || compression == OM_PFOR_INT16_LOG) {
        c.kind = compression == OM_PFOR_INT16 ? 0 : 1;
        width = 16;
    } else {
        c.kind = dtype == OM_FLOAT ? 2 : 3;
        width = dtype == OM_FLOAT ? 32 : 64;
    }
    if (c.kind <= 1 || row_off != NULL) { /* integers in scratch, floats to out */
        c.q = scratch_take(scratch, scratch_len, &used, n * (size_t)(width / 8));
        if (c.q == NULL)
            return OM_E_OUTPUT;
    } else { /* in place */
        c.q = out;
        c.lag = F;
    }
    if (c.kind == 1 && n >= 64) {
        memset(memo.known, 0, LOG_MEMO_N);
        c.memo = &memo;
    }
    r = om_pfor_decode_rows(in, in_len, n, 1, width, (void *)c.q, F, conv_sink, &c);
    if (r >= 0)
        conv_upto(&c, n);
    return r;
}

/* Value step of n selected integers (kind as in conv_ctx_t) from q to dst. */
OM_INLINE void conv_sel(int kind, const void *q, void *dst, size_t n, float sf, float ao, int level)
{
    if (n < 4) { /* short runs (e.g. one element per row): no vector set-up */
        switch (kind) {
        case 0: conv16_c((const uint16_t *)q, (float *)dst, n, sf, ao); return;
        case 2: conv32_c((const uint32_t *)q, (float *)dst, n, sf, ao); return;
        case 3: conv64_c((const uint64_t *)q, (double *)dst, n, (double)sf, (double)ao); return;
        default: break;
        }
    }
    switch (kind) {
    case 0: conv16((const uint16_t *)q, (float *)dst, n, sf, ao, level); break;
    case 1: conv16_log_c((const uint16_t *)q, (float *)dst, n, sf, NULL); break;
    case 2: conv32((const uint32_t *)q, (float *)dst, n, sf, ao, level); break;
    default: conv64((const uint64_t *)q, (double *)dst, n, (double)sf, (double)ao, level); break;
    }
}

/* Decode the first `stop` values (rounded up to the coder's block; stop <= n,
 * a multiple of L) of a chunk of n values into vals. Codecs with a value step
 * leave their integers there (*kind >= 0, *qw bytes each) for conv_sel;
 * the others leave final values (*kind = -1). Returns the bytes consumed:
 * the whole chunk's length only when stop == n. */
static int64_t decode_part(const om_array_t *a, const uint8_t *in, size_t in_len, size_t n,
                           size_t L, size_t stop, void *vals, void *scratch, size_t scratch_len,
                           int *kind, size_t *qw, const uint32_t *cols, size_t ncols,
                           const uint32_t *rows, size_t nrows)
{
    const size_t F = L < n ? L : 0;
    const int dtype = a->dtype, compression = a->compression;
    *kind = -1;
    *qw = om_dtype_size(dtype);
    const int partial = (nrows && !ncols && n > L) || ncols;
    if (partial && !(compression == OM_FPX_XOR && dtype != OM_FLOAT)) {
        if (compression == OM_FPX_XOR)
            return ncols ? om_fpx_decode_sparse32(in, in_len, n, (uint32_t *)vals, L, stop, cols,
                                                  ncols)
                         : om_fpx_decode_rowsel32(in, in_len, n, (uint32_t *)vals, L, stop, rows,
                                                  nrows);
        /* the integers the PFor coder stores: width, zigzag, and the value step */
        int width = (int)om_dtype_size(dtype) * 8, zz = 1;
        if (converts(dtype, compression)) {
            if (compression == OM_PFOR_INT16 || compression == OM_PFOR_INT16_LOG) {
                *kind = compression == OM_PFOR_INT16 ? 0 : 1;
                width = 16;
            } else {
                *kind = dtype == OM_FLOAT ? 2 : 3;
            }
            *qw = (size_t)width / 8;
        } else {
            zz = dtype == OM_INT8 || dtype == OM_INT16 || dtype == OM_INT32 || dtype == OM_INT64;
        }
        return ncols ? om_pfor_decode_sparse(in, in_len, n, zz, width, vals, L, stop, cols, ncols)
                     : om_pfor_decode_rowsel(in, in_len, n, zz, width, vals, L, stop, rows, nrows);
    }
    if (converts(dtype, compression)) {
        int width;
        if (compression == OM_PFOR_INT16 || compression == OM_PFOR_INT16_LOG) {
            *kind = compression == OM_PFOR_INT16 ? 0 : 1;
            width = 16;
        } else {
            *kind = dtype == OM_FLOAT ? 2 : 3;
            width = dtype == OM_FLOAT ? 32 : 64;
        }
        *qw = (size_t)width / 8;
        return om_pfor_decode_prefix(in, in_len, n, 1, width, vals, F, stop);
    }
    if (compression == OM_FPX_XOR && dtype == OM_FLOAT)
        return om_fpx_decode_prefix32(in, in_len, n, (uint32_t *)vals, F, stop);
    if (compression != OM_FPX_XOR) { /* integer arrays */
        const int zz = dtype == OM_INT8 || dtype == OM_INT16 || dtype == OM_INT32 || dtype == OM_INT64;
        return om_pfor_decode_prefix(in, in_len, n, zz, (int)om_dtype_size(dtype) * 8, vals, F,
                                     stop);
    }
    /* fpx float64: its xor2d quirk runs over the whole chunk afterwards */
    const int64_t r = decode_chunk_impl(dtype, compression, a->scale_factor, a->add_offset,
                                        a->flags, in, in_len, n, L, vals, NULL, scratch,
                                        scratch_len);
    return r < 0 || stop >= n ? r : (int64_t)in_len;
}

int64_t om_decode_chunk(int dtype, int compression, float scale_factor, float add_offset,
                        int flags, const uint8_t *in, size_t in_len, size_t n, size_t row_len,
                        void *out, void *scratch, size_t scratch_len)
{
    if (om_check_pair(dtype, compression) != OM_OK)
        return OM_E_INVALID;
    if (n == 0 || row_len == 0 || n % row_len != 0)
        return OM_E_GEOMETRY;
    if (out == NULL || (in == NULL && in_len) || n > SIZE_MAX / 16)
        return OM_E_INVALID;
    return decode_chunk_impl(dtype, compression, scale_factor, add_offset, flags, in, in_len, n,
                             row_len, out, NULL, scratch, scratch_len);
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
    int64_t v;    /* global index along the dimension */
    uint64_t i;   /* output position */
    uint64_t end; /* last index of the run of pairs from here on with v and i both +1 */
} selpair_t;

static int cmp_selpair(const void *pa, const void *pb)
{
    const selpair_t *a = (const selpair_t *)pa, *b = (const selpair_t *)pb;
    if (a->v != b->v)
        return a->v < b->v ? -1 : 1;
    return a->i < b->i ? -1 : (a->i > b->i);
}

/* First index in p[0, len) with p.v >= x (p sorted by v); branch-free
 * steps, the comparisons are unpredictable. */
static size_t lower_bound(const selpair_t *p, size_t len, int64_t x)
{
    if (len == 0)
        return 0;
    const selpair_t *b = p;
    size_t n = len;
    while (n > 1) {
        const size_t half = n / 2;
        b = b[half - 1].v < x ? b + half : b;
        n -= half;
    }
    return (size_t)(b - p) + (b->v < x);
}

/* Per dimension: where the selected positions of each chunk coordinate start
 * in the sorted pairs, tabulated over the coordinates the selection spans
 * when that span is small; otherwise binary search. */
typedef struct {
    const selpair_t *p;
    size_t len;
    uint64_t chunk;
    uint64_t c0, span; /* first coordinate, number tabulated (0: none) */
    const uint64_t *tab; /* span + 1 entries: tab[c - c0] = first pair of coordinate c */
} dimsel_t;

static void dim_range(const dimsel_t *ds, uint64_t c, uint64_t start, uint64_t len, uint64_t *lo,
                      uint64_t *hi)
{
    if (ds->span && c >= ds->c0 && c - ds->c0 < ds->span) {
        *lo = ds->tab[c - ds->c0];
        *hi = ds->tab[c - ds->c0 + 1];
    } else if (ds->span) { /* outside the selection's span: nothing selected */
        *lo = *hi = 0;
    } else {
        *lo = lower_bound(ds->p, ds->len, (int64_t)start);
        *hi = lower_bound(ds->p, ds->len, (int64_t)(start + len));
    }
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

/* Copy one run of `len` elements of size es (short runs without a call). */
OM_INLINE void copy_run(uint8_t *dst, const uint8_t *src, uint64_t len, size_t es)
{
    if (len <= 8) {
        switch (es) {
        case 1: for (uint64_t t = 0; t < len; t++) dst[t] = src[t]; return;
        case 2: for (uint64_t t = 0; t < len; t++) memcpy(dst + 2 * t, src + 2 * t, 2); return;
        case 4: for (uint64_t t = 0; t < len; t++) memcpy(dst + 4 * t, src + 4 * t, 4); return;
        default: for (uint64_t t = 0; t < len; t++) memcpy(dst + 8 * t, src + 8 * t, 8); return;
        }
    }
    memcpy(dst, src, (size_t)len * es);
}

#define OM_ROWSEL_MAX 16
/* Rows shorter than this decode faster by the plain prefix path: the
 * row-selection path pays a call and a row switch per row. */
#ifndef OM_ROWSEL_MIN_ROW
#define OM_ROWSEL_MIN_ROW 256
#endif

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
    const int level = om_simd_level();
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
    uint64_t max_count = 0, max_rows = 0;
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
        const uint64_t last = a->dims[D - 1] - (chunk_idx[k] % nchk[D - 1]) * a->chunks[D - 1];
        const uint64_t rows = count / (last < a->chunks[D - 1] ? last : a->chunks[D - 1]);
        if (rows > max_rows)
            max_rows = rows;
    }

    /* Per dimension: (index, output position) pairs sorted by index. */
    size_t total_sel = 0;
    for (int d = 0; d < D; d++)
        total_sel += (size_t)sel_len[d]; /* each fits: n_out did not overflow */
    if (max_count > SIZE_MAX / 32 || total_sel > SIZE_MAX / 128)
        return OM_E_NOMEM;
    const size_t val_bytes = (size_t)max_count * es;
    const size_t scr_bytes = om_chunk_scratch(a->dtype, a->compression, (size_t)max_count);
    const size_t pair_bytes = total_sel * sizeof(selpair_t);
    const size_t run_bytes = (size_t)sel_len[D - 1] * sizeof(run_t);
    const size_t off_scr = (val_bytes + 63) & ~(size_t)63;
    const size_t off_pairs = (off_scr + scr_bytes + 63) & ~(size_t)63;
    const size_t off_runs = (off_pairs + pair_bytes + 63) & ~(size_t)63;
    const size_t off_rows = (off_runs + run_bytes + 63) & ~(size_t)63;
    const size_t off_tab = (off_rows + (size_t)max_rows * 8 + 63) & ~(size_t)63;
    const size_t tab_bytes = (4 * total_sel + 1025 * (size_t)D) * 8;
    uint8_t *mem = (uint8_t *)malloc(off_tab + tab_bytes + 64);
    if (mem == NULL)
        return OM_E_NOMEM;
    om_guard_hold(mem);
    uint8_t *vals = mem;
    uint8_t *scratch = mem + off_scr;
    selpair_t *pairs[OM_MAX_DIMS];
    run_t *runs = (run_t *)(mem + off_runs);
    uint64_t *row_off = (uint64_t *)(mem + off_rows);
    uint64_t *tab = (uint64_t *)(mem + off_tab);
    dimsel_t ds[OM_MAX_DIMS];
    int rc = OM_OK;

    selpair_t *pp = (selpair_t *)(mem + off_pairs);
    for (int d = 0; d < D; d++) {
        const uint64_t len = sel_len[d];
        const int64_t *s = sel[d];
        int up = 1, down = 1;
        pairs[d] = pp;
        const uint64_t ch = a->chunks[d];
        /* An ascending step-1 run (the common box keys): pairs and table in
         * closed form, without the generic checks, sorting and searches. */
        uint64_t t_run = 0;
        if (s[0] >= 0 && len <= a->dims[d] && (uint64_t)s[0] <= a->dims[d] - len)
            for (t_run = 1; t_run < len && s[t_run] == s[0] + (int64_t)t_run; t_run++)
                ;
        if (t_run == len) {
            const int64_t s0 = s[0];
            for (uint64_t t = 0; t < len; t++)
                pp[t] = (selpair_t){s0 + (int64_t)t, t, len - 1};
            const uint64_t c0 = (uint64_t)s0 / ch, span = ((uint64_t)s0 + len - 1) / ch - c0 + 1;
            for (uint64_t c = 0; c <= span; c++) {
                const uint64_t bound = (c0 + c) * ch;
                tab[c] = bound <= (uint64_t)s0 ? 0 : bound - (uint64_t)s0 < len ? bound - (uint64_t)s0 : len;
            }
            ds[d] = (dimsel_t){pp, (size_t)len, ch, c0, span, tab};
            tab += span + 1;
            pp += len;
            continue;
        }
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
        for (uint64_t t = len; t-- > 0;)
            pp[t].end = (t + 1 < len && pp[t + 1].v == pp[t].v + 1 && pp[t + 1].i == pp[t].i + 1)
                            ? pp[t + 1].end
                            : t;
        /* chunk coordinate -> first pair, over the span of the selection */
        const uint64_t c0 = (uint64_t)pp[0].v / ch, span = (uint64_t)pp[len - 1].v / ch - c0 + 1;
        ds[d] = (dimsel_t){pp, (size_t)len, ch, c0, 0, tab};
        if (span <= 4 * len + 1024) {
            uint64_t t = 0;
            for (uint64_t c = 0; c <= span; c++) {
                const uint64_t bound = (c0 + c) * ch;
                while (t < len && (uint64_t)pp[t].v < bound)
                    t++;
                tab[c] = t;
            }
            ds[d].span = span;
            tab += span + 1;
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
            dim_range(&ds[d], c, start[d], clen[d], &lo[d], &hi[d]);
            empty |= lo[d] == hi[d];
        }
        if (empty)
            continue;

        /* A chunk selected whole and in order ("whole") is decoded straight
         * into out: in one piece if it lands on one contiguous stretch of
         * out, else row by row through the value step (float arrays).
         * Everything else is decoded into vals and scattered. */
        int whole = 1;
        uint64_t base = 0;
        for (int d = 0; d < D && whole; d++) {
            const selpair_t *p = pairs[d];
            whole = hi[d] - lo[d] == clen[d] && p[lo[d]].v == (int64_t)start[d] &&
                    p[lo[d]].end >= hi[d] - 1;
            base += p[lo[d]].i * ostride[d];
        }
        int direct = whole;
        if (direct) {
            int d = D - 1;
            while (d > 0 && clen[d] == sel_len[d])
                d--;
            for (int e = 0; e < d; e++)
                if (clen[e] != 1)
                    direct = 0;
        }
        const int by_rows = whole && !direct && clen[D - 1] >= 16 && converts(a->dtype, a->compression);
        if (by_rows) { /* out offset of every chunk row, rows in row-major order */
            uint64_t j[OM_MAX_DIMS] = {0};
            const uint64_t R = count / clen[D - 1];
            uint64_t off = base;
            for (uint64_t r = 0; r < R; r++) {
                row_off[r] = off;
                int d = D - 2;
                while (d >= 0 && ++j[d] == clen[d]) {
                    off -= (clen[d] - 1) * ostride[d];
                    j[d] = 0;
                    d--;
                }
                if (d >= 0)
                    off += ostride[d];
            }
        }

        uint64_t cstride[OM_MAX_DIMS], t[OM_MAX_DIMS];
        cstride[D - 1] = 1;
        for (int d = D - 1; d > 0; d--)
            cstride[d - 1] = cstride[d] * clen[d];
        if (direct || by_rows) {
            uint8_t *dst = direct ? (uint8_t *)out + (size_t)base * es : (uint8_t *)out;
            const int64_t r = decode_chunk_impl(a->dtype, a->compression, a->scale_factor,
                                                a->add_offset, a->flags, data + chunk_off[k],
                                                (size_t)chunk_len[k], (size_t)count,
                                                (size_t)clen[D - 1], dst, by_rows ? row_off : NULL,
                                                scratch, scr_bytes);
            if (r < 0 || (uint64_t)r != chunk_len[k]) {
                *bad = k;
                rc = r < 0 ? (int)r : OM_E_SIZE_MISMATCH;
                goto done;
            }
            continue;
        }

        /* Part of the chunk: the streams are sequential and the 2-D filters
         * only look one row back, so decoding stops after the last row that
         * holds a selected element (the sorted pairs' last entries give it).
         * Codecs with a value step stay integers here; only the selected
         * elements are converted, while scattering. */
        uint64_t last = 0;
        for (int d = 0; d < D; d++)
            last += ((uint64_t)pairs[d][hi[d] - 1].v - start[d]) * cstride[d];
        const uint64_t L = clen[D - 1];
        const size_t stop = (size_t)((last / L + 1) * L);
        int kind = -1;
        size_t qw = es;
        /* A few columns of long rows: decode only those (unique local columns
         * of the selection; sparse when at most 1 in 8 of the row's values). */
        uint32_t cols[OM_SPARSE_MAX_COLS];
        size_t ncols = 0;
        if (L >= 8 && hi[D - 1] - lo[D - 1] <= L / 8) {
            const selpair_t *p = pairs[D - 1];
            for (uint64_t q = lo[D - 1]; q < hi[D - 1]; q++) {
                const uint32_t c = (uint32_t)((uint64_t)p[q].v - start[D - 1]);
                if (ncols && cols[ncols - 1] == c)
                    continue;
                if (ncols == OM_SPARSE_MAX_COLS || 8 * (ncols + 1) > L) {
                    ncols = 0;
                    break;
                }
                cols[ncols++] = c;
            }
        }
        /* A few rows out of many (a time series through chunks of many
         * series): decode to the last one but keep only those rows (unique
         * local rows of the selection, at most 1 in 2 of the decoded rows). */
        uint32_t rows[OM_ROWSEL_MAX];
        size_t nrows = 0;
        if (ncols == 0 && count > L && stop / L >= 2 && L >= OM_ROWSEL_MIN_ROW &&
            !(a->compression == OM_FPX_XOR && a->dtype != OM_FLOAT)) {
            uint64_t combos = 1;
            for (int d = 0; d < D - 1 && combos <= OM_ROWSEL_MAX; d++)
                combos *= hi[d] - lo[d]; /* each factor >= 1: no overflow */
            if (combos <= OM_ROWSEL_MAX && stop / L <= UINT32_MAX) {
                uint64_t u[OM_MAX_DIMS];
                for (int d = 0; d < D - 1; d++)
                    u[d] = lo[d];
                for (;;) {
                    uint64_t row = 0;
                    for (int d = 0; d < D - 1; d++)
                        row += ((uint64_t)pairs[d][u[d]].v - start[d]) * (cstride[d] / L);
                    size_t q = nrows; /* insertion into the sorted, unique list */
                    while (q > 0 && rows[q - 1] > row)
                        q--;
                    if (q == 0 || rows[q - 1] != row) {
                        memmove(rows + q + 1, rows + q, (nrows - q) * sizeof(rows[0]));
                        rows[q] = (uint32_t)row;
                        nrows++;
                    }
                    int d = D - 2;
                    while (d >= 0 && ++u[d] == hi[d]) {
                        u[d] = lo[d];
                        d--;
                    }
                    if (d < 0)
                        break;
                }
                if (2 * nrows > stop / L)
                    nrows = 0;
            }
        }
        {
            const int64_t r = decode_part(a, data + chunk_off[k], (size_t)chunk_len[k],
                                          (size_t)count, (size_t)L, stop, vals, scratch,
                                          scr_bytes, &kind, &qw, cols, ncols, rows, nrows);
            if (r < 0 || (stop >= count && (uint64_t)r != chunk_len[k])) {
                *bad = k;
                rc = r < 0 ? (int)r : OM_E_SIZE_MISMATCH;
                goto done;
            }
        }

        /* Runs of the last dimension: consecutive output and chunk positions. */
        size_t nruns = 0;
        {
            const selpair_t *p = pairs[D - 1];
            for (uint64_t t = lo[D - 1]; t < hi[D - 1];) {
                const uint64_t e = p[t].end < hi[D - 1] - 1 ? p[t].end : hi[D - 1] - 1;
                runs[nruns++] = (run_t){p[t].i, (uint64_t)p[t].v - start[D - 1], e - t + 1};
                t = e + 1;
            }
        }
        /* Odometer over the selected positions of dimensions 0 .. D - 3; the
         * positions of dimension D - 2 (rows) run in the inner loop. */
        const int R = D - 2; /* row dimension, -1 for 1-D arrays */
        for (int d = 0; d < R; d++)
            t[d] = lo[d];
        const selpair_t *rp = R >= 0 ? pairs[R] : NULL;
        const uint64_t r_lo = R >= 0 ? lo[R] : 0, r_hi = R >= 0 ? hi[R] : 1;
        const uint64_t r_cs = R >= 0 ? cstride[R] : 0, r_os = R >= 0 ? ostride[R] : 0;
        const uint64_t r_start = R >= 0 ? start[R] : 0;
        /* one element per row (a time step): converted or copied inline */
        const int single = nruns == 1 && runs[0].len == 1;
        const float sf = a->scale_factor, ao = a->add_offset;
        for (;;) {
            uint64_t src0 = 0, dst0 = 0;
            for (int d = 0; d < R; d++) {
                src0 += ((uint64_t)pairs[d][t[d]].v - start[d]) * cstride[d];
                dst0 += pairs[d][t[d]].i * ostride[d];
            }
            for (uint64_t q = r_lo; q < r_hi; q++) {
                const uint64_t src = R >= 0 ? src0 + ((uint64_t)rp[q].v - r_start) * r_cs : 0;
                const uint64_t dsto = R >= 0 ? dst0 + rp[q].i * r_os : 0;
                uint8_t *ob = (uint8_t *)out + (size_t)dsto * es;
                const uint8_t *vb = vals + (size_t)src * qw;
                if (single) {
                    const size_t oi = (size_t)runs[0].i, vj = (size_t)runs[0].j;
                    switch (kind) {
                    case -1: copy_run(ob + oi * es, vb + vj * es, 1, es); break;
                    case 0: conv16_c((const uint16_t *)vb + vj, (float *)ob + oi, 1, sf, ao); break;
                    case 2: conv32_c((const uint32_t *)vb + vj, (float *)ob + oi, 1, sf, ao); break;
                    default:
                        conv_sel(kind, vb + vj * qw, ob + oi * es, 1, sf, ao, level);
                        break;
                    }
                } else if (kind < 0) {
                    for (size_t u = 0; u < nruns; u++)
                        copy_run(ob + (size_t)runs[u].i * es, vb + (size_t)runs[u].j * es,
                                 runs[u].len, es);
                } else {
                    for (size_t u = 0; u < nruns; u++)
                        conv_sel(kind, vb + (size_t)runs[u].j * qw, ob + (size_t)runs[u].i * es,
                                 (size_t)runs[u].len, sf, ao, level);
                }
            }
            int d = R - 1;
            while (d >= 0 && ++t[d] == hi[d]) {
                t[d] = lo[d];
                d--;
            }
            if (d < 0)
                break;
        }
    }
done:
    om_guard_hold(NULL);
    free(mem);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Reading many ranges of a local file in one call (om_chunks.h)             */

int64_t om_pread_ranges(int fd, size_t n, const uint64_t *starts, const uint64_t *stops,
                        const uint64_t *pos, uint8_t *buf, size_t buf_len, int *err)
{
    int dummy;
    if (err == NULL)
        err = &dummy;
    *err = 0;
#if defined(_WIN32)
    (void)fd; (void)n; (void)starts; (void)stops; (void)pos; (void)buf; (void)buf_len;
    return OM_E_INVALID;
#else
    if (n && (starts == NULL || stops == NULL || pos == NULL || buf == NULL))
        return OM_E_INVALID;
    for (size_t k = 0; k < n; k++) {
        if (stops[k] < starts[k] || pos[k] > buf_len || stops[k] - starts[k] > buf_len - pos[k] ||
            stops[k] > (uint64_t)INT64_MAX)
            return OM_E_INVALID;
    }
    for (size_t k = 0; k < n; k++) {
        uint64_t done = 0;
        const uint64_t len = stops[k] - starts[k];
        while (done < len) {
            const ssize_t got = pread(fd, buf + pos[k] + done, (size_t)(len - done),
                                      (off_t)(starts[k] + done));
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                *err = got < 0 ? errno : 0;
                return -(int64_t)(1000 + k);
            }
            done += (uint64_t)got;
        }
    }
    return OM_OK;
#endif
}
