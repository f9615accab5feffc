/*
 * .npy reader/writer unit tests: round trips of float32 and int32 (bit for
 * bit, NaN and -0 included), the file layout numpy expects from the writer,
 * version 2.0/3.0 headers, 1-D arrays as one token, float64 narrowing, and
 * refusals: Fortran order, other dtypes, truncation at every length, headers
 * that lie about the shape or their own length, malformed dicts.
 *
 * `test_npy --copy IN OUT` reads IN and writes it back as OUT; the numpy
 * interop test (tests/client/npy_interop.sh) drives the code through it.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "client/npy.h"

static char tmpdir[64];

/* A .npy image: magic, version major.0, header `dict` as given, then data. */
static size_t make_npy(uint8_t *buf, size_t cap, int major, const char *dict,
		       const void *data, size_t datalen)
{
	size_t hlen = strlen(dict), off = major == 1 ? 10 : 12;

	assert_true(off + hlen + datalen <= cap);
	memcpy(buf, "\x93NUMPY", 6);
	buf[6] = (uint8_t)major;
	buf[7] = 0;
	buf[8] = (uint8_t)hlen;
	buf[9] = (uint8_t)(hlen >> 8);
	if (major != 1) {
		buf[10] = (uint8_t)(hlen >> 16);
		buf[11] = (uint8_t)(hlen >> 24);
	}
	memcpy(buf + off, dict, hlen);
	if (datalen)
		memcpy(buf + off + hlen, data, datalen);
	return off + hlen + datalen;
}

static int parse(const uint8_t *buf, size_t len, struct npy_array *a, char *err, size_t errlen)
{
	return npy_parse(buf, len, "t.npy", a, err, errlen);
}

/* Parse a v1.0 file with header dict and n float32 zeros; expect error want. */
static void expect_refused(const char *dict, size_t n, int want, const char *needle)
{
	uint8_t buf[1024];
	float zeros[64] = { 0 };
	struct npy_array a = { .data = NULL };
	char err[512] = "";
	size_t len;

	assert_true(n <= 64);
	len = make_npy(buf, sizeof(buf), 1, dict, zeros, n * sizeof(float));
	if (parse(buf, len, &a, err, sizeof(err)) != want || !strstr(err, needle))
		fail_msg("header %s: want %d '%s', got '%s'", dict, want, needle, err);
	assert_null(a.data);
}

static void path_in_tmp(char *path, size_t len, const char *name)
{
	snprintf(path, len, "%s/%s", tmpdir, name);
}

static void test_roundtrip_f32(void **state)
{
	static const char want[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }";
	float x[3][5];
	uint8_t file[512];
	struct npy_array a = { .data = NULL };
	char path[128], err[256];
	FILE *f;
	size_t len;

	for (int i = 0; i < 15; i++)
		x[i / 5][i % 5] = (float)(i - 7) / 3.0f;
	x[0][0] = -0.0f;
	x[0][1] = NAN;
	x[0][2] = 1e-45f;               /* subnormal */
	x[0][3] = 3.4028235e38f;
	path_in_tmp(path, sizeof(path), "f32.npy");
	assert_int_equal(npy_write(path, NPY_F32, x, 3, 5, err, sizeof(err)), 0);
	assert_int_equal(npy_read(path, &a, err, sizeof(err)), 0);
	assert_int_equal(a.type, NPY_F32);
	assert_int_equal(a.ndim, 2);
	assert_int_equal(a.rows, 3);
	assert_int_equal(a.cols, 5);
	assert_memory_equal(a.data, x, sizeof(x));
	npy_release(&a);
	npy_release(&a);        /* idempotent */

	/* the layout numpy writes: v1.0, data 64-byte aligned, header ends in \n */
	f = fopen(path, "rb");
	assert_non_null(f);
	len = fread(file, 1, sizeof(file), f);
	fclose(f);
	assert_memory_equal(file, "\x93NUMPY\x01\x00", 8);
	size_t hlen = (size_t)file[8] | (size_t)file[9] << 8;
	assert_int_equal((10 + hlen) % 64, 0);
	assert_int_equal(file[10 + hlen - 1], '\n');
	assert_int_equal(len, 10 + hlen + sizeof(x));
	assert_memory_equal(file + 10, want, sizeof(want) - 1);
}

