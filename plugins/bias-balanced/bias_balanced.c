/*
 * bias-balanced: DeepSeek-V3 routing (as sigmoid-norm) with the auxiliary-loss-
 * free balancing rule run online.  The selection bias is live state, starting
 * from the checkpoint's e_score_correction_bias (zeros when there is none).
 * Every route() call adds the tokens it gave each expert to a load count; once
 * at least `update_every` tokens have been counted (checked after each call, so
 * one large call makes one update), every expert's bias moves
 *     b_i += gamma * sign(mean_load - load_i)
 * (overloaded experts down, underloaded up, exactly-average ones stay) and the
 * count starts again.  Frozen: routing uses the bias as it is, nothing is
 * counted.  Reset: back to the checkpoint's bias, counts cleared.
 *
 * Parameters: gamma (default 0.001), update_every (tokens, default 256),
 * epsilon.  route() runs concurrently: the bias is copied under the layer's
 * mutex, routing runs unlocked, the load is added under the mutex.
 *
 * State blob (ABI 2 state_save/state_restore, kept by the host in
 * router.state), version 1, host byte order: u32 frozen | u32 E | E x f32 bias.
 * A blob of another size or expert count, or with a non-finite bias, is refused.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/common/router_plugin.h"

#define STATE_VERSION 1u

static const struct moed_param_decl decls[] = {
	ROUTER_DECL_EPSILON,
	{ .name = "gamma", .type = MOED_PARAM_FLOAT, .min = 0.0, .max = 1e3, .def = "0.001",
	  .help = "bias step per update: overloaded experts down, underloaded up" },
	{ .name = "update_every", .type = MOED_PARAM_INT, .min = 1, .max = 1e9, .def = "256",
	  .help = "tokens counted between two bias updates" },
};

struct balance {
	pthread_mutex_t lock;
	float gamma;
	uint32_t update_every;
	float *live;            /* [E] */
	float *initial;         /* [E] checkpoint bias or zeros */
	uint64_t *load;         /* [E] since the last update */
	uint64_t counted;       /* tokens since the last update */
	int frozen;
};

static void balance_free(struct balance *b)
{
	if (!b)
		return;
	pthread_mutex_destroy(&b->lock);
	free(b->live);
	free(b->initial);
	free(b->load);
	free(b);
}

static int bb_layer_new(void *state, const struct moed_router_spec *spec,
			const struct moed_param *params, size_t n_params, void **ret_layer)
{
	struct balance *b = calloc(1, sizeof(*b));
	struct router_layer *l = NULL;
	uint32_t E = spec->n_experts;
	int r;

	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->lock, NULL);
	b->gamma = 0.001f;
	b->update_every = 256;
	const struct param_slot extra[] = {
		{ "gamma", &b->gamma },
		{ "update_every", &b->update_every },
	};
	r = router_layer_new(state, "bias-balanced", spec, MOED_SCORING_SIGMOID, 1, decls,
			     PARAMS_COUNT(decls), extra, PARAMS_COUNT(extra), params, n_params, &l);
	if (r < 0)
		goto fail;
	b->live = calloc(E, sizeof(float));
	b->initial = calloc(E, sizeof(float));
	b->load = calloc(E, sizeof(uint64_t));
	if (!b->live || !b->initial || !b->load) {
		r = -ENOMEM;
		goto fail;
	}
	if (l->bias)
		memcpy(b->initial, l->bias, E * sizeof(float));
	memcpy(b->live, b->initial, E * sizeof(float));
	l->ext = b;
	*ret_layer = l;
	return 0;
fail:
	router_layer_free(l);
	balance_free(b);
	return r;
}

static void bb_layer_free(void *layer)
{
	struct router_layer *l = layer;

	balance_free(l->ext);
	router_layer_free(l);
}

/* Apply the sign rule to the counted load; caller holds the lock. */
static void update_bias(struct balance *b, uint32_t E)
{
	uint64_t sum = 0;

	for (uint32_t e = 0; e < E; e++)
		sum += b->load[e];
	double mean = (double)sum / E;
	for (uint32_t e = 0; e < E; e++) {
		double d = mean - (double)b->load[e];
		b->live[e] += d > 0 ? b->gamma : d < 0 ? -b->gamma : 0.0f;
	}
	memset(b->load, 0, E * sizeof(uint64_t));
	b->counted = 0;
}

static int bb_route(void *layer, const float *x, size_t n_tokens, int32_t *ret_experts,
		    float *ret_weights)
{
	struct router_layer *l = layer;
	struct balance *b = l->ext;
	uint32_t E = l->cfg.experts, k = l->cfg.top_k;
	float *bias = malloc(E * sizeof(float));
	int frozen, r;

	if (!bias)
		return -ENOMEM;
	pthread_mutex_lock(&b->lock);
	memcpy(bias, b->live, E * sizeof(float));
	frozen = b->frozen;
	pthread_mutex_unlock(&b->lock);
	r = route_tokens(&l->cfg, bias, x, n_tokens, ret_experts, ret_weights, NULL);
	free(bias);
	if (r < 0 || frozen)
		return r;
	pthread_mutex_lock(&b->lock);
	if (!b->frozen) {
		for (size_t i = 0; i < n_tokens * k; i++)
			b->load[ret_experts[i]]++;
		b->counted += n_tokens;
		if (b->counted >= b->update_every)
			update_bias(b, E);
	}
	pthread_mutex_unlock(&b->lock);
	return 0;
}

