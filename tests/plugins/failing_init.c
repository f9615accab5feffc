/* A router whose init() fails: the loader must report it and never call fini(). */
#include <errno.h>
#include <stdlib.h>

#include "include/moed/plugin.h"

static int fail_init(const struct moed_host *host, const struct moed_param *params,
		     size_t n_params, void **ret_state)
{
	host->log(MOED_LOG_ERR, "failing-init", "refusing to start (test)");
	return -EIO;
}

static void fail_fini(void *state)
{
	abort();        /* no fini after a failed init */
}

static int never_layer_new(void *state, const struct moed_router_spec *spec,
			   const struct moed_param *params, size_t n_params, void **ret_layer)
{
	abort();
}

static void never_layer_free(void *layer)
{
	abort();
}

static int never_route(void *layer, const float *x, size_t n_tokens, int32_t *ret_experts,
		       float *ret_weights)
{
	abort();
}

static const struct moed_router_ops ops = {
	.struct_size = sizeof(struct moed_router_ops),
	.layer_new = never_layer_new,
	.layer_free = never_layer_free,
	.route = never_route,
};

MOED_PLUGIN_DECLARE(.name = "failing-init", .kind = MOED_PLUGIN_ROUTER, .init = fail_init,
		    .fini = fail_fini, .router = &ops);
