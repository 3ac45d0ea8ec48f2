/* Fuzz target: the stream decoders om_pfor_decode8/16/32/64 and
 * om_fpx_decode32/64 on their own (no filter, no value step).
 *
 * Input layout (missing bytes read as zero):
 *   [0]     coder: v % 6 -> pfor8, pfor16, pfor32, pfor64, fpx32, fpx64;
 *           bit 3 = zigzag (pfor), bit 4 = x86 lane order (fpx64)
 *   [1..2]  n - 1 (n = 1 + v, up to 65536 values)
 *   [3..]   the stream
 *
 * Checks: result in range, identical results on SIMD level 0 and one other
 * level picked by the input size (outputs pre-filled with different patterns
 * on success), failure when the last consumed byte is
 * cut off, and a bit-exact encode/decode round trip of the decoded values. */
#include "fuzz_common.h"

typedef int64_t (*dec_fn)(const uint8_t *in, size_t in_len, size_t n, int opt, void *out);
typedef int64_t (*enc_fn)(const void *in, size_t n, int opt, uint8_t *out, size_t cap);

static int64_t d8(const uint8_t *i, size_t l, size_t n, int z, void *o) { return om_pfor_decode8(i, l, n, z, (uint8_t *)o); }
static int64_t d16(const uint8_t *i, size_t l, size_t n, int z, void *o) { return om_pfor_decode16(i, l, n, z, (uint16_t *)o); }
static int64_t d32(const uint8_t *i, size_t l, size_t n, int z, void *o) { return om_pfor_decode32(i, l, n, z, (uint32_t *)o); }
static int64_t d64(const uint8_t *i, size_t l, size_t n, int z, void *o) { return om_pfor_decode64(i, l, n, z, (uint64_t *)o); }
static int64_t f32(const uint8_t *i, size_t l, size_t n, int x, void *o) { (void)x; return om_fpx_decode32(i, l, n, (uint32_t *)o); }
static int64_t f64(const uint8_t *i, size_t l, size_t n, int x, void *o) { return om_fpx_decode64(i, l, n, x, (uint64_t *)o); }

static int64_t e8(const void *i, size_t n, int z, uint8_t *o, size_t c) { return om_pfor_encode8((const uint8_t *)i, n, z, o, c); }
static int64_t e16(const void *i, size_t n, int z, uint8_t *o, size_t c) { return om_pfor_encode16((const uint16_t *)i, n, z, o, c); }
static int64_t e32(const void *i, size_t n, int z, uint8_t *o, size_t c) { return om_pfor_encode32((const uint32_t *)i, n, z, o, c); }
static int64_t e64(const void *i, size_t n, int z, uint8_t *o, size_t c) { return om_pfor_encode64((const uint64_t *)i, n, z, o, c); }
static int64_t g32(const void *i, size_t n, int x, uint8_t *o, size_t c) { (void)x; return om_fpx_encode32((const uint32_t *)i, n, o, c); }
static int64_t g64(const void *i, size_t n, int x, uint8_t *o, size_t c) { return om_fpx_encode64((const uint64_t *)i, n, x, o, c); }

static const struct {
    dec_fn dec;
    enc_fn enc;
    size_t width;
    const char *name;
} CODERS[6] = {
    {d8, e8, 1, "pfor8"},   {d16, e16, 2, "pfor16"}, {d32, e32, 4, "pfor32"},
    {d64, e64, 8, "pfor64"}, {f32, g32, 4, "fpx32"},  {f64, g64, 8, "fpx64"},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reader rd = {data, size, 0};
    const int sel = fz_u8(&rd);
    const size_t n = 1 + (size_t)fz_u16(&rd);
    size_t in_len;
    const uint8_t *payload = fz_rest(&rd, &in_len);

    const int c = sel % 6;
    const int opt = c < 4 ? (sel >> 3) & 1 : (sel >> 4) & 1;
    const size_t w = CODERS[c].width;
    uint8_t *in = fz_copy(payload, in_len);
    uint8_t *ref = (uint8_t *)malloc(n * w);
    uint8_t *out = (uint8_t *)malloc(n * w);
    if (ref == NULL || out == NULL)
        abort();

    /* Level 0 against one other level picked by the input; outputs pre-filled
     * (to catch unwritten elements) only when the decode succeeds. */
    const int best = fz_max_level();
    const int level = best ? 1 + (int)(size % (size_t)best) : 0;
    om_set_simd_level(0);
    const int64_t r0 = CODERS[c].dec(in, in_len, n, opt, ref);
    fz_check_result(r0, in_len, CODERS[c].name);
    if (r0 >= 0) {
        memset(ref, 0xA5, n * w);
        if (CODERS[c].dec(in, in_len, n, opt, ref) != r0)
            FZ_FAIL("%s: same decode gave two results", CODERS[c].name);
        memset(out, 0x5A, n * w);
    }
    om_set_simd_level(level);
    const int64_t r1 = CODERS[c].dec(in, in_len, n, opt, out);
    if (r1 != r0)
        FZ_FAIL("%s: SIMD level %d returned %lld, level 0 %lld", CODERS[c].name, level,
                (long long)r1, (long long)r0);
    if (r0 >= 0 && memcmp(out, ref, n * w) != 0)
        FZ_FAIL("%s: SIMD level %d output differs from level 0", CODERS[c].name, level);
    om_set_simd_level(best);

    if (r0 > 0) {
        uint8_t *cut = fz_copy(in, (size_t)r0 - 1);
        const int64_t r = CODERS[c].dec(cut, (size_t)r0 - 1, n, opt, out);
        if (r >= 0)
            FZ_FAIL("%s succeeded (%lld) on %lld - 1 bytes", CODERS[c].name, (long long)r,
                    (long long)r0);
        free(cut);
    }

    if (r0 >= 0) {
        const size_t cap = om_pfor_bound(n, (int)w);
        uint8_t *enc = (uint8_t *)fz_alloc(cap, 0);
        const int64_t e = CODERS[c].enc(ref, n, opt, enc, cap);
        if (e <= 0)
            FZ_FAIL("%s: re-encoding failed: %lld", CODERS[c].name, (long long)e);
        uint8_t *exact = fz_copy(enc, (size_t)e);
        memset(out, 0x5A, n * w);
        const int64_t d = CODERS[c].dec(exact, (size_t)e, n, opt, out);
        if (d != e || memcmp(out, ref, n * w) != 0)
            FZ_FAIL("%s: round trip of %zu values failed (%lld vs %lld bytes)", CODERS[c].name,
                    n, (long long)d, (long long)e);
        free(exact);
        free(enc);
    }

    free(out);
    free(ref);
    free(in);
    return 0;
}
