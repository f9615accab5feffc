/*
 * A router whose constructor leaves a mark in $MOCK_TRACE: a file the loader
 * refuses (others-writable, owned by another user) must never be mapped, so
 * the mark must not appear; a permitted file is mapped once per change.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "include/moed/plugin.h"

__attribute__((constructor)) static void mark(void)
{
	const char *path = getenv("MOCK_TRACE");
	FILE *f;

	if (!path || !(f = fopen(path, "a")))
		return;
	fprintf(f, "evil-constructor\n");
	fclose(f);
}

static int e_init(const struct moed_host *host, const struct moed_param *params, size_t n,
		  void **ret_state)
{
	return -EPERM;
}

static void e_fini(void *state)
{
}

static int e_layer_new(void *state, const struct moed_router_spec *spec,
		       const struct moed_param *params, size_t n, void **ret_layer)
{
	return -EPERM;
}

static void e_layer_free(void *layer)
{
}

static int e_route(void *layer, const float *x, size_t T, int32_t *e, float *w)
{
	return -EPERM;
}

static const struct moed_router_ops ops = {
	.struct_size = sizeof(struct moed_router_ops),
	.layer_new = e_layer_new,
	.layer_free = e_layer_free,
	.route = e_route,
};

MOED_PLUGIN_DECLARE(.name = "evil", .kind = MOED_PLUGIN_ROUTER, .init = e_init, .fini = e_fini,
		    .router = &ops);
