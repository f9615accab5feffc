/*
 * sigmoid-norm: DeepSeek-V3 / Moonlight routing.  Sigmoid scores; the
 * checkpoint's e_score_correction_bias is added for selection only;
 * group-limited top-k with the group score the sum of its two largest biased
 * scores; weights are the unbiased scores of the chosen experts, always
 * normalised, times routed_scaling_factor.  Parameter: epsilon.
 */
#include "plugins/common/router_plugin.h"

static const struct moed_param_decl decls[] = { ROUTER_DECL_EPSILON };

static int sn_layer_new(void *state, const struct moed_router_spec *spec,
			const struct moed_param *params, size_t n_params, void **ret_layer)
{
	return router_layer_new(state, "sigmoid-norm", spec, MOED_SCORING_SIGMOID, 1, decls,
				PARAMS_COUNT(decls), NULL, 0, params, n_params,
				(struct router_layer **)ret_layer);
}

static const struct moed_router_ops ops = {
	.struct_size = sizeof(struct moed_router_ops),
	.layer_new = sn_layer_new,
	.layer_free = router_layer_free,
	.route = router_route_static,
	.get_bias = router_get_static_bias,
};

MOED_PLUGIN_DECLARE(.name = "sigmoid-norm",
		    .description = "DeepSeek-V3: sigmoid, selection bias, group-limited top-k, normalise, scale",
		    .kind = MOED_PLUGIN_ROUTER, .init = router_init_host,
		    .fini = router_fini_nothing, .router = &ops,
		    .params = decls, .n_params = PARAMS_COUNT(decls));
