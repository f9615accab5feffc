/*
 * Router layer objects shared by the router plugins.  The checkpoint bias is
 * copied so a layer never depends on the host's buffer for more than the spec
 * promises.  Plugin-level parameters are accepted at init() (the daemon passes
 * the same list to layer_new(), where they are validated per layer).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/common/router_plugin.h"

int router_layer_new(const struct moed_host *host, const char *plugin,
		     const struct moed_router_spec *spec, uint32_t scoring, int normalise,
		     const struct moed_param_decl *decls, size_t n_decls,
		     const struct param_slot *extra, size_t n_extra,
		     const struct moed_param *params, size_t n_params,
		     struct router_layer **ret_layer)
{
	struct router_layer *l = calloc(1, sizeof(*l));
	struct param_slot *all;
	float epsilon = ROUTE_DEFAULT_EPSILON;
	int r;

	if (!l)
		return -ENOMEM;
	r = route_cfg_init(&l->cfg, host, plugin, spec, scoring,
			   normalise < 0 ? spec->norm_topk_prob != 0 : normalise);
	if (r < 0)
		goto fail;
	all = calloc(n_extra + 1, sizeof(*all));
	if (!all) {
		r = -ENOMEM;
		goto fail;
	}
	all[0] = (struct param_slot){ "epsilon", &epsilon };
	if (n_extra)
		memcpy(all + 1, extra, n_extra * sizeof(*extra));
	r = params_parse(host, plugin, decls, n_decls, all, n_extra + 1, params, n_params);
	free(all);
	if (r < 0)
		goto fail;
	l->cfg.epsilon = epsilon;
	if (spec->bias) {
		l->bias = malloc(spec->n_experts * sizeof(float));
		if (!l->bias) {
			r = -ENOMEM;
			goto fail;
		}
		memcpy(l->bias, spec->bias, spec->n_experts * sizeof(float));
	}
	*ret_layer = l;
	return 0;
fail:
	free(l);
	return r;
}

void router_layer_free(void *layer)
{
	struct router_layer *l = layer;

	if (!l)
		return;
	free(l->bias);
	free(l);
}

int router_route_static(void *layer, const float *x, size_t n_tokens, int32_t *ret_experts,
			float *ret_weights)
{
	struct router_layer *l = layer;

	return route_tokens(&l->cfg, l->bias, x, n_tokens, ret_experts, ret_weights, NULL);
}

int router_get_static_bias(void *layer, float *ret_bias, uint32_t *ret_frozen)
{
	struct router_layer *l = layer;

	if (!l->bias)
		return -ENOTSUP;
	memcpy(ret_bias, l->bias, l->cfg.experts * sizeof(float));
	*ret_frozen = 1;
	return 0;
}

int router_init_host(const struct moed_host *host, const struct moed_param *params,
		     size_t n_params, void **ret_state)
{
	*ret_state = (void *)host;
	return 0;
}

void router_fini_nothing(void *state)
{
}
