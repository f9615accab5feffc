/*
 * A tiny .npy reader for tests: format v1.0 only, little-endian float32 ('<f4')
 * or int32 ('<i4'), C order, up to 4 dimensions.  npy_test_load() reads the
 * whole file, checks the header against what the caller expects and returns
 * the data in a malloc'ed buffer (the caller frees it).  Header-only: a test
 * includes it once.
 */
#ifndef MOED_TESTS_NPY_TEST_H
#define MOED_TESTS_NPY_TEST_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPY_TEST_MAX_DIMS 4

struct npy_test {
	void *data;
	size_t shape[NPY_TEST_MAX_DIMS];
	int ndim;
	size_t count;           /* elements */
};

/* Parse "(a, b, c)" into shape; 0 or -EINVAL. */
static inline int npy_test_shape(const char *s, struct npy_test *a)
{
	a->ndim = 0;
	a->count = 1;
	if (*s++ != '(')
		return -EINVAL;
	while (*s != ')') {
		char *end;
		unsigned long long v;

		while (*s == ' ' || *s == ',')
			s++;
		if (*s == ')')
			break;
		if (a->ndim == NPY_TEST_MAX_DIMS)
			return -EINVAL;
		v = strtoull(s, &end, 10);
		if (end == s)
			return -EINVAL;
		a->shape[a->ndim++] = v;
		a->count *= v;
		s = end;
	}
	return 0;
}

/* Load path; descr is "<f4" or "<i4".  0 or -errno. */
static inline int npy_test_load(const char *path, const char *descr, struct npy_test *ret)
{
	struct npy_test a = { 0 };
	unsigned char pre[10];
	char *hdr = NULL, want[32], *p;
	size_t hlen;
	int r = -EINVAL;
	FILE *f = fopen(path, "rb");

	if (!f)
		return -errno;
	if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY\x01\x00", 8))
		goto out;
	hlen = pre[8] | (size_t)pre[9] << 8;
	hdr = calloc(1, hlen + 1);
	if (!hdr || fread(hdr, 1, hlen, f) != hlen)
		goto out;
	snprintf(want, sizeof(want), "'descr': '%s'", descr);
	if (!strstr(hdr, want) || !strstr(hdr, "'fortran_order': False"))
		goto out;
	p = strstr(hdr, "'shape': ");
	if (!p || npy_test_shape(p + 9, &a) < 0)
		goto out;
	a.data = malloc(a.count * 4 + 1);
	if (!a.data || fread(a.data, 4, a.count, f) != a.count) {
		free(a.data);
		goto out;
	}
	*ret = a;
	r = 0;
out:
	free(hdr);
	fclose(f);
	return r;
}

#endif
