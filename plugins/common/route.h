/*
 * The routing step shared by the router plugins (ROUTING.md):
 *
 *   logits = x · gate^T (fp32, route_logits.c: one summation order per
 *            (token, expert), so a token's routes do not depend on its batch)
 *   s      = softmax(logits) or sigmoid(logits)
 *   c      = s + bias                      (bias only chooses, never weighs)
 *   groups : with n_group > 1, group score = sum of the two largest c in the
 *            group when a bias exists, else the group's largest c; keep the
 *            topk_group best groups, c = -inf elsewhere
 *   idx    = top-k of c; ties by value descending, then lower expert index
 *   w      = s[idx], divided by (sum + epsilon) when normalising, times scale
 *
 * Epsilon defaults to 1e-20 (HuggingFace's choice; DeepSeek's code adds none,
 * llama.cpp clamps at 6.1e-5) and is the `epsilon` parameter of every router.
 */
#ifndef MOED_ROUTE_H
#define MOED_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "include/moed/plugin.h"

#define ROUTE_DEFAULT_EPSILON 1e-20f

struct route_cfg {
	const struct moed_host *host;
	uint32_t hidden, experts, top_k, n_group, topk_group;
	uint32_t scoring;               /* enum moed_scoring used by this router */
	int normalise;
	float scale;
	float epsilon;
	const float *gate;              /* [E][H] */
};

/* Fill cfg from the layer spec; validates the shape (-EINVAL with a log line). */
int route_cfg_init(struct route_cfg *cfg, const struct moed_host *host, const char *plugin,
		   const struct moed_router_spec *spec, uint32_t scoring, int normalise);

/* logits[t][e] = x[t] . gate[e] for T tokens, E experts, H columns, in an
 * order that does not depend on T or on t (route_logits.c); -1 when out of
 * memory. */
int route_logits(size_t T, uint32_t E, uint32_t H, const float *x, const float *gate,
		  float *logits);

/* Route T tokens with the given selection bias (NULL = none).  When ret_load is
 * not NULL, the number of tokens given to each expert is added to it. */
int route_tokens(const struct route_cfg *cfg, const float *bias, const float *x, size_t n_tokens,
		 int32_t *ret_experts, float *ret_weights, uint64_t *ret_load);

#endif
