/* placeholder: replaced by the real implementation */
#include "om_chunks.h"
int64_t om_encode_chunk(int dtype, int compression, float scale_factor, float add_offset, int flags, const void *values, size_t n, size_t row_len, uint8_t *out, size_t cap, void *scratch, size_t scratch_len) { (void)dtype; (void)compression; (void)scale_factor; (void)add_offset; (void)flags; (void)values; (void)n; (void)row_len; (void)out; (void)cap; (void)scratch; (void)scratch_len; return OM_E_INVALID; }
int64_t om_lut_encode(const uint64_t *lut, size_t n_entries, uint8_t *out, size_t cap, uint64_t *stride) { (void)lut; (void)n_entries; (void)out; (void)cap; (void)stride; return OM_E_INVALID; }
int64_t om_encode_block(const om_array_t *a, const void *block, const uint64_t *block_start, const uint64_t *block_shape, uint8_t *out, size_t cap, uint64_t *chunk_len, size_t max_chunks) { (void)a; (void)block; (void)block_start; (void)block_shape; (void)out; (void)cap; (void)chunk_len; (void)max_chunks; return OM_E_INVALID; }
size_t om_encode_block_bound(const om_array_t *a, const uint64_t *block_shape) { (void)a; (void)block_shape; return 0; }
