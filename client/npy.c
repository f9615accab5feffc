/*
 * .npy reading and writing.  The header is a Python dict literal; rather than
 * a general parser, the reader scans exactly the grammar numpy writes — a
 * '{', three 'key': value pairs in any order, optional trailing comma, '}' —
 * and rejects anything else.  Arrays are read little-endian ('<' or '|'), as
 * written on every platform moed runs on.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/npy.h"

struct scan {
	const char *p, *end;
};

static void skip_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\t'))
		s->p++;
}

static int eat(struct scan *s, char c)
{
	skip_ws(s);
	if (s->p < s->end && *s->p == c) {
		s->p++;
		return 1;
	}
	return 0;
}

/* A quoted string into buf; 0 on success. */
static int quoted(struct scan *s, char *buf, size_t n)
{
	char q;
	size_t i = 0;

	skip_ws(s);
	if (s->p >= s->end || (*s->p != '\'' && *s->p != '"'))
		return -1;
	q = *s->p++;
	while (s->p < s->end && *s->p != q) {
		if (i + 1 >= n)
			return -1;
		buf[i++] = *s->p++;
	}
	if (s->p >= s->end)
		return -1;
	s->p++;
	buf[i] = '\0';
	return 0;
}

static int number(struct scan *s, uint64_t *ret)
{
	uint64_t v = 0;
	int digits = 0;

	skip_ws(s);
	while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s->p++ - '0');
		digits++;
	}
	if (s->p < s->end && *s->p == 'L')
		s->p++;
	*ret = v;
	return digits ? 0 : -1;
}

static int shape(struct scan *s, struct npy_array *a)
{
	uint64_t dims[3];
	uint32_t n = 0;

	if (!eat(s, '('))
		return -1;
	while (!eat(s, ')')) {
		if (n == 3 || number(s, &dims[n]) < 0)
			return -1;
		n++;
		if (!eat(s, ',')) {
			if (!eat(s, ')'))
				return -1;
			break;
		}
	}
	if (n == 1) {
		a->rows = 1;
		a->cols = dims[0];
	} else if (n == 2) {
		a->rows = dims[0];
		a->cols = dims[1];
	} else {
		return -1;
	}
	a->ndim = n;
	return 0;
}

static int parse_header(const char *h, size_t len, struct npy_array *a, int *ret_f64,
			char *why, size_t whylen)
{
	struct scan s = { h, h + len };
	char key[32], descr[16] = "";
	int have_descr = 0, have_order = 0, have_shape = 0;

	if (!eat(&s, '{'))
		goto bad;
	while (!eat(&s, '}')) {
		if (quoted(&s, key, sizeof(key)) < 0 || !eat(&s, ':'))
			goto bad;
		if (!strcmp(key, "descr") && !have_descr) {
			if (quoted(&s, descr, sizeof(descr)) < 0)
				goto bad;
			have_descr = 1;
		} else if (!strcmp(key, "fortran_order") && !have_order) {
			skip_ws(&s);
			if (s.end - s.p >= 4 && !memcmp(s.p, "True", 4)) {
				snprintf(why, whylen, "Fortran-order arrays are not supported; save with np.ascontiguousarray");
				return -ENOTSUP;
			}
			if (s.end - s.p < 5 || memcmp(s.p, "False", 5))
				goto bad;
			s.p += 5;
			have_order = 1;
		} else if (!strcmp(key, "shape") && !have_shape) {
			if (shape(&s, a) < 0) {
				snprintf(why, whylen, "shape must have 1 or 2 dimensions");
				return -EINVAL;
			}
			have_shape = 1;
		} else {
			goto bad;
		}
		if (!eat(&s, ',')) {
			if (!eat(&s, '}'))
				goto bad;
			break;
		}
	}
	if (!have_descr || !have_order || !have_shape)
		goto bad;
	*ret_f64 = 0;
	if (!strcmp(descr, "<f4")) {
		a->type = NPY_F32;
	} else if (!strcmp(descr, "<f8")) {
		a->type = NPY_F32;
		*ret_f64 = 1;
	} else if (!strcmp(descr, "<i4")) {
		a->type = NPY_I32;
	} else {
		snprintf(why, whylen, "dtype '%s' is not supported (float32 '<f4', float64, int32)",
			 descr);
		return -ENOTSUP;
	}
	return 0;
bad:
	snprintf(why, whylen, "malformed header");
	return -EINVAL;
}

