/* Decoders of the PFor integer streams and of the fpx float coder
 * (codec spec sections 4-8), written from the specification.
 *
 * Every read is bounds-checked against in[in_len) and every write stays inside
 * out[n): the bytes come from files on the internet. Bit-unpacking kernels read
 * whole 64-bit words, so a packed area is unpacked in place only when at least
 * 8 readable bytes follow it, otherwise from a zero-padded copy on the stack.
 *
 * Speed: the vertical layouts (V16/V32) and the delta/zigzag prefix sums have
 * SSE2 kernels, the fpx bit reversal and XOR chain SSSE3/AVX2 kernels, chosen
 * at run time (om_dispatch.h); the portable C path gives identical results. */
#include <stdlib.h>
#include <string.h>

#include "om_dec_internal.h"
#include "om_dispatch.h"
#include "om_internal.h"
#include "om_pfor.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define OM_X86 1
#include <immintrin.h>
#else
#define OM_X86 0
#endif

#define OM_PRAGMA(x) _Pragma(#x)
#define OM_UNROLL(n) OM_PRAGMA(GCC unroll n)

/* ------------------------------------------------------------------------ */
/* Run-time dispatch                                                          */

static int g_level_max; /* best level the CPU supports */
static int g_level;     /* level in use */

static void om_dec_detect(void)
{
    int best = 0;
#if OM_X86
    __builtin_cpu_init();
    best = 1; /* SSE2 is part of x86-64 */
    if (__builtin_cpu_supports("ssse3"))
        best = 2;
    if (__builtin_cpu_supports("avx2"))
        best = 3;
    if (best == 3 && __builtin_cpu_supports("gfni"))
        best = 4;
#endif
    g_level_max = best;
    const char *env = getenv("OM_NATIVE_NO_SIMD");
    g_level = (env && env[0] && strcmp(env, "0") != 0) ? 0 : best;
}

#if OM_X86
/* pshufb controls that "expand" consecutive exception high parts to the
 * positions of the set bits of a bitmap byte (nibble for 32-bit lanes);
 * unset lanes get 0x80 (zero). */
static uint8_t g_exp8[256][16], g_exp16[256][16], g_exp32[16][16];
static uint8_t g_pop8[256];
/* AVX2, 8 x 32-bit lanes: vpermd source index and lane mask per bitmap byte. */
static uint32_t g_exp32x8_idx[256][8], g_exp32x8_mask[256][8];

/* Horizontal unpack of 8 values of B bits (B bytes) per step with AVX2: each
 * 128-bit half loads 16 bytes at off[h] and pshufb gathers the bytes of each
 * value into its lane, then a per-lane variable shift aligns it.
 * 32-bit lanes for B <= 25 (value + shift fits 4 bytes), 64-bit for B <= 57. */
typedef struct {
    uint8_t ctrl[32];
    uint32_t sh[8];
    int off[2];
} hun32_tab_t;
typedef struct {
    uint8_t ctrl[4][16];
    uint64_t sh[8];
    int off[4];
} hun64_tab_t;
static hun32_tab_t g_h32[26];
static hun64_tab_t g_h64[58];

static void om_dec_tables(void)
{
    for (int mb = 0; mb < 256; mb++) {
        int k = 0;
        memset(g_exp8[mb], 0x80, 16);
        memset(g_exp16[mb], 0x80, 16);
        for (int j = 0; j < 8; j++) {
            if ((mb >> j) & 1) {
                g_exp8[mb][j] = (uint8_t)k;
                g_exp16[mb][2 * j] = (uint8_t)(2 * k);
                g_exp16[mb][2 * j + 1] = (uint8_t)(2 * k + 1);
                k++;
            }
        }
        g_pop8[mb] = (uint8_t)k;
        for (int j = 0, t = 0; j < 8; j++) {
            const int set = (mb >> j) & 1;
            g_exp32x8_idx[mb][j] = set ? (uint32_t)t : 0;
            g_exp32x8_mask[mb][j] = set ? 0xFFFFFFFFu : 0;
            t += set;
        }
    }
    for (int B = 1; B <= 57; B++) {
        for (int h = 0; h < 4; h++) { /* 64-bit lanes: values 2h, 2h+1 */
            const int o = (2 * h * B) >> 3;
            g_h64[B].off[h] = o;
            for (int v = 0; v < 2; v++) {
                const int k = 2 * h + v, byte = (k * B) >> 3;
                g_h64[B].sh[k] = (uint64_t)((k * B) & 7);
                for (int t = 0; t < 8; t++) {
                    const int idx = byte - o + t;
                    g_h64[B].ctrl[h][8 * v + t] = idx < 16 ? (uint8_t)idx : 0x80;
                }
            }
        }
        if (B > 25)
            continue;
        for (int h = 0; h < 2; h++) { /* 32-bit lanes: values 4h .. 4h+3 */
            const int o = (4 * h * B) >> 3;
            g_h32[B].off[h] = o;
            for (int v = 0; v < 4; v++) {
                const int k = 4 * h + v, byte = (k * B) >> 3;
                g_h32[B].sh[k] = (uint32_t)((k * B) & 7);
                for (int t = 0; t < 4; t++) {
                    const int idx = byte - o + t;
                    g_h32[B].ctrl[16 * h + 4 * v + t] = idx < 16 ? (uint8_t)idx : 0x80;
                }
            }
        }
    }
    for (int nib = 0; nib < 16; nib++) {
        int k = 0;
        for (int j = 0; j < 4; j++) {
            for (int t = 0; t < 4; t++)
                g_exp32[nib][4 * j + t] = ((nib >> j) & 1) ? (uint8_t)(4 * k + t) : 0x80;
            k += (nib >> j) & 1;
        }
    }
}
#endif

/* Runs when the shared library is loaded, before any thread can call in. */
__attribute__((constructor)) static void om_dec_init(void)
{
#if OM_X86
    om_dec_tables();
#endif
    om_dec_detect();
}

int om_simd_level(void) { return __atomic_load_n(&g_level, __ATOMIC_RELAXED); }

int om_set_simd_level(int level)
{
    if (level < 0 || level > g_level_max)
        level = g_level_max;
    __atomic_store_n(&g_level, level, __ATOMIC_RELAXED);
    return level;
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                              */

OM_INLINE uint32_t rbit32(uint32_t x)
{
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
    return __builtin_bswap32(x);
}

OM_INLINE uint64_t rbit64(uint64_t x)
{
    x = ((x >> 1) & 0x5555555555555555ull) | ((x & 0x5555555555555555ull) << 1);
    x = ((x >> 2) & 0x3333333333333333ull) | ((x & 0x3333333333333333ull) << 2);
    x = ((x >> 4) & 0x0F0F0F0F0F0F0F0Full) | ((x & 0x0F0F0F0F0F0F0F0Full) << 4);
    return __builtin_bswap64(x);
}

/* Without -mpopcnt the builtin is a library call. */
OM_INLINE int popcount64(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    return (int)((x * 0x0101010101010101ull) >> 56);
}

/* Store / load element i of a W-bit array (W is a constant after inlining). */
OM_INLINE void st_w(void *out, size_t i, uint64_t v, const int W)
{
    switch (W) {
    case 8: ((uint8_t *)out)[i] = (uint8_t)v; break;
    case 16: ((uint16_t *)out)[i] = (uint16_t)v; break;
    case 32: ((uint32_t *)out)[i] = (uint32_t)v; break;
    default: ((uint64_t *)out)[i] = v; break;
    }
}

OM_INLINE uint64_t ld_w(const void *out, size_t i, const int W)
{
    switch (W) {
    case 8: return ((const uint8_t *)out)[i];
    case 16: return ((const uint16_t *)out)[i];
    case 32: return ((const uint32_t *)out)[i];
    default: return ((const uint64_t *)out)[i];
    }
}

/* ------------------------------------------------------------------------ */
/* Variable-length integers (codec spec 5)                                    */

/* vbx start value of a stream. Returns bytes used or OM_E_TRUNCATED. */
static int vbx_dec(const uint8_t *in, size_t len, int W, uint64_t *x)
{
    if (len < 1)
        return OM_E_TRUNCATED;
    const uint64_t c = in[0];
    if (W == 8 || c < 0x80) {
        *x = c;
        return 1;
    }
    if (c < 0xC0) {
        if (len < 2) return OM_E_TRUNCATED;
        *x = ((c & 0x3F) << 8) | in[1];
        return 2;
    }
    if (c < 0xE0) {
        if (len < 3) return OM_E_TRUNCATED;
        *x = ((c & 0x1F) << 16) | in[1] | ((uint64_t)in[2] << 8);
        return 3;
    }
    if (c < 0xF0) {
        if (len < 4) return OM_E_TRUNCATED;
        *x = ((c & 0x0F) << 24) | ((uint64_t)in[1] << 16) | ((uint64_t)in[2] << 8) | in[3];
        return 4;
    }
    if (W <= 32 || c < 0xF8) {
        if (len < 5) return OM_E_TRUNCATED;
        *x = (W <= 32 ? 0 : (c & 0x07) << 32) | om_ld32(in + 1);
        return 5;
    }
    if (c < 0xFC) {
        if (len < 6) return OM_E_TRUNCATED;
        *x = (((c & 0x07) << 8 | in[1]) << 32) | om_ld32(in + 2);
        return 6;
    }
    if (c < 0xFE) {
        if (len < 7) return OM_E_TRUNCATED;
        *x = ((c & 0x03) << 48) | ((uint64_t)om_ld16(in + 1) << 32) | om_ld32(in + 3);
        return 7;
    }
    if (c == 0xFE) {
        if (len < 8) return OM_E_TRUNCATED;
        uint64_t v = 0;
        for (int k = 1; k <= 7; k++)
            v = (v << 8) | in[k]; /* 7 bytes big-endian */
        *x = v;
        return 8;
    }
    if (len < 9) return OM_E_TRUNCATED;
    *x = om_ld64(in + 1);
    return 9;
}

/* vb list of xn exception high parts (W >= 16), incl. the raw fallback.
 * Returns bytes used or OM_E_*. */
static int64_t vb_dec(const uint8_t *in, size_t len, size_t xn, int W, uint64_t *out)
{
    const size_t B = (size_t)W / 8;
    if (xn == 0)
        return 0;
    if (len < 1)
        return OM_E_TRUNCATED;
    if (in[0] == 0xFF) {
        if (len - 1 < xn * B)
            return OM_E_TRUNCATED;
        for (size_t k = 0; k < xn; k++) {
            const uint8_t *q = in + 1 + k * B;
            out[k] = W == 16 ? om_ld16(q) : W == 32 ? om_ld32(q) : om_ld64(q);
        }
        return (int64_t)(1 + xn * B);
    }
    size_t p = 0;
    for (size_t k = 0; k < xn; k++) {
        if (p >= len)
            return OM_E_TRUNCATED;
        const uint64_t c = in[p];
        if (c < 177) {
            out[k] = c;
            p += 1;
        } else if (c < 241) {
            if (len - p < 2) return OM_E_TRUNCATED;
            out[k] = 177 + ((c - 177) << 8) + in[p + 1];
            p += 2;
        } else if (c < 249) {
            if (len - p < 3) return OM_E_TRUNCATED;
            out[k] = 16561 + ((c - 241) << 16) + in[p + 1] + ((uint64_t)in[p + 2] << 8);
            p += 3;
        } else {
            const size_t nb = (size_t)(c - 246); /* 3..9 */
            if (nb > B) /* wider than the element: never written by an encoder */
                return OM_E_CORRUPT;
            if (len - p < 1 + nb) return OM_E_TRUNCATED;
            uint64_t v = 0;
            for (size_t j = 0; j < nb; j++)
                v |= (uint64_t)in[p + 1 + j] << (8 * j);
            out[k] = v;
            p += 1 + nb;
        }
    }
    return (int64_t)p;
}

/* ------------------------------------------------------------------------ */
/* Horizontal unpacking (codec spec 4.3). The input must have 8 readable     */
/* bytes after the ceil8(m*b) packed bytes. One kernel per constant width.   */

#define DEFINE_HUNPACK(T, NAME)                                                          \
    OM_INLINE void NAME##_k(const uint8_t *in, size_t m, const int B, T *out)            \
    {                                                                                    \
        const uint64_t mask = B >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << (B & 63)) - 1); \
        size_t i = 0;                                                                    \
        const uint8_t *g = in;                                                           \
        for (; i + 8 <= m; i += 8, g += B) {                                             \
            if (B <= 8) { /* 8 values fit in one word */                                 \
                const uint64_t w = om_ld64(g);                                           \
                OM_UNROLL(8)                                                             \
                for (int k = 0; k < 8; k++)                                              \
                    out[i + k] = (T)((w >> ((k * B) & 63)) & mask);                      \
                continue;                                                                \
            }                                                                            \
            OM_UNROLL(8)                                                                 \
            for (int k = 0; k < 8; k++) {                                                \
                const int bit = k * B, sh = bit & 7;                                     \
                uint64_t w = om_ld64(g + (bit >> 3)) >> sh;                              \
                if (sh + B > 64)                                                         \
                    w |= (uint64_t)g[(bit >> 3) + 8] << ((64 - sh) & 63);                \
                out[i + k] = (T)(w & mask);                                              \
            }                                                                            \
        }                                                                                \
        for (size_t bit = i * (size_t)B; i < m; i++, bit += (size_t)B) {                 \
            const int sh = (int)(bit & 7);                                               \
            uint64_t w = om_ld64(in + (bit >> 3)) >> sh;                                 \
            if (sh + B > 64)                                                             \
                w |= (uint64_t)in[(bit >> 3) + 8] << ((64 - sh) & 63);                   \
            out[i] = (T)(w & mask);                                                      \
        }                                                                                \
    }