static int bb_get_bias(void *layer, float *ret_bias, uint32_t *ret_frozen)
{
	struct router_layer *l = layer;
	struct balance *b = l->ext;

	pthread_mutex_lock(&b->lock);
	memcpy(ret_bias, b->live, l->cfg.experts * sizeof(float));
	*ret_frozen = (uint32_t)b->frozen;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

static int bb_state_size(void *layer, size_t *ret_size)
{
	const struct router_layer *l = layer;

	*ret_size = 8 + (size_t)l->cfg.experts * sizeof(float);
	return 0;
}

static int bb_state_save(void *layer, void *buf, size_t len, size_t *ret_len,
			 uint32_t *ret_version)
{
	struct router_layer *l = layer;
	struct balance *b = l->ext;
	uint32_t E = l->cfg.experts, frozen;
	uint8_t *p = buf;

	if (len < 8 + (size_t)E * sizeof(float))
		return -ENOSPC;
	pthread_mutex_lock(&b->lock);
	frozen = (uint32_t)b->frozen;
	memcpy(p + 8, b->live, E * sizeof(float));
	pthread_mutex_unlock(&b->lock);
	memcpy(p, &frozen, 4);
	memcpy(p + 4, &E, 4);
	*ret_len = 8 + (size_t)E * sizeof(float);
	*ret_version = STATE_VERSION;
	return 0;
}

static int bb_state_restore(void *layer, const void *buf, size_t len, uint32_t version)
{
	struct router_layer *l = layer;
	struct balance *b = l->ext;
	const uint8_t *p = buf;
	uint32_t E = l->cfg.experts, e_saved, frozen;
	float *bias;

	if (version != STATE_VERSION) {
		l->cfg.host->log(MOED_LOG_ERR, "bias-balanced", "state version %u, want %u",
				 version, STATE_VERSION);
		return -EPROTO;
	}
	if (len < 8 || (memcpy(&e_saved, p + 4, 4), e_saved != E) ||
	    len != 8 + (size_t)E * sizeof(float)) {
		l->cfg.host->log(MOED_LOG_ERR, "bias-balanced",
				 "state of %zu bytes does not hold the bias of %u experts", len, E);
		return -EINVAL;
	}
	bias = malloc(E * sizeof(float));
	if (!bias)
		return -ENOMEM;
	memcpy(bias, p + 8, E * sizeof(float));
	for (uint32_t e = 0; e < E; e++) {
		if (!isfinite(bias[e])) {
			l->cfg.host->log(MOED_LOG_ERR, "bias-balanced",
					 "state gives expert %u a non-finite bias; refused", e);
			free(bias);
			return -EINVAL;
		}
	}
	memcpy(&frozen, p, 4);
	pthread_mutex_lock(&b->lock);
	memcpy(b->live, bias, E * sizeof(float));
	memset(b->load, 0, E * sizeof(uint64_t));
	b->counted = 0;
	b->frozen = frozen != 0;
	pthread_mutex_unlock(&b->lock);
	free(bias);
	return 0;
}

static int bb_bias_ctl(void *layer, int op)
{
	struct router_layer *l = layer;
	struct balance *b = l->ext;
	int r = 0;

	pthread_mutex_lock(&b->lock);
	switch (op) {
	case MOED_BIAS_RESET:
		memcpy(b->live, b->initial, l->cfg.experts * sizeof(float));
		memset(b->load, 0, l->cfg.experts * sizeof(uint64_t));
		b->counted = 0;
		break;
	case MOED_BIAS_FREEZE:
		b->frozen = 1;
		memset(b->load, 0, l->cfg.experts * sizeof(uint64_t));
		b->counted = 0;
		break;
	case MOED_BIAS_THAW:
		b->frozen = 0;
		break;
	default:
		r = -EINVAL;
	}
	pthread_mutex_unlock(&b->lock);
	return r;
}

static const struct moed_router_ops ops = {
	.struct_size = sizeof(struct moed_router_ops),
	.layer_new = bb_layer_new,
	.layer_free = bb_layer_free,
	.route = bb_route,
	.get_bias = bb_get_bias,
	.bias_ctl = bb_bias_ctl,
	.state_size = bb_state_size,
	.state_save = bb_state_save,
	.state_restore = bb_state_restore,
};

MOED_PLUGIN_DECLARE(.name = "bias-balanced",
		    .description = "DeepSeek-V3 routing with the selection bias balanced online from observed load",
		    .kind = MOED_PLUGIN_ROUTER, .init = router_init_host,
		    .fini = router_fini_nothing, .router = &ops, .params = decls,
		    .n_params = PARAMS_COUNT(decls));
