/* Fuzz target: om_lut_decode (the container's look-up table).
 *
 * Input layout (missing bytes read as zero):
 *   [0..1]  n_entries - 1 (1 .. 65536 entries, up to 1024 groups)
 *   [2..5]  stride (uint32)
 *   [6]     bit 0: add (byte [7] << 56) to the stride (overflow of g * stride)
 *   [7]     high byte of the stride (see [6])
 *   [8..]   the LUT bytes
 *
 * Checks: known result code, identical results on SIMD level 0 and one other
 * level picked by the input size, and the reference behaviour of the format:
 * decoding group by group with om_pfor_decode64 on
 * [g*stride, min((g+1)*stride, len)) gives the same entries. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reader rd = {data, size, 0};
    const size_t n = 1 + (size_t)fz_u16(&rd);
    uint64_t stride = fz_u32(&rd);
    const int fl = fz_u8(&rd);
    const uint64_t hi = fz_u8(&rd);
    if (fl & 1)
        stride += hi << 56;
    size_t in_len;
    const uint8_t *payload = fz_rest(&rd, &in_len);

    uint8_t *in = fz_copy(payload, in_len);
    uint64_t *ref = (uint64_t *)malloc(n * 8);
    uint64_t *out = (uint64_t *)malloc(n * 8);
    if (ref == NULL || out == NULL)
        abort();

    const int best = fz_max_level();
    const int level = best ? 1 + (int)(size % (size_t)best) : 0;
    om_set_simd_level(0);
    const int r0 = om_lut_decode(in, in_len, n, stride, ref);
    if (r0 > 0 || r0 < OM_E_GEOMETRY)
        FZ_FAIL("om_lut_decode returned %d", r0);
    if (r0 == OM_OK) {
        memset(ref, 0xA5, n * 8);
        if (om_lut_decode(in, in_len, n, stride, ref) != OM_OK)
            FZ_FAIL("same LUT decode gave two results");
        memset(out, 0x5A, n * 8);
    }
    om_set_simd_level(level);
    const int r1 = om_lut_decode(in, in_len, n, stride, out);
    if (r1 != r0)
        FZ_FAIL("SIMD level %d returned %d, level 0 %d", level, r1, r0);
    if (r0 == OM_OK && memcmp(out, ref, n * 8) != 0)
        FZ_FAIL("SIMD level %d entries differ from level 0", level);
    om_set_simd_level(best);

    /* Independent group-by-group decode (container spec 6.2). */
    int ok = stride > 0;
    for (size_t g = 0; ok && g * 64 < n; g++) {
        const unsigned __int128 start = (unsigned __int128)g * stride;
        if (start >= in_len) {
            ok = 0;
            break;
        }
        const size_t s = (size_t)start;
        const size_t avail = stride < in_len - s ? (size_t)stride : in_len - s;
        const size_t cnt = n - 64 * g < 64 ? n - 64 * g : 64;
        uint8_t *grp = fz_copy(in + s, avail);
        const int64_t r = om_pfor_decode64(grp, avail, cnt, 0, out + 64 * g);
        free(grp);
        if (r < 0)
            ok = 0;
    }
    if (ok != (r0 == OM_OK))
        FZ_FAIL("om_lut_decode returned %d, group-wise decode %s", r0, ok ? "succeeds" : "fails");
    if (ok && memcmp(out, ref, n * 8) != 0)
        FZ_FAIL("om_lut_decode entries differ from the group-wise decode");

    free(out);
    free(ref);
    free(in);
    return 0;
}
