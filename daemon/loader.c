/*
 * Plugin loader.  loader_open(): resolve NAME in the plugin directory, copy the
 * file to a fresh temporary file (a new inode, so glibc cannot hand back an
 * older generation), dlopen the copy with RTLD_NOW|RTLD_LOCAL, unlink the copy
 * (the mapping stays), validate the descriptor, then init().  Every rejection
 * says what was found, what was wanted and what to do; nothing is replaced here —
 * the caller keeps its current generation until it has a working new one.
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/host.h"
#include "daemon/loader.h"
#include "daemon/log.h"

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

/* Check everything the host reads before it calls anything.  want_name may be NULL. */
static int check_descriptor(const struct moed_plugin *d, const char *want_name,
			    uint32_t want_kind, char *err, size_t errlen)
{
	if (d->abi_version != MOED_PLUGIN_ABI_VERSION) {
		snprintf(err, errlen, "ABI %u, want %u; rebuild it against this moed's <moed/plugin.h>",
			 d->abi_version, MOED_PLUGIN_ABI_VERSION);
		return -EPROTO;
	}
	if (d->struct_size < sizeof(struct moed_plugin)) {
		snprintf(err, errlen, "descriptor is %u bytes, want at least %zu; rebuild it",
			 d->struct_size, sizeof(struct moed_plugin));
		return -EPROTO;
	}
	if (!d->name || !loader_name_valid(d->name) || (want_name && strcmp(d->name, want_name))) {
		snprintf(err, errlen, "descriptor names '%s', file is '%s'",
			 d->name && loader_name_valid(d->name) ? d->name : "(invalid)",
			 want_name ? want_name : "?");
		return -EPROTO;
	}
	if (want_kind && d->kind != want_kind) {
		snprintf(err, errlen, "is a %s plugin, want %s", loader_kind_name(d->kind),
			 loader_kind_name(want_kind));
		return -EPROTO;
	}
	if (!d->init || !d->fini) {
		snprintf(err, errlen, "descriptor lacks init or fini");
		return -EPROTO;
	}
	if (d->kind == MOED_PLUGIN_ROUTER) {
		const struct moed_router_ops *o = d->router;
		if (!o || o->struct_size < sizeof(*o) || !o->layer_new || !o->layer_free || !o->route) {
			snprintf(err, errlen, "router ops missing or incomplete");
			return -EPROTO;
		}
	} else if (d->kind == MOED_PLUGIN_EXPERT) {
		const struct moed_expert_ops *o = d->expert;
		if (!o || o->struct_size < sizeof(*o) || !o->layer_new || !o->layer_free ||
		    !o->forward) {
			snprintf(err, errlen, "expert ops missing or incomplete");
			return -EPROTO;
		}
	} else {
		snprintf(err, errlen, "unknown kind %u", d->kind);
		return -EPROTO;
	}
	return 0;
}

