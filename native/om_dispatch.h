/* Run-time selection of the SIMD code paths of the decoders.
 *
 * Levels: 0 = portable C, 1 = SSE2, 2 = SSSE3, 3 = AVX2, 4 = AVX2 + GFNI
 * (x86-64 only; other platforms always use 0). Every level gives bit-identical results. The level
 * is chosen once when the library is loaded (the best the CPU supports, or 0
 * if the environment variable OM_NATIVE_NO_SIMD is set to a non-empty value
 * other than "0"). */
#ifndef OM_DISPATCH_H
#define OM_DISPATCH_H

/* Level in use. */
int om_simd_level(void);
/* Request a level (-1: the best available); clamped to what the CPU supports.
 * Returns the level now in use. For tests and benchmarks: do not call it while
 * other threads decode. */
int om_set_simd_level(int level);

#endif