DEFINE_HUNPACK(uint8_t, hun8)
DEFINE_HUNPACK(uint16_t, hun16)
DEFINE_HUNPACK(uint32_t, hun32)
DEFINE_HUNPACK(uint64_t, hun64)

#define HC(K, n) case (n): K(in, m, (n), out); break;
#define HC4(K, n) HC(K, n) HC(K, (n) + 1) HC(K, (n) + 2) HC(K, (n) + 3)
#define HC16(K, n) HC4(K, n) HC4(K, (n) + 4) HC4(K, (n) + 8) HC4(K, (n) + 12)

static void hunpack8(const uint8_t *in, size_t m, int b, uint8_t *out)
{
    switch (b) {
    HC4(hun8_k, 1) HC4(hun8_k, 5)
    default: memset(out, 0, m); break;
    }
}

static void hunpack16(const uint8_t *in, size_t m, int b, uint16_t *out)
{
    switch (b) {
    HC16(hun16_k, 1)
    default: memset(out, 0, m * 2); break;
    }
}

static void hunpack32(const uint8_t *in, size_t m, int b, uint32_t *out)
{
    switch (b) {
    HC16(hun32_k, 1) HC16(hun32_k, 17)
    default: memset(out, 0, m * 4); break;
    }
}

static void hunpack64(const uint8_t *in, size_t m, int b, uint64_t *out)
{
    switch (b) {
    HC16(hun64_k, 1) HC16(hun64_k, 17) HC16(hun64_k, 33) HC16(hun64_k, 49)
    default: memset(out, 0, m * 8); break;
    }
}

/* ------------------------------------------------------------------------ */
/* Vertical 128-value layouts (codec spec 4.4). Read exactly 16*b bytes.     */

/* Portable: lane l's 16-bit words are at in + 16*k + 2*l. */
static void v16_unpack_c(const uint8_t *in, int b, uint16_t *out)
{
    const uint32_t mask = (1u << b) - 1; /* 1 <= b <= 15 */
    for (int l = 0; l < 8; l++) {
        uint32_t acc = 0;
        int have = 0, k = 0;
        for (int i = 0; i < 16; i++) {
            if (have < b) {
                acc |= (uint32_t)om_ld16(in + 16 * k + 2 * l) << have;
                have += 16;
                k++;
            }
            out[8 * i + l] = (uint16_t)(acc & mask);
            acc >>= b;
            have -= b;
        }
    }
}

static void v32_unpack_c(const uint8_t *in, int b, uint32_t *out)
{
    const uint64_t mask = ((uint64_t)1 << b) - 1; /* 1 <= b <= 31 */
    for (int l = 0; l < 4; l++) {
        uint64_t acc = 0;
        int have = 0, k = 0;
        for (int i = 0; i < 32; i++) {
            if (have < b) {
                acc |= (uint64_t)om_ld32(in + 16 * k + 4 * l) << have;
                have += 32;
                k++;
            }
            out[4 * i + l] = (uint32_t)(acc & mask);
            acc >>= b;
            have -= b;
        }
    }
}

#if OM_X86
/* One 128-bit register holds word k of all lanes; each lane shifts its values
 * out LSB first, pulling in the next word when a value straddles words. */
OM_INLINE void v16_k(const uint8_t *in, const int B, uint16_t *out)
{
    const __m128i mask = _mm_set1_epi16((short)((1u << B) - 1));
    const uint8_t *ip = in + 16;
    __m128i cur = _mm_loadu_si128((const __m128i *)in);
    int sh = 0;
    OM_UNROLL(16)
    for (int i = 0; i < 16; i++) {
        __m128i v = _mm_srli_epi16(cur, sh);
        sh += B;
        if (sh >= 16) {
            sh -= 16;
            if (i < 15) {
                cur = _mm_loadu_si128((const __m128i *)ip);
                ip += 16;
                if (sh)
                    v = _mm_or_si128(v, _mm_slli_epi16(cur, B - sh));
            }
        }
        _mm_storeu_si128((__m128i *)(out + 8 * i), _mm_and_si128(v, mask));
    }
}

OM_INLINE void v32_k(const uint8_t *in, const int B, uint32_t *out)
{
    const __m128i mask = _mm_set1_epi32((int)((1u << B) - 1));
    const uint8_t *ip = in + 16;
    __m128i cur = _mm_loadu_si128((const __m128i *)in);
    int sh = 0;
    OM_UNROLL(32)
    for (int i = 0; i < 32; i++) {
        __m128i v = _mm_srli_epi32(cur, sh);
        sh += B;
        if (sh >= 32) {
            sh -= 32;
            if (i < 31) {
                cur = _mm_loadu_si128((const __m128i *)ip);
                ip += 16;
                if (sh)
                    v = _mm_or_si128(v, _mm_slli_epi32(cur, B - sh));
            }
        }
        _mm_storeu_si128((__m128i *)(out + 4 * i), _mm_and_si128(v, mask));
    }
}

#define VC(K, n) case (n): K(in, (n), out); break;
#define VC4(K, n) VC(K, n) VC(K, (n) + 1) VC(K, (n) + 2) VC(K, (n) + 3)

static void v16_unpack_sse2(const uint8_t *in, int b, uint16_t *out)
{
    switch (b) {
    VC4(v16_k, 1) VC4(v16_k, 5) VC4(v16_k, 9) VC(v16_k, 13) VC(v16_k, 14) VC(v16_k, 15)
    default: break;
    }
}

static void v32_unpack_sse2(const uint8_t *in, int b, uint32_t *out)
{
    switch (b) {
    VC4(v32_k, 1) VC4(v32_k, 5) VC4(v32_k, 9) VC4(v32_k, 13)
    VC4(v32_k, 17) VC4(v32_k, 21) VC4(v32_k, 25) VC(v32_k, 29) VC(v32_k, 30) VC(v32_k, 31)
    default: break;
    }
}
#endif

static void v16_unpack(const uint8_t *in, int b, uint16_t *out, int level)
{
    if (b == 0) {
        memset(out, 0, 256);
    } else if (b == 16) {
        memcpy(out, in, 256); /* every slot is one whole word: identity */
    } else {
#if OM_X86
        if (level >= 1) {
            v16_unpack_sse2(in, b, out);
            return;
        }
#endif
        (void)level;
        v16_unpack_c(in, b, out);
    }
}

static void v32_unpack(const uint8_t *in, int b, uint32_t *out, int level)
{
    if (b == 0) {
        memset(out, 0, 512);
    } else if (b == 32) {
        memcpy(out, in, 512);
    } else {
#if OM_X86
        if (level >= 1) {
            v32_unpack_sse2(in, b, out);
            return;
        }
#endif
        (void)level;
        v32_unpack_c(in, b, out);
    }
}

/* V64 with b <= 32: the V32 layout; x86 != 0 reads the x86 writer's lane
 * order (lane 0 <- v[4i+2], 1 <- v[4i+3], 2 <- v[4i], 3 <- v[4i+1]; quirk K3). */