int npy_parse(const uint8_t *buf, size_t len, const char *name, struct npy_array *ret,
	      char *err, size_t errlen)
{
	struct npy_array a = { 0 };
	size_t hlen, off, esize;
	char why[160] = "";
	int f64 = 0, r;

	if (len < 10 || memcmp(buf, "\x93NUMPY", 6)) {
		snprintf(err, errlen, "%s: not a .npy file", name);
		return -EINVAL;
	}
	if (buf[6] == 1) {
		hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
		off = 10;
	} else if ((buf[6] == 2 || buf[6] == 3) && len >= 12) {
		hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 |
		       (size_t)buf[11] << 24;
		off = 12;
	} else {
		snprintf(err, errlen, "%s: unsupported .npy version %u.%u", name, buf[6], buf[7]);
		return -EINVAL;
	}
	if (hlen > NPY_MAX_HEADER || hlen > len - off) {
		snprintf(err, errlen, "%s: header length %zu does not fit the file", name, hlen);
		return -EINVAL;
	}
	r = parse_header((const char *)buf + off, hlen, &a, &f64, why, sizeof(why));
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", name, why);
		return r;
	}
	off += hlen;
	esize = f64 ? 8 : 4;
	if (a.cols && a.rows > (len - off) / esize / a.cols) {
		snprintf(err, errlen, "%s: shape [%llu, %llu] needs more data than the file's %zu bytes",
			 name, (unsigned long long)a.rows, (unsigned long long)a.cols, len - off);
		return -EINVAL;
	}
	size_t n = (size_t)(a.rows * a.cols);
	if (n * esize != len - off) {
		snprintf(err, errlen, "%s: shape [%llu, %llu] is %zu bytes of data, file has %zu",
			 name, (unsigned long long)a.rows, (unsigned long long)a.cols, n * esize,
			 len - off);
		return -EINVAL;
	}
	a.data = malloc(n ? n * 4 : 1);
	if (!a.data)
		return -ENOMEM;
	if (f64) {
		for (size_t i = 0; i < n; i++) {
			double d;
			memcpy(&d, buf + off + 8 * i, 8);
			((float *)a.data)[i] = (float)d;
		}
	} else {
		memcpy(a.data, buf + off, n * 4);
	}
	*ret = a;
	return 0;
}

int npy_read(const char *path, struct npy_array *ret, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long len;
	int r;

	if (!f) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return r;
	}
	if (fseek(f, 0, SEEK_END) < 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0) {
		fclose(f);
		snprintf(err, errlen, "%s: cannot read", path);
		return -EIO;
	}
	buf = malloc(len ? (size_t)len : 1);
	if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
		free(buf);
		fclose(f);
		snprintf(err, errlen, "%s: cannot read", path);
		return -EIO;
	}
	fclose(f);
	r = npy_parse(buf, (size_t)len, path, ret, err, errlen);
	free(buf);
	return r;
}

int npy_write(const char *path, enum npy_type type, const void *data, uint64_t rows,
	      uint64_t cols, char *err, size_t errlen)
{
	char header[256];
	int n = snprintf(header, sizeof(header),
			 "{'descr': '%s', 'fortran_order': False, 'shape': (%llu, %llu), }",
			 type == NPY_I32 ? "<i4" : "<f4", (unsigned long long)rows,
			 (unsigned long long)cols);
	size_t total = 10 + (size_t)n + 1, pad = (64 - total % 64) % 64;
	uint8_t pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0 };
	size_t hlen = (size_t)n + pad + 1;
	FILE *f = fopen(path, "wb");

	if (!f) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	memset(header + n, ' ', pad);
	header[n + pad] = '\n';
	pre[8] = (uint8_t)hlen;
	pre[9] = (uint8_t)(hlen >> 8);
	int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(header, 1, hlen, f) == hlen &&
		 fwrite(data, 4, (size_t)(rows * cols), f) == (size_t)(rows * cols);
	if (fclose(f) != 0 || !ok) {
		snprintf(err, errlen, "%s: write failed", path);
		return -EIO;
	}
	return 0;
}

void npy_release(struct npy_array *a)
{
	free(a->data);
	a->data = NULL;
}
