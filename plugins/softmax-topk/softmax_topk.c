/*
 * softmax-topk: Mixtral, Qwen-MoE, OLMoE and DeepSeek-V2 routing.  Softmax over
 * all experts, greedy or group-limited top-k (without a bias the group score is
 * the group's largest score), normalised only when the model's norm_topk_prob
 * says so, then scaled by routed_scaling_factor.  A checkpoint bias, if any,
 * only selects.  Parameter: epsilon.
 */
#include "plugins/common/router_plugin.h"

static const struct moed_param_decl decls[] = { ROUTER_DECL_EPSILON };

static int sm_layer_new(void *state, const struct moed_router_spec *spec,
			const struct moed_param *params, size_t n_params, void **ret_layer)
{
	return router_layer_new(state, "softmax-topk", spec, MOED_SCORING_SOFTMAX, -1, decls,
				PARAMS_COUNT(decls), NULL, 0, params, n_params,
				(struct router_layer **)ret_layer);
}

static const struct moed_router_ops ops = {
	.struct_size = sizeof(struct moed_router_ops),
	.layer_new = sm_layer_new,
	.layer_free = router_layer_free,
	.route = router_route_static,
	.get_bias = router_get_static_bias,
};

MOED_PLUGIN_DECLARE(.name = "softmax-topk",
		    .description = "softmax scores, greedy or group-limited top-k (Mixtral, Qwen, DeepSeek-V2)",
		    .kind = MOED_PLUGIN_ROUTER, .init = router_init_host,
		    .fini = router_fini_nothing, .router = &ops,
		    .params = decls, .n_params = PARAMS_COUNT(decls));
