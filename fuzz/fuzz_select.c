/* Fuzz target: om_decode_select with random geometry, selection and chunk list.
 *
 * Input layout (missing bytes read as zero):
 *   [0]      pair selector (FZ_PAIRS)
 *   [1]      flags: bit 0 = OM_FLAG_X86_LANES; bit 1 = raw geometry (dims and
 *            chunks unclamped, may be 0 / chunk > dim / shifted left by bits
 *            3..7 to overflow 64-bit products); bit 2 = raw chunk list
 *            (indices, offsets, lengths unclamped)
 *   [2..5]   scale_factor, [6..9] add_offset (float32 bits)
 *   [10]     ndim = 1 + v % 4 (raw geometry: 0xFF -> 0, 0xFE -> OM_MAX_DIMS + 1)
 *   per dim  dim - 1 (u16), chunk (u16; clamped: 1 + v % dim)
 *   per dim  selection: mode byte (v & 3): 0 all indices (first 1024); 1 slice
 *            (start u16, count u16, step int8); 2 list (len u8, len x u16 % dim);
 *            3 raw list (len u8, len x int16, may be out of range)
 *   u16      number of listed chunks (v % 4096), then per chunk idx u32,
 *            offset u32, length u32 (clamped to the array / data unless raw)
 *   rest     the data buffer the offsets point into
 *
 * Oracle (clamped geometry, bounded sizes): every listed chunk that the
 * selection touches is decoded alone with om_decode_chunk at SIMD level 0 and
 * gathered element by element; om_decode_select must succeed exactly when all
 * of them decode with exactly their byte length (and the listed ranges and
 * indices are valid), and then produce the same bytes, leaving elements of
 * unlisted chunks untouched. */
#include "fuzz_common.h"

#define SEL_CAP 1024
#define OUT_CAP (1u << 15) /* output elements */
#define ORACLE_CAP (1u << 18) /* decoded elements kept by the oracle */
#define ORACLE_CHUNKS (1u << 12)

typedef struct {
    int ok;
    int dtype, comp, flags, ndim, raw_geom, raw_list;
    float sf, ao;
    uint64_t dims[OM_MAX_DIMS + 1], chunks[OM_MAX_DIMS + 1];
    int64_t *sel[OM_MAX_DIMS + 1];
    uint64_t sel_len[OM_MAX_DIMS + 1];
    size_t nk;
    uint64_t *idx, *off, *len;
    const uint8_t *data;
    size_t data_len;
} fz_case;

static void parse_selection(fz_reader *rd, fz_case *c, int d)
{
    const uint64_t dim = c->dims[d];
    const int mode = fz_u8(rd) & 3;
    int64_t *s = (int64_t *)malloc(SEL_CAP * sizeof(int64_t));
    if (s == NULL)
        abort();
    size_t k = 0;
    if (mode == 0) {
        for (; k < SEL_CAP && k < dim; k++)
            s[k] = (int64_t)k;
    } else if (mode == 1) {
        const uint64_t start = dim ? fz_u16(rd) % dim : 0;
        const size_t count = 1 + fz_u16(rd) % SEL_CAP;
        int step = (int8_t)fz_u8(rd);
        if (step == 0)
            step = 1;
        for (int64_t v = (int64_t)start; k < count && v >= 0 && (uint64_t)v < dim; v += step)
            s[k++] = v;
    } else {
        const size_t l = fz_u8(rd);
        for (; k < l; k++) {
            const uint16_t v = fz_u16(rd);
            s[k] = mode == 2 ? (dim ? (int64_t)(v % dim) : 0) : (int64_t)(int16_t)v;
        }
    }
    c->sel[d] = s;
    c->sel_len[d] = k;
}

