/* Helpers shared by the native sources; not part of the public API. */
#ifndef OM_INTERNAL_H
#define OM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define OM_INLINE static inline __attribute__((always_inline))
#define OM_LIKELY(x) __builtin_expect(!!(x), 1)
#define OM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define OM_INLINE static inline
#define OM_LIKELY(x) (x)
#define OM_UNLIKELY(x) (x)
#endif

/* Unaligned little-endian loads and stores (the format is little-endian; memcpy
 * compiles to single moves on every platform we target). */
OM_INLINE uint16_t om_ld16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
OM_INLINE uint32_t om_ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
OM_INLINE uint64_t om_ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
OM_INLINE void om_st16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
OM_INLINE void om_st32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
OM_INLINE void om_st64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* Number of significant bits; om_bitlen(0) == 0. */
OM_INLINE int om_bitlen64(uint64_t x) { return x ? 64 - __builtin_clzll(x) : 0; }
OM_INLINE int om_bitlen32(uint32_t x) { return x ? 32 - __builtin_clz(x) : 0; }

OM_INLINE size_t om_ceil8(size_t bits) { return (bits + 7) >> 3; }

/* Width in bytes of the integers the coder works on for (dtype, compression)
 * (codec spec table 1); 0 for an unknown dtype. Defined in om_common.c. */
size_t om_coder_width(int dtype, int compression);

/* The heap block of a decode running under om_decode_select_mapped's guard (NULL
 * when none): freed by the guard if a fault jumps out of the decode. */
void om_guard_hold(void *mem);

#endif
