/*
 * router.state format (host byte order, as the host writes it):
 *   "MOEDRSTA" | u32 format (1) | u64 model fingerprint | u32 records |
 *   u32 config known | str config router | params |
 *   records x ( u32 layer index | str router ("" unknown) | params |
 *               str blob plugin ("" none) | u32 blob version | u32 len | len bytes ) |
 *   u64 FNV-1a of all before.
 *   str = u32 length (<= 4096) + bytes; params = u32 count (<= 256) + count x (key, value).
 *
 * bias.state (the old format, read only):
 *   "MOEDBIAS" | u32 version (1) | u64 model fingerprint | u32 layers | u32 E |
 *   layers x ( u32 layer index | u32 frozen | E x f32 bias ) | u64 FNV-1a of all before.
 * Its biases become bias-balanced state blobs (engine_bias_blob(), the format
 * bias-balanced reads).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/engine.h"
#include "daemon/hash.h"
#include "daemon/log.h"
#include "daemon/state.h"

#define MAGIC "MOEDRSTA"
#define FORMAT 1u
#define OLD_MAGIC "MOEDBIAS"
#define OLD_VERSION 1u
#define MAX_FILE (64u << 20)
#define MAX_STR 4096u
#define MAX_PARAMS 256u
#define BB_PLUGIN "bias-balanced"

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
	if (n)          /* data may be NULL for an empty blob */
		memcpy(b->p + b->len, data, n);
	b->len += n;
	return 0;
}

static int put_u32(struct buf *b, uint32_t v)
{
	return put(b, &v, 4);
}

static int put_str(struct buf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n > MAX_STR)
		return -ENAMETOOLONG;
	return put_u32(b, (uint32_t)n) ? -ENOMEM : put(b, s, n);
}

static int put_params(struct buf *b, const struct moed_param *p, size_t n)
{
	int r;

	if (n > MAX_PARAMS)
		return -E2BIG;
	if ((r = put_u32(b, (uint32_t)n)) < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		if ((r = put_str(b, p[i].key)) < 0 || (r = put_str(b, p[i].value)) < 0)
			return r;
	return 0;
}

static int write_atomic(const char *dir, const char *name, const struct buf *b, char *err,
			size_t errlen)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	const char *step = "write";
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
	step = "sync";
	if (fsync(fd) < 0) {
		r = -errno;
		goto fail;
	}
	r = close(fd);
	fd = -1;
	if (r < 0) {
		r = -errno;
		goto fail;
	}
	step = "rename";
	if (rename(tmp, path) < 0) {
		r = -errno;
		goto fail;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0) {
		r = -errno;
		if (dfd >= 0)
			close(dfd);
		snprintf(err, errlen, "state: '%s' written but the directory could not be synced: %s",
			 path, strerror(-r));
		return r;
	}
	close(dfd);
	return 0;
fail:
	snprintf(err, errlen, "state: cannot %s '%s': %s", step, path, strerror(-r));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return r;
}

int state_save(struct engine *e, const char *dir, char *err, size_t errlen)
{
	uint64_t fp = engine_model_fingerprint(e), sum;
	struct buf b = { 0 };
	char old[PATH_MAX];
	int r;

	engine_state_capture(e);
	r = put(&b, MAGIC, 8);
	if (!r)
		r = put_u32(&b, FORMAT);
	if (!r)
		r = put(&b, &fp, 8);
	if (!r)
		r = put_u32(&b, e->n_layers);
	if (!r)
		r = put_u32(&b, e->cfg_router != NULL);
	if (!r)
		r = put_str(&b, e->cfg_router);
	if (!r)
		r = put_params(&b, e->cfg_params, e->n_cfg_params);
	for (uint32_t i = 0; !r && i < e->n_layers; i++) {
		const struct engine_layer *l = &e->layers[i];
		const struct plugin_gen *g = l->router ? l->router->gen : NULL;
		r = put_u32(&b, l->w->index);
		if (!r)
			r = put_str(&b, g ? g->name : "");
		if (!r)
			r = put_params(&b, g ? g->params : NULL, g ? g->n_params : 0);
		if (!r)
			r = put_str(&b, l->saved.plugin);
		if (!r)
			r = put_u32(&b, l->saved.version);
		if (!r)
			r = l->saved.len > MAX_FILE ? -EFBIG : put_u32(&b, (uint32_t)l->saved.len);
		if (!r)
			r = put(&b, l->saved.blob, l->saved.len);
	}
	sum = moed_fnv1a(MOED_FNV1A_INIT, b.p, b.len);
	if (!r)
		r = put(&b, &sum, 8);
	if (r < 0) {
		snprintf(err, errlen, "state: cannot encode the router state: %s", strerror(-r));
		goto out;
	}
	r = write_atomic(dir, STATE_ROUTER_FILE, &b, err, errlen);
	if (r < 0)
		goto out;
	log_debug("state: saved the routers of %u layers to '%s/%s'", e->n_layers, dir,
		  STATE_ROUTER_FILE);
	snprintf(old, sizeof(old), "%s/%s", dir, STATE_BIAS_FILE);
	if (unlink(old) == 0)
		log_notice("state: '%s' migrated to '%s/%s' and removed", old, dir, STATE_ROUTER_FILE);
out:
	free(b.p);
	return r;
}

