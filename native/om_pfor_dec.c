/* placeholder: replaced by the real implementation */
#include "om_chunks.h"
int64_t om_pfor_decode8(const uint8_t *in, size_t in_len, size_t n, int zigzag, uint8_t *out) { (void)in; (void)in_len; (void)n; (void)zigzag; (void)out; return OM_E_INVALID; }
int64_t om_pfor_decode16(const uint8_t *in, size_t in_len, size_t n, int zigzag, uint16_t *out) { (void)in; (void)in_len; (void)n; (void)zigzag; (void)out; return OM_E_INVALID; }
int64_t om_pfor_decode32(const uint8_t *in, size_t in_len, size_t n, int zigzag, uint32_t *out) { (void)in; (void)in_len; (void)n; (void)zigzag; (void)out; return OM_E_INVALID; }
int64_t om_pfor_decode64(const uint8_t *in, size_t in_len, size_t n, int zigzag, uint64_t *out) { (void)in; (void)in_len; (void)n; (void)zigzag; (void)out; return OM_E_INVALID; }
int64_t om_fpx_decode32(const uint8_t *in, size_t in_len, size_t n, uint32_t *out) { (void)in; (void)in_len; (void)n; (void)out; return OM_E_INVALID; }
int64_t om_fpx_decode64(const uint8_t *in, size_t in_len, size_t n, int x86_lanes, uint64_t *out) { (void)in; (void)in_len; (void)n; (void)x86_lanes; (void)out; return OM_E_INVALID; }
