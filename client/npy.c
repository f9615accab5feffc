/*
 * .npy reading and writing.  The header is a Python dict literal; rather than
 * a general parser, the reader scans exactly the grammar numpy writes — a
 * '{', the three keys 'descr', 'fortran_order' and 'shape' once each in any
 * order, an optional trailing comma, '}', then only padding — and rejects
 * anything else.  Sizes are checked before anything is allocated: the header
 * length against the file, the shape's element count (overflow-checked)
 * against the bytes that follow the header, which must match exactly.
 *
 * Data are little-endian ('<'), as numpy writes them on every platform moed
 * runs on; the arrays are used in host order, hence the build check below.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/npy.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "moectl's .npy code and the moed protocol assume a little-endian host"
#endif

#define NPY_PARSE_DIMS 64               /* numpy's own limit */

static const uint8_t npy_magic[6] = { 0x93, 'N', 'U', 'M', 'P', 'Y' };

struct scan {
	const char *p, *end;
};

static int is_ws(char c)
{
	return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

static void skip_ws(struct scan *s)
{
	while (s->p < s->end && is_ws(*s->p))
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

/* A quoted string without escapes into buf; 0 on success. */
static int quoted(struct scan *s, char *buf, size_t n)
{
	char q;
	size_t i = 0;

	skip_ws(s);
	if (s->p >= s->end || (*s->p != '\'' && *s->p != '"'))
		return -1;
	q = *s->p++;
	while (s->p < s->end && *s->p != q) {
		if (*s->p == '\\' || i + 1 >= n)
			return -1;
		buf[i++] = *s->p++;
	}
	if (s->p >= s->end)
		return -1;
	s->p++;
	buf[i] = '\0';
	return 0;
}

/* A word such as True/False, not followed by more identifier characters. */
static int keyword(struct scan *s, const char *word)
{
	size_t n = strlen(word);

	skip_ws(s);
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n))
		return 0;
	if ((size_t)(s->end - s->p) > n) {
		char c = s->p[n];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '_')
			return 0;
	}
	s->p += n;
	return 1;
}

static int number(struct scan *s, uint64_t *ret)
{
	uint64_t v = 0;
	int digits = 0;

	skip_ws(s);
	while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
		uint64_t d = (uint64_t)(*s->p++ - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
		digits++;
	}
	if (digits && s->p < s->end && *s->p == 'L')    /* Python 2 numpy wrote 3L */
		s->p++;
	*ret = v;
	return digits ? 0 : -1;
}

/* A tuple of integers, "(3,)" for one; the count is checked by the caller. */
static int shape(struct scan *s, uint64_t dims[NPY_PARSE_DIMS], uint32_t *ret_n)
{
	uint32_t n = 0;

	if (!eat(s, '('))
		return -1;
	if (eat(s, ')'))
		goto done;
	for (;;) {
		if (n == NPY_PARSE_DIMS || number(s, &dims[n]) < 0)
			return -1;
		n++;
		if (eat(s, ',')) {
			if (eat(s, ')'))
				break;
		} else if (n > 1 && eat(s, ')')) {
			break;          /* "(3)" is an int in Python, not a tuple */
		} else {
			return -1;
		}
	}
done:
	*ret_n = n;
	return 0;
}

