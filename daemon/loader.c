/*
 * Plugin loader.  loader_open(): resolve NAME in the plugin directory, open
 * the file and check it (regular file; it and its directory owned by root or
 * us, not writable by others), copy it through that descriptor to a fresh
 * temporary file (a new inode, so glibc cannot hand back an older generation),
 * dlopen the copy with RTLD_NOW|RTLD_LOCAL, unlink the copy (the mapping
 * stays), read and check the descriptor into the host's own full-size copy,
 * check the declared parameters, then init().  Every rejection says what was
 * found, what was wanted and what to do; nothing is replaced here — the caller
 * keeps its current generation until it has a working new one.
 *
 * Probes (loader_scan, loader_check_params) map a file only after the same
 * checks, never call it, and keep what they read in a cache keyed by the
 * file's identity; the cache is the loader's only shared state and has a lock.
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/host.h"
#include "daemon/loader.h"
#include "daemon/log.h"
#include "plugins/common/params.h"

/* Sizes of the ABI-1 structs, and the least of each a plugin must have. */
#define ABI1_DESC_SIZE (offsetof(struct moed_plugin, params))
#define ABI1_ROUTER_OPS_SIZE (offsetof(struct moed_router_ops, state_size))
#define MIN_ROUTER_OPS_SIZE (offsetof(struct moed_router_ops, route) + sizeof(void *))
#define MIN_EXPERT_OPS_SIZE (offsetof(struct moed_expert_ops, forward) + sizeof(void *))
#define MIN_PARAM_DECL_SIZE (sizeof(struct moed_param_decl))    /* ABI 2's */
#define MAX_PARAM_DECLS 256u

_Atomic int loader_allow_group_writable;

int loader_name_valid(const char *name)
{
	size_t n = 0;

	for (const char *p = name; *p; p++, n++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_'))
			return 0;
	return n > 0 && n < 64;
}

const char *loader_kind_name(uint32_t kind)
{
	switch (kind) {
	case MOED_PLUGIN_ROUTER: return "router";
	case MOED_PLUGIN_EXPERT: return "expert";
	default: return "unknown";
	}
}

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* Check everything the host reads before it calls anything, and copy the
 * plugin's structs into *ret (up to what the plugin has; an ABI-1 plugin's
 * copy ends where ABI 1 ended).  want_name may be NULL. */
static int read_descriptor(const struct moed_plugin *d, const char *want_name, uint32_t want_kind,
			   struct plugin_desc *ret, char *err, size_t errlen)
{
	struct plugin_desc c;
	size_t n;

