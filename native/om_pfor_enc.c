/* PFor and fpx encoders (codec spec sections 4-8), written from the spec.
 *
 * The per-width code (8, 16, 32, 64 bits) is one template: this file includes
 * itself once per width with OM_ENC_W defined, so every width gets its own
 * native element type and the compiler can vectorise the inner loops for it.
 *
 * Nothing here writes outside out[0, cap): each block's exact size is
 * computed before any of its bytes are stored. Padding bits of bit-packed
 * areas are written as zero (the reference leaves them undefined, quirk K1). */
#ifndef OM_ENC_W

#include "om_pfor.h"
#include "om_internal.h"

/* om_encode.c includes this file a second time, compiled for AVX2, with the
 * public names given a suffix (OM_ENC_NAME) and internal linkage. */
#ifndef OM_ENC_NAME
#define OM_ENC_NAME(x) x
#define OM_ENC_LINK
#endif

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define OM_SSE2 1
#endif

#define OM_CAT_(a, b) a##b
#define OM_CAT(a, b) OM_CAT_(a, b)

/* ---- width-independent helpers ------------------------------------------ */

/* Bit reversal (spec 4.2): swap ever larger groups; plain shifts and masks so
 * that loops over many values vectorise. */
OM_INLINE uint32_t rbit32(uint32_t x)
{
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
    x = ((x >> 8) & 0x00FF00FFu) | ((x & 0x00FF00FFu) << 8);
    return (x >> 16) | (x << 16);
}

OM_INLINE uint64_t rbit64(uint64_t x)
{
    x = ((x >> 1) & 0x5555555555555555ull) | ((x & 0x5555555555555555ull) << 1);
    x = ((x >> 2) & 0x3333333333333333ull) | ((x & 0x3333333333333333ull) << 2);
    x = ((x >> 4) & 0x0F0F0F0F0F0F0F0Full) | ((x & 0x0F0F0F0F0F0F0F0Full) << 4);
    x = ((x >> 8) & 0x00FF00FF00FF00FFull) | ((x & 0x00FF00FF00FF00FFull) << 8);
    x = ((x >> 16) & 0x0000FFFF0000FFFFull) | ((x & 0x0000FFFF0000FFFFull) << 16);
    return (x >> 32) | (x << 32);
}

/* x[i] = rbit(x[i] << hb) for a group (spec 8), hb < W. gcc turns the scalar
 * rbit into bswap, which SSE2 cannot vectorise, so the SSE2 path spells the
 * byte reversal as 16-bit shifts plus word shuffles. */
#ifdef OM_SSE2
OM_INLINE __m128i rbit_bytes_sse2(__m128i x)
{
    const __m128i m1 = _mm_set1_epi8(0x55), m2 = _mm_set1_epi8(0x33), m4 = _mm_set1_epi8(0x0F);
    x = _mm_or_si128(_mm_and_si128(_mm_srli_epi32(x, 1), m1), _mm_slli_epi32(_mm_and_si128(x, m1), 1));
    x = _mm_or_si128(_mm_and_si128(_mm_srli_epi32(x, 2), m2), _mm_slli_epi32(_mm_and_si128(x, m2), 2));
    x = _mm_or_si128(_mm_and_si128(_mm_srli_epi32(x, 4), m4), _mm_slli_epi32(_mm_and_si128(x, m4), 4));
    return _mm_or_si128(_mm_srli_epi16(x, 8), _mm_slli_epi16(x, 8)); /* bytes within words */
}
#endif

#ifdef __AVX2__
/* AVX2 build (om_encode.c): bytes reversed with one shuffle, the bits of each
 * byte with two nibble look-ups; 8 (4) values per step. */
