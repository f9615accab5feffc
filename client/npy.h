/*
 * NumPy .npy files (format versions 1.0, 2.0, 3.0): reading float32 (or
 * float64, converted), int32 and uint16 (bf16 bits: numpy has no bfloat16)
 * arrays of one or two dimensions in C order, and writing float32/int32/uint16
 * 2-D arrays as version 1.0 with the header padded
 * so the data start at a multiple of 64 bytes, as numpy itself writes them.
 * The reader validates every header field and the byte count; it never trusts
 * a size it has not checked, and is fuzzed (tests/fuzz/fuzz_npy.c).
 */
#ifndef MOECTL_NPY_H
#define MOECTL_NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_HEADER 65536                    /* bytes of header dict accepted */
#define NPY_MAX_FILE ((uint64_t)4 << 30)        /* largest file npy_read loads */

enum npy_type { NPY_F32 = 1, NPY_I32 = 2, NPY_BF16 = 3 /* '<u2' */ };

struct npy_array {
	enum npy_type type;             /* a float64 file reads as NPY_F32 */
	uint32_t ndim;                  /* 1 or 2, as in the file */
	uint64_t rows, cols;            /* a 1-D array [n] reads as rows 1, cols n */
	void *data;                     /* malloc'ed, rows*cols elements, owned by the array */
};

/* Parse a whole .npy file held in buf[0..len).  On success fills *ret_array
 * (release it with npy_release) and returns 0; otherwise returns -EINVAL
 * (malformed, or the header disagrees with the data), -ENOTSUP (valid but
 * unsupported: dtype, Fortran order, dimensions) or -ENOMEM, with a one-line
 * reason starting with `name` in err, and leaves *ret_array untouched. */
int npy_parse(const uint8_t *buf, size_t len, const char *name, struct npy_array *ret_array,
	      char *err, size_t errlen);
/* npy_parse on the contents of the regular file at path (at most NPY_MAX_FILE
 * bytes); also -errno of open/read, -EFBIG. */
int npy_read(const char *path, struct npy_array *ret_array, char *err, size_t errlen);
/* Write rows x cols elements of data (little-endian float32, int32 or bf16 bits
 * as '<u2', C order)
 * as a version 1.0 .npy file of shape (rows, cols).  A partly written file is
 * removed.  0 or -errno with a reason in err. */
int npy_write(const char *path, enum npy_type type, const void *data, uint64_t rows,
	      uint64_t cols, char *err, size_t errlen);
/* Frees the data; accepts a zeroed or already released array. */
void npy_release(struct npy_array *a);

#endif