	memset(&c, 0, sizeof(c));
	if (d->abi_version < MOED_PLUGIN_ABI_MIN || d->abi_version > MOED_PLUGIN_ABI_VERSION) {
		snprintf(err, errlen, "ABI %u, want %u to %u; rebuild it against this moed's "
			 "<moed/plugin.h>", d->abi_version, MOED_PLUGIN_ABI_MIN,
			 MOED_PLUGIN_ABI_VERSION);
		return -EPROTO;
	}
	if (d->struct_size < ABI1_DESC_SIZE) {
		snprintf(err, errlen, "descriptor is %u bytes, want at least %zu; rebuild it",
			 d->struct_size, ABI1_DESC_SIZE);
		return -EPROTO;
	}
	n = min_size(d->struct_size, sizeof(c.desc));
	if (d->abi_version < 2)
		n = min_size(n, ABI1_DESC_SIZE);
	memcpy(&c.desc, d, n);
	if (!c.desc.name || !loader_name_valid(c.desc.name) ||
	    (want_name && strcmp(c.desc.name, want_name))) {
		snprintf(err, errlen, "descriptor names '%s', file is '%s'",
			 c.desc.name && loader_name_valid(c.desc.name) ? c.desc.name : "(invalid)",
			 want_name ? want_name : "?");
		return -EPROTO;
	}
	if (want_kind && c.desc.kind != want_kind) {
		snprintf(err, errlen, "is a %s plugin, want %s", loader_kind_name(c.desc.kind),
			 loader_kind_name(want_kind));
		return -EPROTO;
	}
	if (!c.desc.init || !c.desc.fini) {
		snprintf(err, errlen, "descriptor lacks init or fini");
		return -EPROTO;
	}
	if (c.desc.kind == MOED_PLUGIN_ROUTER) {
		const struct moed_router_ops *o = c.desc.router;
		if (!o || o->struct_size < MIN_ROUTER_OPS_SIZE) {
			snprintf(err, errlen, "router ops missing or smaller than ABI 1's");
			return -EPROTO;
		}
		n = min_size(o->struct_size, sizeof(c.router));
		if (d->abi_version < 2)
			n = min_size(n, ABI1_ROUTER_OPS_SIZE);
		memcpy(&c.router, o, n);
		if (!c.router.layer_new || !c.router.layer_free || !c.router.route) {
			snprintf(err, errlen, "router ops lack layer_new, layer_free or route");
			return -EPROTO;
		}
		if (!c.router.state_save != !c.router.state_restore ||
		    !c.router.state_save != !c.router.state_size) {
			snprintf(err, errlen, "router ops have only some of state_size, state_save "
				 "and state_restore");
			return -EPROTO;
		}
		c.desc.router = &ret->router;
		c.desc.expert = NULL;
	} else if (c.desc.kind == MOED_PLUGIN_EXPERT) {
		const struct moed_expert_ops *o = c.desc.expert;
		if (!o || o->struct_size < MIN_EXPERT_OPS_SIZE) {
			snprintf(err, errlen, "expert ops missing or smaller than ABI 1's");
			return -EPROTO;
		}
		memcpy(&c.expert, o, min_size(o->struct_size, sizeof(c.expert)));
		if (!c.expert.layer_new || !c.expert.layer_free || !c.expert.forward) {
			snprintf(err, errlen, "expert ops lack layer_new, layer_free or forward");
			return -EPROTO;
		}
		c.desc.router = NULL;
		c.desc.expert = &ret->expert;
	} else {
		snprintf(err, errlen, "unknown kind %u", c.desc.kind);
		return -EPROTO;
	}
	if (c.desc.params && (c.desc.param_decl_size < MIN_PARAM_DECL_SIZE ||
			      c.desc.n_params > MAX_PARAM_DECLS)) {
		snprintf(err, errlen, "parameter table of %u entries of %u bytes is malformed",
			 c.desc.n_params, c.desc.param_decl_size);
		return -EPROTO;
	}
	for (uint32_t i = 0; c.desc.params && i < c.desc.n_params; i++) {
		struct moed_param_decl tmp;
		const struct moed_param_decl *p = param_decl_at(c.desc.params,
							       c.desc.param_decl_size, i, &tmp);
		if (!p->name || !*p->name || (p->type == MOED_PARAM_ENUM && !p->choices)) {
			snprintf(err, errlen, "parameter declaration %u is malformed", i);
			return -EPROTO;
		}
	}
	*ret = c;
	return 0;
}

/* Check the declared parameters, if the plugin declares them. */
static int check_declared(const struct moed_plugin *d, const struct moed_param *params, size_t n,
			  char *err, size_t errlen)
{
	if (!d->params)
		return 0;       /* ABI 1, or no table: the plugin checks in layer_new() */
	return params_check(d->name, d->params, d->n_params, d->param_decl_size, params, n, err,
			    errlen);
}