static void v64_unpack32(const uint8_t *in, int b, int x86, uint64_t *out, int level)
{
    uint32_t tmp[128];
    v32_unpack(in, b, tmp, level);
    if (!x86) {
        for (int j = 0; j < 128; j++)
            out[j] = tmp[j];
    } else {
        for (int i = 0; i < 128; i += 4) {
            out[i + 2] = tmp[i];
            out[i + 3] = tmp[i + 1];
            out[i] = tmp[i + 2];
            out[i + 1] = tmp[i + 3];
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Bitmap exceptions: out[i] += high[k] << b for the k-th set bit i (mod 2^W). */

#if OM_X86
#define SSSE3 __attribute__((target("ssse3")))

OM_INLINE unsigned bm_byte(const uint64_t bw[2], int g) { return (unsigned)(bw[g >> 3] >> (8 * (g & 7))) & 0xFF; }

/* Full blocks only (128 values); high has 8 readable elements past xn. */
SSSE3 static void merge_bitmap8_ssse3(uint8_t *out, const uint64_t bw[2], const uint8_t *high, int b)
{
    const __m128i keep = _mm_set1_epi8((char)((0xFF << b) & 0xFF));
    const __m128i cnt = _mm_cvtsi32_si128(b);
    size_t k = 0;
    for (int g = 0; g < 16; g++) {
        const unsigned mb = bm_byte(bw, g); /* no branch on mb: it is unpredictable */
        __m128i h = _mm_loadl_epi64((const __m128i *)(high + k));
        h = _mm_shuffle_epi8(h, _mm_loadu_si128((const __m128i *)g_exp8[mb]));
        h = _mm_and_si128(_mm_sll_epi16(h, cnt), keep); /* 8-bit lanes: shift in 16, mask */
        const __m128i o = _mm_loadl_epi64((const __m128i *)(out + 8 * g));
        _mm_storel_epi64((__m128i *)(out + 8 * g), _mm_add_epi8(o, h));
        k += g_pop8[mb];
    }
}

SSSE3 static void merge_bitmap16_ssse3(uint16_t *out, const uint64_t bw[2], const uint16_t *high, int b)
{
    const __m128i cnt = _mm_cvtsi32_si128(b);
    size_t k = 0;
    for (int g = 0; g < 16; g++) {
        const unsigned mb = bm_byte(bw, g); /* no branch on mb: it is unpredictable */
        __m128i h = _mm_loadu_si128((const __m128i *)(high + k));
        h = _mm_sll_epi16(_mm_shuffle_epi8(h, _mm_loadu_si128((const __m128i *)g_exp16[mb])), cnt);
        const __m128i o = _mm_loadu_si128((const __m128i *)(out + 8 * g));
        _mm_storeu_si128((__m128i *)(out + 8 * g), _mm_add_epi16(o, h));
        k += g_pop8[mb];
    }
}

SSSE3 static void merge_bitmap32_ssse3(uint32_t *out, const uint64_t bw[2], const uint32_t *high, int b)
{
    const __m128i cnt = _mm_cvtsi32_si128(b);
    size_t k = 0;
    for (int g = 0; g < 32; g++) {
        const unsigned nib = (bm_byte(bw, g >> 1) >> (4 * (g & 1))) & 15;
        __m128i h = _mm_loadu_si128((const __m128i *)(high + k));
        h = _mm_sll_epi32(_mm_shuffle_epi8(h, _mm_loadu_si128((const __m128i *)g_exp32[nib])), cnt);
        const __m128i o = _mm_loadu_si128((const __m128i *)(out + 4 * g));
        _mm_storeu_si128((__m128i *)(out + 4 * g), _mm_add_epi32(o, h));
        k += g_pop8[nib];
    }
}

/* Two bitmap bytes (16 positions) per step: each 128-bit half expands its
 * byte's high parts, the high half starting popcount(low byte) further on. */
__attribute__((target("avx2"))) static void merge_bitmap16_avx2(uint16_t *out, const uint64_t bw[2],
                                                               const uint16_t *high, int b)
{
    const __m128i cnt = _mm_cvtsi32_si128(b);
    size_t k = 0;
    for (int g = 0; g < 8; g++) {
        const unsigned m0 = bm_byte(bw, 2 * g), m1 = bm_byte(bw, 2 * g + 1);
        const size_t k1 = k + g_pop8[m0];
        __m256i h = _mm256_loadu2_m128i((const __m128i *)(high + k1), (const __m128i *)(high + k));
        const __m256i c = _mm256_loadu2_m128i((const __m128i *)g_exp16[m1], (const __m128i *)g_exp16[m0]);
        h = _mm256_sll_epi16(_mm256_shuffle_epi8(h, c), cnt);
        const __m256i o = _mm256_loadu_si256((const __m256i *)(out + 16 * g));
        _mm256_storeu_si256((__m256i *)(out + 16 * g), _mm256_add_epi16(o, h));
        k = k1 + g_pop8[m1];
    }
}

__attribute__((target("avx2"))) static void merge_bitmap32_avx2(uint32_t *out, const uint64_t bw[2],
                                                               const uint32_t *high, int b)
{
    const __m128i cnt = _mm_cvtsi32_si128(b);
    size_t k = 0;
    for (int g = 0; g < 16; g++) {
        const unsigned mb = bm_byte(bw, g);
        __m256i h = _mm256_loadu_si256((const __m256i *)(high + k));
        h = _mm256_permutevar8x32_epi32(h, _mm256_loadu_si256((const __m256i *)g_exp32x8_idx[mb]));
        h = _mm256_and_si256(h, _mm256_loadu_si256((const __m256i *)g_exp32x8_mask[mb]));
        h = _mm256_sll_epi32(h, cnt);
        const __m256i o = _mm256_loadu_si256((const __m256i *)(out + 8 * g));
        _mm256_storeu_si256((__m256i *)(out + 8 * g), _mm256_add_epi32(o, h));
        k += g_pop8[mb];
    }
}
#endif

/* high: xn values of W bits (typed like out), 8 zero elements after them. */
OM_INLINE void merge_bitmap(void *out, size_t m, const uint64_t bw[2], const void *high, int b,
                            const int W, int level)
{
#if OM_X86
    if (level >= 2 && m == 128) {
        switch (W) {
        case 8: merge_bitmap8_ssse3((uint8_t *)out, bw, (const uint8_t *)high, b); return;
        case 16:
            if (level >= 3)
                merge_bitmap16_avx2((uint16_t *)out, bw, (const uint16_t *)high, b);
            else
                merge_bitmap16_ssse3((uint16_t *)out, bw, (const uint16_t *)high, b);
            return;
        case 32:
            if (level >= 3)
                merge_bitmap32_avx2((uint32_t *)out, bw, (const uint32_t *)high, b);
            else
                merge_bitmap32_ssse3((uint32_t *)out, bw, (const uint32_t *)high, b);
            return;
        default: break;
        }
    }
#else
    (void)m;
#endif
    (void)level;
    size_t k = 0;
    for (int wi = 0; wi < 2; wi++) {
        for (uint64_t w = bw[wi]; w; w &= w - 1) {
            const size_t i = (size_t)wi * 64 + (size_t)__builtin_ctzll(w);
            st_w(out, i, ld_w(out, i, W) + (ld_w(high, k++, W) << b), W); /* ADD, mod 2^W */
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Block decoder (codec spec 6.4)                                             */

#if OM_X86
/* Full groups of 8 values; need 16 readable bytes past the packed area.
 * Return the number of values done (a multiple of 8). */
__attribute__((target("avx2"))) static size_t hun32_avx2(const uint8_t *in, size_t m, int B,
                                                         uint32_t *out)
{
    const hun32_tab_t *t = &g_h32[B];
    const __m256i ctrl = _mm256_loadu_si256((const __m256i *)t->ctrl);
    const __m256i sh = _mm256_loadu_si256((const __m256i *)t->sh);
    const __m256i mask = _mm256_set1_epi32((int)((1u << B) - 1));
    size_t i = 0;
    for (const uint8_t *g = in; i + 8 <= m; i += 8, g += B) {
        __m256i r = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(g + t->off[0]))),
            _mm_loadu_si128((const __m128i *)(g + t->off[1])), 1);
        r = _mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(r, ctrl), sh), mask);
        _mm256_storeu_si256((__m256i *)(out + i), r);
    }
    return i;
}

__attribute__((target("avx2"))) static size_t hun16_avx2(const uint8_t *in, size_t m, int B,
                                                         uint16_t *out)
{
    const hun32_tab_t *t = &g_h32[B];
    const __m256i ctrl = _mm256_loadu_si256((const __m256i *)t->ctrl);
    const __m256i sh = _mm256_loadu_si256((const __m256i *)t->sh);
    const __m256i mask = _mm256_set1_epi32((int)((1u << B) - 1));
    size_t i = 0;
    for (const uint8_t *g = in; i + 8 <= m; i += 8, g += B) {
        __m256i r = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(g + t->off[0]))),
            _mm_loadu_si128((const __m128i *)(g + t->off[1])), 1);
        r = _mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(r, ctrl), sh), mask);
        _mm_storeu_si128((__m128i *)(out + i), _mm_packus_epi32(_mm256_castsi256_si128(r),
                                                                _mm256_extracti128_si256(r, 1)));
    }
    return i;
}

__attribute__((target("avx2"))) static size_t hun64_avx2(const uint8_t *in, size_t m, int B,
                                                         uint64_t *out)
{
    const hun64_tab_t *t = &g_h64[B];
    const __m256i c01 = _mm256_loadu2_m128i((const __m128i *)t->ctrl[1], (const __m128i *)t->ctrl[0]);
    const __m256i c23 = _mm256_loadu2_m128i((const __m128i *)t->ctrl[3], (const __m128i *)t->ctrl[2]);
    const __m256i sh_lo = _mm256_loadu_si256((const __m256i *)t->sh);
    const __m256i sh_hi = _mm256_loadu_si256((const __m256i *)(t->sh + 4));
    const __m256i mask = _mm256_set1_epi64x((long long)(((uint64_t)1 << B) - 1));
    size_t i = 0;
    for (const uint8_t *g = in; i + 8 <= m; i += 8, g += B) {
        __m256i a = _mm256_loadu2_m128i((const __m128i *)(g + t->off[1]), (const __m128i *)(g + t->off[0]));
        __m256i b = _mm256_loadu2_m128i((const __m128i *)(g + t->off[3]), (const __m128i *)(g + t->off[2]));
        a = _mm256_and_si256(_mm256_srlv_epi64(_mm256_shuffle_epi8(a, c01), sh_lo), mask);
        b = _mm256_and_si256(_mm256_srlv_epi64(_mm256_shuffle_epi8(b, c23), sh_hi), mask);
        _mm256_storeu_si256((__m256i *)(out + i), a);
        _mm256_storeu_si256((__m256i *)(out + i + 4), b);
    }
    return i;
}
#endif

/* Readable bytes the unpack kernels need past a packed area: 8 for the C
 * kernels, 16 for whole vector groups, up to 72 for a partial last group
 * unpacked as a whole one (only into buffers with room for it). */
#define PAD_SLACK 80
#define PAD_MAX (1024 + PAD_SLACK) /* largest packed area (128 x 64 bits) + slack */

/* Horizontal unpack of m values of b bits from in[0, len). Returns bytes used. */
/* cap: elements out can hold (>= m); with room for a whole last group of 8
 * the vector kernels do it too. */
OM_INLINE int64_t hunpack_checked(const uint8_t *in, size_t len, size_t m, int b, const int W,
                                  void *out, size_t cap, int level)
{
    const size_t sz = om_ceil8(m * (size_t)b);
    if (len < sz)
        return OM_E_TRUNCATED;
    if (b == W) { /* whole little-endian words */
        memcpy(out, in, m * (size_t)(W / 8));
        return (int64_t)sz;
    }
    const uint8_t *src = in;
    uint8_t pad[PAD_MAX];
    if (len - sz < PAD_SLACK) { /* the kernels read whole words: give them a padded copy */
        memcpy(pad, in, sz);
        memset(pad + sz, 0, PAD_SLACK);
        src = pad;
    }
    size_t done = 0; /* values unpacked by a vector kernel (whole groups of 8 = b bytes) */
#if OM_X86
    const size_t mv = cap >= (m + 7) / 8 * 8 ? (m + 7) / 8 * 8 : m; /* values for the kernels */
    if (level >= 3 && mv >= 8) {
        if (W == 16 && b <= 16)
            done = hun16_avx2(src, mv, b, (uint16_t *)out);
        else if (W == 32 && b <= 25)
            done = hun32_avx2(src, mv, b, (uint32_t *)out);
        else if (W == 64 && b <= 57)
            done = hun64_avx2(src, mv, b, (uint64_t *)out);
    }
#else
    (void)level;
    (void)cap;
#endif
    if (done >= m)
        return (int64_t)sz;
    src += done / 8 * (size_t)b;
    switch (W) {
    case 8: hunpack8(src, m - done, b, (uint8_t *)out + done); break;
    case 16: hunpack16(src, m - done, b, (uint16_t *)out + done); break;
    case 32: hunpack32(src, m - done, b, (uint32_t *)out + done); break;
    default: hunpack64(src, m - done, b, (uint64_t *)out + done); break;
    }
    return (int64_t)sz;
}

/* Pack(v, b) of the block: vertical for full blocks of the 128v/fpx coders. */
OM_INLINE int64_t unpack_checked(const uint8_t *in, size_t len, size_t m, int b, const int W,
                                 int vertical, int x86, void *out, int level)
{
    if (b == 0) {
        memset(out, 0, m * (size_t)(W / 8));
        return 0;
    }
    if (!vertical || (W == 64 && b > 32))
        return hunpack_checked(in, len, m, b, W, out, m, level);
    const size_t sz = 16 * (size_t)b;
    if (len < sz)
        return OM_E_TRUNCATED;
    if (W == 16)
        v16_unpack(in, b, (uint16_t *)out, level);
    else if (W == 32)
        v32_unpack(in, b, (uint32_t *)out, level);
    else
        v64_unpack32(in, b, x86, (uint64_t *)out, level);
    return (int64_t)sz;
}

/* Decode one block of m (1..128) W-bit values into out[0, m).
 * Returns bytes used or OM_E_*. */
