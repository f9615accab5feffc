/*
 * An expert backend built against the frozen ABI-1 header: y = 0 for every
 * token.  The host must bind it to ordinary layers, and refuse it a layer that
 * uses what ABI 1 cannot describe (FP8 weights, block scales, a shared-expert
 * gate, a subset of experts) rather than hand it weights it would misread.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <moed/plugin.h>

_Static_assert(MOED_PLUGIN_ABI_VERSION == 1, "must build against the frozen ABI-1 header");

struct a1e_layer {
	uint32_t H;
};

static int a1e_init(const struct moed_host *host, const struct moed_param *params, size_t n,
		    void **ret_state)
{
	*ret_state = NULL;
	return 0;
}

static void a1e_fini(void *state)
{
}

static int a1e_layer_new(void *state, const struct moed_expert_spec *spec,
			 const struct moed_param *params, size_t n, void **ret_layer)
{
	struct a1e_layer *l;

	if (spec->struct_size < sizeof(*spec) || spec->dtype > MOED_DTYPE_F16)
		return -EINVAL;
	l = malloc(sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->H = spec->hidden_size;
	*ret_layer = l;
	return 0;
}

static void a1e_layer_free(void *layer)
{
	free(layer);
}

static int a1e_forward(void *layer, const float *x, size_t T, size_t k, const int32_t *experts,
		       const float *weights, float *ret_y)
{
	const struct a1e_layer *l = layer;

	memset(ret_y, 0, T * l->H * sizeof(float));
	return 0;
}

static const struct moed_expert_ops ops = {
	.struct_size = sizeof(struct moed_expert_ops),
	.layer_new = a1e_layer_new,
	.layer_free = a1e_layer_free,
	.forward = a1e_forward,
};

MOED_PLUGIN_DECLARE(.name = "abi1-expert", .description = "test expert backend built for ABI 1",
		    .kind = MOED_PLUGIN_EXPERT, .init = a1e_init, .fini = a1e_fini, .expert = &ops);
