/* PFor integer coders and the fpx float coder of the OM format (codec spec
 * sections 4-8). Pure functions on caller-owned buffers: no allocation, no
 * global state, safe to call from many threads at once.
 *
 * Every decoder is bounds-checked: it never reads past in[in_len) nor writes
 * past out[n), whatever the bytes say. Return value: bytes written (encoders)
 * or bytes consumed (decoders), >= 0; or a negative OM_E_* code. */
#ifndef OM_PFOR_H
#define OM_PFOR_H

#include <stddef.h>
#include <stdint.h>

#define OM_OK 0
#define OM_E_TRUNCATED (-1)     /* stream ends before the values do */
#define OM_E_CORRUPT (-2)       /* impossible field value (width, count, position) */
#define OM_E_OUTPUT (-3)        /* output capacity too small */
#define OM_E_INVALID (-4)       /* unsupported data type / compression / argument */
#define OM_E_SIZE_MISMATCH (-5) /* chunk did not consume exactly its byte range */
#define OM_E_NOMEM (-6)
#define OM_E_GEOMETRY (-7)      /* inconsistent dims / chunks / selection */
#define OM_E_MAPPING (-8)       /* a mapped file ended early (truncated while read: SIGBUS) */

/* Worst-case encoded size of n W-bit values (any coder below), codec spec 9.2. */
size_t om_pfor_bound(size_t n, int width_bytes);

/* PFor delta streams (codec spec 7). zigzag != 0: p4nz (signed data), else p4nd.
 * 16/32-bit: full 128-value blocks use the vertical layouts V16/V32.
 * 8/64-bit: horizontal layout everywhere. n >= 1. */
int64_t om_pfor_encode8(const uint8_t *in, size_t n, int zigzag, uint8_t *out, size_t cap);
int64_t om_pfor_encode16(const uint16_t *in, size_t n, int zigzag, uint8_t *out, size_t cap);
int64_t om_pfor_encode32(const uint32_t *in, size_t n, int zigzag, uint8_t *out, size_t cap);
int64_t om_pfor_encode64(const uint64_t *in, size_t n, int zigzag, uint8_t *out, size_t cap);

int64_t om_pfor_decode8(const uint8_t *in, size_t in_len, size_t n, int zigzag, uint8_t *out);
int64_t om_pfor_decode16(const uint8_t *in, size_t in_len, size_t n, int zigzag, uint16_t *out);
int64_t om_pfor_decode32(const uint8_t *in, size_t in_len, size_t n, int zigzag, uint32_t *out);
int64_t om_pfor_decode64(const uint8_t *in, size_t in_len, size_t n, int zigzag, uint64_t *out);

/* fpx (codec spec 8) on raw IEEE bit patterns (after xor2d).
 * x86_lanes != 0 selects the x86 reference writer's permuted V64 lane order
 * (quirk K3) for encode/decode of 64-bit full blocks with b <= 32; 0 is the
 * natural order the reference reader expects. */
int64_t om_fpx_encode32(const uint32_t *in, size_t n, uint8_t *out, size_t cap);
int64_t om_fpx_encode64(const uint64_t *in, size_t n, int x86_lanes, uint8_t *out, size_t cap);
int64_t om_fpx_decode32(const uint8_t *in, size_t in_len, size_t n, uint32_t *out);
int64_t om_fpx_decode64(const uint8_t *in, size_t in_len, size_t n, int x86_lanes, uint64_t *out);

#endif