OM_INLINE int64_t dec_block(const uint8_t *in, size_t len, size_t m, const int W, int vertical,
                            int x86, void *out, int level)
{
    if (len < 1)
        return OM_E_TRUNCATED;
    const unsigned h = in[0];
    const unsigned mode = h & 0xC0;
    int b = (int)(h & 0x3F);
    size_t p = 1;
    int64_t r;

    if (mode == 0xC0 || mode == 0x00) {
        if (W == 64 && b == 63)
            b = 64; /* 63 is never a W = 64 width: it stands for 64 */
        if (b > W)
            return OM_E_CORRUPT;
        if (mode == 0x00) {
            r = unpack_checked(in + p, len - p, m, b, W, vertical, x86, out, level);
            return r < 0 ? r : (int64_t)p + r;
        }
        /* constant: ceil8(b) bytes of the value, little-endian */
        const size_t k = om_ceil8((size_t)b);
        if (len - p < k)
            return OM_E_TRUNCATED;
        uint64_t x = 0;
        for (size_t j = 0; j < k; j++)
            x |= (uint64_t)in[p + j] << (8 * j);
        if (b < 64)
            x &= ((uint64_t)1 << b) - 1;
        for (size_t i = 0; i < m; i++)
            st_w(out, i, x, W);
        return (int64_t)(p + k);
    }

    /* Exception modes: b is the literal field (W = 64 writers never pick 63 here). */
    if (b > W)
        return OM_E_CORRUPT;
    uint64_t high[136]; /* 128 values + 8 zero elements for the vector merges */

    if (mode == 0x80) { /* bitmap of exceptions, high parts Hpacked with bx bits */
        if (len - p < 1)
            return OM_E_TRUNCATED;
        const int bx = in[p++];
        if (bx < 1 || bx > W)
            return OM_E_CORRUPT;
        const size_t bm = om_ceil8(m);
        if (len - p < bm)
            return OM_E_TRUNCATED;
        uint64_t bw[2] = {0, 0};
        if (bm == 16) {
            bw[0] = om_ld64(in + p);
            bw[1] = om_ld64(in + p + 8);
        } else {
            for (size_t j = 0; j < bm; j++)
                bw[j >> 3] |= (uint64_t)in[p + j] << (8 * (j & 7));
        }
        p += bm;
        if (m < 64) /* bits past m are padding */
            bw[0] &= ((uint64_t)1 << m) - 1;
        else if (m < 128)
            bw[1] &= ((uint64_t)1 << (m - 64)) - 1;
        const size_t xn = (size_t)(popcount64(bw[0]) + popcount64(bw[1]));
        r = hunpack_checked(in + p, len - p, xn, bx, W, high, 136, level); /* typed like out */
        if (r < 0)
            return r;
        p += (size_t)r;
        memset((uint8_t *)high + xn * (size_t)(W / 8), 0, 8 * (size_t)(W / 8));
        r = unpack_checked(in + p, len - p, m, b, W, vertical, x86, out, level);
        if (r < 0)
            return r;
        p += (size_t)r;
        merge_bitmap(out, m, bw, high, b, W, level);
        return (int64_t)p;
    }

    /* 0x40: variable-byte exceptions (W >= 16 only) */
    if (W == 8)
        return OM_E_CORRUPT;
    if (len - p < 1)
        return OM_E_TRUNCATED;
    const size_t xn = in[p++];
    if (xn > m)
        return OM_E_CORRUPT;
    r = unpack_checked(in + p, len - p, m, b, W, vertical, x86, out, level);
    if (r < 0)
        return r;
    p += (size_t)r;
    r = vb_dec(in + p, len - p, xn, W, high);
    if (r < 0)
        return r;
    p += (size_t)r;
    if (len - p < xn)
        return OM_E_TRUNCATED;
    for (size_t k = 0; k < xn; k++) {
        const size_t pos = in[p + k];
        if (pos >= m)
            return OM_E_CORRUPT;
        st_w(out, pos, ld_w(out, pos, W) | (high[k] << b), W); /* OR, mod 2^W */
    }
    return (int64_t)(p + xn);
}

/* ------------------------------------------------------------------------ */
/* Delta / zigzag prefix sums (codec spec 7.3), fused with the inverse       */
/* delta2d filter (codec spec 3.2): p[i] = s_i + rp[i] where s_i is the       */
/* stream's running value and rp = p - L points one row back (already final). */
/* Returns the last stream value. Vector kernels need L >= the vector width.  */

#define DEFINE_PREFIX_C(T, NAME)                                                          \
    OM_INLINE T NAME##_k(T *p, size_t m, T prev, const T *rp, const int zz, const int filt) \
    {                                                                                     \
        for (size_t i = 0; i < m; i++) {                                                  \
            T d = p[i];                                                                   \
            if (zz)                                                                       \
                d = (T)((d >> 1) ^ (T)(0 - (d & 1)));                                     \
            prev = (T)(prev + d);                                                         \
            p[i] = filt ? (T)(prev + rp[i]) : prev;                                       \
        }                                                                                 \
        return prev;                                                                      \
    }                                                                                     \
    static T NAME(T *p, size_t m, T prev, const T *rp, int zz)                            \
    {                                                                                     \
        if (zz)                                                                           \
            return rp ? NAME##_k(p, m, prev, rp, 1, 1) : NAME##_k(p, m, prev, rp, 1, 0);  \
        return rp ? NAME##_k(p, m, prev, rp, 0, 1) : NAME##_k(p, m, prev, rp, 0, 0);      \
    }

DEFINE_PREFIX_C(uint8_t, prefix8_c)
DEFINE_PREFIX_C(uint16_t, prefix16_c)
DEFINE_PREFIX_C(uint32_t, prefix32_c)
DEFINE_PREFIX_C(uint64_t, prefix64_c)

#if OM_X86
OM_INLINE __m128i unzz16(__m128i x)
{
    const __m128i one = _mm_set1_epi16(1);
    return _mm_xor_si128(_mm_srli_epi16(x, 1), _mm_sub_epi16(_mm_setzero_si128(), _mm_and_si128(x, one)));
}

OM_INLINE __m128i unzz32(__m128i x)
{
    const __m128i one = _mm_set1_epi32(1);
    return _mm_xor_si128(_mm_srli_epi32(x, 1), _mm_sub_epi32(_mm_setzero_si128(), _mm_and_si128(x, one)));
}

OM_INLINE __m128i unzz64(__m128i x)
{
    const __m128i one = _mm_set1_epi64x(1);
    return _mm_xor_si128(_mm_srli_epi64(x, 1), _mm_sub_epi64(_mm_setzero_si128(), _mm_and_si128(x, one)));
}

/* The carry chain is one add per vector: carry += (broadcast of the local
 * total), independent of the stored result. */
OM_INLINE uint16_t pfx16_sse2_k(uint16_t *p, size_t m, uint16_t prev, const uint16_t *rp,
                                const int zz, const int filt)
{
    __m128i carry = _mm_set1_epi16((short)prev);
    size_t i = 0;
    for (; i + 8 <= m; i += 8) {
        __m128i x = _mm_loadu_si128((const __m128i *)(p + i));
        if (zz)
            x = unzz16(x);
        x = _mm_add_epi16(x, _mm_slli_si128(x, 2));
        x = _mm_add_epi16(x, _mm_slli_si128(x, 4));
        x = _mm_add_epi16(x, _mm_slli_si128(x, 8));
        __m128i s = _mm_add_epi16(x, carry);
        if (filt)
            s = _mm_add_epi16(s, _mm_loadu_si128((const __m128i *)(rp + i)));
        _mm_storeu_si128((__m128i *)(p + i), s);
        const __m128i t = _mm_shufflehi_epi16(x, 0xFF);
        carry = _mm_add_epi16(carry, _mm_unpackhi_epi64(t, t));
    }
    prev = (uint16_t)_mm_cvtsi128_si32(carry);
    return prefix16_c_k(p + i, m - i, prev, rp + i, zz, filt);
}

OM_INLINE uint32_t pfx32_sse2_k(uint32_t *p, size_t m, uint32_t prev, const uint32_t *rp,
                                const int zz, const int filt)
{
    __m128i carry = _mm_set1_epi32((int)prev);
    size_t i = 0;
    for (; i + 4 <= m; i += 4) {
        __m128i x = _mm_loadu_si128((const __m128i *)(p + i));
        if (zz)
            x = unzz32(x);
        x = _mm_add_epi32(x, _mm_slli_si128(x, 4));
        x = _mm_add_epi32(x, _mm_slli_si128(x, 8));
        __m128i s = _mm_add_epi32(x, carry);
        if (filt)
            s = _mm_add_epi32(s, _mm_loadu_si128((const __m128i *)(rp + i)));
        _mm_storeu_si128((__m128i *)(p + i), s);
        carry = _mm_add_epi32(carry, _mm_shuffle_epi32(x, 0xFF));
    }
    prev = (uint32_t)_mm_cvtsi128_si32(carry);
    return prefix32_c_k(p + i, m - i, prev, rp + i, zz, filt);
}

OM_INLINE uint64_t pfx64_sse2_k(uint64_t *p, size_t m, uint64_t prev, const uint64_t *rp,
                                const int zz, const int filt)
{
    __m128i carry = _mm_set1_epi64x((long long)prev);
    size_t i = 0;
    for (; i + 2 <= m; i += 2) {
        __m128i x = _mm_loadu_si128((const __m128i *)(p + i));
        if (zz)
            x = unzz64(x);
        x = _mm_add_epi64(x, _mm_slli_si128(x, 8));
        __m128i s = _mm_add_epi64(x, carry);
        if (filt)
            s = _mm_add_epi64(s, _mm_loadu_si128((const __m128i *)(rp + i)));
        _mm_storeu_si128((__m128i *)(p + i), s);
        carry = _mm_add_epi64(carry, _mm_unpackhi_epi64(x, x));
    }
    prev = (uint64_t)_mm_cvtsi128_si64(carry);
    return prefix64_c_k(p + i, m - i, prev, rp + i, zz, filt);
}

/* 16 x 8-bit lanes: 4 shift-add steps; the carry broadcast needs pshufb. */
SSSE3 OM_INLINE uint8_t pfx8_ssse3_k(uint8_t *p, size_t m, uint8_t prev, const uint8_t *rp,
                                     const int zz, const int filt)
{
    const __m128i one = _mm_set1_epi8(1), low7 = _mm_set1_epi8(0x7F), last = _mm_set1_epi8(15);
    __m128i carry = _mm_set1_epi8((char)prev);
    size_t i = 0;
    for (; i + 16 <= m; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(p + i));
        if (zz)
            x = _mm_xor_si128(_mm_and_si128(_mm_srli_epi16(x, 1), low7),
                              _mm_sub_epi8(_mm_setzero_si128(), _mm_and_si128(x, one)));
        x = _mm_add_epi8(x, _mm_slli_si128(x, 1));
        x = _mm_add_epi8(x, _mm_slli_si128(x, 2));
        x = _mm_add_epi8(x, _mm_slli_si128(x, 4));
        x = _mm_add_epi8(x, _mm_slli_si128(x, 8));
        __m128i s = _mm_add_epi8(x, carry);
        if (filt)
            s = _mm_add_epi8(s, _mm_loadu_si128((const __m128i *)(rp + i)));
        _mm_storeu_si128((__m128i *)(p + i), s);
        carry = _mm_add_epi8(carry, _mm_shuffle_epi8(x, last));
    }
    prev = (uint8_t)_mm_cvtsi128_si32(carry);
    return prefix8_c_k(p + i, m - i, prev, rp + i, zz, filt);
}

#define AVX2 __attribute__((target("avx2")))

AVX2 OM_INLINE __m256i unzz16_avx2(__m256i x)
{
    const __m256i one = _mm256_set1_epi16(1);
    return _mm256_xor_si256(_mm256_srli_epi16(x, 1), _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_and_si256(x, one)));
}

AVX2 OM_INLINE __m256i unzz32_avx2(__m256i x)
{
    const __m256i one = _mm256_set1_epi32(1);
    return _mm256_xor_si256(_mm256_srli_epi32(x, 1), _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_and_si256(x, one)));
}

