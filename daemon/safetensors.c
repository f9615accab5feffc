/*
 * safetensors parsing with json-c.  The header is tokenised with a bounded
 * nesting depth straight from the mapped bytes (no NUL terminator needed).
 * Element sizes are known for every dtype safetensors defines, so offsets are
 * checked for all tensors, also those moed does not use; a dtype moed cannot
 * compute with is refused later, by the loader, naming the tensor.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/hugepages.h"
#include "daemon/safetensors.h"
#include "include/moed/plugin.h"

static const struct {
	const char *name;
	size_t size;
	uint32_t moed;
} dtypes[] = {
	{ "F64", 8, 0 }, { "F32", 4, MOED_DTYPE_F32 }, { "F16", 2, MOED_DTYPE_F16 },
	{ "BF16", 2, MOED_DTYPE_BF16 }, { "I64", 8, 0 }, { "I32", 4, 0 }, { "I16", 2, 0 },
	{ "I8", 1, 0 }, { "U64", 8, 0 }, { "U32", 4, 0 }, { "U16", 2, 0 }, { "U8", 1, 0 },
	{ "BOOL", 1, 0 }, { "F8_E4M3", 1, MOED_DTYPE_F8_E4M3 }, { "F8_E5M2", 1, 0 },
};

uint64_t st_elements(const struct st_tensor *t)
{
	uint64_t n = 1;

	for (uint32_t i = 0; i < t->ndim; i++)
		n *= t->shape[i];
	return n;
}

static void free_tensors(struct st_tensor *t, size_t n)
{
	for (size_t i = 0; t && i < n; i++)
		free(t[i].name);
	free(t);
}

static int get_u64(json_object *o, uint64_t *ret)
{
	int64_t v;

	if (!json_object_is_type(o, json_type_int))
		return -1;
	errno = 0;
	v = json_object_get_int64(o);
	if (v < 0 || errno)
		return -1;
	*ret = (uint64_t)v;
	return 0;
}

static int parse_tensor(const char *key, json_object *val, uint64_t data_len,
			struct st_tensor *t, char *why, size_t whylen)
{
	json_object *dt, *shape, *offs;
	size_t esize = 0;
	uint64_t elems = 1;

	if (!json_object_is_type(val, json_type_object) ||
	    !json_object_object_get_ex(val, "dtype", &dt) ||
	    !json_object_object_get_ex(val, "shape", &shape) ||
	    !json_object_object_get_ex(val, "data_offsets", &offs) ||
	    !json_object_is_type(dt, json_type_string) ||
	    !json_object_is_type(shape, json_type_array) ||
	    !json_object_is_type(offs, json_type_array) || json_object_array_length(offs) != 2) {
		snprintf(why, whylen, "tensor '%s': needs dtype, shape and data_offsets [begin, end]",
			 key);
		return -EBADMSG;
	}
	const char *dname = json_object_get_string(dt);
	for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
		if (strcmp(dname, dtypes[i].name) == 0) {
			esize = dtypes[i].size;
			t->dtype = dtypes[i].moed;
			snprintf(t->dtype_name, sizeof(t->dtype_name), "%s", dtypes[i].name);
		}
	if (!esize) {
		snprintf(why, whylen, "tensor '%s': unknown dtype '%.16s'", key, dname);
		return -EBADMSG;
	}
	t->ndim = (uint32_t)json_object_array_length(shape);
	if (t->ndim > ST_MAX_DIMS) {
		snprintf(why, whylen, "tensor '%s': %u dimensions (at most %d)", key, t->ndim,
			 ST_MAX_DIMS);
		return -EBADMSG;
	}
	for (uint32_t i = 0; i < t->ndim; i++) {
		if (get_u64(json_object_array_get_idx(shape, i), &t->shape[i]) < 0) {
			snprintf(why, whylen, "tensor '%s': shape must be non-negative integers", key);
			return -EBADMSG;
		}
		if (t->shape[i] && elems > UINT64_MAX / esize / t->shape[i]) {
			snprintf(why, whylen, "tensor '%s': shape overflows", key);
			return -EBADMSG;
		}
		elems *= t->shape[i];
	}
	if (get_u64(json_object_array_get_idx(offs, 0), &t->begin) < 0 ||
	    get_u64(json_object_array_get_idx(offs, 1), &t->end) < 0 || t->begin > t->end ||
	    t->end > data_len) {
		snprintf(why, whylen, "tensor '%s': data_offsets outside the file's %llu data bytes (truncated file?)",
			 key, (unsigned long long)data_len);
		return -EBADMSG;
	}
	if (t->end - t->begin != elems * esize) {
		snprintf(why, whylen, "tensor '%s': %s shape needs %llu bytes, data_offsets give %llu",
			 key, t->dtype_name, (unsigned long long)(elems * esize),
			 (unsigned long long)(t->end - t->begin));
		return -EBADMSG;
	}
	t->name = strdup(key);
	return t->name ? 0 : -ENOMEM;
}

static int cmp_tensor(const void *a, const void *b)
{
	return strcmp(((const struct st_tensor *)a)->name, ((const struct st_tensor *)b)->name);
}

int st_parse(const uint8_t *buf, size_t size, const char *name, struct st_file **ret_file,
	     char *err, size_t errlen)
{
	struct json_tokener *tok = NULL;
	json_object *root = NULL;
	struct st_file *f = NULL;
	uint64_t hlen = 0;
	char why[384] = "";
	int r = -EBADMSG;

	if (size < 8) {
		snprintf(why, sizeof(why), "%zu bytes, too short for a header", size);
		goto fail;
	}
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | buf[i];
	if (hlen < 2 || hlen > ST_MAX_HEADER || hlen > size - 8) {
		snprintf(why, sizeof(why), "header length %llu does not fit the file (%zu bytes, cap %u)",
			 (unsigned long long)hlen, size, ST_MAX_HEADER);
		goto fail;
	}
	tok = json_tokener_new_ex(16);
	if (!tok) {
		r = -ENOMEM;
		goto fail;
	}
	root = json_tokener_parse_ex(tok, (const char *)buf + 8, (int)hlen);
	if (!root || json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(root, json_type_object)) {
		snprintf(why, sizeof(why), "header is not a JSON object (%s)",
			 json_tokener_get_error(tok) == json_tokener_continue
				 ? "it ends early" : root ? "wrong type"
				 : json_tokener_error_desc(json_tokener_get_error(tok)));
		goto fail;
	}
	/* writers pad the header with spaces; anything else after the object is not ours */
	for (size_t i = json_tokener_get_parse_end(tok); i < hlen; i++)
		if (!strchr(" \t\r\n", buf[8 + i]) || !buf[8 + i]) {
			snprintf(why, sizeof(why), "header has bytes after its JSON object (offset %zu)",
				 8 + i);
			goto fail;
		}
	f = calloc(1, sizeof(*f));
	if (!f || !(f->t = calloc((size_t)json_object_object_length(root) + 1, sizeof(*f->t)))) {
		r = -ENOMEM;
		goto fail;
	}
	f->base = buf;
	f->size = size;
	f->data_off = 8 + (size_t)hlen;
	json_object_object_foreach(root, key, val) {
		if (strcmp(key, "__metadata__") == 0)
			continue;
		r = parse_tensor(key, val, size - f->data_off, &f->t[f->n], why, sizeof(why));
		if (r < 0)
			goto fail;
		f->n++;
	}
	json_object_put(root);
	json_tokener_free(tok);
	qsort(f->t, f->n, sizeof(*f->t), cmp_tensor);
	*ret_file = f;
	return 0;
