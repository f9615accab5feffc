/*
 * Mock router of ABI 2 with declared parameters and a state blob, for the
 * loader, engine and state tests.  Parameters: n (int 1..8, default 1), mode
 * (enum plain|loud).  Every route() call adds n to a counter; tokens go to
 * experts 0..k-1 and every weight is the counter after the call, so a test sees
 * the state.  The state blob (version 7) is the counter as a u32; restore
 * refuses other versions and sizes.  init/layer_new append to $MOCK_TRACE.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "include/moed/plugin.h"

static void trace(const char *what)
{
	const char *path = getenv("MOCK_TRACE");
	FILE *f;

	if (!path || !(f = fopen(path, "a")))
		return;
	fprintf(f, "%s\n", what);
	fclose(f);
}

static const char *const modes[] = { "plain", "loud", NULL };

static const struct moed_param_decl decls[] = {
	{ .name = "n", .type = MOED_PARAM_INT, .min = 1, .max = 8, .def = "1",
	  .help = "added to the counter per call" },
	{ .name = "mode", .type = MOED_PARAM_ENUM, .def = "plain", .choices = modes,
	  .help = "unused" },
};

struct dlayer {
	pthread_mutex_t lock;
	uint32_t k, n, counter;
};

static int d_init(const struct moed_host *host, const struct moed_param *params, size_t n,
		  void **ret_state)
{
	trace("declared-init");
	*ret_state = NULL;
	return 0;
}

static void d_fini(void *state)
{
	trace("declared-fini");
}

static int d_layer_new(void *state, const struct moed_router_spec *spec,
		       const struct moed_param *params, size_t np, void **ret_layer)
{
	struct dlayer *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	trace("declared-layer_new");
	pthread_mutex_init(&l->lock, NULL);
	l->k = spec->top_k;
	l->n = 1;
	for (size_t i = 0; i < np; i++)
		if (!strcmp(params[i].key, "n"))
			l->n = (uint32_t)atoi(params[i].value);
	*ret_layer = l;
	return 0;
}

static void d_layer_free(void *layer)
{
	struct dlayer *l = layer;

	trace("declared-layer_free");
	pthread_mutex_destroy(&l->lock);
	free(l);
}

static int d_route(void *layer, const float *x, size_t T, int32_t *ret_e, float *ret_w)
{
	struct dlayer *l = layer;
	uint32_t c;

	pthread_mutex_lock(&l->lock);
	c = l->counter += l->n;
	pthread_mutex_unlock(&l->lock);
	for (size_t t = 0; t < T; t++)
		for (uint32_t j = 0; j < l->k; j++) {
			ret_e[t * l->k + j] = (int32_t)j;
			ret_w[t * l->k + j] = (float)c;
		}
	return 0;
}

static int d_state_size(void *layer, size_t *ret)
{
	*ret = 4;
	return 0;
}

static int d_state_save(void *layer, void *buf, size_t len, size_t *ret_len, uint32_t *ret_v)
{
	struct dlayer *l = layer;

	if (len < 4)
		return -ENOSPC;
	pthread_mutex_lock(&l->lock);
	memcpy(buf, &l->counter, 4);
	pthread_mutex_unlock(&l->lock);
	*ret_len = 4;
	*ret_v = 7;
	return 0;
}

static int d_state_restore(void *layer, const void *buf, size_t len, uint32_t version)
{
	struct dlayer *l = layer;

	if (version != 7 || len != 4)
		return -EINVAL;
	pthread_mutex_lock(&l->lock);
	memcpy(&l->counter, buf, 4);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static const struct moed_router_ops ops = {
	.struct_size = sizeof(struct moed_router_ops),
	.layer_new = d_layer_new,
	.layer_free = d_layer_free,
	.route = d_route,
	.state_size = d_state_size,
	.state_save = d_state_save,
	.state_restore = d_state_restore,
};

MOED_PLUGIN_DECLARE(.name = "declared", .description = "test router with declared parameters",
		    .kind = MOED_PLUGIN_ROUTER, .init = d_init, .fini = d_fini, .router = &ops,
		    .params = decls, .n_params = 2);