AVX2 OM_INLINE __m256i unzz64_avx2(__m256i x)
{
    const __m256i one = _mm256_set1_epi64x(1);
    return _mm256_xor_si256(_mm256_srli_epi64(x, 1), _mm256_sub_epi64(_mm256_setzero_si256(), _mm256_and_si256(x, one)));
}

/* 16 values: in-lane scan; one in-lane pshufb broadcasts each lane's total
 * (elements 7 and 15), whose low half is added to the high lane and whose
 * sum over both lanes advances the carry. */
AVX2 OM_INLINE uint16_t pfx16_avx2_k(uint16_t *p, size_t m, uint16_t prev, const uint16_t *rp,
                                     const int zz, const int filt)
{
    const __m256i last = _mm256_set1_epi16(0x0F0E); /* bytes 14, 15 of each lane */
    __m256i carry = _mm256_set1_epi16((short)prev);
    size_t i = 0;
    OM_UNROLL(2)
    for (; i + 16 <= m; i += 16) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(p + i));
        if (zz)
            x = unzz16_avx2(x);
        x = _mm256_add_epi16(x, _mm256_slli_si256(x, 2));
        x = _mm256_add_epi16(x, _mm256_slli_si256(x, 4));
        x = _mm256_add_epi16(x, _mm256_slli_si256(x, 8));
        const __m256i t = _mm256_shuffle_epi8(x, last);
        x = _mm256_add_epi16(x, _mm256_permute2x128_si256(t, t, 0x08)); /* [0, t.lo] */
        __m256i s = _mm256_add_epi16(x, carry);
        if (filt)
            s = _mm256_add_epi16(s, _mm256_loadu_si256((const __m256i *)(rp + i)));
        _mm256_storeu_si256((__m256i *)(p + i), s);
        carry = _mm256_add_epi16(carry, _mm256_add_epi16(t, _mm256_permute2x128_si256(t, t, 0x01)));
    }
    prev = (uint16_t)_mm_cvtsi128_si32(_mm256_castsi256_si128(carry));
    return prefix16_c_k(p + i, m - i, prev, rp + i, zz, filt);
}

AVX2 OM_INLINE uint32_t pfx32_avx2_k(uint32_t *p, size_t m, uint32_t prev, const uint32_t *rp,
                                     const int zz, const int filt)
{
    const __m256i hi_lane = _mm256_setr_epi32(0, 0, 0, 0, -1, -1, -1, -1);
    const __m256i i3 = _mm256_set1_epi32(3), i7 = _mm256_set1_epi32(7);
    __m256i carry = _mm256_set1_epi32((int)prev);
    size_t i = 0;
    OM_UNROLL(2)
    for (; i + 8 <= m; i += 8) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(p + i));
        if (zz)
            x = unzz32_avx2(x);
        x = _mm256_add_epi32(x, _mm256_slli_si256(x, 4));
        x = _mm256_add_epi32(x, _mm256_slli_si256(x, 8));
        x = _mm256_add_epi32(x, _mm256_and_si256(_mm256_permutevar8x32_epi32(x, i3), hi_lane));
        __m256i s = _mm256_add_epi32(x, carry);
        if (filt)
            s = _mm256_add_epi32(s, _mm256_loadu_si256((const __m256i *)(rp + i)));
        _mm256_storeu_si256((__m256i *)(p + i), s);
        carry = _mm256_add_epi32(carry, _mm256_permutevar8x32_epi32(x, i7));
    }
    prev = (uint32_t)_mm_cvtsi128_si32(_mm256_castsi256_si128(carry));
    return prefix32_c_k(p + i, m - i, prev, rp + i, zz, filt);
}

AVX2 OM_INLINE uint64_t pfx64_avx2_k(uint64_t *p, size_t m, uint64_t prev, const uint64_t *rp,
                                     const int zz, const int filt)
{
    const __m256i hi_lane = _mm256_setr_epi32(0, 0, 0, 0, -1, -1, -1, -1);
    __m256i carry = _mm256_set1_epi64x((long long)prev);
    size_t i = 0;
    OM_UNROLL(2)
    for (; i + 4 <= m; i += 4) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(p + i));
        if (zz)
            x = unzz64_avx2(x);
        x = _mm256_add_epi64(x, _mm256_slli_si256(x, 8));
        x = _mm256_add_epi64(x, _mm256_and_si256(_mm256_permute4x64_epi64(x, 0x55), hi_lane));
        __m256i s = _mm256_add_epi64(x, carry);
        if (filt)
            s = _mm256_add_epi64(s, _mm256_loadu_si256((const __m256i *)(rp + i)));
        _mm256_storeu_si256((__m256i *)(p + i), s);
        carry = _mm256_add_epi64(carry, _mm256_permute4x64_epi64(x, 0xFF));
    }
    prev = (uint64_t)_mm_cvtsi128_si64(_mm256_castsi256_si128(carry));
    return prefix64_c_k(p + i, m - i, prev, rp + i, zz, filt);
}

/* The four (zigzag, filter) variants of one kernel as separate loops. */
#define DEFINE_PREFIX_VARIANTS(T, NAME, ATTR)                                          \
    ATTR static T NAME(T *p, size_t m, T prev, const T *rp, int zz)                    \
    {                                                                                  \
        if (zz)                                                                        \
            return rp ? NAME##_k(p, m, prev, rp, 1, 1) : NAME##_k(p, m, prev, p, 1, 0); \
        return rp ? NAME##_k(p, m, prev, rp, 0, 1) : NAME##_k(p, m, prev, p, 0, 0);     \
    }
DEFINE_PREFIX_VARIANTS(uint8_t, pfx8_ssse3, SSSE3)
DEFINE_PREFIX_VARIANTS(uint16_t, pfx16_sse2, )
DEFINE_PREFIX_VARIANTS(uint32_t, pfx32_sse2, )
DEFINE_PREFIX_VARIANTS(uint64_t, pfx64_sse2, )
DEFINE_PREFIX_VARIANTS(uint16_t, pfx16_avx2, AVX2)
DEFINE_PREFIX_VARIANTS(uint32_t, pfx32_avx2, AVX2)
DEFINE_PREFIX_VARIANTS(uint64_t, pfx64_avx2, AVX2)
#endif

/* Dispatch: a vector kernel may filter only if the row is at least as long
 * as its vector (its loads one row back must see final values). */
/* Whether a kernel with VB-byte vectors may fuse the filter for rows of rb
 * bytes: its loads one row back must not straddle stores that are still
 * pending (a store-forwarding stall), so short rows need whole vectors. */
#define ROW_BYTES_FREE 128
OM_INLINE int vec_ok(const void *rp, size_t rb, size_t VB)
{
    return !rp || (rb >= VB && (rb >= ROW_BYTES_FREE || rb % VB == 0));
}

OM_INLINE uint64_t prefix_w(void *p, size_t m, uint64_t prev, const void *rp, size_t L, int zz,
                            const int W, int level)
{
    const size_t rb = L * (size_t)(W / 8);
    (void)rb;
    (void)level;
    (void)L;
    switch (W) {
    case 8:
#if OM_X86
        if (level >= 2 && (!rp || rb >= 16))
            return pfx8_ssse3((uint8_t *)p, m, (uint8_t)prev, (const uint8_t *)rp, zz);
#endif
        return prefix8_c((uint8_t *)p, m, (uint8_t)prev, (const uint8_t *)rp, zz);
    case 16:
#if OM_X86
        if (level >= 3 && vec_ok(rp, rb, 32))
            return pfx16_avx2((uint16_t *)p, m, (uint16_t)prev, (const uint16_t *)rp, zz);
        if (level >= 1 && (!rp || rb >= 16))
            return pfx16_sse2((uint16_t *)p, m, (uint16_t)prev, (const uint16_t *)rp, zz);
#endif
        return prefix16_c((uint16_t *)p, m, (uint16_t)prev, (const uint16_t *)rp, zz);
    case 32:
#if OM_X86
        if (level >= 3 && vec_ok(rp, rb, 32))
            return pfx32_avx2((uint32_t *)p, m, (uint32_t)prev, (const uint32_t *)rp, zz);
        if (level >= 1 && (!rp || rb >= 16))
            return pfx32_sse2((uint32_t *)p, m, (uint32_t)prev, (const uint32_t *)rp, zz);
#endif
        return prefix32_c((uint32_t *)p, m, (uint32_t)prev, (const uint32_t *)rp, zz);
    default:
#if OM_X86
        if (level >= 3 && vec_ok(rp, rb, 32))
            return pfx64_avx2((uint64_t *)p, m, prev, (const uint64_t *)rp, zz);
        if (level >= 1 && (!rp || rb >= 16))
            return pfx64_sse2((uint64_t *)p, m, prev, (const uint64_t *)rp, zz);
#endif
        return prefix64_c((uint64_t *)p, m, prev, (const uint64_t *)rp, zz);
    }
}

/* ------------------------------------------------------------------------ */
/* PFor streams (codec spec 7.3)                                              */

OM_INLINE int64_t pfor_decode(const uint8_t *in, size_t in_len, size_t n, int zz, const int W,
                              void *out, size_t L, om_dec_sink sink, void *ctx, size_t stop)
{
    if (n == 0 || out == NULL || (in == NULL && in_len))
        return OM_E_INVALID;
    const int level = om_simd_level();
    const int v128 = (W == 16 || W == 32);
    const size_t B = (size_t)W / 8;
    uint64_t prev;
    const int r0 = vbx_dec(in, in_len, W, &prev);
    if (r0 < 0)
        return r0;
    st_w(out, 0, prev, W);
    size_t p = (size_t)r0;
    size_t g = 1; /* global index of the block's first value */
    uint8_t *o = (uint8_t *)out + B;
    /* Blocks are cut from the whole stream of n values: stopping early still
     * decodes whole blocks of that layout. */
    while (g < stop) {
        const size_t m = n - g < 128 ? n - g : 128;
        const int64_t r = dec_block(in + p, in_len - p, m, W, v128 && m == 128, 0, o, level);
        if (r < 0)
            return r;
        p += (size_t)r;
        if (L == 0 || g + m <= L) {
            prev = prefix_w(o, m, prev, NULL, L, zz, W, level);
        } else if (g >= L) {
            prev = prefix_w(o, m, prev, o - L * B, L, zz, W, level);
        } else { /* the block starts in row 0 and ends past it */
            const size_t k = L - g;
            prev = prefix_w(o, k, prev, NULL, L, zz, W, level);
            prev = prefix_w(o + k * B, m - k, prev, o + k * B - L * B, L, zz, W, level);
        }
        o += m * B;
        g += m;
        if (sink)
            sink(ctx, g);
    }
    return (int64_t)p;
}

/* Sparse columns: only the values at columns cols[0..nc) (sorted, unique, < L)
 * of rows 0 .. stop / L - 1 are wanted (a time step through time-major chunks).
 * The stream still has to be summed to its last wanted position, but between
 * two wanted positions a plain sum of the deltas replaces the prefix scan and
 * its stores, and the inverse delta2d only runs down the wanted columns
 * (acc[k] = value one row up). Writes out[r * L + cols[k]] and nothing else. */
