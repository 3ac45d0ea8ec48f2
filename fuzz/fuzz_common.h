/* Shared helpers of the fuzz harnesses: a byte reader that never fails (it
 * yields zeros past the end, so every input maps to some parameters), the table
 * of (dtype, compression) pairs, and the checks every harness applies.
 *
 * Every harness is a libFuzzer target (LLVMFuzzerTestOneInput) that is also
 * linked with fuzz/driver.c when clang/libFuzzer is not available. A harness
 * reports a finding by crashing: the sanitizers do it for memory and UB bugs,
 * fuzz_fail() (abort) for broken invariants (wrong error code, results that
 * differ between SIMD levels, a decode that succeeds on fewer bytes...). */
#ifndef OM_FUZZ_COMMON_H
#define OM_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "om_chunks.h"
#include "om_dispatch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const uint8_t *p;
    size_t len;
    size_t pos;
} fz_reader;

static inline uint8_t fz_u8(fz_reader *r)
{
    return r->pos < r->len ? r->p[r->pos++] : (r->pos++, 0);
}

static inline uint16_t fz_u16(fz_reader *r)
{
    uint16_t lo = fz_u8(r);
    return (uint16_t)(lo | (uint16_t)fz_u8(r) << 8);
}

static inline uint32_t fz_u32(fz_reader *r)
{
    uint32_t lo = fz_u16(r);
    return lo | (uint32_t)fz_u16(r) << 16;
}

static inline float fz_f32(fz_reader *r)
{
    uint32_t u = fz_u32(r);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Bytes left after the header (empty if the header ran past the end). */
static inline const uint8_t *fz_rest(const fz_reader *r, size_t *len)
{
    *len = r->pos < r->len ? r->len - r->pos : 0;
    return r->p + (r->pos < r->len ? r->pos : r->len);
}

/* The 14 valid pairs, then two invalid ones (selector values 14 and 15) so the
 * rejection path is exercised too. */
static const int FZ_PAIRS[16][2] = {
    {OM_INT8, OM_PFOR},         {OM_UINT8, OM_PFOR},          {OM_INT16, OM_PFOR},
    {OM_UINT16, OM_PFOR},       {OM_INT32, OM_PFOR},          {OM_UINT32, OM_PFOR},
    {OM_INT64, OM_PFOR},        {OM_UINT64, OM_PFOR},         {OM_FLOAT, OM_PFOR},
    {OM_DOUBLE, OM_PFOR},       {OM_FLOAT, OM_PFOR_INT16},    {OM_FLOAT, OM_PFOR_INT16_LOG},
    {OM_FLOAT, OM_FPX_XOR},     {OM_DOUBLE, OM_FPX_XOR},      {OM_INT8, OM_FPX_XOR},
    {OM_DOUBLE, OM_PFOR_INT16},
};

#define FZ_FAIL(...)                                                                   \
    do {                                                                               \
        fprintf(stderr, "FUZZ INVARIANT VIOLATED at %s:%d: ", __FILE__, __LINE__);     \
        fprintf(stderr, __VA_ARGS__);                                                  \
        fputc('\n', stderr);                                                           \
        abort();                                                                       \
    } while (0)

/* A decoder result is either bytes consumed (<= in_len) or a known error code. */
static inline void fz_check_result(int64_t r, size_t in_len, const char *what)
{
    if (r >= 0) {
        if ((uint64_t)r > in_len)
            FZ_FAIL("%s consumed %lld bytes of %zu", what, (long long)r, in_len);
        return;
    }
    if (r < OM_E_GEOMETRY)
        FZ_FAIL("%s returned unknown code %lld", what, (long long)r);
}

/* An exact-size heap copy, so that AddressSanitizer sees any read past the end
 * (the harness input itself may live in a larger buffer). */
static inline uint8_t *fz_copy(const uint8_t *p, size_t len)
{
    uint8_t *c = (uint8_t *)malloc(len ? len : 1);
    if (c == NULL)
        abort();
    if (len)
        memcpy(c, p, len);
    return c;
}

static inline void *fz_alloc(size_t len, int fill)
{
    void *p = malloc(len ? len : 1);
    if (p == NULL)
        abort();
    memset(p, fill, len);
    return p;
}

/* Highest SIMD level the CPU offers (om_set_simd_level clamps). */
static inline int fz_max_level(void)
{
    const int old = om_simd_level();
    const int best = om_set_simd_level(-1);
    om_set_simd_level(old);
    return best;
}

#endif