static int parse_header(const char *h, size_t len, struct npy_array *a, int *ret_f64,
			char *why, size_t whylen)
{
	struct scan s = { h, h + len };
	char key[32], descr[16] = "";
	int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0;
	uint64_t dims[NPY_PARSE_DIMS] = { 0 };
	uint32_t ndim = 0;

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
			if (keyword(&s, "True"))
				fortran = 1;
			else if (!keyword(&s, "False"))
				goto bad;
			have_order = 1;
		} else if (!strcmp(key, "shape") && !have_shape) {
			if (shape(&s, dims, &ndim) < 0)
				goto bad;
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
	skip_ws(&s);
	if (s.p != s.end || !have_descr || !have_order || !have_shape)
		goto bad;
	if (fortran) {
		snprintf(why, whylen, "Fortran-order arrays are not supported; save a C-order copy "
			 "(np.ascontiguousarray)");
		return -ENOTSUP;
	}
	if (ndim != 1 && ndim != 2) {
		snprintf(why, whylen, "has %u dimensions; want [T, H] (or [H] for one token)", ndim);
		return -ENOTSUP;
	}
	*ret_f64 = 0;
	if (!strcmp(descr, "<f4")) {
		a->type = NPY_F32;
	} else if (!strcmp(descr, "<f8")) {
		a->type = NPY_F32;
		*ret_f64 = 1;
	} else if (!strcmp(descr, "<i4")) {
		a->type = NPY_I32;
	} else if (!strcmp(descr, "<u2")) {
		a->type = NPY_BF16;
	} else {
		snprintf(why, whylen, "dtype '%s' is not supported (little-endian float32 '<f4', "
			 "float64 '<f8', int32 '<i4' or bf16 bits as uint16 '<u2')", descr);
		return -ENOTSUP;
	}
	a->ndim = ndim;
	a->rows = ndim == 1 ? 1 : dims[0];
	a->cols = ndim == 1 ? dims[0] : dims[1];
	return 0;
bad:
	snprintf(why, whylen, "malformed header (want numpy's {'descr': ..., 'fortran_order': ..., "
		 "'shape': (...)})");
	return -EINVAL;
}

/* float64 -> float32 rounding to nearest.  Values that round past FLT_MAX
 * (from FLT_MAX + half an ulp, 0x1.ffffffp127, on) become infinities here, as
 * IEEE 754 says, rather than through a conversion C leaves undefined; the
 * caller's finiteness check then refuses them. */
static float narrow(double d)
{
	if (d >= 0x1.ffffffp127)
		return INFINITY;
	if (d <= -0x1.ffffffp127)
		return -INFINITY;
	return (float)d;
}

int npy_parse(const uint8_t *buf, size_t len, const char *name, struct npy_array *ret_array,
	      char *err, size_t errlen)
{
	struct npy_array a = { 0 };
	size_t hlen, off, esize, avail, n, bytes;
	char why[256] = "";
	int f64 = 0, r;

	if (len < 10 || memcmp(buf, npy_magic, sizeof(npy_magic))) {
		snprintf(err, errlen, "%s: not a .npy file", name);
		return -EINVAL;
	}
	if (buf[6] == 1 && buf[7] == 0) {
		hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
		off = 10;
	} else if ((buf[6] == 2 || buf[6] == 3) && buf[7] == 0 && len >= 12) {
		hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 |
		       (size_t)buf[11] << 24;
		off = 12;
	} else {
		snprintf(err, errlen, "%s: unsupported .npy version %u.%u (or truncated)", name,
			 buf[6], buf[7]);
		return -EINVAL;
	}
	if (hlen > NPY_MAX_HEADER || hlen > len - off) {
		snprintf(err, errlen, "%s: header length %zu does not fit the file (%zu bytes)",
			 name, hlen, len);
		return -EINVAL;
	}
	r = parse_header((const char *)buf + off, hlen, &a, &f64, why, sizeof(why));
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", name, why);
		return r;
	}
	off += hlen;
	avail = len - off;
	esize = f64 ? 8 : a.type == NPY_BF16 ? 2 : 4;
	if (a.rows > SIZE_MAX || a.cols > SIZE_MAX ||
	    __builtin_mul_overflow((size_t)a.rows, (size_t)a.cols, &n) ||
	    __builtin_mul_overflow(n, esize, &bytes) || bytes != avail) {
		snprintf(err, errlen, "%s: shape (%llu, %llu) does not match the %zu data bytes "
			 "after the header", name, (unsigned long long)a.rows,
			 (unsigned long long)a.cols, avail);
		return -EINVAL;
	}
	a.data = malloc(n ? n * sizeof(float) : 1);
	if (!a.data) {
		snprintf(err, errlen, "%s: out of memory for %zu elements", name, n);
		return -ENOMEM;
	}
	if (f64) {
		for (size_t i = 0; i < n; i++) {
			double d;
			memcpy(&d, buf + off + 8 * i, sizeof(d));
			((float *)a.data)[i] = narrow(d);
		}
	} else if (n) {
		memcpy(a.data, buf + off, n * esize);
	}
	*ret_array = a;
	return 0;
}