#define DEFINE_PFOR_SPARSE(T, NAME, W)                                                       \
    OM_INLINE T NAME##_sum(const T *o, size_t a, size_t b, const int zz)                     \
    {                                                                                        \
        T s = 0;                                                                             \
        for (size_t j = a; j < b; j++) {                                                     \
            T d = o[j];                                                                      \
            if (zz)                                                                          \
                d = (T)((d >> 1) ^ (T)(0 - (d & 1)));                                        \
            s = (T)(s + d);                                                                  \
        }                                                                                    \
        return s;                                                                            \
    }                                                                                        \
    static int64_t NAME(const uint8_t *in, size_t in_len, size_t n, const int zz, T *out,      \
                        size_t L, size_t stop, const uint32_t *cols, size_t nc, T *acc)      \
    {                                                                                        \
        const int level = om_simd_level();                                                   \
        uint64_t first;                                                                      \
        const int r0 = vbx_dec(in, in_len, W, &first);                                       \
        if (r0 < 0)                                                                          \
            return r0;                                                                       \
        T prev = (T)first;                                                                   \
        for (size_t k = 0; k < nc; k++)                                                      \
            acc[k] = 0;                                                                      \
        size_t row = 0, ci = 0, pos = cols[0];                                               \
        if (pos == 0) { /* value 0 is the start value itself */                              \
            out[0] = acc[0] = prev;                                                          \
            if (++ci == nc) {                                                                \
                ci = 0;                                                                      \
                row++;                                                                       \
            }                                                                                \
            pos = row * L + cols[ci];                                                        \
        }                                                                                    \
        size_t p = (size_t)r0, g = 1;                                                        \
        T o[128];                                                                            \
        while (g < stop) {                                                                   \
            const size_t m = n - g < 128 ? n - g : 128;                                      \
            const int64_t r = dec_block(in + p, in_len - p, m, W, (W == 16 || W == 32) && m == 128, \
                                        0, o, level);                                        \
            if (r < 0)                                                                       \
                return r;                                                                    \
            p += (size_t)r;                                                                  \
            size_t j = 0;                                                                    \
            while (pos < g + m && row * L < stop) {                                          \
                const size_t e = pos - g + 1;                                                \
                prev = (T)(prev + NAME##_sum(o, j, e, zz));                                  \
                j = e;                                                                       \
                const T v = (T)(prev + acc[ci]);                                             \
                out[pos] = acc[ci] = v;                                                      \
                if (++ci == nc) {                                                            \
                    ci = 0;                                                                  \
                    row++;                                                                   \
                }                                                                            \
                pos = row * L + cols[ci];                                                    \
            }                                                                                \
            if (row * L >= stop && stop < n) /* all of the stream: consume it (size check) */ \
                break;                                                                       \
            prev = (T)(prev + NAME##_sum(o, j, m, zz));                                      \
            g += m;                                                                          \
        }                                                                                    \
        return (int64_t)p;                                                                   \
    }
DEFINE_PFOR_SPARSE(uint8_t, pfor_sparse8, 8)
DEFINE_PFOR_SPARSE(uint16_t, pfor_sparse16, 16)
DEFINE_PFOR_SPARSE(uint32_t, pfor_sparse32, 32)
DEFINE_PFOR_SPARSE(uint64_t, pfor_sparse64, 64)

int64_t om_pfor_decode_sparse(const uint8_t *in, size_t in_len, size_t n, int zigzag, int width,
                              void *out, size_t row_len, size_t stop, const uint32_t *cols,
                              size_t ncols)
{
    if (n == 0 || out == NULL || (in == NULL && in_len) || row_len == 0 || ncols == 0 ||
        ncols > OM_SPARSE_MAX_COLS || stop % row_len != 0 || cols[ncols - 1] >= row_len)
        return OM_E_INVALID;
    if (stop > n)
        stop = n;
    uint64_t acc[OM_SPARSE_MAX_COLS];
    const int zz = zigzag != 0;
    switch (width) {
    case 8: return pfor_sparse8(in, in_len, n, zz, (uint8_t *)out, row_len, stop, cols, ncols, (uint8_t *)acc);
    case 16: return pfor_sparse16(in, in_len, n, zz, (uint16_t *)out, row_len, stop, cols, ncols, (uint16_t *)acc);
    case 32: return pfor_sparse32(in, in_len, n, zz, (uint32_t *)out, row_len, stop, cols, ncols, (uint32_t *)acc);
    case 64: return pfor_sparse64(in, in_len, n, zz, (uint64_t *)out, row_len, stop, cols, ncols, acc);
    default: return OM_E_INVALID;
    }
}

int64_t om_pfor_decode_rows(const uint8_t *in, size_t in_len, size_t n, int zigzag, int width,
                            void *out, size_t row_len, om_dec_sink sink, void *ctx)
{
    switch (width) {
    case 8: return pfor_decode(in, in_len, n, zigzag, 8, out, row_len, sink, ctx, n);
    case 16: return pfor_decode(in, in_len, n, zigzag, 16, out, row_len, sink, ctx, n);
    case 32: return pfor_decode(in, in_len, n, zigzag, 32, out, row_len, sink, ctx, n);
    case 64: return pfor_decode(in, in_len, n, zigzag, 64, out, row_len, sink, ctx, n);
    default: return OM_E_INVALID;
    }
}

int64_t om_pfor_decode_prefix(const uint8_t *in, size_t in_len, size_t n, int zigzag, int width,
                              void *out, size_t row_len, size_t stop)
{
    if (stop > n)
        stop = n;
    switch (width) {
    case 8: return pfor_decode(in, in_len, n, zigzag, 8, out, row_len, NULL, NULL, stop);
    case 16: return pfor_decode(in, in_len, n, zigzag, 16, out, row_len, NULL, NULL, stop);
    case 32: return pfor_decode(in, in_len, n, zigzag, 32, out, row_len, NULL, NULL, stop);
    case 64: return pfor_decode(in, in_len, n, zigzag, 64, out, row_len, NULL, NULL, stop);
    default: return OM_E_INVALID;
    }
}

int64_t om_pfor_decode8(const uint8_t *in, size_t in_len, size_t n, int zigzag, uint8_t *out)
{
    return pfor_decode(in, in_len, n, zigzag, 8, out, 0, NULL, NULL, n);
}

int64_t om_pfor_decode16(const uint8_t *in, size_t in_len, size_t n, int zigzag, uint16_t *out)
{
    return pfor_decode(in, in_len, n, zigzag, 16, out, 0, NULL, NULL, n);
}

int64_t om_pfor_decode32(const uint8_t *in, size_t in_len, size_t n, int zigzag, uint32_t *out)
{
    return pfor_decode(in, in_len, n, zigzag, 32, out, 0, NULL, NULL, n);
}

int64_t om_pfor_decode64(const uint8_t *in, size_t in_len, size_t n, int zigzag, uint64_t *out)
{
    return pfor_decode(in, in_len, n, zigzag, 64, out, 0, NULL, NULL, n);
}

/* ------------------------------------------------------------------------ */
/* fpx (codec spec 8): per group x = rbit(q) >> hb, stream value prev ^= x.  */
/* For float32 the inverse xor2d filter (codec spec 3.3) is fused in: the    */
/* stored value is prev ^ rp[i], rp one row back (already final).            */

#define DEFINE_FPX_C(T, NAME, RBIT)                                                       \
    OM_INLINE T NAME(T *v, size_t m, unsigned hb, T prev, const T *rp, const int filt)  \
    {                                                                                     \
        for (size_t i = 0; i < m; i++) {                                                  \
            prev ^= RBIT(v[i]) >> hb;                                                     \
            v[i] = filt ? (T)(prev ^ rp[i]) : prev;                                       \
        }                                                                                 \
        return prev;                                                                      \
    }
DEFINE_FPX_C(uint32_t, fpx32_c_k, rbit32)
DEFINE_FPX_C(uint64_t, fpx64_c_k, rbit64)

#if OM_X86
/* Bit reversal of every byte with two nibble look-ups, then a byte shuffle. */
#define REV4_HI 0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15
#define REV4_LO 0, (char)0x80, 0x40, (char)0xC0, 0x20, (char)0xA0, 0x60, (char)0xE0, 0x10, \
    (char)0x90, 0x50, (char)0xD0, 0x30, (char)0xB0, 0x70, (char)0xF0
#define BSWAP32_IDX 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12
#define BSWAP64_IDX 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8

SSSE3 OM_INLINE __m128i rbit_bytes_ssse3(__m128i x)
{
    const __m128i lo4 = _mm_set1_epi8(0x0F);
    const __m128i t_lo = _mm_setr_epi8(REV4_LO);
    const __m128i t_hi = _mm_setr_epi8(REV4_HI);
    return _mm_or_si128(_mm_shuffle_epi8(t_lo, _mm_and_si128(x, lo4)),
                        _mm_shuffle_epi8(t_hi, _mm_and_si128(_mm_srli_epi16(x, 4), lo4)));
}

SSSE3 OM_INLINE uint32_t fpx32_ssse3_k(uint32_t *v, size_t m, unsigned hb, uint32_t prev,
                                       const uint32_t *rp, const int filt)
{
    const __m128i bswap = _mm_setr_epi8(BSWAP32_IDX);
    const __m128i cnt = _mm_cvtsi32_si128((int)hb);
    __m128i carry = _mm_set1_epi32((int)prev);
    size_t i = 0;
    for (; i + 4 <= m; i += 4) {
        __m128i x = _mm_loadu_si128((const __m128i *)(v + i));
        x = _mm_srl_epi32(_mm_shuffle_epi8(rbit_bytes_ssse3(x), bswap), cnt);
        x = _mm_xor_si128(x, _mm_slli_si128(x, 4));
        x = _mm_xor_si128(x, _mm_slli_si128(x, 8));
        __m128i s = _mm_xor_si128(x, carry);
        if (filt)
            s = _mm_xor_si128(s, _mm_loadu_si128((const __m128i *)(rp + i)));
        _mm_storeu_si128((__m128i *)(v + i), s);
        carry = _mm_xor_si128(carry, _mm_shuffle_epi32(x, 0xFF));
    }
    prev = (uint32_t)_mm_cvtsi128_si32(carry);
    return fpx32_c_k(v + i, m - i, hb, prev, rp + i, filt);
}

SSSE3 OM_INLINE uint64_t fpx64_ssse3_k(uint64_t *v, size_t m, unsigned hb, uint64_t prev,
                                       const uint64_t *rp, const int filt)
{
    const __m128i bswap = _mm_setr_epi8(BSWAP64_IDX);
    const __m128i cnt = _mm_cvtsi32_si128((int)hb);
    __m128i carry = _mm_set1_epi64x((long long)prev);
    size_t i = 0;
    for (; i + 2 <= m; i += 2) {
        __m128i x = _mm_loadu_si128((const __m128i *)(v + i));
        x = _mm_srl_epi64(_mm_shuffle_epi8(rbit_bytes_ssse3(x), bswap), cnt);
        x = _mm_xor_si128(x, _mm_slli_si128(x, 8));
        __m128i s = _mm_xor_si128(x, carry);
        if (filt)
            s = _mm_xor_si128(s, _mm_loadu_si128((const __m128i *)(rp + i)));
        _mm_storeu_si128((__m128i *)(v + i), s);
        carry = _mm_xor_si128(carry, _mm_unpackhi_epi64(x, x));
    }
    prev = (uint64_t)_mm_cvtsi128_si64(carry);
    return fpx64_c_k(v + i, m - i, hb, prev, rp + i, filt);
}

AVX2 OM_INLINE __m256i rbit_bytes_avx2(__m256i x)
{
    const __m256i lo4 = _mm256_set1_epi8(0x0F);
    const __m256i t_lo = _mm256_setr_epi8(REV4_LO, REV4_LO);
    const __m256i t_hi = _mm256_setr_epi8(REV4_HI, REV4_HI);
    return _mm256_or_si256(_mm256_shuffle_epi8(t_lo, _mm256_and_si256(x, lo4)),
                           _mm256_shuffle_epi8(t_hi, _mm256_and_si256(_mm256_srli_epi16(x, 4), lo4)));
}

/* Kernels for AVX2, and AVX2 + GFNI where one affine instruction reverses the
 * bits of every byte (matrix 0x8040201008040201). */
#define GFNI __attribute__((target("avx2,gfni")))

GFNI OM_INLINE __m256i rbit_bytes_gfni(__m256i x)
{
    return _mm256_gf2p8affine_epi64_epi8(x, _mm256_set1_epi64x(0x8040201008040201LL), 0);
}

#define DEFINE_FPX32_256(NAME, ATTR, RBIT)                                                      \
    ATTR OM_INLINE uint32_t NAME(uint32_t *v, size_t m, unsigned hb, uint32_t prev,             \
                                 const uint32_t *rp, const int filt)                            \
    {                                                                                           \
        const __m256i bswap = _mm256_setr_epi8(BSWAP32_IDX, BSWAP32_IDX);                       \
        const __m128i cnt = _mm_cvtsi32_si128((int)hb);                                         \
        const __m256i hi_lane = _mm256_setr_epi32(0, 0, 0, 0, -1, -1, -1, -1);                  \
        const __m256i i3 = _mm256_set1_epi32(3), i7 = _mm256_set1_epi32(7);                     \
        __m256i carry = _mm256_set1_epi32((int)prev);                                           \
        size_t i = 0;                                                                           \
        for (; i + 8 <= m; i += 8) {                                                            \
            __m256i x = _mm256_loadu_si256((const __m256i *)(v + i));                           \
            x = _mm256_srl_epi32(_mm256_shuffle_epi8(RBIT(x), bswap), cnt);                     \
            x = _mm256_xor_si256(x, _mm256_slli_si256(x, 4));                                   \
            x = _mm256_xor_si256(x, _mm256_slli_si256(x, 8));                                   \
            x = _mm256_xor_si256(x, _mm256_and_si256(_mm256_permutevar8x32_epi32(x, i3), hi_lane)); \
            __m256i s = _mm256_xor_si256(x, carry);                                             \
            if (filt)                                                                           \
                s = _mm256_xor_si256(s, _mm256_loadu_si256((const __m256i *)(rp + i)));         \
            _mm256_storeu_si256((__m256i *)(v + i), s);                                         \
            carry = _mm256_xor_si256(carry, _mm256_permutevar8x32_epi32(x, i7));                \
        }                                                                                       \
        prev = (uint32_t)_mm_cvtsi128_si32(_mm256_castsi256_si128(carry));                      \
        return fpx32_c_k(v + i, m - i, hb, prev, rp + i, filt);                                 \
    }

#define DEFINE_FPX64_256(NAME, ATTR, RBIT)                                                      \
    ATTR OM_INLINE uint64_t NAME(uint64_t *v, size_t m, unsigned hb, uint64_t prev,             \
                                 const uint64_t *rp, const int filt)                            \
    {                                                                                           \
        const __m256i bswap = _mm256_setr_epi8(BSWAP64_IDX, BSWAP64_IDX);                       \
        const __m128i cnt = _mm_cvtsi32_si128((int)hb);                                         \
        const __m256i hi_lane = _mm256_setr_epi32(0, 0, 0, 0, -1, -1, -1, -1);                  \
        __m256i carry = _mm256_set1_epi64x((long long)prev);                                    \
        size_t i = 0;                                                                           \
        for (; i + 4 <= m; i += 4) {                                                            \
            __m256i x = _mm256_loadu_si256((const __m256i *)(v + i));                           \
            x = _mm256_srl_epi64(_mm256_shuffle_epi8(RBIT(x), bswap), cnt);                     \
            x = _mm256_xor_si256(x, _mm256_slli_si256(x, 8));                                   \
            x = _mm256_xor_si256(x, _mm256_and_si256(_mm256_permute4x64_epi64(x, 0x55), hi_lane)); \
            __m256i s = _mm256_xor_si256(x, carry);                                             \
            if (filt)                                                                           \
                s = _mm256_xor_si256(s, _mm256_loadu_si256((const __m256i *)(rp + i)));         \
            _mm256_storeu_si256((__m256i *)(v + i), s);                                         \
            carry = _mm256_xor_si256(carry, _mm256_permute4x64_epi64(x, 0xFF));                 \
        }                                                                                       \
        prev = (uint64_t)_mm_cvtsi128_si64(_mm256_castsi256_si128(carry));                      \
        return fpx64_c_k(v + i, m - i, hb, prev, rp + i, filt);                                 \
    }

DEFINE_FPX32_256(fpx32_avx2_k, AVX2, rbit_bytes_avx2)
DEFINE_FPX64_256(fpx64_avx2_k, AVX2, rbit_bytes_avx2)
DEFINE_FPX32_256(fpx32_gfni_k, GFNI, rbit_bytes_gfni)
DEFINE_FPX64_256(fpx64_gfni_k, GFNI, rbit_bytes_gfni)

#define DEFINE_FPX_VARIANTS(T, NAME, ATTR)                                                 \
    ATTR static T NAME(T *v, size_t m, unsigned hb, T prev, const T *rp)                   \
    {                                                                                      \
        return rp ? NAME##_k(v, m, hb, prev, rp, 1) : NAME##_k(v, m, hb, prev, v, 0);      \
    }
DEFINE_FPX_VARIANTS(uint32_t, fpx32_ssse3, SSSE3)
DEFINE_FPX_VARIANTS(uint64_t, fpx64_ssse3, SSSE3)
DEFINE_FPX_VARIANTS(uint32_t, fpx32_avx2, AVX2)
DEFINE_FPX_VARIANTS(uint64_t, fpx64_avx2, AVX2)
DEFINE_FPX_VARIANTS(uint32_t, fpx32_gfni, GFNI)
DEFINE_FPX_VARIANTS(uint64_t, fpx64_gfni, GFNI)
#endif

static uint32_t fpx32_c(uint32_t *v, size_t m, unsigned hb, uint32_t prev, const uint32_t *rp)
{
    return rp ? fpx32_c_k(v, m, hb, prev, rp, 1) : fpx32_c_k(v, m, hb, prev, v, 0);
}

static uint64_t fpx64_c(uint64_t *v, size_t m, unsigned hb, uint64_t prev, const uint64_t *rp)
{
    return rp ? fpx64_c_k(v, m, hb, prev, rp, 1) : fpx64_c_k(v, m, hb, prev, v, 0);
}

/* One group after its block was decoded into v[0, m). Vector kernels filter
 * only if the row is at least as long as their vector. */
OM_INLINE uint64_t fpx_post(void *v, size_t m, unsigned hb, uint64_t prev, const void *rp, size_t L,
                            const int W, int level)
{
    (void)level;
    (void)L;
    if (hb >= (unsigned)W) { /* all XORs zero (the width field may hold anything >= W) */
        for (size_t i = 0; i < m; i++)
            st_w(v, i, rp ? prev ^ ld_w(rp, i, W) : prev, W);
        return prev;
    }
    if (W == 32) {
#if OM_X86
        if (level >= 4 && vec_ok(rp, 4 * L, 32))
            return fpx32_gfni((uint32_t *)v, m, hb, (uint32_t)prev, (const uint32_t *)rp);
        if (level >= 3 && vec_ok(rp, 4 * L, 32))
            return fpx32_avx2((uint32_t *)v, m, hb, (uint32_t)prev, (const uint32_t *)rp);
        if (level >= 2 && (!rp || L >= 4))
            return fpx32_ssse3((uint32_t *)v, m, hb, (uint32_t)prev, (const uint32_t *)rp);
#endif
        return fpx32_c((uint32_t *)v, m, hb, (uint32_t)prev, (const uint32_t *)rp);
    }
#if OM_X86
    if (level >= 4 && (!rp || L >= 4))
        return fpx64_gfni((uint64_t *)v, m, hb, prev, (const uint64_t *)rp);
    if (level >= 3 && (!rp || L >= 4))
        return fpx64_avx2((uint64_t *)v, m, hb, prev, (const uint64_t *)rp);
    if (level >= 2 && (!rp || L >= 2))
        return fpx64_ssse3((uint64_t *)v, m, hb, prev, (const uint64_t *)rp);
#endif
    return fpx64_c((uint64_t *)v, m, hb, prev, (const uint64_t *)rp);
}

OM_INLINE int64_t fpx_decode(const uint8_t *in, size_t in_len, size_t n, int x86, const int W,
                             void *out, size_t L, size_t stop)
{
    if (n == 0 || out == NULL || (in == NULL && in_len))
        return OM_E_INVALID;
    const int level = om_simd_level();
    const size_t B = (size_t)W / 8;
    uint8_t *o = (uint8_t *)out;
    uint64_t prev = 0;
    size_t p = 0, g = 0; /* g: global index of the group's first value */
    while (g < stop) {
        const size_t m = n - g < 128 ? n - g : 128;
        if (p >= in_len)
            return OM_E_TRUNCATED;
        const unsigned hb = in[p++];
        const int64_t r = dec_block(in + p, in_len - p, m, W, m == 128, x86, o, level);
        if (r < 0)
            return r;
        p += (size_t)r;
        if (L == 0 || g + m <= L) {
            prev = fpx_post(o, m, hb, prev, NULL, L, W, level);
        } else if (g >= L) {
            prev = fpx_post(o, m, hb, prev, o - L * B, L, W, level);
        } else { /* the group starts in row 0 and ends past it */
            const size_t k = L - g;
            prev = fpx_post(o, k, hb, prev, NULL, L, W, level);
            prev = fpx_post(o + k * B, m - k, hb, prev, o + k * B - L * B, L, W, level);
        }
        o += m * B;
        g += m;
    }
    return (int64_t)p;
}

int64_t om_fpx_decode_rows32(const uint8_t *in, size_t in_len, size_t n, uint32_t *out,
                             size_t row_len)
{
    return fpx_decode(in, in_len, n, 0, 32, out, row_len, n);
}

int64_t om_fpx_decode_prefix32(const uint8_t *in, size_t in_len, size_t n, uint32_t *out,
                               size_t row_len, size_t stop)
{
    return fpx_decode(in, in_len, n, 0, 32, out, row_len, stop < n ? stop : n);
}

/* fpx float32 at sparse columns (see om_pfor_decode_sparse): rbit and the
 * shift are linear over XOR, so between two wanted positions the group's raw
 * values are XOR-reduced and transformed once; xor2d runs down the columns. */
int64_t om_fpx_decode_sparse32(const uint8_t *in, size_t in_len, size_t n, uint32_t *out,
                               size_t L, size_t stop, const uint32_t *cols, size_t nc)
{
    if (n == 0 || out == NULL || (in == NULL && in_len) || L == 0 || nc == 0 ||
        nc > OM_SPARSE_MAX_COLS || stop % L != 0 || cols[nc - 1] >= L)
        return OM_E_INVALID;
    if (stop > n)
        stop = n;
    const int level = om_simd_level();
    uint32_t acc[OM_SPARSE_MAX_COLS] = {0};
    uint32_t o[128];
    uint32_t prev = 0;
    size_t row = 0, ci = 0, pos = cols[0];
    size_t p = 0, g = 0;
    while (g < stop) {
        const size_t m = n - g < 128 ? n - g : 128;
        if (p >= in_len)
            return OM_E_TRUNCATED;
        const unsigned hb = in[p++];
        const int64_t r = dec_block(in + p, in_len - p, m, 32, m == 128, 0, o, level);
        if (r < 0)
            return r;
        p += (size_t)r;
        size_t j = 0;
        while (pos < g + m && row * L < stop) {
            const size_t e = pos - g + 1;
            uint32_t x = 0;
            for (; j < e; j++)
                x ^= o[j];
            if (hb < 32)
                prev ^= rbit32(x) >> hb;
            const uint32_t v = prev ^ acc[ci];
            out[pos] = acc[ci] = v;
            if (++ci == nc) {
                ci = 0;
                row++;
            }
            pos = row * L + cols[ci];
        }
        if (row * L >= stop && stop < n) /* all of the stream: consume it (size check) */
            break;
        uint32_t x = 0;
        for (; j < m; j++)
            x ^= o[j];
        if (hb < 32)
            prev ^= rbit32(x) >> hb;
        g += m;
    }
    return (int64_t)p;
}

/* ------------------------------------------------------------------------ */
/* Few selected rows (a time series through chunks that hold many of them):  */
/* the inverse delta2d sums each column over the rows above, and the stream  */
/* is a running sum, so with S = stream values and d = deltas                */
/*   out[r][c] = sum_{r' <= r} S[r'L + c]                                     */
/*             = sum_{r' <= r} B_r'  +  prefix_c(A_r)[c]                      */
/* where B_r' = S[r'L - 1] (u0 for r' = 0) is the stream value before row r' */
/* and A_r[c] = sum_{r' <= r} d[r'L + c] (d[0] = 0). Decoding then only adds */
/* each delta into one row-long accumulator instead of a prefix scan and a   */
/* second pass; one scan per selected row remains. Exact: all of it is       */
/* arithmetic mod 2^W. fpx float32 is the same with XOR, in the domain       */
/* y = q << hb before the bit reversal (rbit(q) >> hb = rbit(q << hb), and   */
/* rbit is linear over XOR), so the reversal runs on the selected rows only. */

/* A[i] += unzz(o[i]) (or o[i]); returns the sum of the added deltas. The
 * same C source is built for the baseline and for AVX2 (auto-vectorised;
 * integer arithmetic, so both give identical results). */
#define DEFINE_ACC_ADD(T, NAME, ATTR)                                                        \
    ATTR static T NAME(T *restrict A, const T *restrict o, size_t k, int zz)                 \
    {                                                                                        \
        T s = 0;                                                                             \
        if (zz) {                                                                            \
            for (size_t i = 0; i < k; i++) {                                                 \
                const T d = (T)((T)(o[i] >> 1) ^ (T)(0 - (o[i] & 1)));                       \
                A[i] = (T)(A[i] + d);                                                        \
                s = (T)(s + d);                                                              \
            }                                                                                \
        } else {                                                                             \
            for (size_t i = 0; i < k; i++) {                                                 \
                A[i] = (T)(A[i] + o[i]);                                                     \
                s = (T)(s + o[i]);                                                           \
            }                                                                                \
        }                                                                                    \
        return s;                                                                            \
    }
DEFINE_ACC_ADD(uint8_t, acc8_c, )
DEFINE_ACC_ADD(uint16_t, acc16_c, )
DEFINE_ACC_ADD(uint32_t, acc32_c, )
DEFINE_ACC_ADD(uint64_t, acc64_c, )

/* A[i] ^= o[i] << hb (hb < 32); returns the XOR of the values added. */
#define DEFINE_ACC_XOR(NAME, ATTR)                                                           \
    ATTR static uint32_t NAME(uint32_t *restrict A, const uint32_t *restrict o, size_t k,    \
                              unsigned hb)                                                   \
    {                                                                                        \
        uint32_t s = 0;                                                                      \
        for (size_t i = 0; i < k; i++) {                                                     \
            const uint32_t y = o[i] << hb;                                                   \
            A[i] ^= y;                                                                       \
            s ^= y;                                                                          \
        }                                                                                    \
        return s;                                                                            \
    }
DEFINE_ACC_XOR(accx32_c, )

#if OM_X86
DEFINE_ACC_ADD(uint8_t, acc8_avx2, AVX2)
DEFINE_ACC_ADD(uint16_t, acc16_avx2, AVX2)
DEFINE_ACC_ADD(uint32_t, acc32_avx2, AVX2)
DEFINE_ACC_ADD(uint64_t, acc64_avx2, AVX2)
DEFINE_ACC_XOR(accx32_avx2, AVX2)
#endif

OM_INLINE uint64_t acc_add(void *A, const void *o, size_t k, int zz, const int W, int level)
{
#if OM_X86
    if (level >= 3) {
        switch (W) {
        case 8: return acc8_avx2((uint8_t *)A, (const uint8_t *)o, k, zz);
        case 16: return acc16_avx2((uint16_t *)A, (const uint16_t *)o, k, zz);
        case 32: return acc32_avx2((uint32_t *)A, (const uint32_t *)o, k, zz);
        default: return acc64_avx2((uint64_t *)A, (const uint64_t *)o, k, zz);
        }
    }
#endif
    (void)level;
    switch (W) {
    case 8: return acc8_c((uint8_t *)A, (const uint8_t *)o, k, zz);
    case 16: return acc16_c((uint16_t *)A, (const uint16_t *)o, k, zz);
    case 32: return acc32_c((uint32_t *)A, (const uint32_t *)o, k, zz);
    default: return acc64_c((uint64_t *)A, (const uint64_t *)o, k, zz);
    }
}

OM_INLINE uint32_t acc_xor32(uint32_t *A, const uint32_t *o, size_t k, unsigned hb, int level)
{
#if OM_X86
    if (level >= 3)
        return accx32_avx2(A, o, k, hb);
#endif
    (void)level;
    return accx32_c(A, o, k, hb);
}

/* State of a row-selection decode (see above). */
typedef struct {
    uint8_t *out, *A;
    const uint32_t *rows;
    size_t nr, ri, r, L, B;
    uint64_t Bv, BB, T, mask; /* B_r, sum of B_r' (r' <= r), the row's deltas so far */
    int W, level, fpx;
} rowsel_t;

/* Row s->r is complete: emit it if selected, then start the next row.
 * Returns 1 once the last selected row is out. */
static int rowsel_end(rowsel_t *s)
{
    if (s->rows[s->ri] == s->r) {
        uint8_t *dst = s->out + s->r * s->L * s->B;
        if (dst != s->A)
            memcpy(dst, s->A, s->L * s->B);
        if (s->fpx)
            fpx_post(dst, s->L, 0, rbit32((uint32_t)s->BB), NULL, s->L, 32, s->level);
        else if (s->W == 8)
            prefix_w(dst, s->L, s->BB, NULL, s->L, 0, 8, s->level);
        else if (s->W == 16)
            prefix_w(dst, s->L, s->BB, NULL, s->L, 0, 16, s->level);
        else if (s->W == 32)
            prefix_w(dst, s->L, s->BB, NULL, s->L, 0, 32, s->level);
        else
            prefix_w(dst, s->L, s->BB, NULL, s->L, 0, 64, s->level);
        if (++s->ri == s->nr)
            return 1;
    }
    if (s->fpx) {
        s->Bv ^= s->T;
        s->BB ^= s->Bv;
    } else {
        s->Bv = (s->Bv + s->T) & s->mask;
        s->BB = (s->BB + s->Bv) & s->mask;
    }
    s->T = 0;
    s->r++;
    return 0;
}

/* rows[0 .. nr) sorted, unique, each < stop / L; stop <= n a multiple of L,
 * n > L. Writes out[r * L .. r * L + L) for the selected rows r only (the
 * last one's slot doubles as the accumulator). Returns the bytes consumed by
 * the decoded blocks or OM_E_*. fpx: W = 32, zz ignored. */
OM_INLINE int64_t rowsel_decode(const uint8_t *in, size_t in_len, size_t n, int zz, const int W,
                                const int fpx, void *out, size_t L, size_t stop,
                                const uint32_t *rows, size_t nr)
{
    rowsel_t s;
    s.level = om_simd_level();
    s.B = (size_t)W / 8;
    s.mask = W == 64 ? ~(uint64_t)0 : ((uint64_t)1 << W) - 1;
    s.out = (uint8_t *)out;
    s.A = s.out + (size_t)rows[nr - 1] * L * s.B;
    s.rows = rows;
    s.nr = nr;
    s.ri = s.r = 0;
    s.L = L;
    s.W = W;
    s.fpx = fpx;
    s.T = 0;
    memset(s.A, 0, L * s.B);
    size_t p = 0, g = 0, col = 0;
    if (fpx) {
        s.Bv = s.BB = 0;
    } else { /* position 0 is the start value: B_0 = u0, d[0] = 0 */
        uint64_t u0;
        const int r0 = vbx_dec(in, in_len, W, &u0);
        if (r0 < 0)
            return r0;
        s.Bv = s.BB = u0;
        p = (size_t)r0;
        g = col = 1;
        if (col == L && rowsel_end(&s))
            return (int64_t)p;
        col %= L;
    }
    uint64_t o[128];
    for (;;) {
        if (g >= stop) /* unreachable for valid arguments: the rows end first */
            return OM_E_INVALID;
        const size_t m = n - g < 128 ? n - g : 128;
        unsigned hb = 0;
        if (fpx) {
            if (p >= in_len)
                return OM_E_TRUNCATED;
            hb = in[p++];
        }
        const int64_t rb = dec_block(in + p, in_len - p, m, W,
                                     (fpx || W == 16 || W == 32) && m == 128, 0, o, s.level);
        if (rb < 0)
            return rb;
        p += (size_t)rb;
        for (size_t i = 0; i < m;) {
            const size_t k = m - i < L - col ? m - i : L - col;
            if (!fpx)
                s.T += acc_add(s.A + col * s.B, (const uint8_t *)o + i * s.B, k, zz, W, s.level);
            else if (hb < 32)
                s.T ^= acc_xor32((uint32_t *)s.A + col, (const uint32_t *)o + i, k, hb, s.level);
            i += k;
            col += k;
            if (col == L) {
                if (rowsel_end(&s))
                    return (int64_t)p;
                col = 0;
            }
        }
        g += m;
    }
}

/* The arguments of the row-selection entry points are consistent. */
static int rowsel_args_ok(const uint8_t *in, size_t in_len, size_t n, const void *out, size_t L,
                          size_t stop, const uint32_t *rows, size_t nrows)
{
    if (n == 0 || out == NULL || (in == NULL && in_len) || L == 0 || n <= L || nrows == 0 ||
        rows == NULL || stop > n || stop % L != 0 || rows[nrows - 1] >= stop / L)
        return 0;
    for (size_t k = 1; k < nrows; k++)
        if (rows[k] <= rows[k - 1])
            return 0;
    return 1;
}

int64_t om_pfor_decode_rowsel(const uint8_t *in, size_t in_len, size_t n, int zigzag, int width,
                              void *out, size_t row_len, size_t stop, const uint32_t *rows,
                              size_t nrows)
{
    if (!rowsel_args_ok(in, in_len, n, out, row_len, stop, rows, nrows))
        return OM_E_INVALID;
    const int zz = zigzag != 0;
    switch (width) {
    case 8: return rowsel_decode(in, in_len, n, zz, 8, 0, out, row_len, stop, rows, nrows);
    case 16: return rowsel_decode(in, in_len, n, zz, 16, 0, out, row_len, stop, rows, nrows);
    case 32: return rowsel_decode(in, in_len, n, zz, 32, 0, out, row_len, stop, rows, nrows);
    case 64: return rowsel_decode(in, in_len, n, zz, 64, 0, out, row_len, stop, rows, nrows);
    default: return OM_E_INVALID;
    }
}

int64_t om_fpx_decode_rowsel32(const uint8_t *in, size_t in_len, size_t n, uint32_t *out,
                               size_t row_len, size_t stop, const uint32_t *rows, size_t nrows)
{
    if (!rowsel_args_ok(in, in_len, n, out, row_len, stop, rows, nrows))
        return OM_E_INVALID;
    return rowsel_decode(in, in_len, n, 0, 32, 1, out, row_len, stop, rows, nrows);
}

int64_t om_fpx_decode32(const uint8_t *in, size_t in_len, size_t n, uint32_t *out)
{
    return fpx_decode(in, in_len, n, 0, 32, out, 0, n);
}

int64_t om_fpx_decode64(const uint8_t *in, size_t in_len, size_t n, int x86_lanes, uint64_t *out)
{
    return fpx_decode(in, in_len, n, x86_lanes != 0, 64, out, 0, n);
}