OM_INLINE __m256i rbit_bytes_avx2(__m256i v)
{
    const __m256i lo_tab = _mm256_setr_epi8(
        0x00, 0x80, 0x40, 0xC0, 0x20, 0xA0, 0x60, 0xE0, 0x10, 0x90, 0x50, 0xD0, 0x30, 0xB0, 0x70,
        0xF0, 0x00, 0x80, 0x40, 0xC0, 0x20, 0xA0, 0x60, 0xE0, 0x10, 0x90, 0x50, 0xD0, 0x30,
        0xB0, 0x70, 0xF0);
    const __m256i hi_tab = _mm256_setr_epi8(0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15, 0,
                                            8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i lo = _mm256_and_si256(v, m4);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    return _mm256_or_si256(_mm256_shuffle_epi8(lo_tab, lo), _mm256_shuffle_epi8(hi_tab, hi));
}
#endif

static void rbit_shl32(uint32_t *x, unsigned m, int hb)
{
    unsigned i = 0;
#ifdef __AVX2__
    {
        const __m128i c = _mm_cvtsi32_si128(hb);
        const __m256i bswap = _mm256_setr_epi8(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12,
                                               3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12);
        for (; i + 8 <= m; i += 8) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(x + i));
            v = rbit_bytes_avx2(_mm256_shuffle_epi8(_mm256_sll_epi32(v, c), bswap));
            _mm256_storeu_si256((__m256i *)(void *)(x + i), v);
        }
    }
#endif
#ifdef OM_SSE2
    const __m128i cnt = _mm_cvtsi32_si128(hb);
    for (; i + 4 <= m; i += 4) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(x + i));
        v = rbit_bytes_sse2(_mm_sll_epi32(v, cnt));
        v = _mm_shufflehi_epi16(_mm_shufflelo_epi16(v, 0xB1), 0xB1); /* swap words */
        _mm_storeu_si128((__m128i *)(void *)(x + i), v);
    }
#endif
    for (; i < m; i++) x[i] = rbit32(x[i] << hb);
}

static void rbit_shl64(uint64_t *x, unsigned m, int hb)
{
    unsigned i = 0;
#ifdef __AVX2__
    {
        const __m128i c = _mm_cvtsi32_si128(hb);
        const __m256i bswap = _mm256_setr_epi8(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8,
                                               7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8);
        for (; i + 4 <= m; i += 4) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(x + i));
            v = rbit_bytes_avx2(_mm256_shuffle_epi8(_mm256_sll_epi64(v, c), bswap));
            _mm256_storeu_si256((__m256i *)(void *)(x + i), v);
        }
    }
#endif
#ifdef OM_SSE2
    const __m128i cnt = _mm_cvtsi32_si128(hb);
    for (; i + 2 <= m; i += 2) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(x + i));
        v = rbit_bytes_sse2(_mm_sll_epi64(v, cnt));
        v = _mm_shufflehi_epi16(_mm_shufflelo_epi16(v, 0x1B), 0x1B); /* reverse 4 words */
        _mm_storeu_si128((__m128i *)(void *)(x + i), v);
    }
#endif
    for (; i < m; i++) x[i] = rbit64(x[i] << hb);
}

/* Base width b and exception parameter bx (spec 6.3), from the histogram
 * cnt[k] = number of values with bit length k (k = 0..bmax). Transcribes the
 * reference's integer cost model exactly, ties keeping the wider width. */
