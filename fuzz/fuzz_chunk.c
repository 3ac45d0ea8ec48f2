/* Fuzz target: om_decode_chunk for every (dtype, compression) pair.
 *
 * Input layout (all little-endian; missing bytes read as zero):
 *   [0]      pair selector (low 4 bits, FZ_PAIRS; 14/15 are invalid pairs)
 *   [1]      flags: bit 0 = OM_FLAG_X86_LANES, bit 1 = row_len that does not
 *            divide n (must be rejected), bit 2 = undersized scratch
 *   [2..3]   row length L - 1      (L = 1 + v % 256)
 *   [4..5]   number of rows R - 1  (R = 1 + v % 256), n = R * L <= 65536
 *   [6..9]   scale_factor (float32 bits)
 *   [10..13] add_offset (float32 bits)
 *   [14..]   the chunk's compressed bytes
 *
 * Checks, besides the sanitizers: result is a known error or <= the input
 * length; SIMD level 0 and one other level (picked by the input size) give the
 * same result and the same output bytes (on success the outputs are pre-filled
 * with different patterns, so an element left unwritten is caught too); a successful decode fails when the last
 * consumed byte is cut off; lossless pairs re-encode to bytes that decode to the
 * same values. */
#include "fuzz_common.h"

static int lossless(int dtype, int compression)
{
    if (compression == OM_FPX_XOR)
        return 1;
    return compression == OM_PFOR && dtype != OM_FLOAT && dtype != OM_DOUBLE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reader rd = {data, size, 0};
    const int sel = fz_u8(&rd) & 15;
    const int fl = fz_u8(&rd);
    const size_t L = 1 + fz_u16(&rd) % 256;
    const size_t R = 1 + fz_u16(&rd) % 256;
    const float sf = fz_f32(&rd);
    const float ao = fz_f32(&rd);
    size_t in_len;
    const uint8_t *payload = fz_rest(&rd, &in_len);

    const int dtype = FZ_PAIRS[sel][0], comp = FZ_PAIRS[sel][1];
    const int flags = fl & OM_FLAG_X86_LANES;
    const size_t n = R * L;
    const size_t es = om_dtype_size(dtype);
    uint8_t *in = fz_copy(payload, in_len);

    if (fl & 2) {
        /* A row length that does not divide n is a geometry error, never a decode. */
        const size_t bad_L = L + 1 + (n % (L + 1) == 0);
        if (n % bad_L != 0) {
            uint8_t *out = (uint8_t *)fz_alloc(n * es, 0);
            const size_t scr_len = om_chunk_scratch(dtype, comp, n);
            uint8_t *scr = (uint8_t *)fz_alloc(scr_len, 0);
            const int64_t r = om_decode_chunk(dtype, comp, sf, ao, flags, in, in_len, n, bad_L,
                                              out, scr, scr_len);
            if (r != (om_check_pair(dtype, comp) ? OM_E_INVALID : OM_E_GEOMETRY))
                FZ_FAIL("row_len %zu for n %zu: got %lld", bad_L, n, (long long)r);
            free(out);
            free(scr);
        }
    }

    const size_t scr_full = om_chunk_scratch(dtype, comp, n);
    const size_t scr_len = (fl & 4) ? scr_full / 3 : scr_full;
    uint8_t *scr = (uint8_t *)fz_alloc(scr_len, 0);
    uint8_t *ref = (uint8_t *)malloc(n * es);
    uint8_t *out = (uint8_t *)malloc(n * es);
    if (ref == NULL || out == NULL)
        abort();

    /* Level 0 against one other SIMD level (chosen by the input, so a campaign
     * covers all). Most inputs fail early: compare only the result code for
     * those, and pre-fill the outputs (to catch unwritten elements) only when
     * the decode succeeds. */
    const int best = fz_max_level();
    const int level = best ? 1 + (int)(size % (size_t)best) : 0;
    om_set_simd_level(0);
    const int64_t r0 = om_decode_chunk(dtype, comp, sf, ao, flags, in, in_len, n, L, ref, scr, scr_len);
    fz_check_result(r0, in_len, "om_decode_chunk");
    if (om_check_pair(dtype, comp) != OM_OK && r0 != OM_E_INVALID)
        FZ_FAIL("invalid pair (%d, %d) gave %lld", dtype, comp, (long long)r0);
    if (r0 >= 0) {
        memset(ref, 0xA5, n * es);
        const int64_t again = om_decode_chunk(dtype, comp, sf, ao, flags, in, in_len, n, L, ref,
                                              scr, scr_len);
        if (again != r0)
            FZ_FAIL("same decode returned %lld, then %lld", (long long)r0, (long long)again);
        memset(out, 0x5A, n * es);
    }
    om_set_simd_level(level);
    const int64_t r1 = om_decode_chunk(dtype, comp, sf, ao, flags, in, in_len, n, L, out, scr,
                                       scr_len);
    if (r1 != r0)
        FZ_FAIL("SIMD level %d returned %lld, level 0 %lld", level, (long long)r1, (long long)r0);
    if (r0 >= 0 && memcmp(out, ref, n * es) != 0)
        FZ_FAIL("SIMD level %d output differs from level 0 (pair %d)", level, sel);
    om_set_simd_level(best);

    if (r0 > 0) {
        /* The decoder used byte r0-1: without it the same call must fail. */
        uint8_t *cut = fz_copy(in, (size_t)r0 - 1);
        const int64_t r = om_decode_chunk(dtype, comp, sf, ao, flags, cut, (size_t)r0 - 1, n, L,
                                          out, scr, scr_len);
        if (r >= 0)
            FZ_FAIL("decode succeeded (%lld) on %lld - 1 bytes", (long long)r, (long long)r0);
        free(cut);
    }

    if (r0 >= 0 && lossless(dtype, comp)) {
        /* The decoded values survive an encode/decode round trip bit for bit. */
        const size_t cap = om_chunk_bound(dtype, comp, n);
        uint8_t *enc = (uint8_t *)fz_alloc(cap, 0);
        uint8_t *escr = (uint8_t *)fz_alloc(scr_full, 0);
        const int64_t e = om_encode_chunk(dtype, comp, sf, ao, flags, ref, n, L, enc, cap, escr,
                                          scr_full);
        if (e <= 0)
            FZ_FAIL("re-encoding decoded values failed: %lld", (long long)e);
        uint8_t *exact = fz_copy(enc, (size_t)e);
        memset(out, 0x5A, n * es);
        const int64_t d = om_decode_chunk(dtype, comp, sf, ao, flags, exact, (size_t)e, n, L, out,
                                          escr, scr_full);
        if (d != e)
            FZ_FAIL("re-encoded chunk of %lld bytes decodes to %lld", (long long)e, (long long)d);
        if (memcmp(out, ref, n * es) != 0)
            FZ_FAIL("round trip changed values (pair %d, n %zu, L %zu)", sel, n, L);
        free(exact);
        free(enc);
        free(escr);
    }

    free(out);
    free(ref);
    free(scr);
    free(in);
    return 0;
}