int loader_check_owner(const struct stat *st, uid_t euid, int allow_group, const char *what,
		       const char *path, const char *target, char *err, size_t errlen)
{
	char shown[2 * PATH_MAX + 8];

	snprintf(shown, sizeof(shown), "%s%s%s", path, target ? "' -> '" : "", target ? target : "");
	if (st->st_uid != 0 && st->st_uid != euid) {
		snprintf(err, errlen, "%s '%s' is owned by uid %u, not root or moed's uid %u; "
			 "refusing to load code that user can rewrite (chown root)",
			 what, shown, (unsigned)st->st_uid, (unsigned)euid);
		return -EPERM;
	}
	if ((st->st_mode & S_IWOTH) ||
	    ((st->st_mode & S_IWGRP) && !(allow_group && st->st_uid == 0))) {
		snprintf(err, errlen, "%s '%s' is writable by %s (mode %04o); refusing to load code "
			 "from it (chmod go-w)", what, shown,
			 st->st_mode & S_IWOTH ? "others" : "its group",
			 (unsigned)(st->st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

static int check_path(const char *path, const char *what, const char *target, char *err,
		      size_t errlen)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		int r = -errno;
		snprintf(err, errlen, "%s '%s': %s", what, path, strerror(-r));
		return r;
	}
	return loader_check_owner(&st, geteuid(), loader_allow_group_writable, what, path, target,
				  err, errlen);
}

/*
 * Open DIR/NAME.so for reading and check it: the configured directory, the
 * file after following links (through the descriptor that will be read, so
 * what is checked is what is loaded) and the directory the link resolves into.
 */
static int open_checked(const char *dir, const char *path, int *ret_fd, struct stat *ret_st,
			char *err, size_t errlen)
{
	char real[PATH_MAX], *slash;
	struct stat st;
	int fd, r;

	r = check_path(dir, "plugin directory", NULL, err, errlen);
	if (r < 0)
		return r;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "'%s': %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0 || !realpath(path, real)) {
		r = -errno;
		snprintf(err, errlen, "'%s': %s", path, strerror(-r));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "'%s' is not a regular file", path);
		r = -EPERM;
		goto fail;
	}
	r = loader_check_owner(&st, geteuid(), loader_allow_group_writable, "plugin file", path,
			       strcmp(real, path) ? real : NULL, err, errlen);
	if (r < 0)
		goto fail;
	slash = strrchr(real, '/');
	if (slash && slash != real) {
		*slash = '\0';
		r = check_path(real, "directory of plugin file", NULL, err, errlen);
		if (r < 0)
			goto fail;
	}
	*ret_fd = fd;
	*ret_st = st;
	return 0;
fail:
	close(fd);
	return r;
}

/* Copy the open file to a new temp file, dlopen the copy, unlink it. */
static void *dlopen_copy(int in, const char *src, char *err, size_t errlen)
{
	const char *tmpdir = getenv("TMPDIR");
	char tmp[PATH_MAX];
	char buf[65536];
	void *dl = NULL;
	ssize_t n;
	int out;

	snprintf(tmp, sizeof(tmp), "%s/moed-plugin.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
	out = mkostemp(tmp, O_CLOEXEC);
	if (out < 0) {
		snprintf(err, errlen, "cannot create a private copy in '%s': %s", tmp, strerror(errno));
		return NULL;
	}
	if (lseek(in, 0, SEEK_SET) < 0)
		n = -1;
	else
		while ((n = read(in, buf, sizeof(buf))) > 0)
			if (write(out, buf, (size_t)n) != n) {
				n = -1;
				break;
			}
	if (n < 0) {
		snprintf(err, errlen, "cannot copy '%s': %s", src, strerror(errno));
		goto out;
	}
	dl = dlopen(tmp, LOADER_DLOPEN_FLAGS);
	if (!dl)
		snprintf(err, errlen, "dlopen: %s", dlerror());
out:
	close(out);
	unlink(tmp);
	return dl;
}

static void free_params(struct moed_param *p, size_t n)
{
	for (size_t i = 0; p && i < n; i++) {
		free((char *)p[i].key);
		free((char *)p[i].value);
	}
	free(p);
}

static int copy_params(struct plugin_gen *g, const struct moed_param *params, size_t n)
{
	g->params = calloc(n ? n : 1, sizeof(*g->params));
	if (!g->params)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		g->params[i].key = strdup(params[i].key);
		g->params[i].value = strdup(params[i].value);
		g->n_params = i + 1;
		if (!g->params[i].key || !g->params[i].value)
			return -ENOMEM;
	}
	return 0;
}