static void choose_width(const uint32_t *cnt, int bmax, unsigned m, int W, int *pb, int *pbx)
{
    long best = (long)om_ceil8((size_t)m * (size_t)bmax) + 1;
    int b = bmax;
    int vbm = 0;
    long x = cnt[bmax];
    long cm = (long)om_ceil8(m);
    if (W >= 16) {
        /* est[k]: extra vb bytes for exceptions once the base width drops
         * below k; negative keys are never read and are dropped. */
        long est[65] = {0};
        long vv = x;
#define OM_SPREAD(c, k)                                                    \
    do {                                                                   \
        long c_ = (long)(c);                                               \
        int k_ = (k);                                                      \
        if (k_ >= 7) est[k_ - 7] += c_;                                    \
        if (k_ >= 15) est[k_ - 15] += 2 * c_;                              \
        if (k_ >= 19) est[k_ - 19] += 3 * c_;                              \
        if (k_ >= 25) est[k_ - 25] += 4 * c_;                              \
    } while (0)
        OM_SPREAD(x, bmax);
        for (int i = bmax - 1; i >= 0; i--) {
            long base = (long)om_ceil8((size_t)m * (size_t)i) + 2;
            long cost_vb = base + x + vv;
            long cost_bmp = base + cm + (long)om_ceil8((size_t)x * (size_t)(bmax - i));
            x += cnt[i];
            vv += (long)cnt[i] + est[i];
            OM_SPREAD(cnt[i], i);
            if (cost_bmp < best) { best = cost_bmp; b = i; vbm = 0; }
            if (cost_vb < best) { best = cost_vb; b = i; vbm = 1; }
        }
#undef OM_SPREAD
    } else {
        /* W = 8 compares against a base shifted by the fixed bitmap overhead. */
        best -= 2 + cm;
        for (int i = bmax - 1; i >= 0; i--) {
            long cost_bmp = (long)om_ceil8((size_t)m * (size_t)i) +
                            (long)om_ceil8((size_t)x * (size_t)(bmax - i));
            x += cnt[i];
            if (cost_bmp < best) { best = cost_bmp; b = i; }
        }
    }
    int bx = vbm ? W + 1 : bmax - b;
    if (W == 64 && b == 63) { /* 63 is not representable: 64 bits, no exceptions */
        b = 64;
        bx = 0;
    }
    *pb = b;
    *pbx = bx;
}

/* Size of vb(x) for one value (spec 5.2). */
OM_INLINE size_t vb_len(uint64_t x)
{
    if (x < 177) return 1;
    if (x < 16561) return 2;
    if (x < 540849) return 3;
    return 1 + om_ceil8((size_t)om_bitlen64(x));
}

OM_INLINE uint8_t *vb_put(uint8_t *p, uint64_t x)
{
    if (x < 177) {
        *p++ = (uint8_t)x;
    } else if (x < 16561) {
        uint64_t y = x - 177;
        *p++ = (uint8_t)(177 + (y >> 8));
        *p++ = (uint8_t)y;
    } else if (x < 540849) {
        uint64_t y = x - 16561;
        *p++ = (uint8_t)(241 + (y >> 16));
        *p++ = (uint8_t)y;
        *p++ = (uint8_t)(y >> 8);
    } else {
        int k = (int)om_ceil8((size_t)om_bitlen64(x));
        *p++ = (uint8_t)(249 + (k - 3));
        for (int j = 0; j < k; j++) *p++ = (uint8_t)(x >> (8 * j));
    }
    return p;
}

/* Horizontal packing (spec 4.3) for values < 2^32 and b <= 32: a 64-bit
 * accumulator flushed 32 bits at a time; the final partial word is written
 * byte-wise so nothing lands past ceil8(m*b). */
#define OM_HPACK32_BODY(v, m, b, out)                                      \
    do {                                                                   \
        uint64_t acc_ = 0;                                                 \
        unsigned fill_ = 0;                                                \
        uint8_t *p_ = (out);                                               \
        for (unsigned i_ = 0; i_ < (m); i_++) {                            \
            acc_ |= (uint64_t)(v)[i_] << fill_;                            \
            fill_ += (unsigned)(b);                                        \
            if (fill_ >= 32) {                                             \
                om_st32(p_, (uint32_t)acc_);                               \
                p_ += 4;                                                   \
                acc_ >>= 32;                                               \
                fill_ -= 32;                                               \
            }                                                              \
        }                                                                  \
        for (unsigned j_ = 0; j_ < fill_; j_ += 8) *p_++ = (uint8_t)(acc_ >> j_); \
    } while (0)

static void hpack_u8(const uint8_t *restrict v, unsigned m, int b, uint8_t *restrict out)
{
    OM_HPACK32_BODY(v, m, b, out);
}

static void hpack_u16(const uint16_t *restrict v, unsigned m, int b, uint8_t *restrict out)
{
    OM_HPACK32_BODY(v, m, b, out);
}

static void hpack_u32(const uint32_t *restrict v, unsigned m, int b, uint8_t *restrict out)
{
    OM_HPACK32_BODY(v, m, b, out);
}

