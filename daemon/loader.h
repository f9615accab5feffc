/*
 * Plugin loading.  A plugin is named, never given by path: NAME resolves to
 * DIR/NAME.so in the configured plugin directory.  Before anything of a file is
 * mapped, the file (after following links) and the directory holding it must
 * be owned by root or the daemon's user and not writable by others (nor by the
 * group, unless allow_group_writable_plugins and root-owned).  Each load is a
 * new *generation*: the file is copied to a private temporary file and that
 * copy is dlopen'ed (RTLD_NOW|RTLD_LOCAL), because glibc hands back an
 * already-loaded object for the same path or inode — the copy makes an updated
 * file on disk really load as new code.  The descriptor is checked (ABI
 * version 1 or 2, sizes, name, kind, ops) and copied into a full-size host
 * struct (members an older plugin lacks are NULL/0) before anything in the
 * plugin is called; declared parameters are checked; then init() runs.
 *
 * A generation is reference counted from the loop thread only; the last unref
 * runs fini() and then dlclose().  loader_scan() and loader_check_params() are
 * safe on any thread.
 */
#ifndef MOED_LOADER_H
#define MOED_LOADER_H

#include <stdatomic.h>
#include <stddef.h>
#include <dlfcn.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "include/moed/plugin.h"

/* A plugin's descriptor and ops as this host reads them: the plugin's structs
 * copied up to their struct_size, the rest zero.  desc.router/desc.expert
 * point at the copies below. */
struct plugin_desc {
	struct moed_plugin desc;
	struct moed_router_ops router;
	struct moed_expert_ops expert;
};

struct plugin_gen {
	unsigned refs;
	uint64_t generation;
	char *name;
	char *path;                     /* the file in the plugin directory */
	void *dl;
	const struct moed_plugin *desc; /* &copy.desc once checked */
	struct plugin_desc copy;
	void *state;                    /* from init() */
	struct moed_param *params;      /* copy of what init()/layer_new() were given */
	size_t n_params;
};

/* One declared parameter, as text, for `moectl plugins` (copy the strings out:
 * they are valid only during the loader_scan() callback). */
struct plugin_param_info {
	const char *name;
	const char *type;               /* "int", "float", "bool", "string", "enum" */
	char min[32], max[32];          /* "%g"; "" unless int or float */
	const char *def;                /* the default as text, "" when not declared */
	const char *help;               /* "" when not declared */
	char choices[256];              /* enum: "auto|small|gemm"; else "" */
};

/* What a plugin file says about itself, without calling it. */
struct plugin_probe {
	char name[64];
	char description[160];
	uint32_t kind;
	uint32_t abi_version;
	char error[256];                /* empty when loadable; else why it is refused */
	/* declared parameters; n_params 0 also for ABI-1 plugins.  Valid only
	 * during the callback, like the probe itself. */
	const struct plugin_param_info *params;
	size_t n_params;
	int declares_params;            /* 0: ABI 1 or no table; the plugin checks itself */
};

/*
 * LeakSanitizer reports what an unloaded library allocated as leaked (it can no
 * longer see the library's statics): libstdc++'s emergency pool, pulled in by
 * the CUDA runtime, shows up that way.  Sanitizer builds therefore keep
 * plugins mapped after dlclose(); every other build unloads them.
 */
#if defined(__SANITIZE_ADDRESS__)
#define LOADER_DLOPEN_FLAGS (RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)
#else
#define LOADER_DLOPEN_FLAGS (RTLD_NOW | RTLD_LOCAL)
#endif

/* Accept group-writable plugin directories and files owned by root
 * ([daemon] allow_group_writable_plugins); others-writable is always refused.
 * Atomic: loader_scan() may read it on a worker thread. */
extern _Atomic int loader_allow_group_writable;

/* Only [a-z0-9_-], 1..63 characters. */
int loader_name_valid(const char *name);
const char *loader_kind_name(uint32_t kind);

/* The ownership and mode rule for code the daemon loads, on one stat result:
 * owned by root or euid, not others-writable, group-writable only when
 * allow_group and root-owned.  0, or -EPERM with a message naming `what` and
 * `path` (shown as "path -> target" when target is not NULL). */
int loader_check_owner(const struct stat *st, uid_t euid, int allow_group, const char *what,
		       const char *path, const char *target, char *err, size_t errlen);

int loader_open(const char *dir, const char *name, uint32_t want_kind,
		const struct moed_param *params, size_t n_params, uint64_t generation,
		struct plugin_gen **ret_gen, char *err, size_t errlen);
void plugin_gen_ref(struct plugin_gen *gen);
void plugin_gen_unref(struct plugin_gen *gen);     /* NULL ok */

/*
 * Check key=value parameters against plugin NAME's declarations without
 * calling it (for --check-config and reload): the file passes the same
 * ownership checks as loader_open(), its descriptor is read (from the probe
 * cache, or by mapping it without calling init()), and every key must be
 * declared and every value within its declaration.  A plugin without
 * declarations (ABI 1) is not checked here: 0.  Any thread.
 * 0, -EINVAL (bad parameter), -EPERM/-ENOENT/-ENOEXEC/-EPROTO (not loadable).
 */
int loader_check_params(const char *dir, const char *name, uint32_t kind,
			const struct moed_param *params, size_t n, char *err, size_t errlen);

/*
 * List the .so files of DIR; call fn for each with what its descriptor says.
 * A file that fails the ownership checks is never mapped: it is listed with
 * the reason in p->error.  Results are cached by file identity (st_dev,
 * st_ino, st_size, st_mtim), so listing again maps nothing that did not
 * change.  Any thread; fn runs on the caller's thread, without loader locks.
 */
int loader_scan(const char *dir, void (*fn)(const char *path, const struct plugin_probe *p,
					    void *arg), void *arg);

/* A loaded generation's declared parameters: the count (0 when it declares
 * none), and with ret not NULL and i below it, declaration i as text.  The
 * strings point into the plugin: valid while the generation is.  Loop thread. */
size_t loader_gen_params(const struct plugin_gen *g, size_t i, struct plugin_param_info *ret);

/* Drop the probe cache (tests, shutdown). */
void loader_cache_clear(void);

#endif
