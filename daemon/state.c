/*
 * bias.state format (little-endian, as the host writes it):
 *   "MOEDBIAS" | u32 version (1) | u64 model fingerprint | u32 layers | u32 E |
 *   layers x ( u32 layer index | u32 frozen | E x f32 bias ) | u64 FNV-1a of all before.
 * Only layers with a saved bias are written.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/engine.h"
#include "daemon/log.h"
#include "daemon/state.h"

#define MAGIC "MOEDBIAS"
#define STATE_VERSION 1u

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static int put(struct buf *b, const void *data, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 4096) + n;
		uint8_t *q = realloc(b->p, cap);
		if (!q)
			return -ENOMEM;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	return 0;
}

static uint64_t checksum(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static int write_atomic(const char *dir, const char *name, const struct buf *b, char *err,
			size_t errlen)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	int fd, dfd, r = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, name);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "state: cannot create a file in '%s': %s", dir, strerror(-r));
		return r;
	}
	for (size_t off = 0; off < b->len;) {
		ssize_t w = write(fd, b->p + off, b->len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			r = -errno;
			goto fail;
		}
		off += (size_t)w;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		fd = -1;
		r = -errno;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		r = -errno;
		goto fail;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
fail:
	snprintf(err, errlen, "state: cannot write '%s': %s", path, strerror(-r));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return r;
}

int state_save(struct engine *e, const char *dir, char *err, size_t errlen)
{
	uint32_t version = STATE_VERSION, n = 0, E = e->model->n_experts;
	uint64_t fp = engine_model_fingerprint(e), sum;
	struct buf b = { 0 };
	int r = -ENOMEM;

	engine_bias_capture(e);
	for (uint32_t i = 0; i < e->n_layers; i++)
		n += e->layers[i].has_saved_bias != 0;
	if (n == 0)
		return 0;
	if (put(&b, MAGIC, 8) || put(&b, &version, 4) || put(&b, &fp, 8) || put(&b, &n, 4) ||
	    put(&b, &E, 4))
		goto out;
	for (uint32_t i = 0; i < e->n_layers; i++) {
		const struct engine_layer *l = &e->layers[i];
		uint32_t frozen = (uint32_t)l->saved_frozen;
		if (!l->has_saved_bias)
			continue;
		if (put(&b, &l->w->index, 4) || put(&b, &frozen, 4) ||
		    put(&b, l->saved_bias, E * sizeof(float)))
			goto out;
	}
	sum = checksum(b.p, b.len);
	if (put(&b, &sum, 8))
		goto out;
	r = write_atomic(dir, STATE_BIAS_FILE, &b, err, errlen);
	if (r == 0)
		log_debug("state: saved the bias of %u layers to '%s/%s'", n, dir, STATE_BIAS_FILE);
out:
	if (r == -ENOMEM)
		snprintf(err, errlen, "state: out of memory");
	free(b.p);
	return r;
}

static int read_file(const char *path, struct buf *b)
{
	FILE *f = fopen(path, "re");
	uint8_t chunk[8192];
	size_t n;

	if (!f)
		return -errno;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (b->len + n > (64u << 20) || put(b, chunk, n) < 0) {
			fclose(f);
			return -EFBIG;
		}
	fclose(f);
	return 0;
}

int state_load(struct engine *e, const char *dir, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct buf b = { 0 };
	uint32_t version, n, E;
	uint64_t fp, sum;
	size_t off, rec;
	int r;

	snprintf(path, sizeof(path), "%s/%s", dir, STATE_BIAS_FILE);
	r = read_file(path, &b);
	if (r < 0) {
		snprintf(err, errlen, "state: '%s': %s", path, strerror(-r));
		goto out;
	}
	r = -EBADMSG;
	if (b.len < 8 + 4 + 8 + 4 + 4 + 8 || memcmp(b.p, MAGIC, 8) != 0) {
		snprintf(err, errlen, "state: '%s' is not a moed bias file", path);
		goto out;
	}
	memcpy(&sum, b.p + b.len - 8, 8);
	if (checksum(b.p, b.len - 8) != sum) {
		snprintf(err, errlen, "state: '%s' fails its checksum; ignored", path);
		goto out;
	}
	memcpy(&version, b.p + 8, 4);
	memcpy(&fp, b.p + 12, 8);
	memcpy(&n, b.p + 20, 4);
	memcpy(&E, b.p + 24, 4);
	rec = 8 + (size_t)E * sizeof(float);
	if (version != STATE_VERSION || E != e->model->n_experts || n > e->n_layers ||
	    b.len != 28 + (size_t)n * rec + 8) {
		snprintf(err, errlen, "state: '%s' has another layout (version %u, %u experts)", path,
			 version, E);
		goto out;
	}
	if (fp != engine_model_fingerprint(e)) {
		snprintf(err, errlen, "state: '%s' was saved for another model; ignored", path);
		r = -ESTALE;
		goto out;
	}
	off = 28;
	for (uint32_t i = 0; i < n; i++, off += rec) {
		uint32_t index, frozen;
		memcpy(&index, b.p + off, 4);
		memcpy(&frozen, b.p + off + 4, 4);
		struct engine_layer *l = engine_layer(e, index);
		if (!l)
			continue;
		memcpy(l->saved_bias, b.p + off + 8, E * sizeof(float));
		l->has_saved_bias = 1;
		l->saved_frozen = frozen != 0;
	}
	log_info("state: restored the bias of %u layers from '%s'", n, path);
	r = 0;
out:
	free(b.p);
	return r;
}