/* Horizontal packing of 64-bit values with any b <= 64. */
static void hpack_u64(const uint64_t *restrict v, unsigned m, int b, uint8_t *restrict out)
{
    if (b <= 32) {
        /* values < 2^b fit the cheaper 32-bit flushing scheme */
        OM_HPACK32_BODY(v, m, b, out);
        return;
    }
    uint64_t acc = 0;
    unsigned fill = 0;
    uint8_t *p = out;
    for (unsigned i = 0; i < m; i++) {
        uint64_t x = v[i];
        acc |= x << fill;
        fill += (unsigned)b;
        if (fill >= 64) {
            om_st64(p, acc);
            p += 8;
            fill -= 64;
            acc = fill ? x >> ((unsigned)b - fill) : 0;
        }
    }
    for (unsigned j = 0; j < fill; j += 8) *p++ = (uint8_t)(acc >> j);
}

/* V16 (spec 4.4): 8 lanes of 16 values, word k of all lanes, then word k+1.
 * V32: 4 lanes of 32 values. Each lane shifts its values in LSB first and the
 * register is stored whenever the lane words fill; the carried-over bits of
 * the value that straddled are x >> (b - fill) (values are < 2^b, so this is 0
 * when nothing straddled). SSE2 shift counts >= the lane width give 0. */
static void vpack_u16(const uint16_t *restrict v, int b, uint8_t *restrict out)
{
    unsigned fill = 0;
#ifdef OM_SSE2
    __m128i acc = _mm_setzero_si128();
    for (int i = 0; i < 16; i++) {
        const __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(v + 8 * i));
        acc = _mm_or_si128(acc, _mm_sll_epi16(x, _mm_cvtsi32_si128((int)fill)));
        fill += (unsigned)b;
        if (fill >= 16) {
            _mm_storeu_si128((__m128i *)(void *)out, acc);
            out += 16;
            fill -= 16;
            acc = _mm_srl_epi16(x, _mm_cvtsi32_si128(b - (int)fill));
        }
    }
#else
    uint32_t acc[8] = {0};
    for (int i = 0; i < 16; i++) {
        for (int l = 0; l < 8; l++) acc[l] |= (uint32_t)v[8 * i + l] << fill;
        fill += (unsigned)b;
        if (fill >= 16) {
            for (int l = 0; l < 8; l++) {
                om_st16(out + 2 * l, (uint16_t)acc[l]);
                acc[l] >>= 16;
            }
            out += 16;
            fill -= 16;
        }
    }
#endif
}

static void vpack_u32(const uint32_t *restrict v, int b, uint8_t *restrict out)
{
    unsigned fill = 0;
#ifdef OM_SSE2
    __m128i acc = _mm_setzero_si128();
    for (int i = 0; i < 32; i++) {
        const __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(v + 4 * i));
        acc = _mm_or_si128(acc, _mm_sll_epi32(x, _mm_cvtsi32_si128((int)fill)));
        fill += (unsigned)b;
        if (fill >= 32) {
            _mm_storeu_si128((__m128i *)(void *)out, acc);
            out += 16;
            fill -= 32;
            acc = _mm_srl_epi32(x, _mm_cvtsi32_si128(b - (int)fill));
        }
    }
#else
    uint64_t acc[4] = {0};
    for (int i = 0; i < 32; i++) {
        for (int l = 0; l < 4; l++) acc[l] |= (uint64_t)v[4 * i + l] << fill;
        fill += (unsigned)b;
        if (fill >= 32) {
            for (int l = 0; l < 4; l++) {
                om_st32(out + 4 * l, (uint32_t)acc[l]);
                acc[l] >>= 32;
            }
            out += 16;
            fill -= 32;
        }
    }
#endif
}

/* V64 (spec 4.4): horizontal for b > 32, else V32 of the values, optionally
 * with the x86 reference writer's lane order (2, 3, 0, 1) (quirk K3). */
