/*
 * Mock router for loader and engine tests: routes every token to experts
 * 0..k-1 with equal weights.  init/fini/layer_new/layer_free append one line each
 * to the file named by $MOCK_TRACE (when set), so tests can see the lifecycle.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "include/moed/plugin.h"

static void trace(const char *what, unsigned v)
{
	const char *path = getenv("MOCK_TRACE");
	FILE *f;

	if (!path || !(f = fopen(path, "a")))
		return;
	fprintf(f, "%s %u\n", what, v);
	fclose(f);
}

struct mock_layer {
	unsigned k;
	unsigned layer;
};

static int mock_init(const struct moed_host *host, const struct moed_param *params,
		     size_t n_params, void **ret_state)
{
	trace("init", (unsigned)n_params);
	*ret_state = NULL;
	return 0;
}

static void mock_fini(void *state)
{
	trace("fini", 0);
}

static int mock_layer_new(void *state, const struct moed_router_spec *spec,
			  const struct moed_param *params, size_t n_params, void **ret_layer)
{
	struct mock_layer *l = malloc(sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->k = spec->top_k;
	l->layer = spec->layer;
	trace("layer_new", spec->layer);
	*ret_layer = l;
	return 0;
}

static void mock_layer_free(void *layer)
{
	struct mock_layer *l = layer;

	trace("layer_free", l->layer);
	free(l);
}

static int mock_route(void *layer, const float *x, size_t n_tokens, int32_t *ret_experts,
		      float *ret_weights)
{
	struct mock_layer *l = layer;

	for (size_t t = 0; t < n_tokens; t++)
		for (unsigned j = 0; j < l->k; j++) {
			ret_experts[t * l->k + j] = (int32_t)j;
			ret_weights[t * l->k + j] = 1.0f / (float)l->k;
		}
	return 0;
}

static const struct moed_router_ops ops = {
	.struct_size = sizeof(struct moed_router_ops),
	.layer_new = mock_layer_new,
	.layer_free = mock_layer_free,
	.route = mock_route,
};

MOED_PLUGIN_DECLARE(.name = "mock-router", .description = "test router: experts 0..k-1",
		    .kind = MOED_PLUGIN_ROUTER, .init = mock_init, .fini = mock_fini,
		    .router = &ops);