fail:
	if (r == -ENOMEM)
		snprintf(why, sizeof(why), "out of memory");
	snprintf(err, errlen, "%s: %s", name, why);
	if (f) {
		free_tensors(f->t, f->n);
		free(f);
	}
	json_object_put(root);
	if (tok)
		json_tokener_free(tok);
	return r;
}

int st_open(const char *path, struct st_file **ret_file, char *err, size_t errlen)
{
	struct stat st;
	void *map;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);    /* a FIFO must not block us */
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return r;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		snprintf(err, errlen, "%s: not a regular file", path);
		return -EINVAL;
	}
	if (st.st_size < 8) {
		close(fd);
		snprintf(err, errlen, "%s: %lld bytes, too short for a safetensors header (truncated file?)",
			 path, (long long)st.st_size);
		return -EBADMSG;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	r = map == MAP_FAILED ? -errno : 0;
	close(fd);
	if (r == 0)
		huge_advise(map, (size_t)st.st_size);   /* weights served in place */
	if (r < 0) {
		snprintf(err, errlen, "%s: mmap: %s", path, strerror(-r));
		return r;
	}
	r = st_parse(map, (size_t)st.st_size, path, ret_file, err, errlen);
	if (r < 0 || !((*ret_file)->path = strdup(path))) {
		if (r == 0)
			st_close(*ret_file);
		munmap(map, (size_t)st.st_size);
		return r < 0 ? r : -ENOMEM;
	}
	(*ret_file)->mapped = 1;
	return 0;
}

void st_close(struct st_file *f)
{
	if (!f)
		return;
	if (f->mapped)
		munmap((void *)f->base, f->size);
	free_tensors(f->t, f->n);
	free(f->path);
	free(f);
}

const struct st_tensor *st_find(const struct st_file *f, const char *name)
{
	struct st_tensor key = { .name = (char *)name };

	return bsearch(&key, f->t, f->n, sizeof(*f->t), cmp_tensor);
}

const void *st_data(const struct st_file *f, const struct st_tensor *t)
{
	return f->base + f->data_off + t->begin;
}