static void vpack_u64(const uint64_t *restrict v, int b, int x86_lanes, uint8_t *restrict out)
{
    if (b > 32) {
        hpack_u64(v, 128, b, out);
        return;
    }
    uint32_t t[128];
    unsigned s = x86_lanes ? 2u : 0u;
    for (unsigned i = 0; i < 128; i++) t[i] = (uint32_t)v[i ^ s];
    vpack_u32(t, b, out);
}

OM_INLINE uint32_t enc_fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* ---- per-width template instances ---------------------------------------- */

#define OM_ENC_W 8
#include "om_pfor_enc.c"
#undef OM_ENC_W
#define OM_ENC_W 16
#include "om_pfor_enc.c"
#undef OM_ENC_W
#define OM_ENC_W 32
#include "om_pfor_enc.c"
#undef OM_ENC_W
#define OM_ENC_W 64
#include "om_pfor_enc.c"
#undef OM_ENC_W

/* ---- fpx (spec 8) --------------------------------------------------------- */

OM_ENC_LINK int64_t OM_ENC_NAME(om_fpx_encode32)(const uint32_t *in, size_t n, uint8_t *out,
                                                 size_t cap)
{
    if (!in || !out || n == 0) return OM_E_INVALID;
    uint32_t prev = 0;
    size_t pos = 0;
    uint32_t x[128];
    for (size_t g = 0; g < n; g += 128) {
        unsigned m = (unsigned)(n - g < 128 ? n - g : 128);
        const uint32_t *u = in + g;
        uint32_t o = 0;
        x[0] = u[0] ^ prev;
        for (unsigned i = 1; i < m; i++) x[i] = u[i] ^ u[i - 1];
        for (unsigned i = 0; i < m; i++) o |= x[i];
        prev = u[m - 1];
        int hb = 32 - om_bitlen32(o);
        if (pos >= cap) return OM_E_OUTPUT;
        out[pos++] = (uint8_t)hb;
        if (hb == 32) {
            memset(x, 0, m * sizeof x[0]);
        } else {
            rbit_shl32(x, m, hb);
        }
        int64_t r = enc_block_32(x, m, m == 128, 0, out + pos, cap - pos);
        if (r < 0) return r;
        pos += (size_t)r;
    }
    return (int64_t)pos;
}

OM_ENC_LINK int64_t OM_ENC_NAME(om_fpx_encode64)(const uint64_t *in, size_t n, int x86_lanes,
                                                 uint8_t *out, size_t cap)
{
    if (!in || !out || n == 0) return OM_E_INVALID;
    uint64_t prev = 0;
    size_t pos = 0;
    uint64_t x[128];
    for (size_t g = 0; g < n; g += 128) {
        unsigned m = (unsigned)(n - g < 128 ? n - g : 128);
        const uint64_t *u = in + g;
        uint64_t o = 0;
        x[0] = u[0] ^ prev;
        for (unsigned i = 1; i < m; i++) x[i] = u[i] ^ u[i - 1];
        for (unsigned i = 0; i < m; i++) o |= x[i];
        prev = u[m - 1];
        int hb = 64 - om_bitlen64(o);
        if (pos >= cap) return OM_E_OUTPUT;
        out[pos++] = (uint8_t)hb;
        if (hb == 64) {
            memset(x, 0, m * sizeof x[0]);
        } else {
            rbit_shl64(x, m, hb);
        }
        int64_t r = enc_block_64(x, m, m == 128, x86_lanes, out + pos, cap - pos);
        if (r < 0) return r;
        pos += (size_t)r;
    }
    return (int64_t)pos;
}

#else /* ================= template body: one instance per OM_ENC_W ========== */

#define W OM_ENC_W
#define T OM_CAT(OM_CAT(uint, OM_ENC_W), _t)
#define B (OM_ENC_W / 8)
#define FN(name) OM_CAT(name, OM_ENC_W)
#define HPACK OM_CAT(hpack_u, OM_ENC_W)

/* cnt[k] = number of values with bit length k, k = 0..bmax (input of 6.3);
 * bmax = bit length of the OR of all values. */