/* Copy src to a new unlinked-on-return temp file and dlopen it. */
static void *dlopen_copy(const char *src, char *err, size_t errlen)
{
	const char *tmpdir = getenv("TMPDIR");
	char tmp[PATH_MAX];
	char buf[65536];
	void *dl = NULL;
	int in, out;
	ssize_t n;

	snprintf(tmp, sizeof(tmp), "%s/moed-plugin.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		snprintf(err, errlen, "cannot open '%s': %s", src, strerror(errno));
		return NULL;
	}
	out = mkostemp(tmp, O_CLOEXEC);
	if (out < 0) {
		snprintf(err, errlen, "cannot create a private copy in '%s': %s", tmp, strerror(errno));
		close(in);
		return NULL;
	}
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
	close(in);
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

int loader_allow_group_writable;

/* Loading a plugin runs its code: refuse a directory or file that someone other
 * than its owner may write (group-writable is allowed for root-owned paths when
 * configured), and say which path and what to do. */
static int check_writable(const char *path, const char *what, char *err, size_t errlen)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "%s '%s': %s", what, path, strerror(errno));
		return -errno;
	}
	if ((st.st_mode & S_IWOTH) ||
	    ((st.st_mode & S_IWGRP) && !(loader_allow_group_writable && st.st_uid == 0))) {
		snprintf(err, errlen, "%s '%s' is writable by %s (mode %04o); refusing to load code from it (chmod go-w)",
			 what, path, st.st_mode & S_IWOTH ? "others" : "its group",
			 (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

int loader_open(const char *dir, const char *name, uint32_t want_kind,
		const struct moed_param *params, size_t n_params, uint64_t generation,
		struct plugin_gen **ret_gen, char *err, size_t errlen)
{
	char path[PATH_MAX], why[384] = "";
	struct plugin_gen *g;
	int r = -EINVAL;

	if (!loader_name_valid(name)) {
		snprintf(err, errlen, "plugin name '%s' is not valid (use [a-z0-9_-], no paths)", name);
		return -EINVAL;
	}
	if (snprintf(path, sizeof(path), "%s/%s.so", dir, name) >= (int)sizeof(path)) {
		snprintf(err, errlen, "plugin directory path too long");
		return -ENAMETOOLONG;
	}
	if (access(path, R_OK) < 0) {
		r = -errno;
		snprintf(err, errlen, "plugin '%s': '%s': %s", name, path, strerror(errno));
		return r;
	}
	if ((r = check_writable(dir, "plugin directory", err, errlen)) < 0 ||
	    (r = check_writable(path, "plugin file", err, errlen)) < 0)
		return r;
	g = calloc(1, sizeof(*g));
	if (!g || !(g->name = strdup(name)) || !(g->path = strdup(path)) ||
	    copy_params(g, params, n_params) < 0) {
		r = -ENOMEM;
		snprintf(why, sizeof(why), "out of memory");
		goto fail;
	}
	g->dl = dlopen_copy(path, why, sizeof(why));
	if (!g->dl) {
		r = -ENOEXEC;
		goto fail;
	}
	g->desc = dlsym(g->dl, MOED_PLUGIN_SYMBOL);
	if (!g->desc) {
		snprintf(why, sizeof(why), "no '%s' symbol; is it a moed plugin?", MOED_PLUGIN_SYMBOL);
		r = -ENOEXEC;
		goto fail;
	}
	r = check_descriptor(g->desc, name, want_kind, why, sizeof(why));
	if (r < 0)
		goto fail;
	host_clear_error();
	r = g->desc->init(host_table(), params, n_params, &g->state);
	if (r < 0) {
		snprintf(why, sizeof(why), "init failed: %s%s%s", strerror(-r),
			 *host_last_error() ? "; " : "", host_last_error());
		g->desc = NULL;         /* no fini after a failed init */
		goto fail;
	}
	g->refs = 1;
	g->generation = generation;
	*ret_gen = g;
	log_info("loader: plugin '%s' (%s) loaded as generation %llu", name,
		 loader_kind_name(g->desc->kind), (unsigned long long)generation);
	return 0;
fail:
	snprintf(err, errlen, "plugin '%s' (%s): %s", name, path, why);
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

static void probe(const char *path, const char *stem, struct plugin_probe *p)
{
	void *dl = dlopen(path, LOADER_DLOPEN_FLAGS);
	const struct moed_plugin *d;

	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", stem);
	if (!dl) {
		snprintf(p->error, sizeof(p->error), "dlopen: %s", dlerror());
		return;
	}
	d = dlsym(dl, MOED_PLUGIN_SYMBOL);
	if (!d) {
		snprintf(p->error, sizeof(p->error), "no '%s' symbol", MOED_PLUGIN_SYMBOL);
	} else {
		p->abi_version = d->abi_version;
		if (check_descriptor(d, stem, 0, p->error, sizeof(p->error)) == 0) {
			p->kind = d->kind;
			snprintf(p->description, sizeof(p->description), "%s",
				 d->description ? d->description : "");
		}
	}
	dlclose(dl);
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
		struct plugin_probe p;

		if (len < 4 || len - 3 >= sizeof(stem) || strcmp(e->d_name + len - 3, ".so"))
			continue;
		memcpy(stem, e->d_name, len - 3);
		stem[len - 3] = '\0';
		if (!loader_name_valid(stem))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		probe(path, stem, &p);
		fn(path, &p, arg);
	}
	closedir(d);
	return 0;
}
