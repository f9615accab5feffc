/*
 * Routing core.  The router matmul (route_logits.c, batch-independent bits)
 * fills a per-call buffer; everything after it is per token, in fp32, with
 * the selection done by repeated arg-max (k and topk_group are small), which
 * gives the deterministic tie rule for free: a strict '>' keeps the lower index.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/common/route.h"

int route_cfg_init(struct route_cfg *cfg, const struct moed_host *host, const char *plugin,
		   const struct moed_router_spec *spec, uint32_t scoring, int normalise)
{
	uint32_t groups = spec->n_group ? spec->n_group : 1;
	uint32_t keep = spec->topk_group ? spec->topk_group : groups;

	if (spec->n_experts == 0 || spec->hidden_size == 0 || spec->top_k == 0 ||
	    spec->top_k > spec->n_experts || spec->n_experts % groups != 0 || keep > groups ||
	    (uint64_t)keep * (spec->n_experts / groups) < spec->top_k || !spec->gate) {
		host->log(MOED_LOG_ERR, plugin,
			  "layer %u: inconsistent routing shape (E %u, k %u, groups %u/%u)",
			  spec->layer, spec->n_experts, spec->top_k, keep, groups);
		return -EINVAL;
	}
	memset(cfg, 0, sizeof(*cfg));
	cfg->host = host;
	cfg->hidden = spec->hidden_size;
	cfg->experts = spec->n_experts;
	cfg->top_k = spec->top_k;
	cfg->n_group = groups;
	cfg->topk_group = keep;
	cfg->scoring = scoring;
	cfg->normalise = normalise;
	cfg->scale = spec->routed_scaling_factor;
	cfg->epsilon = ROUTE_DEFAULT_EPSILON;
	cfg->gate = spec->gate;
	return 0;
}

static void score(const struct route_cfg *c, float *v)
{
	uint32_t E = c->experts;

	if (c->scoring == MOED_SCORING_SIGMOID) {
		for (uint32_t e = 0; e < E; e++)
			v[e] = 1.0f / (1.0f + expf(-v[e]));
		return;
	}
	float max = v[0], sum = 0.0f;
	for (uint32_t e = 1; e < E; e++)
		if (v[e] > max)
			max = v[e];
	for (uint32_t e = 0; e < E; e++) {
		v[e] = expf(v[e] - max);
		sum += v[e];
	}
	for (uint32_t e = 0; e < E; e++)
		v[e] /= sum;
}

/* Index of the largest v[i] with !taken[i]; ties go to the lower index. */
static uint32_t argmax(const float *v, const uint8_t *taken, uint32_t n)
{
	uint32_t best = UINT32_MAX;

	for (uint32_t i = 0; i < n; i++)
		if (!taken[i] && (best == UINT32_MAX || v[i] > v[best]))
			best = i;
	return best;
}

/* Mask every expert outside the topk_group best groups with -inf. */
static void limit_groups(const struct route_cfg *c, int has_bias, float *choice, float *gscore,
			 uint8_t *taken)
{
	uint32_t G = c->n_group, per = c->experts / G;

	for (uint32_t g = 0; g < G; g++) {
		const float *v = choice + g * per;
		float a = -INFINITY, b = -INFINITY;     /* largest, second largest */
		for (uint32_t i = 0; i < per; i++) {
			if (v[i] > a) {
				b = a;
				a = v[i];
			} else if (v[i] > b) {
				b = v[i];
			}
		}
		gscore[g] = has_bias ? a + (per > 1 ? b : 0.0f) : a;
	}
	memset(taken, 0, G);
	for (uint32_t j = 0; j < c->topk_group; j++)
		taken[argmax(gscore, taken, G)] = 1;
	for (uint32_t g = 0; g < G; g++)
		if (!taken[g])
			for (uint32_t i = 0; i < per; i++)
				choice[g * per + i] = -INFINITY;
}

int route_tokens(const struct route_cfg *c, const float *bias, const float *x, size_t n_tokens,
		 int32_t *ret_experts, float *ret_weights, uint64_t *ret_load)
{
	uint32_t E = c->experts, k = c->top_k;
	float *logits = malloc(n_tokens * E * sizeof(float));
	float *choice = malloc((size_t)E * sizeof(float) + c->n_group * sizeof(float));
	uint8_t *taken = malloc(E > c->n_group ? E : c->n_group);

	if (!logits || !choice || !taken) {
		free(logits);
		free(choice);
		free(taken);
		return -ENOMEM;
	}
	float *gscore = choice + E;
	if (route_logits(n_tokens, E, c->hidden, x, c->gate, logits) < 0) {
		free(logits);
		free(choice);
		free(taken);
		return -ENOMEM;
	}
	for (size_t t = 0; t < n_tokens; t++) {
		float *s = logits + t * E, sum = 0.0f;
		int32_t *idx = ret_experts + t * k;
		float *w = ret_weights + t * k;

		score(c, s);
		for (uint32_t e = 0; e < E; e++)
			choice[e] = bias ? s[e] + bias[e] : s[e];
		if (c->n_group > 1 && c->topk_group < c->n_group)
			limit_groups(c, bias != NULL, choice, gscore, taken);
		memset(taken, 0, E);
		for (uint32_t j = 0; j < k; j++) {
			uint32_t e = argmax(choice, taken, E);
			taken[e] = 1;
			idx[j] = (int32_t)e;
			w[j] = s[e];
			sum += s[e];
			if (ret_load)
				ret_load[e]++;
		}
		for (uint32_t j = 0; j < k; j++)
			w[j] = (c->normalise ? w[j] / (sum + c->epsilon) : w[j]) * c->scale;
	}
	free(logits);
	free(choice);
	free(taken);
	return 0;
}
