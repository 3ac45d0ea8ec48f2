/* placeholder: replaced by the real implementation */
#include "om_chunks.h"
int64_t om_pfor_encode8(const uint8_t *in, size_t n, int zigzag, uint8_t *out, size_t cap) { (void)in; (void)n; (void)zigzag; (void)out; (void)cap; return OM_E_INVALID; }
int64_t om_pfor_encode16(const uint16_t *in, size_t n, int zigzag, uint8_t *out, size_t cap) { (void)in; (void)n; (void)zigzag; (void)out; (void)cap; return OM_E_INVALID; }
int64_t om_pfor_encode32(const uint32_t *in, size_t n, int zigzag, uint8_t *out, size_t cap) { (void)in; (void)n; (void)zigzag; (void)out; (void)cap; return OM_E_INVALID; }
int64_t om_pfor_encode64(const uint64_t *in, size_t n, int zigzag, uint8_t *out, size_t cap) { (void)in; (void)n; (void)zigzag; (void)out; (void)cap; return OM_E_INVALID; }
int64_t om_fpx_encode32(const uint32_t *in, size_t n, uint8_t *out, size_t cap) { (void)in; (void)n; (void)out; (void)cap; return OM_E_INVALID; }
int64_t om_fpx_encode64(const uint64_t *in, size_t n, int x86_lanes, uint8_t *out, size_t cap) { (void)in; (void)n; (void)x86_lanes; (void)out; (void)cap; return OM_E_INVALID; }