int npy_read(const char *path, struct npy_array *ret_array, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	struct stat st;
	size_t have = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		r = -EINVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > NPY_MAX_FILE || (uint64_t)st.st_size > SIZE_MAX) {
		snprintf(err, errlen, "%s: %lld bytes is more than the %llu moectl reads", path,
			 (long long)st.st_size, (unsigned long long)NPY_MAX_FILE);
		r = -EFBIG;
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		snprintf(err, errlen, "%s: out of memory for %lld bytes", path,
			 (long long)st.st_size);
		r = -ENOMEM;
		goto out;
	}
	while (have < (size_t)st.st_size) {
		ssize_t got = read(fd, buf + have, (size_t)st.st_size - have);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			r = got < 0 ? -errno : -EIO;
			snprintf(err, errlen, "%s: %s", path,
				 got < 0 ? strerror(-r) : "file shrank while being read");
			goto out;
		}
		have += (size_t)got;
	}
	r = npy_parse(buf, have, path, ret_array, err, errlen);
out:
	free(buf);
	close(fd);
	return r;
}

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Cut a regular file at `size` (what an overwrite left of a longer old
 * file); pipes and devices are left alone. */
static int cut_to(int fd, off_t size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode) && st.st_size > size && ftruncate(fd, size) < 0)
		return -errno;
	return 0;
}

int npy_write(const char *path, enum npy_type type, const void *data, uint64_t rows,
	      uint64_t cols, char *err, size_t errlen)
{
	/* magic, version 1.0, header length (LE u16), header: < 256 bytes here */
	uint8_t head[256] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0 };
	size_t n, bytes, dict, total;
	int fd, r;

	if (rows > SIZE_MAX || cols > SIZE_MAX ||
	    __builtin_mul_overflow((size_t)rows, (size_t)cols, &n) ||
	    __builtin_mul_overflow(n, (size_t)(type == NPY_BF16 ? 2 : 4), &bytes)) {
		snprintf(err, errlen, "%s: shape (%llu, %llu) is too large", path,
			 (unsigned long long)rows, (unsigned long long)cols);
		return -EOVERFLOW;
	}
	dict = (size_t)snprintf((char *)head + 10, sizeof(head) - 10,
				"{'descr': '%s', 'fortran_order': False, 'shape': (%llu, %llu), }",
				type == NPY_I32 ? "<i4" : type == NPY_BF16 ? "<u2" : "<f4", (unsigned long long)rows,
				(unsigned long long)cols);
	/* pad with spaces and end with '\n' so the data start 64-byte aligned */
	total = (10 + dict + 1 + 63) / 64 * 64;
	memset(head + 10 + dict, ' ', total - 10 - dict - 1);
	head[total - 1] = '\n';
	head[8] = (uint8_t)(total - 10);
	head[9] = (uint8_t)((total - 10) >> 8);

	/* No O_TRUNC: ext4 flushes a file truncated to 0 when it is closed
	 * (auto_da_alloc), 0.2 ms of a one-shot `moectl infer --output` over an
	 * existing file; the old file is overwritten and cut to the new size. */
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	r = write_all(fd, head, total);
	if (r == 0)
		r = write_all(fd, data, bytes);
	if (r == 0)
		r = cut_to(fd, (off_t)(total + bytes));
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r < 0) {
		snprintf(err, errlen, "%s: write failed: %s", path, strerror(-r));
		unlink(path);
	}
	return r;
}

void npy_release(struct npy_array *a)
{
	free(a->data);
	a->data = NULL;
}