static int plugin_path(const char *dir, const char *name, char *path, size_t len, char *err,
		       size_t errlen)
{
	if (!loader_name_valid(name)) {
		snprintf(err, errlen, "plugin name '%s' is not valid (use [a-z0-9_-], no paths)", name);
		return -EINVAL;
	}
	if (snprintf(path, len, "%s/%s.so", dir, name) >= (int)len) {
		snprintf(err, errlen, "plugin directory path too long");
		return -ENAMETOOLONG;
	}
	return 0;
}

/* NAME resolved in dir and opened after the checks; err says why not. */
static int open_named(const char *dir, const char *name, char *path, size_t pathlen,
		      int *ret_fd, struct stat *ret_st, char *err, size_t errlen)
{
	char why[512] = "";
	int r = plugin_path(dir, name, path, pathlen, err, errlen);

	if (r < 0)
		return r;
	r = open_checked(dir, path, ret_fd, ret_st, why, sizeof(why));
	if (r < 0)
		snprintf(err, errlen, "plugin '%s': %s", name, why);
	return r;
}

int loader_open(const char *dir, const char *name, uint32_t want_kind,
		const struct moed_param *params, size_t n_params, uint64_t generation,
		struct plugin_gen **ret_gen, char *err, size_t errlen)
{
	char path[PATH_MAX], why[512] = "";
	const struct moed_plugin *raw;
	struct plugin_gen *g = NULL;
	struct stat st;
	int fd = -1, r;

	r = open_named(dir, name, path, sizeof(path), &fd, &st, err, errlen);
	if (r < 0)
		return r;
	g = calloc(1, sizeof(*g));
	if (!g || !(g->name = strdup(name)) || !(g->path = strdup(path)) ||
	    copy_params(g, params, n_params) < 0) {
		r = -ENOMEM;
		snprintf(why, sizeof(why), "out of memory");
		goto fail;
	}
	g->dl = dlopen_copy(fd, path, why, sizeof(why));
	if (!g->dl) {
		r = -ENOEXEC;
		goto fail;
	}
	raw = dlsym(g->dl, MOED_PLUGIN_SYMBOL);
	if (!raw) {
		snprintf(why, sizeof(why), "no '%s' symbol; is it a moed plugin?", MOED_PLUGIN_SYMBOL);
		r = -ENOEXEC;
		goto fail;
	}
	r = read_descriptor(raw, name, want_kind, &g->copy, why, sizeof(why));
	if (r < 0)
		goto fail;
	r = check_declared(&g->copy.desc, params, n_params, why, sizeof(why));
	if (r < 0)
		goto fail;
	host_clear_error();
	r = g->copy.desc.init(host_table(), params, n_params, &g->state);
	if (r < 0) {
		snprintf(why, sizeof(why), "init failed: %s%s%s", strerror(-r),
			 *host_last_error() ? "; " : "", host_last_error());
		goto fail;      /* g->desc is still NULL: no fini after a failed init */
	}
	close(fd);
	g->desc = &g->copy.desc;
	g->refs = 1;
	g->generation = generation;
	*ret_gen = g;
	log_info("loader: plugin '%s' (%s, ABI %u) loaded as generation %llu", name,
		 loader_kind_name(g->desc->kind), g->desc->abi_version,
		 (unsigned long long)generation);
	return 0;
fail:
	snprintf(err, errlen, "plugin '%s' (%s): %s", name, path, why);
	close(fd);
	if (g) {
		if (g->dl)
			dlclose(g->dl);
		free_params(g->params, g->n_params);
		free(g->name);
		free(g->path);
		free(g);
	}
	return r;
}

void plugin_gen_ref(struct plugin_gen *gen)
{
	gen->refs++;
}

