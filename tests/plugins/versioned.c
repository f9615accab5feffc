/*
 * A router built twice, as versioned-v1 and versioned-v2 (VERSIONED_V = 1, 2),
 * both named "versioned": v1 routes every token to experts 0..k-1, v2 to the
 * last k experts.  The hot-swap test installs one file as versioned.so, swaps
 * to it, replaces the file on disk with the other build and swaps again: the
 * routes show which code ran.
 */
#include <errno.h>
#include <stdlib.h>

#include "include/moed/plugin.h"

#define STR2(x) #x
#define STR(x) STR2(x)

struct vlayer {
	uint32_t k, E;
};

static int v_init(const struct moed_host *host, const struct moed_param *params, size_t n,
		  void **ret_state)
{
	*ret_state = NULL;
	return 0;
}

static void v_fini(void *state)
{
}

static int v_layer_new(void *state, const struct moed_router_spec *spec,
		       const struct moed_param *params, size_t n, void **ret_layer)
{
	struct vlayer *l = malloc(sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->k = spec->top_k;
	l->E = spec->n_experts;
	*ret_layer = l;
	return 0;
}

static void v_layer_free(void *layer)
{
	free(layer);
}

static int v_route(void *layer, const float *x, size_t T, int32_t *ret_e, float *ret_w)
{
	const struct vlayer *l = layer;

	for (size_t t = 0; t < T; t++)
		for (uint32_t j = 0; j < l->k; j++) {
			ret_e[t * l->k + j] = VERSIONED_V == 1 ? (int32_t)j : (int32_t)(l->E - 1 - j);
			ret_w[t * l->k + j] = 1.0f;
		}
	return 0;
}

static const struct moed_router_ops ops = {
	.struct_size = sizeof(struct moed_router_ops),
	.layer_new = v_layer_new,
	.layer_free = v_layer_free,
	.route = v_route,
};

MOED_PLUGIN_DECLARE(.name = "versioned", .description = "test router version " STR(VERSIONED_V),
		    .kind = MOED_PLUGIN_ROUTER, .init = v_init, .fini = v_fini, .router = &ops);
