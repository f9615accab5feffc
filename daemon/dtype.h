/*
 * Element types of checkpoint tensors and their exact conversion to fp32:
 * bf16 is the top half of an fp32; f16 is IEEE half (subnormals, inf, nan);
 * and to bf16, rounding to nearest even.
 */
#ifndef MOED_DTYPE_H
#define MOED_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "include/moed/plugin.h"
#include "proto/moed.pb-c.h"

float dtype_bf16_to_f32(uint16_t v);
float dtype_f16_to_f32(uint16_t v);
size_t dtype_size(uint32_t dtype);              /* MOED_DTYPE_*; 0 if unknown */
/* The protocol's code for a MOED_DTYPE_* (DTYPE_INVALID if it has none). */
Moed__DType dtype_wire(uint32_t dtype);
const char *dtype_name(uint32_t dtype);        /* "F32", "BF16", ...; "invalid" if unknown */
/* dst[i] = src[i] as fp32 for n elements of `dtype` (unaligned src is fine). */
void dtype_to_f32(uint32_t dtype, const void *src, float *dst, size_t n);
/* fp32 -> bf16, rounding to nearest even (NaN stays NaN). */
uint16_t dtype_f32_to_bf16(float f);
/* n elements of `from` at src (unaligned is fine) into dst as `to` (F32 or BF16). */
void dtype_convert(uint32_t from, const void *src, uint32_t to, void *dst, size_t n);

#endif