void plugin_gen_unref(struct plugin_gen *gen)
{
	if (!gen || --gen->refs > 0)
		return;
	log_info("loader: plugin '%s' generation %llu released", gen->name,
		 (unsigned long long)gen->generation);
	gen->desc->fini(gen->state);
	dlclose(gen->dl);
	free_params(gen->params, gen->n_params);
	free(gen->name);
	free(gen->path);
	free(gen);
}

/* ---- probes and their cache ---- */

struct probe_entry {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim;
	char *path;
	struct plugin_probe p;          /* p.params points into infos */
	struct moed_param_decl *decls;  /* deep copy; NULL when not declared */
	struct plugin_param_info *infos;
	size_t n;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct probe_entry **cache;
static size_t n_cache, cap_cache;

static void entry_free(struct probe_entry *e)
{
	if (!e)
		return;
	for (size_t i = 0; e->decls && i < e->n; i++) {
		free((char *)e->decls[i].name);
		free((char *)e->decls[i].def);
		free((char *)e->decls[i].help);
		for (size_t j = 0; e->decls[i].choices && e->decls[i].choices[j]; j++)
			free((char *)e->decls[i].choices[j]);
		free((void *)e->decls[i].choices);
	}
	free(e->decls);
	free(e->infos);
	free(e->path);
	free(e);
}

static void param_info(const struct moed_param_decl *c, struct plugin_param_info *pi)
{
	size_t len = 0;

	memset(pi, 0, sizeof(*pi));
	pi->name = c->name;
	pi->type = param_type_name(c->type);
	pi->def = c->def ? c->def : "";
	pi->help = c->help ? c->help : "";
	if (c->type == MOED_PARAM_INT || c->type == MOED_PARAM_FLOAT) {
		snprintf(pi->min, sizeof(pi->min), "%g", c->min);
		snprintf(pi->max, sizeof(pi->max), "%g", c->max);
	}
	for (size_t j = 0; c->choices && c->choices[j] && len < sizeof(pi->choices); j++)
		len += (size_t)snprintf(pi->choices + len, sizeof(pi->choices) - len, "%s%s",
					j ? "|" : "", c->choices[j]);
}

size_t loader_gen_params(const struct plugin_gen *g, size_t i, struct plugin_param_info *ret)
{
	const struct moed_plugin *d = g->desc;
	struct moed_param_decl tmp;

	if (!d->params)
		return 0;
	if (ret && i < d->n_params)
		param_info(param_decl_at(d->params, d->param_decl_size, i, &tmp), ret);
	return d->n_params;
}

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

/* Deep-copy the declarations (the plugin is unmapped after the probe). */
static int copy_decls(struct probe_entry *e, const struct moed_plugin *d)
{
	e->n = d->n_params;
	e->p.declares_params = 1;
	e->decls = calloc(e->n ? e->n : 1, sizeof(*e->decls));
	e->infos = calloc(e->n ? e->n : 1, sizeof(*e->infos));
	if (!e->decls || !e->infos)
		return -ENOMEM;
	for (size_t i = 0; i < e->n; i++) {
		struct moed_param_decl tmp, *c = &e->decls[i];
		const struct moed_param_decl *s = param_decl_at(d->params, d->param_decl_size, i, &tmp);
		size_t k = 0;

		*c = *s;
		c->name = dup_or_empty(s->name);
		c->def = dup_or_empty(s->def);
		c->help = dup_or_empty(s->help);
		c->choices = NULL;
		if (!c->name || !c->def || !c->help)
			return -ENOMEM;
		if (s->type == MOED_PARAM_ENUM) {
			while (s->choices[k] && k < 64)
				k++;
			const char **ch = calloc(k + 1, sizeof(*ch));
			if (!ch)
				return -ENOMEM;
			c->choices = ch;
			for (size_t j = 0; j < k; j++)
				if (!(ch[j] = strdup(s->choices[j])))
					return -ENOMEM;
		}
	}
	for (size_t i = 0; i < e->n; i++)
		param_info(&e->decls[i], &e->infos[i]);
	e->p.params = e->infos;
	e->p.n_params = e->n;
	return 0;
}

/* Map an already checked file without calling it and read its descriptor. */
static struct probe_entry *probe_file(int fd, const char *path, const char *stem,
				      const struct stat *st)
{
	struct probe_entry *e = calloc(1, sizeof(*e));
	struct plugin_desc pd;
	const struct moed_plugin *d;
	void *dl;

	if (!e || !(e->path = strdup(path))) {
		free(e);
		return NULL;
	}
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	e->size = st->st_size;
	e->mtim = st->st_mtim;
	snprintf(e->p.name, sizeof(e->p.name), "%s", stem);
	dl = dlopen_copy(fd, path, e->p.error, sizeof(e->p.error));
	if (!dl)
		return e;
	d = dlsym(dl, MOED_PLUGIN_SYMBOL);
	if (!d) {
		snprintf(e->p.error, sizeof(e->p.error), "no '%s' symbol", MOED_PLUGIN_SYMBOL);
	} else {
		e->p.abi_version = d->abi_version;
		if (read_descriptor(d, stem, 0, &pd, e->p.error, sizeof(e->p.error)) == 0) {
			e->p.kind = pd.desc.kind;
			snprintf(e->p.description, sizeof(e->p.description), "%s",
				 pd.desc.description ? pd.desc.description : "");
			if (pd.desc.params && copy_decls(e, &pd.desc) < 0) {
				dlclose(dl);
				entry_free(e);
				return NULL;
			}
		}
	}
	dlclose(dl);
	return e;
}

static int same_file(const struct probe_entry *e, const char *path, const struct stat *st)
{
	return e->dev == st->st_dev && e->ino == st->st_ino && e->size == st->st_size &&
	       e->mtim.tv_sec == st->st_mtim.tv_sec && e->mtim.tv_nsec == st->st_mtim.tv_nsec &&
	       !strcmp(e->path, path);
}

/* Call fn with the probe of a checked file, from the cache or freshly made
 * (and then cached, replacing what was cached for that path). */
static int with_probe(int fd, const char *path, const char *stem, const struct stat *st,
		      int (*fn)(const struct probe_entry *e, void *arg), void *arg)
{
	struct probe_entry *e = NULL, *fresh;
	int r;

	pthread_mutex_lock(&cache_lock);
	for (size_t i = 0; i < n_cache; i++)
		if (same_file(cache[i], path, st)) {
			e = cache[i];
			break;
		}
	r = e ? fn(e, arg) : 0;
	pthread_mutex_unlock(&cache_lock);
	if (e)
		return r;
	fresh = probe_file(fd, path, stem, st);      /* maps code: not under the lock */
	if (!fresh)
		return -ENOMEM;
	r = fn(fresh, arg);
	pthread_mutex_lock(&cache_lock);
	size_t i;
	for (i = 0; i < n_cache && strcmp(cache[i]->path, path); i++)
		;
	if (i < n_cache) {
		entry_free(cache[i]);
		cache[i] = fresh;
		fresh = NULL;
	} else if (n_cache < cap_cache || n_cache < 4096) {
		if (n_cache == cap_cache) {
			size_t cap = cap_cache ? 2 * cap_cache : 16;
			struct probe_entry **c = realloc(cache, cap * sizeof(*c));
			if (c) {
				cache = c;
				cap_cache = cap;
			}
		}
		if (n_cache < cap_cache) {
			cache[n_cache++] = fresh;
			fresh = NULL;
		}
	}
	pthread_mutex_unlock(&cache_lock);
	entry_free(fresh);
	return r;
}

void loader_cache_clear(void)
{
	pthread_mutex_lock(&cache_lock);
	for (size_t i = 0; i < n_cache; i++)
		entry_free(cache[i]);
	free(cache);
	cache = NULL;
	n_cache = cap_cache = 0;
	pthread_mutex_unlock(&cache_lock);
}

/* The callback gets a private copy of the probe, so it runs without the lock. */
struct scan_call {
	struct plugin_probe p;
	struct plugin_param_info *infos;
};

static int copy_probe(const struct probe_entry *e, void *arg)
{
	struct scan_call *c = arg;

	c->p = e->p;
	c->p.params = c->infos = NULL;
	if (e->n) {
		c->infos = malloc(e->n * sizeof(*c->infos));
		if (!c->infos) {
			c->p.n_params = 0;
			return -ENOMEM;
		}
		memcpy(c->infos, e->infos, e->n * sizeof(*c->infos));
		/* the entry may be replaced once the lock is dropped: copy its strings */
		for (size_t i = 0; i < e->n; i++) {
			c->infos[i].name = strdup(e->infos[i].name);
			c->infos[i].def = strdup(e->infos[i].def);
			c->infos[i].help = strdup(e->infos[i].help);
		}
	}
	c->p.params = c->infos;
	return 0;
}

static void scan_call_release(struct scan_call *c)
{
	for (size_t i = 0; c->infos && i < c->p.n_params; i++) {
		free((char *)c->infos[i].name);
		free((char *)c->infos[i].def);
		free((char *)c->infos[i].help);
	}
	free(c->infos);
}

int loader_scan(const char *dir, void (*fn)(const char *path, const struct plugin_probe *p,
					    void *arg), void *arg)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		char path[PATH_MAX], stem[64];
		struct scan_call c;
		struct stat st;
		int fd;