static void FN(hist_)(const T *restrict v, unsigned m, int bmax, uint32_t *restrict cnt)
{
    uint8_t bl[128];
    /* Bit length from the float exponent: exact for x < 2^24 (values up to
     * 2^32 are shifted down by 8 first). Branch-free and vectorised; a bsr per
     * value would be the slowest part of a block. */
#if W == 64
    if (bmax > 32) {
        for (unsigned i = 0; i < m; i++) bl[i] = (uint8_t)om_bitlen64(v[i]);
    } else
#endif
#if W >= 32
    if (bmax > 24) {
        for (unsigned i = 0; i < m; i++) {
            uint32_t x = (uint32_t)v[i];
            const uint32_t big = 0u - (uint32_t)(x >= (1u << 24));
            x = (x & ~big) | ((x >> 8) & big);
            int32_t e = (int32_t)(enc_fbits((float)(int32_t)x) >> 23) - 126;
            e = e > 0 ? e : 0;
            bl[i] = (uint8_t)(e + (int32_t)(8u & big));
        }
    } else
#endif
    {
        for (unsigned i = 0; i < m; i++) {
            int32_t e = (int32_t)(enc_fbits((float)(int32_t)(uint32_t)v[i]) >> 23) - 126;
            bl[i] = (uint8_t)(e > 0 ? e : 0);
        }
    }
    if (bmax < 8) {
        /* Small widths (the common case): one byte counter per bit length in
         * a 64-bit word; counts <= 128 never carry into the next byte. */
        uint64_t a0 = 0, a1 = 0;
        unsigned i = 0;
        for (; i + 2 <= m; i += 2) {
            a0 += 1ull << (8 * bl[i]);
            a1 += 1ull << (8 * bl[i + 1]);
        }
        if (i < m) a0 += 1ull << (8 * bl[i]);
        for (int k = 0; k <= bmax; k++)
            cnt[k] = (uint32_t)((a0 >> (8 * k)) & 0xFF) + (uint32_t)((a1 >> (8 * k)) & 0xFF);
        return;
    }
    /* four tables so consecutive increments do not wait on each other */
    uint32_t h[4][W + 1];
    memset(h, 0, sizeof h);
    unsigned i = 0;
    for (; i + 4 <= m; i += 4) {
        h[0][bl[i]]++;
        h[1][bl[i + 1]]++;
        h[2][bl[i + 2]]++;
        h[3][bl[i + 3]]++;
    }
    for (; i < m; i++) h[0][bl[i]]++;
    for (int k = 0; k <= bmax; k++) cnt[k] = h[0][k] + h[1][k] + h[2][k] + h[3][k];
}

/* Pack(v, b) of spec 6: vertical layout for full blocks of the 128v coders
 * and fpx, horizontal otherwise. */
OM_INLINE void FN(pack_)(const T *restrict v, unsigned m, int b, int vertical, int x86_lanes,
                         uint8_t *restrict out)
{
    (void)x86_lanes;
#if W == 16
    if (vertical) { vpack_u16(v, b, out); return; }
#elif W == 32
    if (vertical) { vpack_u32(v, b, out); return; }
#elif W == 64
    if (vertical) { vpack_u64(v, b, x86_lanes, out); return; }
#else
    (void)vertical;
#endif
    HPACK(v, m, b, out);
}

