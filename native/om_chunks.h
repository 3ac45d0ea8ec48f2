/* Many chunks at once: decode + scatter into an output block, gather + encode
 * from an input block. One native call per dask task. */
#ifndef OM_CHUNKS_H
#define OM_CHUNKS_H

#include "om_codec.h"

#define OM_MAX_DIMS 32

typedef struct {
    int dtype;
    int compression;
    float scale_factor;
    float add_offset;
    int flags;
    int ndim;
    const uint64_t *dims;   /* ndim */
    const uint64_t *chunks; /* ndim */
} om_array_t;

/* Decode chunks and scatter the selected elements into out.
 * out: C-contiguous, shape sel_len[0..ndim-1], element type = dtype.
 * sel[d]: sel_len[d] global indices along dimension d (any order, repeats allowed,
 *         each < dims[d]): out[i0, i1, ...] = array[sel[0][i0], sel[1][i1], ...].
 * Chunk k has linear index chunk_idx[k]; its bytes are
 *   data[chunk_off[k] .. chunk_off[k] + chunk_len[k]).
 * Only elements of the listed chunks are written. On error returns OM_E_* and
 * stores the failing k in *bad (if bad is not NULL). */
int om_decode_select(const om_array_t *a, const int64_t *const *sel, const uint64_t *sel_len,
                     void *out, size_t n, const uint64_t *chunk_idx, const uint8_t *data,
                     size_t data_len, const uint64_t *chunk_off, const uint64_t *chunk_len,
                     size_t *bad);

/* om_decode_select on data that is (part of) a memory-mapped file: a file
 * truncated under the mapping makes the access fault (SIGBUS); that is caught
 * and returns OM_E_MAPPING (nothing else of the process is affected; *bad is
 * (size_t)-1). POSIX with GCC/clang only; elsewhere OM_E_INVALID. */
int om_decode_select_mapped(const om_array_t *a, const int64_t *const *sel,
                            const uint64_t *sel_len, void *out, size_t n,
                            const uint64_t *chunk_idx, const uint8_t *data, size_t data_len,
                            const uint64_t *chunk_off, const uint64_t *chunk_len, size_t *bad);

/* A read-only shared mapping of the first size bytes of file fd (NULL if it
 * cannot be made, and always on platforms without om_decode_select_mapped),
 * and its release. Only om_decode_select_mapped may read it. */
void *om_map_file(int fd, uint64_t size);
void om_unmap_file(void *addr, uint64_t size);

/* Encode every chunk of a block. block: C-contiguous, shape block_shape, whose
 * element [0, ..., 0] is array element block_start; block_start is a multiple of
 * chunks[d], and block_start + block_shape ends on a chunk boundary or at dims[d].
 * Chunks are written back to back in block-local row-major chunk order;
 * chunk_len[k] gets the length of the k-th. Returns total bytes or OM_E_*. */
int64_t om_encode_block(const om_array_t *a, const void *block, const uint64_t *block_start,
                        const uint64_t *block_shape, uint8_t *out, size_t cap,
                        uint64_t *chunk_len, size_t max_chunks);
/* Output capacity sufficient for om_encode_block on this block. */
size_t om_encode_block_bound(const om_array_t *a, const uint64_t *block_shape);

/* Read the byte ranges [starts[k], stops[k]) of the open file descriptor fd
 * into buf + pos[k] (each inside buf[0, buf_len)) with pread, continuing
 * partial reads. Returns OM_OK, OM_E_INVALID for a range outside buf, or
 * -(1000 + k) when range k hit the end of the file (*err = 0) or failed
 * (*err = errno). POSIX only (OM_E_INVALID elsewhere). */
int64_t om_pread_ranges(int fd, size_t n, const uint64_t *starts, const uint64_t *stops,
                        const uint64_t *pos, uint8_t *buf, size_t buf_len, int *err);

#endif