		if (len < 4 || len - 3 >= sizeof(stem) || strcmp(e->d_name + len - 3, ".so"))
			continue;
		memcpy(stem, e->d_name, len - 3);
		stem[len - 3] = '\0';
		if (!loader_name_valid(stem))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		memset(&c, 0, sizeof(c));
		snprintf(c.p.name, sizeof(c.p.name), "%s", stem);
		if (open_checked(dir, path, &fd, &st, c.p.error, sizeof(c.p.error)) == 0) {
			if (with_probe(fd, path, stem, &st, copy_probe, &c) < 0)
				snprintf(c.p.error, sizeof(c.p.error), "out of memory");
			close(fd);
		}
		for (size_t i = 0; c.infos && i < c.p.n_params; i++)
			if (!c.infos[i].name || !c.infos[i].def || !c.infos[i].help) {
				c.p.n_params = i;       /* out of memory: list fewer */
				break;
			}
		fn(path, &c.p, arg);
		scan_call_release(&c);
	}
	closedir(d);
	return 0;
}

struct check_call {
	const char *name;
	uint32_t kind;
	const struct moed_param *params;
	size_t n;
	char *err;
	size_t errlen;
};

static int check_probe(const struct probe_entry *e, void *arg)
{
	struct check_call *c = arg;

	if (e->p.error[0]) {
		snprintf(c->err, c->errlen, "plugin '%s' (%s): %s", c->name, e->path, e->p.error);
		return -ENOEXEC;
	}
	if (c->kind && e->p.kind != c->kind) {
		snprintf(c->err, c->errlen, "plugin '%s' is a %s plugin, want %s", c->name,
			 loader_kind_name(e->p.kind), loader_kind_name(c->kind));
		return -EPROTO;
	}
	if (!e->decls)
		return 0;
	return params_check(c->name, e->decls, e->n, sizeof(*e->decls), c->params, c->n, c->err,
			    c->errlen);
}

int loader_check_params(const char *dir, const char *name, uint32_t kind,
			const struct moed_param *params, size_t n, char *err, size_t errlen)
{
	struct check_call c = { name, kind, params, n, err, errlen };
	char path[PATH_MAX];
	struct stat st;
	int fd, r;

	r = open_named(dir, name, path, sizeof(path), &fd, &st, err, errlen);
	if (r < 0)
		return r;
	r = with_probe(fd, path, name, &st, check_probe, &c);
	close(fd);
	return r;
}