/* One PFor block of 1..128 values (spec 6.1-6.3). Returns its size or OM_E_OUTPUT. */
static int64_t FN(enc_block_)(const T *restrict v, unsigned m, int vertical, int x86_lanes,
                              uint8_t *restrict out, size_t cap)
{
    T o = 0, diff = 0;
    const T first = v[0];
    for (unsigned i = 0; i < m; i++) {
        o |= v[i];
        diff |= (T)(v[i] ^ first);
    }
    if (diff == 0 && first != 0) { /* constant mode */
        int b = om_bitlen64(first);
        int hb = (W == 64 && b >= 63) ? 63 : b;
        if (W == 64 && b == 63) b = 64;
        size_t k = om_ceil8((size_t)b);
        if (cap < 1 + k) return OM_E_OUTPUT;
        out[0] = (uint8_t)(0xC0 | hb);
        for (size_t j = 0; j < k; j++) out[1 + j] = (uint8_t)((uint64_t)first >> (8 * j));
        return (int64_t)(1 + k);
    }
    const int bmax = om_bitlen64(o);
    if (bmax == 0) { /* all zero: plain, b = 0 */
        if (cap < 1) return OM_E_OUTPUT;
        out[0] = 0;
        return 1;
    }

    uint32_t cnt[W + 1];
    FN(hist_)(v, m, bmax, cnt);
    int b, bx;
    choose_width(cnt, bmax, m, W, &b, &bx);
    const size_t psize = vertical ? (size_t)16 * (size_t)b : om_ceil8((size_t)m * (size_t)b);

    if (bx == 0) { /* plain */
        if (cap < 1 + psize) return OM_E_OUTPUT;
        out[0] = (uint8_t)(W == 64 && b == 64 ? 63 : b);
        FN(pack_)(v, m, b, vertical, x86_lanes, out + 1);
        return (int64_t)(1 + psize);
    }

    /* Exception modes: here 0 <= b < bmax <= W, so the mask is well defined. */
    const T mask = (T)(((T)1 << b) - 1);
    T low[128], high[128];
    uint8_t pos[128], flag[128 + 8], bitmap[16];
    for (unsigned i = 0; i < m; i++) {
        low[i] = v[i] & mask;
        flag[i] = (uint8_t)(v[i] > mask);
    }
    /* Exception bitmap from the 0/1 flags, 8 at a time: the multiply moves the
     * low bit of byte k to bit 56+k without carries. Then the positions, one
     * iteration per exception. */
    memset(flag + m, 0, 8);
    const size_t bm = om_ceil8(m);
    unsigned xn = 0;
    for (size_t j = 0; j < bm; j++) {
        unsigned byte = (unsigned)((om_ld64(flag + 8 * j) * 0x0102040810204080ull) >> 56);
        bitmap[j] = (uint8_t)byte;
        while (byte) {
            unsigned i = 8 * (unsigned)j + (unsigned)__builtin_ctz(byte);
            pos[xn] = (uint8_t)i;
            high[xn++] = (T)(v[i] >> b);
            byte &= byte - 1;
        }
    }

    if (bx <= W) { /* bitmap exceptions */
        const size_t hsize = om_ceil8((size_t)xn * (size_t)bx);
        const size_t total = 2 + bm + hsize + psize;
        if (cap < total) return OM_E_OUTPUT;
        uint8_t *p = out;
        *p++ = (uint8_t)(0x80 | b);
        *p++ = (uint8_t)bx;
        memcpy(p, bitmap, bm);
        p += bm;
        HPACK(high, xn, bx, p);
        p += hsize;
        FN(pack_)(low, m, b, vertical, x86_lanes, p);
        return (int64_t)total;
    }

    /* vb exceptions (W >= 16 only); raw fallback when the codes exceed xn*B. */
    size_t vsize = 0;
    for (unsigned k = 0; k < xn; k++) vsize += vb_len((uint64_t)high[k]);
    const int raw = vsize > (size_t)xn * B;
    if (raw) vsize = 1 + (size_t)xn * B;
    const size_t total = 2 + psize + vsize + xn;
    if (cap < total) return OM_E_OUTPUT;
    uint8_t *p = out;
    *p++ = (uint8_t)(0x40 | b);
    *p++ = (uint8_t)xn;
    FN(pack_)(low, m, b, vertical, x86_lanes, p);
    p += psize;
    if (raw) {
        *p++ = 0xFF;
        for (unsigned k = 0; k < xn; k++) {
            for (int j = 0; j < B; j++) *p++ = (uint8_t)((uint64_t)high[k] >> (8 * j));
        }
    } else {
        for (unsigned k = 0; k < xn; k++) p = vb_put(p, (uint64_t)high[k]);
    }
    memcpy(p, pos, xn);
    return (int64_t)total;
}