/* Read a regular file without following a link or blocking on a FIFO. */
static int read_file(const char *path, struct buf *b, char *err, size_t errlen)
{
	uint8_t chunk[8192];
	struct stat st;
	ssize_t n;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		if (r == -ELOOP)
			snprintf(err, errlen, "state: '%s' is a symbolic link; ignored, moed starts "
				 "without the saved state", path);
		else
			snprintf(err, errlen, "state: '%s': %s", path, strerror(-r));
		return r == -ELOOP ? -EINVAL : r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "state: '%s': %s", path, strerror(-r));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "state: '%s' is %s, not a regular file; ignored, moed starts "
			 "without the saved state", path,
			 S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO"
			 : S_ISSOCK(st.st_mode) ? "a socket" : "a device");
		r = -EINVAL;
		goto out;
	}
	if (st.st_size > MAX_FILE) {
		snprintf(err, errlen, "state: '%s' is larger than %u bytes; ignored", path, MAX_FILE);
		r = -EFBIG;
		goto out;
	}
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || b->len + (size_t)n > MAX_FILE || put(b, chunk, (size_t)n) < 0) {
			r = n < 0 ? -errno : -EFBIG;
			snprintf(err, errlen, "state: '%s': %s", path, strerror(-r));
			goto out;
		}
	}
out:
	close(fd);
	return r;
}

/* A bounds-checked reader over the file's bytes. */
struct cur {
	const uint8_t *p;
	size_t len, off;
	int bad;
};

static const void *take(struct cur *c, size_t n)
{
	const void *q = c->p + c->off;

	if (c->bad || n > c->len - c->off) {
		c->bad = 1;
		return NULL;
	}
	c->off += n;
	return q;
}

static uint32_t get_u32(struct cur *c)
{
	const void *q = take(c, 4);
	uint32_t v = 0;

	if (q)
		memcpy(&v, q, 4);
	return v;
}

/* A NUL-terminated copy, or NULL (c->bad set when malformed or out of memory). */
static char *get_str(struct cur *c)
{
	uint32_t n = get_u32(c);
	const void *q = n <= MAX_STR ? take(c, n) : NULL;
	char *s;

	if (!q) {
		c->bad = 1;
		return NULL;
	}
	s = malloc(n + 1);
	if (!s) {
		c->bad = 1;
		return NULL;
	}
	memcpy(s, q, n);
	s[n] = '\0';
	return s;
}

static struct moed_param *get_params(struct cur *c, size_t *ret_n)
{
	uint32_t n = get_u32(c);
	struct moed_param *p;

	*ret_n = 0;
	if (c->bad || n > MAX_PARAMS || !(p = calloc(n ? n : 1, sizeof(*p)))) {
		c->bad = 1;
		return NULL;
	}
	for (uint32_t i = 0; i < n && !c->bad; i++) {
		p[i].key = get_str(c);
		p[i].value = get_str(c);
		*ret_n = i + 1;
	}
	for (size_t i = 0; c->bad && i < *ret_n; i++)
		if (!p[i].key || !p[i].value) {
			engine_params_free(p, *ret_n);
			*ret_n = 0;
			return NULL;
		}
	return p;
}

static void saved_reset(struct engine *e)
{
	for (uint32_t i = 0; i < e->n_layers; i++)
		engine_saved_clear(&e->layers[i].saved);
	free(e->file_cfg_router);
	engine_params_free(e->file_cfg_params, e->n_file_cfg_params);
	e->file_cfg_router = NULL;
	e->file_cfg_params = NULL;
	e->n_file_cfg_params = 0;
	e->file_cfg_known = 0;
}