static void test_roundtrip_i32(void **state)
{
	int32_t x[2][3] = { { 0, -1, INT32_MAX }, { INT32_MIN, 7, 255 } };
	struct npy_array a = { .data = NULL };
	char path[128], err[256];

	path_in_tmp(path, sizeof(path), "i32.npy");
	assert_int_equal(npy_write(path, NPY_I32, x, 2, 3, err, sizeof(err)), 0);
	assert_int_equal(npy_read(path, &a, err, sizeof(err)), 0);
	assert_int_equal(a.type, NPY_I32);
	assert_int_equal(a.rows, 2);
	assert_int_equal(a.cols, 3);
	assert_memory_equal(a.data, x, sizeof(x));
	npy_release(&a);
}

/* Writing over a longer file leaves exactly the new array (the writer
 * overwrites in place and cuts the tail instead of truncating first). */
static void test_overwrite_longer(void **state)
{
	float big[8][16], small[2][3] = { { 1, 2, 3 }, { 4, 5, 6 } };
	struct npy_array a = { .data = NULL };
	char path[128], err[256];
	struct stat st;

	for (int i = 0; i < 128; i++)
		big[i / 16][i % 16] = (float)i;
	path_in_tmp(path, sizeof(path), "over.npy");
	assert_int_equal(npy_write(path, NPY_F32, big, 8, 16, err, sizeof(err)), 0);
	assert_int_equal(npy_write(path, NPY_F32, small, 2, 3, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 128 + sizeof(small));
	assert_int_equal(npy_read(path, &a, err, sizeof(err)), 0);
	assert_int_equal(a.rows, 2);
	assert_int_equal(a.cols, 3);
	assert_memory_equal(a.data, small, sizeof(small));
	npy_release(&a);
	/* and a longer one over the short one */
	assert_int_equal(npy_write(path, NPY_F32, big, 8, 16, err, sizeof(err)), 0);
	assert_int_equal(npy_read(path, &a, err, sizeof(err)), 0);
	assert_int_equal(a.rows, 8);
	assert_memory_equal(a.data, big, sizeof(big));
	npy_release(&a);
}

static void test_v2_v3_headers(void **state)
{
	const float x[2][2] = { { 1, 2 }, { 3, 4 } };
	uint8_t buf[256];
	struct npy_array a = { .data = NULL };
	char err[256];

	for (int major = 2; major <= 3; major++) {
		size_t len = make_npy(buf, sizeof(buf), major,
				      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }"
				      "          \n", x, sizeof(x));
		assert_int_equal(parse(buf, len, &a, err, sizeof(err)), 0);
		assert_int_equal(a.rows, 2);
		assert_int_equal(a.cols, 2);
		assert_memory_equal(a.data, x, sizeof(x));
		npy_release(&a);
	}
	/* a minor version other than 0, or an unknown major, is refused */
	size_t len = make_npy(buf, sizeof(buf), 1, "{'descr': '<f4', 'fortran_order': False, "
			      "'shape': (2, 2)}", x, sizeof(x));
	buf[7] = 1;
	assert_int_equal(parse(buf, len, &a, err, sizeof(err)), -EINVAL);
	buf[7] = 0;
	buf[6] = 4;
	assert_int_equal(parse(buf, len, &a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "version"));
}

static void test_key_order_and_quotes(void **state)
{
	const float x[3] = { 1, 2, 3 };
	uint8_t buf[256];
	struct npy_array a = { .data = NULL };
	char err[256];
	size_t len = make_npy(buf, sizeof(buf), 1,
			      "{\"shape\":(3,),\"fortran_order\":False,\"descr\":\"<f4\"}\n",
			      x, sizeof(x));

	assert_int_equal(parse(buf, len, &a, err, sizeof(err)), 0);
	assert_int_equal(a.ndim, 1);    /* 1-D [H] is one token */
	assert_int_equal(a.rows, 1);
	assert_int_equal(a.cols, 3);
	npy_release(&a);
}

