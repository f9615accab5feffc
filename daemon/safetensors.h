/*
 * safetensors files: an 8-byte little-endian header length N, N bytes of JSON
 * mapping tensor names to {dtype, shape, data_offsets [begin, end)} relative to
 * the byte after the header, then the data.  The parser trusts nothing: the
 * header length against the file size and a cap, every field's type, shape
 * products against overflow, offsets inside the data area and equal to
 * shape x element size.  Files are mapped read-only.
 */
#ifndef MOED_SAFETENSORS_H
#define MOED_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_HEADER (100u << 20)
#define ST_MAX_DIMS 8

struct st_tensor {
	char *name;
	char dtype_name[12];            /* as in the file: "F32", "BF16", "I64", ... */
	uint32_t dtype;                 /* MOED_DTYPE_*, 0 when moed cannot use it */
	uint32_t ndim;
	uint64_t shape[ST_MAX_DIMS];
	uint64_t begin, end;            /* offsets in the data area */
};

struct st_file {
	char *path;
	const uint8_t *base;            /* whole file */
	size_t size;
	size_t data_off;                /* 8 + header length */
	size_t n;
	struct st_tensor *t;
	int mapped;
};

/* Parse the file image buf[0..size) (not copied; must outlive the result). */
int st_parse(const uint8_t *buf, size_t size, const char *name, struct st_file **ret_file,
	     char *err, size_t errlen);
int st_open(const char *path, struct st_file **ret_file, char *err, size_t errlen);
void st_close(struct st_file *f);
const struct st_tensor *st_find(const struct st_file *f, const char *name);
const void *st_data(const struct st_file *f, const struct st_tensor *t);
uint64_t st_elements(const struct st_tensor *t);

#endif