static int load_router_state(struct engine *e, const char *path, const struct buf *b, char *err,
			     size_t errlen)
{
	struct cur c = { b->p, b->len - 8, 0, 0 };
	uint64_t sum, fp;
	uint32_t format, n;
	const void *q;

	memcpy(&sum, b->p + b->len - 8, 8);
	if (moed_fnv1a(MOED_FNV1A_INIT, b->p, b->len - 8) != sum) {
		snprintf(err, errlen, "state: '%s' fails its checksum; ignored", path);
		return -EBADMSG;
	}
	take(&c, 8);
	format = get_u32(&c);
	q = take(&c, 8);
	n = get_u32(&c);
	if (c.bad || format != FORMAT || n > 1u << 20) {
		snprintf(err, errlen, "state: '%s' has another layout (format %u)", path, format);
		return -EBADMSG;
	}
	memcpy(&fp, q, 8);
	if (fp != engine_model_fingerprint(e)) {
		snprintf(err, errlen, "state: '%s' was saved for another model; ignored", path);
		return -ESTALE;
	}
	saved_reset(e);
	e->file_cfg_known = get_u32(&c) != 0;
	e->file_cfg_router = get_str(&c);
	e->file_cfg_params = get_params(&c, &e->n_file_cfg_params);
	for (uint32_t i = 0; i < n && !c.bad; i++) {
		struct engine_saved s = { 0 };
		uint32_t index = get_u32(&c), len;
		struct engine_layer *l;

		s.router = get_str(&c);
		s.params = get_params(&c, &s.n_params);
		s.plugin = get_str(&c);
		s.version = get_u32(&c);
		len = get_u32(&c);
		q = len <= MAX_FILE ? take(&c, len) : NULL;
		if (!q || !(s.blob = malloc(len ? len : 1)))
			c.bad = 1;
		l = engine_layer(e, index);
		if (c.bad || !l) {
			engine_saved_clear(&s);
			continue;
		}
		memcpy(s.blob, q, len);
		s.len = len;
		if (!*s.router) {
			free(s.router);
			s.router = NULL;
		}
		if (!*s.plugin) {
			free(s.plugin);
			s.plugin = NULL;
		}
		engine_saved_clear(&l->saved);
		l->saved = s;
	}
	if (c.bad || c.off != c.len) {
		saved_reset(e);
		snprintf(err, errlen, "state: '%s' has another layout (truncated or trailing bytes); "
			 "ignored", path);
		return -EBADMSG;
	}
	log_info("state: restored the router state of %u layers from '%s'", n, path);
	return 0;
}

/* The old bias.state: every bias becomes a bias-balanced state blob. */
static int load_bias_state(struct engine *e, const char *path, const struct buf *b, char *err,
			   size_t errlen)
{
	uint32_t version, n, E;
	uint64_t fp, sum;
	size_t off, rec;

	if (b->len < 8 + 4 + 8 + 4 + 4 + 8 || memcmp(b->p, OLD_MAGIC, 8) != 0) {
		snprintf(err, errlen, "state: '%s' is not a moed bias file", path);
		return -EBADMSG;
	}
	memcpy(&sum, b->p + b->len - 8, 8);
	if (moed_fnv1a(MOED_FNV1A_INIT, b->p, b->len - 8) != sum) {
		snprintf(err, errlen, "state: '%s' fails its checksum; ignored", path);
		return -EBADMSG;
	}
	memcpy(&version, b->p + 8, 4);
	memcpy(&fp, b->p + 12, 8);
	memcpy(&n, b->p + 20, 4);
	memcpy(&E, b->p + 24, 4);
	rec = 8 + (size_t)E * sizeof(float);
	if (version != OLD_VERSION || E != e->model->n_experts || n > e->n_layers ||
	    b->len != 28 + (size_t)n * rec + 8) {
		snprintf(err, errlen, "state: '%s' has another layout (version %u, %u experts)", path,
			 version, E);
		return -EBADMSG;
	}
	if (fp != engine_model_fingerprint(e)) {
		snprintf(err, errlen, "state: '%s' was saved for another model; ignored", path);
		return -ESTALE;
	}
	for (off = 28; off < 28 + (size_t)n * rec; off += 4) {
		float v;
		if ((off - 28) % rec < 8)
			continue;
		memcpy(&v, b->p + off, 4);
		if (!isfinite(v)) {
			snprintf(err, errlen, "state: '%s' holds a non-finite bias; ignored", path);
			return -EBADMSG;
		}
	}
	saved_reset(e);
	off = 28;
	for (uint32_t i = 0; i < n; i++, off += rec) {
		uint32_t index;
		struct engine_layer *l;
		uint8_t *blob;

		memcpy(&index, b->p + off, 4);
		l = engine_layer(e, index);
		if (!l)
			continue;
		uint32_t frozen;
		memcpy(&frozen, b->p + off + 4, 4);
		size_t len;
		blob = engine_bias_blob(E, frozen != 0, (const float *)(b->p + off + 8), &len);
		char *plugin = strdup(BB_PLUGIN);
		if (!blob || !plugin) {
			free(blob);
			free(plugin);
			saved_reset(e);
			snprintf(err, errlen, "state: out of memory");
			return -ENOMEM;
		}
		engine_saved_clear(&l->saved);
		l->saved.plugin = plugin;
		l->saved.version = ENGINE_BIAS_BLOB_VERSION;
		l->saved.blob = blob;
		l->saved.len = len;
	}
	log_info("state: read the bias of %u layers from the old '%s'; it is removed once "
		 "'%s' is saved", n, path, STATE_ROUTER_FILE);
	return 0;
}