static void parse(const uint8_t *data, size_t size, fz_case *c)
{
    fz_reader rd = {data, size, 0};
    memset(c, 0, sizeof(*c));
    const int sel = fz_u8(&rd) & 15;
    const int fl = fz_u8(&rd);
    c->dtype = FZ_PAIRS[sel][0];
    c->comp = FZ_PAIRS[sel][1];
    c->flags = fl & OM_FLAG_X86_LANES;
    c->raw_geom = (fl >> 1) & 1;
    c->raw_list = (fl >> 2) & 1;
    const int shift = fl >> 3;
    c->sf = fz_f32(&rd);
    c->ao = fz_f32(&rd);
    const int nd = fz_u8(&rd);
    c->ndim = 1 + nd % 4;
    if (c->raw_geom && nd == 0xFF)
        c->ndim = 0;
    if (c->raw_geom && nd == 0xFE)
        c->ndim = OM_MAX_DIMS + 1;
    const int parsed = c->ndim <= 4 ? c->ndim : 1;
    for (int d = 0; d < parsed; d++) {
        const uint64_t dv = fz_u16(&rd), cv = fz_u16(&rd);
        if (c->raw_geom) {
            c->dims[d] = dv << shift;
            c->chunks[d] = cv;
        } else {
            c->dims[d] = dv + 1;
            c->chunks[d] = 1 + cv % c->dims[d];
        }
    }
    for (int d = parsed; d <= OM_MAX_DIMS; d++)
        c->dims[d] = c->chunks[d] = 1;
    for (int d = 0; d < parsed; d++)
        parse_selection(&rd, c, d);
    for (int d = parsed; d <= OM_MAX_DIMS; d++) {
        c->sel[d] = (int64_t *)malloc(sizeof(int64_t));
        if (c->sel[d] == NULL)
            abort();
        c->sel[d][0] = 0;
        c->sel_len[d] = 1;
    }
    /* Keep the output small: halve the longest selection until it fits. */
    for (;;) {
        uint64_t prod = 1;
        int longest = 0;
        for (int d = 0; d < parsed; d++) {
            prod *= c->sel_len[d];
            if (c->sel_len[d] > c->sel_len[longest])
                longest = d;
        }
        if (prod <= OUT_CAP)
            break;
        c->sel_len[longest] /= 2;
    }

    uint64_t n_chunks = 1;
    int geom_ok = 1;
    for (int d = 0; d < parsed; d++) {
        if (c->dims[d] == 0 || c->chunks[d] == 0 || c->chunks[d] > c->dims[d]) {
            geom_ok = 0;
            break;
        }
        const uint64_t nc = (c->dims[d] + c->chunks[d] - 1) / c->chunks[d];
        if (__builtin_mul_overflow(n_chunks, nc, &n_chunks)) {
            geom_ok = 0;
            break;
        }
    }
    c->nk = fz_u16(&rd) % 4096;
    c->idx = (uint64_t *)fz_alloc(c->nk * 8, 0);
    c->off = (uint64_t *)fz_alloc(c->nk * 8, 0);
    c->len = (uint64_t *)fz_alloc(c->nk * 8, 0);
    uint32_t *raw = (uint32_t *)fz_alloc(c->nk * 12, 0);
    for (size_t k = 0; k < c->nk * 3; k++)
        raw[k] = fz_u32(&rd);
    c->data = fz_rest(&rd, &c->data_len);
    for (size_t k = 0; k < c->nk; k++) {
        uint64_t i = raw[3 * k], o = raw[3 * k + 1], l = raw[3 * k + 2];
        if (!c->raw_list) {
            i = geom_ok ? i % n_chunks : i;
            o %= c->data_len + 1;
            l %= c->data_len - o + 1;
        }
        c->idx[k] = i;
        c->off[k] = o;
        c->len[k] = l;
    }
    free(raw);
    c->ok = geom_ok;
}

static void release(fz_case *c)
{
    for (int d = 0; d <= OM_MAX_DIMS; d++)
        free(c->sel[d]);
    free(c->idx);
    free(c->off);
    free(c->len);
}

/* Chunk geometry: start and clipped length along every dimension. */
static uint64_t chunk_box(const fz_case *c, uint64_t idx, uint64_t *start, uint64_t *clen)
{
    uint64_t count = 1;
    for (int d = c->ndim - 1; d >= 0; d--) {
        const uint64_t nc = (c->dims[d] + c->chunks[d] - 1) / c->chunks[d];
        const uint64_t ci = idx % nc;
        idx /= nc;
        start[d] = ci * c->chunks[d];
        clen[d] = c->dims[d] - start[d] < c->chunks[d] ? c->dims[d] - start[d] : c->chunks[d];
        count *= clen[d];
    }
    return count;
}

