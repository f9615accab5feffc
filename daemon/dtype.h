/*
 * Element types of checkpoint tensors and their exact conversion to fp32:
 * bf16 is the top half of an fp32; f16 is IEEE half (subnormals, inf, nan);
 * fp8 e4m3 decodes exactly (block scales are applied by dtype_f8_dequant);
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
/* OCP FP8 E4M3 ("e4m3fn": no infinities; 0x7F and 0xFF are NaN, 448 the largest). */
float dtype_f8e4m3_to_f32(uint8_t v);
static inline int dtype_f8e4m3_is_nan(uint8_t v)
{
	return (v & 0x7f) == 0x7f;
}
/* Index of the first NaN code in n FP8 E4M3 bytes, or n. */
size_t dtype_f8e4m3_find_nan(const uint8_t *q, size_t n);
/* A block-scaled FP8 matrix [rows][cols] as fp32 or bf16 (`to`):
 * w[r][c] = fp8(q[r][c]) * scale[r / br][c / bc], scale [ceil(rows/br)][ceil(cols/bc)]. */
void dtype_f8_dequant(const uint8_t *q, const float *scale, size_t rows, size_t cols, uint32_t br,
		      uint32_t bc, uint32_t to, void *dst);
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
