/*
 * hash-router: an example out-of-tree router plugin, built only against the
 * installed <moed/plugin.h> (see Makefile here).  It routes each token to k
 * distinct experts picked by hashing the bits of its hidden vector, with equal
 * weights 1/k — the "hash layer" baseline (Roller et al., 2021): perfectly
 * balanced in expectation, blind to content.  Parameter: seed (default 0).
 *
 * ABI 2: the parameter is declared in the descriptor (`params`), so the daemon
 * refuses an unknown key or a malformed seed before init(), in `moed
 * --check-config` and on reload, and `moectl plugins` lists it.  The plugin
 * still parses the value itself (the declaration says what is valid; what the
 * value means is the plugin's business).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <moed/plugin.h>

static const struct moed_param_decl decls[] = {
	{ .name = "seed", .type = MOED_PARAM_INT, .min = 0, .max = 9007199254740992.0, .def = "0",
	  .help = "mixed into every token's hash: another seed, another assignment" },
};

struct hash_layer {
	uint32_t hidden, experts, k;
	uint64_t seed;
};

static int hr_init(const struct moed_host *host, const struct moed_param *params,
		   size_t n_params, void **ret_state)
{
	*ret_state = (void *)host;
	return 0;
}

static void hr_fini(void *state)
{
}

static int hr_layer_new(void *state, const struct moed_router_spec *spec,
			const struct moed_param *params, size_t n_params, void **ret_layer)
{
	struct hash_layer *l;
	uint64_t seed = 0;

	/* the host checked every key and value against decls before calling us
	 * (a host of ABI 1, which would not, refuses an ABI-2 plugin) */
	for (size_t i = 0; i < n_params; i++)
		if (strcmp(params[i].key, "seed") == 0)
			seed = (uint64_t)strtod(params[i].value, NULL);
	if (spec->top_k > spec->n_experts)
		return -EINVAL;
	l = malloc(sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->hidden = spec->hidden_size;
	l->experts = spec->n_experts;
	l->k = spec->top_k;
	l->seed = seed;
	*ret_layer = l;
	return 0;
}

static void hr_layer_free(void *layer)
{
	free(layer);
}

static uint64_t mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int hr_route(void *layer, const float *x, size_t n_tokens, int32_t *ret_experts,
		    float *ret_weights)
{
	const struct hash_layer *l = layer;

	for (size_t t = 0; t < n_tokens; t++) {
		uint64_t h = l->seed;
		uint32_t bits;
		for (uint32_t i = 0; i < l->hidden; i++) {
			memcpy(&bits, &x[t * l->hidden + i], sizeof(bits));
			h = mix(h ^ bits);
		}
		for (uint32_t j = 0; j < l->k; j++) {
			int32_t e;
			int dup;
			do {    /* k distinct experts */
				h = mix(h + 0x9e3779b97f4a7c15ULL);
				e = (int32_t)(h % l->experts);
				dup = 0;
				for (uint32_t m = 0; m < j; m++)
					dup |= ret_experts[t * l->k + m] == e;
			} while (dup);
			ret_experts[t * l->k + j] = e;
			ret_weights[t * l->k + j] = 1.0f / (float)l->k;
		}
	}
	return 0;
}

static const struct moed_router_ops ops = {
	.struct_size = sizeof(struct moed_router_ops),
	.layer_new = hr_layer_new,
	.layer_free = hr_layer_free,
	.route = hr_route,
};

MOED_PLUGIN_DECLARE(.name = "hash-router",
		    .description = "example: k distinct experts by hashing the token, weights 1/k",
		    .kind = MOED_PLUGIN_ROUTER, .init = hr_init, .fini = hr_fini, .router = &ops,
		    .params = decls, .n_params = sizeof(decls) / sizeof(decls[0]));