static void test_f64_narrowed(void **state)
{
	const double x[4] = { 0.1, -2.5, 1e300, -1e39 };
	uint8_t buf[256];
	struct npy_array a = { .data = NULL };
	char err[256];
	size_t len = make_npy(buf, sizeof(buf), 1,
			      "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }\n",
			      x, sizeof(x));

	assert_int_equal(parse(buf, len, &a, err, sizeof(err)), 0);
	assert_int_equal(a.type, NPY_F32);
	const float *y = a.data;
	assert_true(y[0] == 0.1f);
	assert_true(y[1] == -2.5f);
	assert_true(isinf(y[2]) && y[2] > 0);
	assert_true(isinf(y[3]) && y[3] < 0);
	npy_release(&a);
}

static void test_fortran_refused(void **state)
{
	expect_refused("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 6, -ENOTSUP,
		       "Fortran");
}

static void test_wrong_dtype_refused(void **state)
{
	static const char *dtypes[] = { "<f2", ">f4", "=f4", "<i8", "|u1", "<c8", "|b1", "<U4",
					"", "f4" };
	char dict[128];

	for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++) {
		snprintf(dict, sizeof(dict),
			 "{'descr': '%s', 'fortran_order': False, 'shape': (1, 1), }", dtypes[i]);
		expect_refused(dict, 1, -ENOTSUP, "not supported");
	}
}

static void test_dimensions_refused(void **state)
{
	expect_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 1, -ENOTSUP,
		       "0 dimensions");
	expect_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 2), }", 2,
		       -ENOTSUP, "3 dimensions");
}

static void test_truncated_refused(void **state)
{
	const float x[2][3] = { { 1, 2, 3 }, { 4, 5, 6 } };
	uint8_t buf[256];
	struct npy_array a = { .data = NULL };
	char err[256];
	size_t len = make_npy(buf, sizeof(buf), 1,
			      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n",
			      x, sizeof(x));

	for (size_t cut = 0; cut < len; cut++) {
		/* a fresh copy of exactly `cut` bytes, so ASan sees any overread */
		uint8_t *p = malloc(cut ? cut : 1);
		assert_non_null(p);
		memcpy(p, buf, cut);
		assert_int_equal(parse(p, cut, &a, err, sizeof(err)), -EINVAL);
		assert_null(a.data);
		free(p);
	}
	assert_int_equal(parse(buf, len, &a, err, sizeof(err)), 0);
	npy_release(&a);
}

static void test_shape_lies_refused(void **state)
{
	/* fewer data than the shape says, more, and shapes whose size overflows */
	expect_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }", 14, -EINVAL,
		       "does not match");
	expect_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }", 16, -EINVAL,
		       "does not match");
	expect_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }", 1, -EINVAL,
		       "does not match");
	expect_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
		       0, -EINVAL, "does not match");
	expect_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 2), }",
		       2, -EINVAL, "does not match");
	expect_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 0), }",
		       1, -EINVAL, "does not match");
	expect_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 1), }",
		       1, -EINVAL, "malformed");
}

static void test_header_length_lies(void **state)
{
	uint8_t buf[256];
	struct npy_array a = { .data = NULL };
	char err[256];
	size_t len = make_npy(buf, sizeof(buf), 1,
			      "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }", "\0\0\0",
			      4);

	buf[8] = 0xff;          /* header length past the end of the file */
	assert_int_equal(parse(buf, len, &a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "header length"));
	len = make_npy(buf, sizeof(buf), 2, "{}", NULL, 0);
	buf[10] = 0x01;         /* 65538 > NPY_MAX_HEADER, however long the file */
	assert_int_equal(parse(buf, len, &a, err, sizeof(err)), -EINVAL);
	assert_null(a.data);
}

