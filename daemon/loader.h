/*
 * Plugin loading.  A plugin is named, never given by path: NAME resolves to
 * DIR/NAME.so in the configured plugin directory.  Each load is a new
 * *generation*: the file is copied to a private temporary file and that copy is
 * dlopen'ed (RTLD_NOW|RTLD_LOCAL), because glibc hands back an already-loaded
 * object for the same path or inode — the copy makes an updated file on disk
 * really load as new code.  The descriptor is checked (ABI version, struct size,
 * name, kind, ops) before anything in the plugin is called; then init() runs.
 *
 * A generation is reference counted from the loop thread only; the last unref
 * runs fini() and then dlclose().
 */
#ifndef MOED_LOADER_H
#define MOED_LOADER_H

#include <stddef.h>
#include <dlfcn.h>
#include <stdint.h>

#include "include/moed/plugin.h"

struct plugin_gen {
	unsigned refs;
	uint64_t generation;
	char *name;
	char *path;                     /* the file in the plugin directory */
	void *dl;
	const struct moed_plugin *desc;
	void *state;                    /* from init() */
	struct moed_param *params;      /* copy of what init()/layer_new() were given */
	size_t n_params;
};

/* What a plugin file says about itself, without calling it. */
struct plugin_probe {
	char name[64];
	char description[160];
	uint32_t kind;
	uint32_t abi_version;
	char error[256];                /* empty when loadable */
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
 * ([daemon] allow_group_writable_plugins); others-writable is always refused. */
extern int loader_allow_group_writable;

/* Only [a-z0-9_-], 1..63 characters. */
int loader_name_valid(const char *name);
const char *loader_kind_name(uint32_t kind);

int loader_open(const char *dir, const char *name, uint32_t want_kind,
		const struct moed_param *params, size_t n_params, uint64_t generation,
		struct plugin_gen **ret_gen, char *err, size_t errlen);
void plugin_gen_ref(struct plugin_gen *gen);
void plugin_gen_unref(struct plugin_gen *gen);     /* NULL ok */

/* List the .so files of DIR; call fn for each with what its descriptor says. */
int loader_scan(const char *dir, void (*fn)(const char *path, const struct plugin_probe *p,
					    void *arg), void *arg);

#endif
