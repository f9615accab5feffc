/*
 * What the three router plugins share beyond the routing core: a layer object
 * holding the routing configuration and the bias it selects with, created from
 * the spec and the `epsilon` parameter.  Each plugin file then only says how it
 * scores, whether it normalises, which parameters it declares (ROUTER_DECL_EPSILON
 * first), and (bias-balanced) how its bias lives.
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

/* The declaration every router shares. */
#define ROUTER_DECL_EPSILON                                                          \
	{ .name = "epsilon", .type = MOED_PARAM_FLOAT, .min = 0.0, .max = 1.0,        \
	  .def = "1e-20", .help = "added to the sum of the chosen scores before dividing" }

/* normalise < 0: use spec->norm_topk_prob.  decls: the plugin's declarations
 * (epsilon among them); extra: slots for keys besides epsilon. */
int router_layer_new(const struct moed_host *host, const char *plugin,
		     const struct moed_router_spec *spec, uint32_t scoring, int normalise,
		     const struct moed_param_decl *decls, size_t n_decls,
		     const struct param_slot *extra, size_t n_extra,
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