/* vbx start value (spec 5.1). Returns bytes written or OM_E_OUTPUT. */
static int64_t FN(vbx_put_)(T x, uint8_t *out, size_t cap)
{
    uint8_t tmp[9];
    size_t k;
    uint64_t u = (uint64_t)x;
#if W == 8
    tmp[0] = (uint8_t)u;
    k = 1;
#else
    if (u < (1ull << 7)) {
        tmp[0] = (uint8_t)u;
        k = 1;
    } else if (u < (1ull << 14)) {
        tmp[0] = (uint8_t)(0x80 | (u >> 8));
        tmp[1] = (uint8_t)u;
        k = 2;
    } else if (u < (1ull << 21)) {
        tmp[0] = (uint8_t)(0xC0 | (u >> 16));
        tmp[1] = (uint8_t)u;
        tmp[2] = (uint8_t)(u >> 8);
        k = 3;
    } else if (u < (1ull << 28)) {
        tmp[0] = (uint8_t)(0xE0 | (u >> 24));
        tmp[1] = (uint8_t)(u >> 16);
        tmp[2] = (uint8_t)(u >> 8);
        tmp[3] = (uint8_t)u;
        k = 4;
    }
#if W == 64
    else if (u < (1ull << 35)) {
        tmp[0] = (uint8_t)(0xF0 | (u >> 32));
        om_st32(tmp + 1, (uint32_t)u);
        k = 5;
    } else if (u < (1ull << 42)) {
        tmp[0] = (uint8_t)(0xF8 | (u >> 40));
        tmp[1] = (uint8_t)(u >> 32);
        om_st32(tmp + 2, (uint32_t)u);
        k = 6;
    } else if (u < (1ull << 49)) {
        tmp[0] = (uint8_t)(0xFC | (u >> 48));
        tmp[1] = (uint8_t)(u >> 32);
        tmp[2] = (uint8_t)(u >> 40);
        om_st32(tmp + 3, (uint32_t)u);
        k = 7;
    } else if (u < (1ull << 56)) {
        tmp[0] = 0xFE;
        for (int j = 0; j < 7; j++) tmp[1 + j] = (uint8_t)(u >> (8 * (6 - j)));
        k = 8;
    } else {
        tmp[0] = 0xFF;
        for (int j = 0; j < 8; j++) tmp[1 + j] = (uint8_t)(u >> (8 * j));
        k = 9;
    }
#else
    else {
        tmp[0] = 0xF0;
        for (int j = 0; j < 4; j++) tmp[1 + j] = (uint8_t)(u >> (8 * j));
        k = 5;
    }
#endif
#endif
    if (cap < k) return OM_E_OUTPUT;
    memcpy(out, tmp, k);
    return (int64_t)k;
}

/* PFor delta stream (spec 7.2): vbx(first), then blocks of 128 deltas,
 * vertical for full blocks of the 16/32-bit coders. */
OM_ENC_LINK int64_t OM_ENC_NAME(FN(om_pfor_encode))(const T *in, size_t n, int zigzag,
                                                    uint8_t *out, size_t cap)
{
    if (!in || !out || n == 0) return OM_E_INVALID;
    int64_t r = FN(vbx_put_)(in[0], out, cap);
    if (r < 0) return r;
    size_t pos = (size_t)r;
    const int v128 = (W == 16 || W == 32);
    T d[128];
    for (size_t s = 1; s < n; s += 128) {
        unsigned m = (unsigned)(n - s < 128 ? n - s : 128);
        const T *u = in + s;
        if (zigzag) {
            for (unsigned i = 0; i < m; i++) {
                T t = (T)(u[i] - u[(int)i - 1]);
                d[i] = (T)((T)(t << 1) ^ (T)(0 - (T)(t >> (W - 1))));
            }
        } else {
            for (unsigned i = 0; i < m; i++) d[i] = (T)(u[i] - u[(int)i - 1]);
        }
        r = FN(enc_block_)(d, m, v128 && m == 128, 0, out + pos, cap - pos);
        if (r < 0) return r;
        pos += (size_t)r;
    }
    return (int64_t)pos;
}

#undef W
#undef T
#undef B
#undef FN
#undef HPACK

#endif
