/* Internal interface between the decoders (om_pfor_dec.c) and the chunk
 * pipeline (om_decode.c); not part of the public API. */
#ifndef OM_DEC_INTERNAL_H
#define OM_DEC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* Called after each block with the number of leading elements of out that
 * are final (decoded and, if row_len != 0, delta2d-filtered). */
typedef void (*om_dec_sink)(void *ctx, size_t done);

/* PFor stream of width 8/16/32/64 bits fused with the inverse delta2d filter
 * over rows of row_len elements (0: no filter). Returns bytes consumed or OM_E_*. */
int64_t om_pfor_decode_rows(const uint8_t *in, size_t in_len, size_t n, int zigzag, int width,
                            void *out, size_t row_len, om_dec_sink sink, void *ctx);

/* om_pfor_decode_rows without a sink, stopping after the block that holds
 * value stop - 1 (stop <= n; blocks are still those of the n-value stream).
 * Returns the bytes consumed by the decoded blocks (not the whole stream). */
int64_t om_pfor_decode_prefix(const uint8_t *in, size_t in_len, size_t n, int zigzag, int width,
                              void *out, size_t row_len, size_t stop);

/* fpx float32 stream fused with the inverse xor2d filter over rows of row_len
 * elements (0: no filter). Returns bytes consumed or OM_E_*. */
int64_t om_fpx_decode_rows32(const uint8_t *in, size_t in_len, size_t n, uint32_t *out,
                             size_t row_len);

/* om_fpx_decode_rows32 stopping after the group that holds value stop - 1. */
int64_t om_fpx_decode_prefix32(const uint8_t *in, size_t in_len, size_t n, uint32_t *out,
                               size_t row_len, size_t stop);

/* Sparse columns (a few columns of every row, e.g. one time step through
 * time-major chunks): decode rows 0 .. stop / L - 1 (stop <= n, a multiple of
 * row_len) but store only out[r * row_len + cols[k]] for the ncols sorted,
 * unique columns cols[k] < row_len (ncols <= OM_SPARSE_MAX_COLS). The delta2d
 * resp. xor2d filter applies when n > row_len. Returns the bytes consumed by
 * the decoded blocks or OM_E_*. */
#define OM_SPARSE_MAX_COLS 64
int64_t om_pfor_decode_sparse(const uint8_t *in, size_t in_len, size_t n, int zigzag, int width,
                              void *out, size_t row_len, size_t stop, const uint32_t *cols,
                              size_t ncols);
int64_t om_fpx_decode_sparse32(const uint8_t *in, size_t in_len, size_t n, uint32_t *out,
                               size_t row_len, size_t stop, const uint32_t *cols, size_t ncols);

/* Few selected rows (sorted, unique rows[k] < stop / row_len; n > row_len,
 * stop <= n a multiple of row_len): decode the stream up to the last of them
 * but store only those rows, out[r * row_len .. (r + 1) * row_len), with the
 * delta2d resp. xor2d filter applied (values identical to a full decode).
 * Returns the bytes consumed by the decoded blocks or OM_E_*. */
int64_t om_pfor_decode_rowsel(const uint8_t *in, size_t in_len, size_t n, int zigzag, int width,
                              void *out, size_t row_len, size_t stop, const uint32_t *rows,
                              size_t nrows);
int64_t om_fpx_decode_rowsel32(const uint8_t *in, size_t in_len, size_t n, uint32_t *out,
                               size_t row_len, size_t stop, const uint32_t *rows, size_t nrows);

#endif
