/*
 * A router built against the frozen ABI-1 header (tests/abi1/moed/plugin.h, the
 * header as ABI 1 shipped it), to show that this host still loads and runs
 * plugins built for ABI 1.  Token t goes to experts (offset + t + j) mod E,
 * j = 0..k-1, with weights 1/k; `offset` (default 0) is parsed here, as ABI-1
 * plugins had to: the host has no declaration to check it against.  It keeps a
 * "live bias" through the ABI-1 ops get_bias/set_bias/bias_ctl, starting at
 * bias[e] = offset * e, which the host must carry across swaps and restarts
 * for ABI-1 routers too (they have no state blob ops).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <moed/plugin.h>

_Static_assert(MOED_PLUGIN_ABI_VERSION == 1, "must build against the frozen ABI-1 header");

struct a1_layer {
	uint32_t k, E, offset;
	int frozen;
	float *bias;
};

static int a1_init(const struct moed_host *host, const struct moed_param *params, size_t n,
		   void **ret_state)
{
	*ret_state = (void *)host;
	return 0;
}

static void a1_fini(void *state)
{
}

static int a1_layer_new(void *state, const struct moed_router_spec *spec,
			const struct moed_param *params, size_t n, void **ret_layer)
{
	const struct moed_host *host = state;
	struct a1_layer *l;
	uint32_t offset = 0;

	for (size_t i = 0; i < n; i++) {
		char *end;
		if (strcmp(params[i].key, "offset")) {
			host->log(MOED_LOG_ERR, "abi1-router", "unknown parameter '%s'", params[i].key);
			return -EINVAL;
		}
		offset = (uint32_t)strtoul(params[i].value, &end, 10);
		if (*end)
			return -EINVAL;
	}
	if (spec->struct_size < sizeof(*spec) || spec->top_k > spec->n_experts)
		return -EINVAL;
	l = malloc(sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->k = spec->top_k;
	l->E = spec->n_experts;
	l->offset = offset;
	l->frozen = 0;
	l->bias = malloc(l->E * sizeof(float));
	if (!l->bias) {
		free(l);
		return -ENOMEM;
	}
	for (uint32_t e = 0; e < l->E; e++)
		l->bias[e] = (float)offset * (float)e;
	*ret_layer = l;
	return 0;
}

static void a1_layer_free(void *layer)
{
	struct a1_layer *l = layer;

	free(l->bias);
	free(l);
}

/* Not thread-safe against route(): route() does not read the bias. */
static int a1_get_bias(void *layer, float *ret_bias, uint32_t *ret_frozen)
{
	const struct a1_layer *l = layer;

	memcpy(ret_bias, l->bias, l->E * sizeof(float));
	*ret_frozen = (uint32_t)l->frozen;
	return 0;
}

static int a1_set_bias(void *layer, const float *bias)
{
	struct a1_layer *l = layer;

	memcpy(l->bias, bias, l->E * sizeof(float));
	return 0;
}

static int a1_bias_ctl(void *layer, int op)
{
	struct a1_layer *l = layer;

	if (op == MOED_BIAS_FREEZE || op == MOED_BIAS_THAW)
		l->frozen = op == MOED_BIAS_FREEZE;
	else if (op == MOED_BIAS_RESET)
		for (uint32_t e = 0; e < l->E; e++)
			l->bias[e] = (float)l->offset * (float)e;
	else
		return -EINVAL;
	return 0;
}

static int a1_route(void *layer, const float *x, size_t T, int32_t *ret_e, float *ret_w)
{
	const struct a1_layer *l = layer;

	for (size_t t = 0; t < T; t++)
		for (uint32_t j = 0; j < l->k; j++) {
			ret_e[t * l->k + j] = (int32_t)((l->offset + t + j) % l->E);
			ret_w[t * l->k + j] = 1.0f / (float)l->k;
		}
	return 0;
}

static const struct moed_router_ops ops = {
	.struct_size = sizeof(struct moed_router_ops),
	.layer_new = a1_layer_new,
	.layer_free = a1_layer_free,
	.route = a1_route,
	.get_bias = a1_get_bias,
	.set_bias = a1_set_bias,
	.bias_ctl = a1_bias_ctl,
};

MOED_PLUGIN_DECLARE(.name = "abi1-router", .description = "test router built for ABI 1",
		    .kind = MOED_PLUGIN_ROUTER, .init = a1_init, .fini = a1_fini, .router = &ops);
