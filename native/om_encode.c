/* Chunk encoder (codec spec 2, 3, 11), look-up table encoder (container spec
 * 6) and the many-chunks block encoder (om_chunks.h). Written from the specs.
 *
 * Float arithmetic must be exactly IEEE binary32/binary64 with rounding after
 * every operation: the value steps are split into one operation per
 * statement, and the build uses ISO C mode (gcc then never contracts a*b+c
 * into an FMA). Input values are read with memcpy-based loads, so they may
 * sit at any alignment. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "om_chunks.h"
#include "om_internal.h"

/* AVX2 builds of the encoders, picked at run time (gcc on x86-64 Linux). The
 * coders (om_pfor_enc.c, included here a second time with the public names
 * suffixed _avx2) run 20-35% faster; om_encode_chunk is cloned by gcc
 * (target_clones) so that the value steps vectorise too. The value steps stay
 * exact IEEE binary32/64 in every variant (AVX2 brings no FMA, and ISO C mode
 * forbids contraction anyway), and the coders are integer code: every variant
 * writes the same bytes. OM_NATIVE_NO_SIMD=1 keeps the coders on the portable
 * build. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && \
    defined(__has_attribute)
#if __has_attribute(target_clones)
#define OM_ENC_AVX2 1
#endif
#endif

#ifdef OM_ENC_AVX2
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx2")
#define OM_ENC_SFX_(x) x##_avx2
#define OM_ENC_NAME(x) OM_ENC_SFX_(x)
#define OM_ENC_LINK static
#include "om_pfor_enc.c"
#undef OM_ENC_NAME
#undef OM_ENC_LINK
#pragma GCC pop_options

#include <stdlib.h>
static int om_enc_use_avx2;

__attribute__((constructor)) static void om_enc_pick(void)
{
    const char *off = getenv("OM_NATIVE_NO_SIMD");
    __builtin_cpu_init();
    om_enc_use_avx2 =
        __builtin_cpu_supports("avx2") && !(off && off[0] && !(off[0] == '0' && !off[1]));
}
#define OM_ENC_CLONES __attribute__((target_clones("avx2", "default")))
#define OM_ENC_CALL(fn, ...) (om_enc_use_avx2 ? fn##_avx2(__VA_ARGS__) : fn(__VA_ARGS__))
#else
#define OM_ENC_CLONES
#define OM_ENC_CALL(fn, ...) fn(__VA_ARGS__)
#endif

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
#error "the OM value steps need float arithmetic without extended precision"
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the OM codecs assume a little-endian host"
#endif

OM_INLINE float om_ldf(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }
OM_INLINE double om_ldd(const uint8_t *p) { double v; memcpy(&v, p, 8); return v; }

/* ---- value steps (spec 2.1-2.4) ------------------------------------------ */

