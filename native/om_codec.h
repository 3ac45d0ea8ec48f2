/* One OM chunk between values and bytes (codec spec 2, 3, 11), and the
 * container's look-up table (container spec 6). */
#ifndef OM_CODEC_H
#define OM_CODEC_H

#include "om_pfor.h"

/* Array data types: the container's record ids. */
enum {
    OM_INT8 = 12, OM_UINT8 = 13, OM_INT16 = 14, OM_UINT16 = 15, OM_INT32 = 16,
    OM_UINT32 = 17, OM_INT64 = 18, OM_UINT64 = 19, OM_FLOAT = 20, OM_DOUBLE = 21
};
/* Compression ids. */
enum { OM_PFOR_INT16 = 0, OM_FPX_XOR = 1, OM_PFOR = 2, OM_PFOR_INT16_LOG = 3 };

/* Flags for encode/decode. */
#define OM_FLAG_X86_LANES 1 /* fpx float64: x86 reference V64 lane order (K3) */

/* 0 if (dtype, compression) is a valid pair, else OM_E_INVALID. */
int om_check_pair(int dtype, int compression);
/* Size in bytes of one element of dtype, 0 if unknown. */
size_t om_dtype_size(int dtype);
/* Safe output capacity for encoding n values. */
size_t om_chunk_bound(int dtype, int compression, size_t n);
/* Scratch bytes needed by om_encode_chunk / om_decode_chunk for n values. */
size_t om_chunk_scratch(int dtype, int compression, size_t n);

/* Encode n values (row-major over the chunk's clipped extent; row_len = clipped
 * length of the last dimension). Returns bytes written or OM_E_*. */
int64_t om_encode_chunk(int dtype, int compression, float scale_factor, float add_offset,
                        int flags, const void *values, size_t n, size_t row_len,
                        uint8_t *out, size_t cap, void *scratch, size_t scratch_len);
/* Decode one chunk of n values into out (n elements of dtype). Returns bytes
 * consumed or OM_E_*. */
int64_t om_decode_chunk(int dtype, int compression, float scale_factor, float add_offset,
                        int flags, const uint8_t *in, size_t in_len, size_t n, size_t row_len,
                        void *out, void *scratch, size_t scratch_len);

/* Look-up table: n_entries absolute offsets in groups of 64, each group a p4nd64
 * stream, all groups padded to a common stride. Returns total bytes written
 * (n_groups * stride) and stores the stride, or OM_E_*. */
int64_t om_lut_encode(const uint64_t *lut, size_t n_entries, uint8_t *out, size_t cap,
                      uint64_t *stride);
size_t om_lut_bound(size_t n_entries);
/* Decode n_entries entries from consecutive groups starting at a group boundary
 * (in = bytes of those groups, stride apart). Returns OM_OK or OM_E_*. */
int om_lut_decode(const uint8_t *in, size_t in_len, size_t n_entries, uint64_t stride,
                  uint64_t *out);

#endif