static void test_malformed_refused(void **state)
{
	static const char *dicts[] = {
		"",
		"{}",
		"{'descr': '<f4', 'fortran_order': False}",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), 'extra': 1}",
		"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)}",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)} x",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)}}",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (1)}",
		"{'descr': '<f4', 'fortran_order': False, 'shape': [1, 1]}",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (1, -1)}",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (1,, 1)}",
		"{'descr': '<f4', 'fortran_order': Falsey, 'shape': (1, 1)}",
		"{'descr': '<f4', 'fortran_order': 0, 'shape': (1, 1)}",
		"{'descr': '<f4, 'fortran_order': False, 'shape': (1, 1)}",
		"{'descr': '<f\\x34', 'fortran_order': False, 'shape': (1, 1)}",
		"{'descr' '<f4', 'fortran_order': False, 'shape': (1, 1)}",
		"{'descr': '<f4' 'fortran_order': False, 'shape': (1, 1)}",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1),,}",
		"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1, 1)}",
	};

	for (size_t i = 0; i < sizeof(dicts) / sizeof(dicts[0]); i++)
		expect_refused(dicts[i], 1, -EINVAL, "malformed");
}

static void test_not_npy(void **state)
{
	struct npy_array a = { .data = NULL };
	char err[256];

	assert_int_equal(parse((const uint8_t *)"", 0, &a, err, sizeof(err)), -EINVAL);
	assert_int_equal(parse((const uint8_t *)"\x93NUMPZ\x01\x00\x00\x00", 10, &a, err,
			       sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a .npy file"));
	/* a v2 prefix needs 12 bytes */
	assert_int_equal(parse((const uint8_t *)"\x93NUMPY\x02\x00\x00\x00", 10, &a, err,
			       sizeof(err)), -EINVAL);
}

static void test_file_errors(void **state)
{
	struct npy_array a = { .data = NULL };
	char path[128], err[256];
	float x = 1;

	path_in_tmp(path, sizeof(path), "missing.npy");
	assert_int_equal(npy_read(path, &a, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "missing.npy"));
	assert_int_equal(npy_read(tmpdir, &a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
	path_in_tmp(path, sizeof(path), "no/such/dir.npy");
	assert_int_equal(npy_write(path, NPY_F32, &x, 1, 1, err, sizeof(err)), -ENOENT);
	assert_int_equal(npy_write(path, NPY_F32, &x, UINT64_MAX, 2, err, sizeof(err)),
			 -EOVERFLOW);
	assert_null(a.data);
}

/* --copy IN OUT: read IN, write its contents as OUT (2-D, same dtype). */
static int copy(const char *in, const char *out)
{
	struct npy_array a = { .data = NULL };
	char err[512];

	if (npy_read(in, &a, err, sizeof(err)) < 0 ||
	    npy_write(out, a.type, a.data, a.rows, a.cols, err, sizeof(err)) < 0) {
		fprintf(stderr, "test_npy: %s\n", err);
		npy_release(&a);
		return 1;
	}
	npy_release(&a);
	return 0;
}

static int make_tmpdir(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/test_npy.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
	static const char *names[] = { "f32.npy", "i32.npy", "over.npy" };
	char path[128];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		path_in_tmp(path, sizeof(path), names[i]);
		unlink(path);
	}
	return rmdir(tmpdir);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_f32),
		cmocka_unit_test(test_roundtrip_i32),
		cmocka_unit_test(test_overwrite_longer),
		cmocka_unit_test(test_v2_v3_headers),
		cmocka_unit_test(test_key_order_and_quotes),
		cmocka_unit_test(test_f64_narrowed),
		cmocka_unit_test(test_fortran_refused),
		cmocka_unit_test(test_wrong_dtype_refused),
		cmocka_unit_test(test_dimensions_refused),
		cmocka_unit_test(test_truncated_refused),
		cmocka_unit_test(test_shape_lies_refused),
		cmocka_unit_test(test_header_length_lies),
		cmocka_unit_test(test_malformed_refused),
		cmocka_unit_test(test_not_npy),
		cmocka_unit_test(test_file_errors),
	};

	if (argc == 4 && !strcmp(argv[1], "--copy"))
		return copy(argv[2], argv[3]);
	if (argc != 1) {
		fprintf(stderr, "usage: test_npy [--copy IN.npy OUT.npy]\n");
		return 2;
	}
	return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