OM_INLINE uint32_t om_fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
OM_INLINE float om_bitsf(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
OM_INLINE uint64_t om_dbits(double f) { uint64_t u; memcpy(&u, &f, 8); return u; }
OM_INLINE double om_bitsd(uint64_t u) { double f; memcpy(&f, &u, 8); return f; }

/* The selects below are written as bit masks rather than ?: on floats: gcc
 * then keeps the loops branch-free and vectorises them (with float ?: it
 * falls back to branches to preserve FP-exception semantics). Values outside
 * the conversion range are replaced by 0 before converting, so no conversion
 * is ever out of range (undefined in C); their result is selected by mask. */

/* round_half_away(s) clamped to int16; NaN -> 32767 (spec 2.1). For |s| <
 * 65536 the truncation remainder d = s - trunc(s) is exact (|s| < 2^23 or s is
 * an integer), so comparing d with +-0.5 rounds exactly, ties away from 0. */
OM_INLINE int32_t om_q16(float s)
{
    const uint32_t u = om_fbits(s), a = u & 0x7FFFFFFFu;
    const uint32_t in = 0u - (uint32_t)(a < 0x47800000u); /* |s| < 65536, not NaN */
    const float s2 = om_bitsf(u & in);
    int32_t t = (int32_t)s2;
    const float d = s2 - (float)t;
    t += (d >= 0.5f) - (d <= -0.5f);
    t = t < 32767 ? t : 32767;
    t = t > -32768 ? t : -32768;
    /* NaN and large positive values clamp to 32767, large negative to -32768 */
    const int32_t big = ((a > 0x7F800000u) | !(u >> 31)) ? 32767 : -32768;
    return (int32_t)(((uint32_t)t & in) | ((uint32_t)big & ~in));
}

static void value_int16(const uint8_t *restrict src, size_t n, float sf, float ao,
                        int16_t *restrict q)
{
    for (size_t i = 0; i < n; i++) {
        float a = om_ldf(src + 4 * i) + ao;
        float s = a * sf;
        q[i] = (int16_t)om_q16(s);
    }
}

/* Spec 2.2: add_offset is ignored. log10f is a library call, so the logs are
 * computed in a first pass and the vectorisable quantisation in a second. */
static void value_int16_log(const uint8_t *restrict src, size_t n, float sf,
                            int16_t *restrict q)
{
    float l[256];
    for (size_t i0 = 0; i0 < n; i0 += 256) {
        size_t m = n - i0 < 256 ? n - i0 : 256;
        for (size_t i = 0; i < m; i++) l[i] = log10f(1.0f + om_ldf(src + 4 * (i0 + i)));
        for (size_t i = 0; i < m; i++) {
            float s = l[i] * sf;
            q[i0 + i] = (int16_t)om_q16(s);
        }
    }
}

/* Spec 2.3: |s| >= 2^31 and NaN from the arithmetic give INT32_MIN (the x86
 * reference's out-of-range conversion, quirk K5); NaN inputs give the
 * INT32_MAX sentinel. Rounding as in om_q16 (exact: |s| >= 2^23 is integral). */
static void value_int32(const uint8_t *restrict src, size_t n, float sf, float ao,
                        int32_t *restrict q)
{
    for (size_t i = 0; i < n; i++) {
        const float v = om_ldf(src + 4 * i);
        const float a = v + ao;
        const float s = a * sf;
        const uint32_t u = om_fbits(s);
        const uint32_t in = 0u - (uint32_t)((u & 0x7FFFFFFFu) < 0x4F000000u); /* |s| < 2^31 */
        const float s2 = om_bitsf(u & in);
        int32_t t = (int32_t)s2;
        const float d = s2 - (float)t;
        t += (d >= 0.5f) - (d <= -0.5f);
        uint32_t r = ((uint32_t)t & in) | (0x80000000u & ~in);
        const uint32_t nan = 0u - (uint32_t)((om_fbits(v) & 0x7FFFFFFFu) > 0x7F800000u);
        q[i] = (int32_t)((r & ~nan) | (0x7FFFFFFFu & nan));
    }
}

/* Spec 2.4, the same in binary64 with sf/ao widened exactly. */
static void value_int64(const uint8_t *restrict src, size_t n, float sf, float ao,
                        int64_t *restrict q)
{
    const double sfd = (double)sf, aod = (double)ao;
    for (size_t i = 0; i < n; i++) {
        const double v = om_ldd(src + 8 * i);
        const double a = v + aod;
        const double s = a * sfd;
        const uint64_t u = om_dbits(s);
        const uint64_t in = 0u - (uint64_t)((u & 0x7FFFFFFFFFFFFFFFull) < 0x43E0000000000000ull);
        const double s2 = om_bitsd(u & in);
        int64_t t = (int64_t)s2;
        const double d = s2 - (double)t;
        t += (d >= 0.5) - (d <= -0.5);
        uint64_t r = ((uint64_t)t & in) | (0x8000000000000000ull & ~in);
        const uint64_t nan =
            0u - (uint64_t)((om_dbits(v) & 0x7FFFFFFFFFFFFFFFull) > 0x7FF0000000000000ull);
        q[i] = (int64_t)((r & ~nan) | (0x7FFFFFFFFFFFFFFFull & nan));
    }
}

/* ---- 2-D filters (spec 3) -------------------------------------------------- */

/* delta2d encode in place, last row first so every row is differenced against
 * the original previous row. */
#define OM_DELTA_ROWS(T, name)                                                 \
    static void name(T *q, size_t R, size_t L)                                 \
    {                                                                          \
        for (size_t r = R - 1; r >= 1; r--) {                                  \
            T *restrict row = q + r * L;                                       \
            const T *restrict prev = q + (r - 1) * L;                          \
            for (size_t c = 0; c < L; c++) row[c] = (T)(row[c] - prev[c]);     \
        }                                                                      \
    }
OM_DELTA_ROWS(uint16_t, delta2d_16)
OM_DELTA_ROWS(uint32_t, delta2d_32)
OM_DELTA_ROWS(uint64_t, delta2d_64)

/* Out-of-place filter from (possibly unaligned) input words: q[k] = w[k] for
 * the first L words, q[k] = w[k] OP w[k-L] for k in [L, n). */
#define OM_FILTER_COPY(T, BYTES, LD, OP, name)                                 \
    static void name(const uint8_t *restrict src, size_t n, size_t L,          \
                     T *restrict q)                                            \
    {                                                                          \
        memcpy(q, src, L * BYTES);                                             \
        for (size_t k = L; k < n; k++)                                         \
            q[k] = (T)(LD(src + BYTES * k) OP LD(src + BYTES * (k - L)));      \
    }
OM_INLINE uint8_t om_ld8(const uint8_t *p) { return *p; }
OM_FILTER_COPY(uint8_t, 1, om_ld8, -, delta_copy_8)
OM_FILTER_COPY(uint16_t, 2, om_ld16, -, delta_copy_16)
OM_FILTER_COPY(uint32_t, 4, om_ld32, -, delta_copy_32)
OM_FILTER_COPY(uint64_t, 8, om_ld64, -, delta_copy_64)
OM_FILTER_COPY(uint32_t, 4, om_ld32, ^, xor_copy_32)

/* ---- chunk ------------------------------------------------------------------ */

static uint8_t *align64(void *p)
{
    uintptr_t a = (uintptr_t)p;
    return (uint8_t *)(void *)((a + 63) & ~(uintptr_t)63);
}

/* Integer arrays: delta2d on the bit patterns, then p4nz/p4nd (spec table 1). */
static int64_t encode_int(int dtype, const uint8_t *src, size_t n, size_t L, uint8_t *out,
                          size_t cap, uint8_t *q)
{
    const size_t es = om_dtype_size(dtype);
    const int zz = dtype == OM_INT8 || dtype == OM_INT16 || dtype == OM_INT32 ||
                   dtype == OM_INT64;
    const int filter = n > L;
    /* The coder reads typed words: use the input in place when it needs no
     * filter and is aligned, else work on the scratch copy. */
    const uint8_t *p = src;
    if (filter) {
        switch (es) {
        case 1: delta_copy_8(src, n, L, q); break;
        case 2: delta_copy_16(src, n, L, (uint16_t *)(void *)q); break;
        case 4: delta_copy_32(src, n, L, (uint32_t *)(void *)q); break;
        default: delta_copy_64(src, n, L, (uint64_t *)(void *)q); break;
        }
        p = q;
    } else if ((uintptr_t)src % es) {
        memcpy(q, src, n * es);
        p = q;
    }
    switch (es) {
    case 1: return OM_ENC_CALL(om_pfor_encode8, p, n, zz, out, cap);
    case 2: return OM_ENC_CALL(om_pfor_encode16, (const uint16_t *)(const void *)p, n, zz, out, cap);
    case 4: return OM_ENC_CALL(om_pfor_encode32, (const uint32_t *)(const void *)p, n, zz, out, cap);
    default: return OM_ENC_CALL(om_pfor_encode64, (const uint64_t *)(const void *)p, n, zz, out, cap);
    }
}

OM_ENC_CLONES int64_t om_encode_chunk(int dtype, int compression, float scale_factor,
                                      float add_offset, int flags, const void *values, size_t n,
                                      size_t row_len, uint8_t *out, size_t cap, void *scratch,
                                      size_t scratch_len)
{
    if (om_check_pair(dtype, compression) != OM_OK) return OM_E_INVALID;
    if (!values || !out || n == 0) return OM_E_INVALID;
    if (row_len == 0 || n % row_len) return OM_E_GEOMETRY;
    const size_t es = om_dtype_size(dtype);
    if (n > (SIZE_MAX - 64) / 8) return OM_E_INVALID;
    /* Scratch holds the n coder words (at most 8 bytes each), 64-byte aligned. */
    if (!scratch || scratch_len < n * es + 64) return OM_E_INVALID;
    const uint8_t *src = (const uint8_t *)values;
    uint8_t *q = align64(scratch);
    const size_t L = row_len, R = n / row_len;

    if (compression == OM_PFOR_INT16 || compression == OM_PFOR_INT16_LOG) {
        int16_t *q16 = (int16_t *)(void *)q;
        if (compression == OM_PFOR_INT16)
            value_int16(src, n, scale_factor, add_offset, q16);
        else
            value_int16_log(src, n, scale_factor, q16);
        if (R > 1) delta2d_16((uint16_t *)q16, R, L);
        return OM_ENC_CALL(om_pfor_encode16, (const uint16_t *)q16, n, 1, out, cap);
    }
    if (compression == OM_FPX_XOR) {
        if (dtype == OM_FLOAT) {
            uint32_t *w = (uint32_t *)(void *)q;
            xor_copy_32(src, n, L, w);
            return OM_ENC_CALL(om_fpx_encode32, w, n, out, cap);
        }
        /* float64: xor2d over 32-bit words with the float64 geometry (quirk K2):
         * only words [0, n) are filtered, the second half is copied as is. */
        uint32_t *w = (uint32_t *)(void *)q;
        xor_copy_32(src, n, L, w);
        memcpy(w + n, src + 4 * n, 4 * n);
        return OM_ENC_CALL(om_fpx_encode64, (const uint64_t *)(const void *)w, n,
                               (flags & OM_FLAG_X86_LANES) != 0, out, cap);
    }
    /* OM_PFOR */
    if (dtype == OM_FLOAT) {
        int32_t *q32 = (int32_t *)(void *)q;
        value_int32(src, n, scale_factor, add_offset, q32);
        if (R > 1) delta2d_32((uint32_t *)q32, R, L);
        return OM_ENC_CALL(om_pfor_encode32, (const uint32_t *)q32, n, 1, out, cap);
    }
    if (dtype == OM_DOUBLE) {
        int64_t *q64 = (int64_t *)(void *)q;
        value_int64(src, n, scale_factor, add_offset, q64);
        if (R > 1) delta2d_64((uint64_t *)q64, R, L);
        return OM_ENC_CALL(om_pfor_encode64, (const uint64_t *)q64, n, 1, out, cap);
    }
    return encode_int(dtype, src, n, L, out, cap, q);
}

/* ---- look-up table (container spec 6) ------------------------------------- */

int64_t om_lut_encode(const uint64_t *lut, size_t n_entries, uint8_t *out, size_t cap,
                      uint64_t *stride)
{
    if (!out || !stride || (!lut && n_entries)) return OM_E_INVALID;
    const size_t n_groups = (n_entries + 63) / 64;
    /* A group is vbx (<= 9 bytes) plus one block of <= 63 deltas (<= 1 + 63*9). */
    uint8_t tmp[1024];
    size_t max_len = 0;
    /* The stride is only known once every group is sized: size them first,
     * then encode each at its final place. The LUT is tiny next to the data,
     * so encoding twice is cheaper than tracking compact offsets. */
    for (size_t g = 0; g < n_groups; g++) {
        size_t m = n_entries - 64 * g < 64 ? n_entries - 64 * g : 64;
        int64_t r = om_pfor_encode64(lut + 64 * g, m, 0, tmp, sizeof tmp);
        if (r < 0) return r;
        if ((size_t)r > max_len) max_len = (size_t)r;
    }
    if (n_groups && max_len > cap / n_groups) return OM_E_OUTPUT;
    for (size_t g = 0; g < n_groups; g++) {
        size_t m = n_entries - 64 * g < 64 ? n_entries - 64 * g : 64;
        uint8_t *dst = out + g * max_len;
        int64_t r = om_pfor_encode64(lut + 64 * g, m, 0, dst, max_len);
        if (r < 0) return r;
        memset(dst + r, 0, max_len - (size_t)r);
    }
    *stride = max_len;
    return (int64_t)(n_groups * max_len);
}

/* ---- blocks of chunks (om_chunks.h) --------------------------------------- */

/* Multiply with overflow detection: returns 0 on overflow. */
static int mul_ok(size_t a, size_t b, size_t *res)
{
    if (a && b > SIZE_MAX / a) return 0;
    *res = a * b;
    return 1;
}

/* Shared validation of the array geometry and a block shape: number of
 * chunks, elements and the largest chunk's element count. */
static int block_info(const om_array_t *a, const uint64_t *block_shape, size_t *n_chunks,
                      size_t *n_elems, size_t *max_chunk)
{
    if (!a || !block_shape || !a->dims || !a->chunks) return OM_E_INVALID;
    if (om_check_pair(a->dtype, a->compression) != OM_OK) return OM_E_INVALID;
    if (a->ndim < 1 || a->ndim > OM_MAX_DIMS) return OM_E_GEOMETRY;
    size_t nc = 1, ne = 1, mc = 1;
    for (int d = 0; d < a->ndim; d++) {
        uint64_t dim = a->dims[d], ch = a->chunks[d], s = block_shape[d];
        if (dim < 1 || ch < 1 || ch > dim || s < 1 || s > dim) return OM_E_GEOMETRY;
        uint64_t per = (s + ch - 1) / ch;
        uint64_t mlen = ch < s ? ch : s;
        if (!mul_ok(nc, (size_t)per, &nc) || !mul_ok(ne, (size_t)s, &ne) ||
            !mul_ok(mc, (size_t)mlen, &mc))
            return OM_E_GEOMETRY;
    }
    /* Byte sizes derived from ne must not overflow either (bound: 10 bytes/elem). */
    if (ne > (SIZE_MAX - 4096) / 16 || nc > (SIZE_MAX - 4096) / 64) return OM_E_GEOMETRY;
    *n_chunks = nc;
    *n_elems = ne;
    *max_chunk = mc;
    return OM_OK;
}

size_t om_encode_block_bound(const om_array_t *a, const uint64_t *block_shape)
{
    size_t nc, ne, mc;
    if (block_info(a, block_shape, &nc, &ne, &mc) != OM_OK) return 0;
    size_t B = om_coder_width(a->dtype, a->compression);
    /* Sum over chunks of om_chunk_bound(n) = n*(B+1) + 2*ceil(n/128) + 32. */
    return ne * (B + 1) + 2 * (ne / 128 + nc) + 32 * nc + 64;
}

int64_t om_encode_block(const om_array_t *a, const void *block, const uint64_t *block_start,
                        const uint64_t *block_shape, uint8_t *out, size_t cap,
                        uint64_t *chunk_len, size_t max_chunks)
{
    size_t nc, ne, mc;
    int rc = block_info(a, block_shape, &nc, &ne, &mc);
    if (rc != OM_OK) return rc;
    if (!block || !block_start || !out || !chunk_len) return OM_E_INVALID;
    const int D = a->ndim;
    for (int d = 0; d < D; d++) {
        uint64_t st = block_start[d], s = block_shape[d], ch = a->chunks[d], dim = a->dims[d];
        if (st % ch || st >= dim || s > dim - st) return OM_E_GEOMETRY;
        if (st + s != dim && (st + s) % ch) return OM_E_GEOMETRY;
    }
    if (nc > max_chunks) return OM_E_GEOMETRY;

    const size_t es = om_dtype_size(a->dtype);
    const size_t cs_len = om_chunk_scratch(a->dtype, a->compression, mc);
    uint8_t *mem = (uint8_t *)malloc(mc * es + 64 + cs_len);
    if (!mem) return OM_E_NOMEM;
    uint8_t *gather = align64(mem);
    uint8_t *cscratch = gather + mc * es;

    size_t shape[OM_MAX_DIMS], chunks[OM_MAX_DIMS], stride[OM_MAX_DIMS], nb[OM_MAX_DIMS];
    size_t k[OM_MAX_DIMS] = {0}, len[OM_MAX_DIMS], j[OM_MAX_DIMS];
    for (int d = D - 1; d >= 0; d--) {
        shape[d] = (size_t)block_shape[d];
        chunks[d] = (size_t)a->chunks[d];
        nb[d] = (shape[d] + chunks[d] - 1) / chunks[d];
        stride[d] = d == D - 1 ? 1 : stride[d + 1] * shape[d + 1];
    }

    const uint8_t *base = (const uint8_t *)block;
    size_t pos = 0;
    int64_t result = 0;
    for (size_t c = 0; c < nc; c++) {
        size_t n = 1, origin = 0;
        for (int d = 0; d < D; d++) {
            size_t s0 = k[d] * chunks[d];
            len[d] = shape[d] - s0 < chunks[d] ? shape[d] - s0 : chunks[d];
            n *= len[d];
            origin += s0 * stride[d];
        }
        /* Dimensions from dd on form one contiguous run in the block. */
        int dd = D - 1;
        size_t run = len[D - 1];
        while (dd > 0 && len[dd] == shape[dd]) {
            dd--;
            run *= len[dd];
        }
        /* Leading dimensions one element long add only an offset: the chunk is
         * still one contiguous run of the block (the common (1, y, x) chunks). */
        int ones = 1;
        for (int d = 0; d < dd; d++) ones &= len[d] == 1;
        const uint8_t *vals;
        if (ones) {
            vals = base + origin * es;
        } else {
            for (int d = 0; d < dd; d++) j[d] = 0;
            uint8_t *g = gather;
            for (size_t done = 0; done < n; done += run) {
                size_t off = origin;
                for (int d = 0; d < dd; d++) off += j[d] * stride[d];
                memcpy(g, base + off * es, run * es);
                g += run * es;
                for (int d = dd - 1; d >= 0; d--) {
                    if (++j[d] < len[d]) break;
                    j[d] = 0;
                }
            }
            vals = gather;
        }
        int64_t r = om_encode_chunk(a->dtype, a->compression, a->scale_factor, a->add_offset,
                                    a->flags, vals, n, len[D - 1], out + pos, cap - pos,
                                    cscratch, cs_len);
        if (r < 0) {
            result = r;
            break;
        }
        chunk_len[c] = (uint64_t)r;
        pos += (size_t)r;
        for (int d = D - 1; d >= 0; d--) {
            if (++k[d] < nb[d]) break;
            k[d] = 0;
        }
    }
    free(mem);
    return result < 0 ? result : (int64_t)pos;
}
