/*
 * Conversions.  Sources may come straight from a mapped file at any offset, so
 * elements are read with memcpy; the compiler turns that into plain loads.
 * Names come from the protocol's table (proto/tensor.c), the one list of
 * dtype names that the daemon and moectl share.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include "daemon/dtype.h"
#include "proto/tensor.h"

float dtype_bf16_to_f32(uint16_t v)
{
	return tensor_bf16_to_f32(v);      /* one conversion for wire and weights */
}

float dtype_f16_to_f32(uint16_t v)
{
	uint32_t sign = (uint32_t)(v >> 15) << 31, exp = (v >> 10) & 0x1f, man = v & 0x3ff;
	uint32_t u;
	float f;

	if (exp == 0) {
		/* zero or subnormal: man * 2^-24, exact in fp32 */
		f = ldexpf((float)man, -24);
		return sign ? -f : f;
	}
	if (exp == 31)
		u = sign | 0x7f800000u | (man << 13);
	else
		u = sign | ((exp + 112) << 23) | (man << 13);
	memcpy(&f, &u, sizeof(f));
	return f;
}

float dtype_f8e4m3_to_f32(uint8_t v)
{
	uint32_t exp = (v >> 3) & 0xf, man = v & 7;
	float f;

	if (dtype_f8e4m3_is_nan(v))
		return NAN;
	/* exponent bias 7; exp 0 is subnormal: man * 2^-9 */
	f = exp ? ldexpf((float)(8 + man), (int)exp - 10) : ldexpf((float)man, -9);
	return v & 0x80 ? -f : f;
}

size_t dtype_f8e4m3_find_nan(const uint8_t *q, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (dtype_f8e4m3_is_nan(q[i]))
			return i;
	return n;
}

void dtype_f8_dequant(const uint8_t *q, const float *scale, size_t rows, size_t cols, uint32_t br,
		      uint32_t bc, uint32_t to, void *dst)
{
	size_t scols = (cols + bc - 1) / bc;
	float lut[256];

	for (unsigned i = 0; i < 256; i++)
		lut[i] = dtype_f8e4m3_to_f32((uint8_t)i);
	for (size_t r = 0; r < rows; r++) {
		const float *srow = scale + (r / br) * scols;

		for (size_t c = 0; c < cols; c++) {
			float w = lut[q[r * cols + c]] * srow[c / bc];

			if (to == MOED_DTYPE_BF16)
				((uint16_t *)dst)[r * cols + c] = dtype_f32_to_bf16(w);
			else
				((float *)dst)[r * cols + c] = w;
		}
	}
}

uint16_t dtype_f32_to_bf16(float f)
{
	return tensor_f32_to_bf16(f);
}

size_t dtype_size(uint32_t dtype)
{
	switch (dtype) {
	case MOED_DTYPE_F32: return 4;
	case MOED_DTYPE_BF16:
	case MOED_DTYPE_F16: return 2;
	case MOED_DTYPE_F8_E4M3: return 1;
	default: return 0;
	}
}

Moed__DType dtype_wire(uint32_t dtype)
{
	switch (dtype) {
	case MOED_DTYPE_F32: return MOED__DTYPE__F32;
	case MOED_DTYPE_BF16: return MOED__DTYPE__BF16;
	case MOED_DTYPE_F16: return MOED__DTYPE__F16;
	case MOED_DTYPE_F8_E4M3: return MOED__DTYPE__F8_E4M3;
	default: return MOED__DTYPE__DTYPE_INVALID;
	}
}

const char *dtype_name(uint32_t dtype)
{
	return tensor_dtype_name(dtype_wire(dtype));
}

void dtype_to_f32(uint32_t dtype, const void *src, float *dst, size_t n)
{
	const uint8_t *p = src;
	uint16_t h;

	switch (dtype) {
	case MOED_DTYPE_F32:
		memcpy(dst, src, n * sizeof(float));
		break;
	case MOED_DTYPE_BF16:
		for (size_t i = 0; i < n; i++) {
			memcpy(&h, p + 2 * i, 2);
			dst[i] = dtype_bf16_to_f32(h);
		}
		break;
	case MOED_DTYPE_F16:
		for (size_t i = 0; i < n; i++) {
			memcpy(&h, p + 2 * i, 2);
			dst[i] = dtype_f16_to_f32(h);
		}
		break;
	}
}

void dtype_convert(uint32_t from, const void *src, uint32_t to, void *dst, size_t n)
{
	const uint8_t *p = src;
	float f;

	if (to == MOED_DTYPE_F32) {
		dtype_to_f32(from, src, dst, n);
		return;
	}
	if (from == to) {
		memcpy(dst, src, n * dtype_size(to));
		return;
	}
	for (size_t i = 0; i < n; i++) {      /* to bf16 (the only other target) */
		dtype_to_f32(from, p + i * dtype_size(from), &f, 1);
		((uint16_t *)dst)[i] = dtype_f32_to_bf16(f);
	}
}