int state_load(struct engine *e, const char *dir, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct buf b = { 0 };
	int r;

	snprintf(path, sizeof(path), "%s/%s", dir, STATE_ROUTER_FILE);
	r = read_file(path, &b, err, errlen);
	if (r == 0) {
		if (b.len < 8 + 4 + 8 + 4 + 8 || memcmp(b.p, MAGIC, 8) != 0) {
			snprintf(err, errlen, "state: '%s' is not a moed router state file", path);
			r = -EBADMSG;
		} else {
			r = load_router_state(e, path, &b, err, errlen);
		}
		goto out;
	}
	if (r != -ENOENT)
		goto out;
	b.len = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, STATE_BIAS_FILE);
	r = read_file(path, &b, err, errlen);
	if (r == 0)
		r = load_bias_state(e, path, &b, err, errlen);
out:
	free(b.p);
	return r;
}

/* Does layer l need its saved router back? */
static int needs_restore(const struct engine_layer *l)
{
	const struct plugin_gen *g = l->router ? l->router->gen : NULL;

	return l->saved.router &&
	       (!g || strcmp(g->name, l->saved.router) ||
		!engine_params_equal(g->params, g->n_params, l->saved.params, l->saved.n_params));
}

static int same_saved(const struct engine_saved *a, const struct engine_saved *b)
{
	return !strcmp(a->router, b->router) &&
	       engine_params_equal(a->params, a->n_params, b->params, b->n_params);
}

int state_restore_routers(struct engine *e, const char *cfg_router,
			  const struct moed_param *cfg_params, size_t n, char *err, size_t errlen)
{
	struct engine_swap **swaps = NULL;
	uint32_t want = 0, all_same = 1, n_swaps = 0;
	const struct engine_layer *first = NULL;
	int r;

	r = engine_config_router(e, cfg_router, cfg_params, n);
	if (r < 0) {
		snprintf(err, errlen, "state: out of memory");
		return r;
	}
	for (uint32_t i = 0; i < e->n_layers; i++) {
		const struct engine_layer *l = &e->layers[i];
		if (!needs_restore(l))
			continue;
		want++;
		if (!first)
			first = l;
		else if (!same_saved(&first->saved, &l->saved))
			all_same = 0;
	}
	if (!want)
		return 0;
	if (!e->file_cfg_known || !e->file_cfg_router || strcmp(e->file_cfg_router, cfg_router) ||
	    !engine_params_equal(e->file_cfg_params, e->n_file_cfg_params, cfg_params, n)) {
		log_info("state: the config's [router] differs from when '%s' was written; the "
			 "config's router '%s' serves", STATE_ROUTER_FILE, cfg_router);
		return 0;
	}
	swaps = calloc(e->n_layers, sizeof(*swaps));
	if (!swaps) {
		snprintf(err, errlen, "state: out of memory");
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < e->n_layers; i++) {
		const struct engine_layer *l = &e->layers[i];
		int64_t layer = want == e->n_layers && all_same ? -1 : (int64_t)l->w->index;
		if (!needs_restore(l))
			continue;
		r = engine_prepare(e, MOED_PLUGIN_ROUTER, l->saved.router, l->saved.params,
				   l->saved.n_params, layer, &swaps[n_swaps], err, errlen);
		if (r < 0)
			goto fail;
		n_swaps++;
		if (layer < 0)
			break;
	}
	for (uint32_t i = 0; i < n_swaps; i++)
		engine_commit(e, swaps[i]);
	log_notice("state: %u layer%s serve%s the router set at run time again ('%s')", want,
		   want == 1 ? "" : "s", want == 1 ? "s" : "", first->saved.router);
	free(swaps);
	return 0;
fail:
	for (uint32_t i = 0; i < n_swaps; i++)
		engine_swap_free(swaps[i]);
	free(swaps);
	return r;
}

int state_cleanup(const char *dir)
{
	static const char *const prefixes[] = { "." STATE_ROUTER_FILE ".", "." STATE_BIAS_FILE "." };
	DIR *d = opendir(dir);
	struct dirent *ent;
	int n = 0;

	if (!d)
		return -errno;
	while ((ent = readdir(d))) {
		struct stat st;
		for (size_t i = 0; i < 2; i++) {
			if (strncmp(ent->d_name, prefixes[i], strlen(prefixes[i])) ||
			    fstatat(dirfd(d), ent->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISREG(st.st_mode))
				continue;
			if (unlinkat(dirfd(d), ent->d_name, 0) == 0) {
				log_info("state: removed '%s/%s', left by an interrupted save", dir,
					 ent->d_name);
				n++;
			}
		}
	}
	closedir(d);
	return n;
}
