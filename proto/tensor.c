/*
 * Tensor message helpers.  tensor_check() is the single place where a peer's
 * dtype/shape/byte-count claims are reconciled, with overflow-safe arithmetic.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proto/tensor.h"

size_t tensor_dtype_size(Moed__DType dtype)
{
	switch (dtype) {
	case MOED__DTYPE__F32:
	case MOED__DTYPE__I32:
		return 4;
	case MOED__DTYPE__BF16:
	case MOED__DTYPE__F16:
		return 2;
	default:
		return 0;
	}
}

const char *tensor_dtype_name(Moed__DType dtype)
{
	switch (dtype) {
	case MOED__DTYPE__F32: return "F32";
	case MOED__DTYPE__I32: return "I32";
	case MOED__DTYPE__BF16: return "BF16";
	case MOED__DTYPE__F16: return "F16";
	case MOED__DTYPE__F8_E4M3: return "F8_E4M3";
	default: return "invalid";
	}
}

int tensor_check(const Moed__Tensor *t, Moed__DType want, size_t ndim, char *err,
		 size_t errlen)
{
	uint64_t elems = 1;

	if (!t) {
		snprintf(err, errlen, "tensor missing");
		return -EINVAL;
	}
	if (t->dtype != want) {
		snprintf(err, errlen, "tensor dtype %s, want %s", tensor_dtype_name(t->dtype),
			 tensor_dtype_name(want));
		return -EINVAL;
	}
	if (t->n_shape != ndim) {
		snprintf(err, errlen, "tensor has %zu dimensions, want %zu", t->n_shape, ndim);
		return -EINVAL;
	}
	for (size_t i = 0; i < t->n_shape; i++) {
		if (t->shape[i] != 0 && elems > UINT64_MAX / t->shape[i]) {
			snprintf(err, errlen, "tensor shape overflows");
			return -EINVAL;
		}
		elems *= t->shape[i];
	}
	size_t es = tensor_dtype_size(want);
	if (elems > UINT64_MAX / es || elems * es != t->data.len) {
		snprintf(err, errlen, "tensor shape says %llu elements (%llu bytes) but carries %zu bytes",
			 (unsigned long long)elems,
			 (unsigned long long)(elems > UINT64_MAX / es ? UINT64_MAX : elems * es),
			 t->data.len);
		return -EINVAL;
	}
	return 0;
}

void tensor_wrap2(Moed__Tensor *t, uint64_t *shape, Moed__DType dtype, const void *data,
		  uint64_t rows, uint64_t cols)
{
	moed__tensor__init(t);
	shape[0] = rows;
	shape[1] = cols;
	t->dtype = dtype;
	t->n_shape = 2;
	t->shape = shape;
	t->data.len = (size_t)(rows * cols * tensor_dtype_size(dtype));
	t->data.data = (uint8_t *)data;
}

float tensor_bf16_to_f32(uint16_t v)
{
	uint32_t u = (uint32_t)v << 16;
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

uint16_t tensor_f32_to_bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}
