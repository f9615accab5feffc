/*
 * What the three router plugins share beyond the routing core: a layer object
 * holding the routing configuration and the bias it selects with, created from
 * the spec and the `epsilon` parameter.  Each plugin file then only says how it
 * scores, whether it normalises, and (bias-balanced) how its bias lives.
 */
#ifndef MOED_ROUTER_PLUGIN_H
#define MOED_ROUTER_PLUGIN_H

#include "plugins/common/params.h"
#include "plugins/common/route.h"

struct router_layer {
	struct route_cfg cfg;
	float *bias;                    /* [E] copy of the checkpoint's bias, or NULL */
	void *ext;                      /* plugin-specific state */
};

/* normalise < 0: use spec->norm_topk_prob.  Extra parameter specs (besides
 * epsilon) are parsed too. */
int router_layer_new(const struct moed_host *host, const char *plugin,
		     const struct moed_router_spec *spec, uint32_t scoring, int normalise,
		     const struct param_spec *extra, size_t n_extra,
		     const struct moed_param *params, size_t n_params,
		     struct router_layer **ret_layer);
void router_layer_free(void *layer);
/* route() for routers that select with the static checkpoint bias. */
int router_route_static(void *layer, const float *x, size_t n_tokens, int32_t *ret_experts,
			float *ret_weights);
/* get_bias() returning the static checkpoint bias (never frozen, never live). */
int router_get_static_bias(void *layer, float *ret_bias, uint32_t *ret_frozen);
/* init() that keeps the host table as the plugin state. */
int router_init_host(const struct moed_host *host, const struct moed_param *params,
		     size_t n_params, void **ret_state);
void router_fini_nothing(void *state);

#endif
