/*
 * NumPy .npy files (format versions 1.0, 2.0, 3.0): reading float32 (or
 * float64, converted) and int32 arrays of one or two dimensions in C order,
 * and writing float32/int32 2-D arrays as version 1.0 with the header padded
 * to 64 bytes.  The reader validates every header field and the byte count;
 * it never trusts a size it has not checked.
 */
#ifndef MOECTL_NPY_H
#define MOECTL_NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_HEADER 65536

enum npy_type { NPY_F32 = 1, NPY_I32 = 2 };

struct npy_array {
	enum npy_type type;
	uint32_t ndim;                  /* 1 or 2 */
	uint64_t rows, cols;            /* a 1-D array [n] reads as rows 1, cols n */
	void *data;                     /* malloc'ed, rows*cols elements */
};

int npy_parse(const uint8_t *buf, size_t len, const char *name, struct npy_array *ret,
	      char *err, size_t errlen);
int npy_read(const char *path, struct npy_array *ret, char *err, size_t errlen);
int npy_write(const char *path, enum npy_type type, const void *data, uint64_t rows,
	      uint64_t cols, char *err, size_t errlen);
void npy_release(struct npy_array *a);

#endif
