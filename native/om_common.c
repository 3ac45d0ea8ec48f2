/* Small shared queries: valid pairs, sizes and capacity bounds. */
#include "om_codec.h"
#include "om_internal.h"

int om_check_pair(int dtype, int compression)
{
    if (dtype < OM_INT8 || dtype > OM_DOUBLE)
        return OM_E_INVALID;
    switch (compression) {
    case OM_PFOR:
        return OM_OK;
    case OM_PFOR_INT16:
    case OM_PFOR_INT16_LOG:
        return dtype == OM_FLOAT ? OM_OK : OM_E_INVALID;
    case OM_FPX_XOR:
        return (dtype == OM_FLOAT || dtype == OM_DOUBLE) ? OM_OK : OM_E_INVALID;
    default:
        return OM_E_INVALID;
    }
}

size_t om_dtype_size(int dtype)
{
    switch (dtype) {
    case OM_INT8: case OM_UINT8: return 1;
    case OM_INT16: case OM_UINT16: return 2;
    case OM_INT32: case OM_UINT32: case OM_FLOAT: return 4;
    case OM_INT64: case OM_UINT64: case OM_DOUBLE: return 8;
    default: return 0;
    }
}

size_t om_coder_width(int dtype, int compression)
{
    if (compression == OM_PFOR_INT16 || compression == OM_PFOR_INT16_LOG)
        return 2;
    return om_dtype_size(dtype);
}

size_t om_pfor_bound(size_t n, int width_bytes)
{
    /* Proven bound n*(B+1) plus per-block fpx header bytes and slack (codec spec 9.2). */
    return n * ((size_t)width_bytes + 1) + 2 * ((n + 127) / 128) + 32;
}

size_t om_chunk_bound(int dtype, int compression, size_t n)
{
    size_t w = om_coder_width(dtype, compression);
    return om_pfor_bound(n, (int)(w ? w : 8));
}

size_t om_chunk_scratch(int dtype, int compression, size_t n)
{
    (void)dtype;
    (void)compression;
    /* Room for n widened (64-bit) integers plus alignment slack. */
    return n * 8 + 64;
}

size_t om_lut_bound(size_t n_entries)
{
    size_t groups = (n_entries + 63) / 64;
    /* A group of 64 entries is at most 9 bytes of start value + one block of 63 deltas. */
    return groups * (9 + om_pfor_bound(64, 8)) + 64;
}
