/*
 * Tensor messages: checking what a peer sent and wrapping local arrays for sending.
 * A Tensor's data are raw little-endian bytes; its shape is row-major.
 */
#ifndef MOED_TENSOR_H
#define MOED_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "proto/moed.pb-c.h"

size_t tensor_dtype_size(Moed__DType dtype);       /* 0 for invalid */
const char *tensor_dtype_name(Moed__DType dtype);

/* Check that t has dtype `want`, exactly `ndim` dimensions, and a byte count equal
 * to the product of its shape times the element size (no overflow).  On failure
 * returns -EINVAL with a reason in err. */
int tensor_check(const Moed__Tensor *t, Moed__DType want, size_t ndim, char *err,
		 size_t errlen);

/* bf16 is the top half of an fp32: widening is exact; narrowing rounds to
 * nearest even (NaN stays NaN), as daemon/dtype.c does for checkpoints. */
float tensor_bf16_to_f32(uint16_t v);
uint16_t tensor_f32_to_bf16(float f);

/* Make t describe the 2-D array `data` [rows][cols] without copying it; shape must
 * point at storage for two uint64_t that outlives t. */
void tensor_wrap2(Moed__Tensor *t, uint64_t *shape, Moed__DType dtype, const void *data,
		  uint64_t rows, uint64_t cols);

#endif