static void oracle(const fz_case *c, const uint8_t *data, int rc, const uint8_t *out,
                   size_t n_out)
{
    const int D = c->ndim;
    const size_t es = om_dtype_size(c->dtype);
    uint64_t n_chunks = 1;
    for (int d = 0; d < D; d++)
        n_chunks *= (c->dims[d] + c->chunks[d] - 1) / c->chunks[d];
    if (n_chunks > ORACLE_CHUNKS)
        return;
    if (c->nk == 0 || n_out == 0) {
        if (rc != OM_OK)
            FZ_FAIL("empty request returned %d", rc);
        return;
    }

    int expect_ok = 1, tolerated = 0;
    for (int d = 0; d < D; d++)
        for (uint64_t t = 0; t < c->sel_len[d]; t++)
            if (c->sel[d][t] < 0 || (uint64_t)c->sel[d][t] >= c->dims[d])
                expect_ok = 0;
    size_t kept = 0;
    int64_t *last = (int64_t *)fz_alloc(n_chunks * sizeof(int64_t), 0xFF); /* -1 */
    uint8_t **dec = (uint8_t **)calloc(c->nk ? c->nk : 1, sizeof(uint8_t *));
    if (dec == NULL)
        abort();
    /* hit[d][i]: the selection touches the i-th chunk row along dimension d. */
    uint8_t *hit[OM_MAX_DIMS] = {0};
    for (int d = 0; d < D; d++) {
        hit[d] = (uint8_t *)fz_alloc((c->dims[d] + c->chunks[d] - 1) / c->chunks[d], 0);
        for (uint64_t t = 0; t < c->sel_len[d] && expect_ok; t++)
            hit[d][(uint64_t)c->sel[d][t] / c->chunks[d]] = 1;
    }
    uint64_t start[OM_MAX_DIMS], clen[OM_MAX_DIMS];
    for (size_t k = 0; k < c->nk && expect_ok; k++) {
        if (c->idx[k] >= n_chunks || c->off[k] > c->data_len ||
            c->len[k] > c->data_len - c->off[k]) {
            expect_ok = 0;
            break;
        }
        const uint64_t count = chunk_box(c, c->idx[k], start, clen);
        if (count / 128 > c->len[k]) { /* documented pre-check of om_decode_select */
            expect_ok = 0;
            break;
        }
        int touched = 1;
        for (int d = 0; d < D; d++)
            touched &= hit[d][start[d] / c->chunks[d]];
        if (!touched)
            continue;
        kept += count;
        if (kept > ORACLE_CAP)
            goto out; /* too big to check */
        uint8_t *vals = (uint8_t *)fz_alloc(count * es, 0);
        const size_t scr_len = om_chunk_scratch(c->dtype, c->comp, count);
        uint8_t *scr = (uint8_t *)fz_alloc(scr_len, 0);
        uint8_t *in = fz_copy(data + c->off[k], c->len[k]);
        const int64_t r = om_decode_chunk(c->dtype, c->comp, c->sf, c->ao, c->flags, in,
                                          c->len[k], count, clen[D - 1], vals, scr, scr_len);
        free(in);
        free(scr);
        if (r < 0 || (uint64_t)r != c->len[k]) {
            free(vals);
            /* om_decode_select stops decoding a chunk after its last selected row:
             * damage after that row may go unnoticed (the selected values then come
             * from the intact prefix). Only chunks needed to their last row must fail. */
            int to_last_row = 1;
            for (int d = 0; d + 1 < D; d++) {
                int has_last = 0;
                for (uint64_t t = 0; t < c->sel_len[d] && !has_last; t++)
                    has_last = (uint64_t)c->sel[d][t] == start[d] + clen[d] - 1;
                to_last_row &= has_last;
            }
            if (to_last_row) {
                expect_ok = 0;
                break;
            }
            tolerated = 1;
            if (last[c->idx[k]] >= 0) {
                free(dec[last[c->idx[k]]]);
                dec[last[c->idx[k]]] = NULL;
            }
            last[c->idx[k]] = -2; /* values unknown: not compared */
            continue;
        }
        dec[k] = vals;
        if (last[c->idx[k]] >= 0) {
            free(dec[last[c->idx[k]]]);
            dec[last[c->idx[k]]] = NULL;
        }
        last[c->idx[k]] = (int64_t)k;
    }
    if (expect_ok && tolerated && rc != OM_OK)
        goto out; /* the damage reached a selected row: an error is right too */
    if (expect_ok != (rc == OM_OK))
        FZ_FAIL("om_decode_select returned %d, the per-chunk oracle expects %s", rc,
                expect_ok ? "success" : "an error");
    if (expect_ok) {
        uint8_t *exp = (uint8_t *)fz_alloc(n_out * es, 0xA5);
        uint64_t t[OM_MAX_DIMS] = {0};
        for (size_t o = 0; o < n_out; o++) {
            uint64_t ci = 0, local = 0;
            for (int d = 0; d < D; d++) {
                const uint64_t g = (uint64_t)c->sel[d][t[d]];
                ci = ci * ((c->dims[d] + c->chunks[d] - 1) / c->chunks[d]) + g / c->chunks[d];
            }
            if (last[ci] >= 0) {
                chunk_box(c, ci, start, clen);
                for (int d = 0; d < D; d++)
                    local = local * clen[d] + ((uint64_t)c->sel[d][t[d]] - start[d]);
                memcpy(exp + o * es, dec[last[ci]] + local * es, es);
            } else if (last[ci] == -2) {
                memcpy(exp + o * es, out + o * es, es);
            }
            for (int d = D - 1; d >= 0; d--) {
                if (++t[d] < c->sel_len[d])
                    break;
                t[d] = 0;
            }
        }
        if (memcmp(exp, out, n_out * es) != 0)
            FZ_FAIL("om_decode_select output differs from the per-chunk oracle");
        free(exp);
    }
out:
    for (int d = 0; d < D; d++)
        free(hit[d]);
    for (size_t k = 0; k < c->nk; k++)
        free(dec[k]);
    free(dec);
    free(last);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_case c;
    parse(data, size, &c);
    uint8_t *buf = fz_copy(c.data, c.data_len);

    const int D = c.ndim;
    const int parsed = D >= 1 && D <= 4 ? D : 1;
    size_t n_out = 1;
    for (int d = 0; d < parsed; d++)
        n_out *= c.sel_len[d];
    const size_t es = om_dtype_size(c.dtype);
    uint8_t *out = (uint8_t *)fz_alloc(n_out * es, 0xA5);
    om_array_t a = {c.dtype, c.comp, c.sf, c.ao, c.flags, D, c.dims, c.chunks};
    size_t bad = 0;
    const int rc = om_decode_select(&a, (const int64_t *const *)c.sel, c.sel_len, out, c.nk,
                                    c.idx, buf, c.data_len, c.off, c.len, &bad);
    if (rc > 0 || rc < OM_E_GEOMETRY)
        FZ_FAIL("om_decode_select returned %d", rc);
    if (rc < 0 && bad != (size_t)-1 && bad >= c.nk)
        FZ_FAIL("om_decode_select blamed chunk %zu of %zu", bad, c.nk);
    if (om_check_pair(c.dtype, c.comp) != OM_OK && D >= 1 && D <= OM_MAX_DIMS &&
        rc != OM_E_INVALID)
        FZ_FAIL("invalid pair accepted: %d", rc);
    if (c.ok && !c.raw_geom && om_check_pair(c.dtype, c.comp) == OM_OK) {
        const int best = om_simd_level();
        om_set_simd_level(0);
        oracle(&c, buf, rc, out, n_out);
        om_set_simd_level(best);
    }
    free(out);
    free(buf);
    release(&c);
    return 0;
}
