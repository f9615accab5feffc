/* A plugin built against a future ABI: the loader must refuse it before calling it. */
#include <stdlib.h>

#include "include/moed/plugin.h"

static int bad_init(const struct moed_host *host, const struct moed_param *params,
		    size_t n_params, void **ret_state)
{
	abort();        /* never called: the ABI check comes first */
}

static void bad_fini(void *state)
{
	abort();
}

MOED_PLUGIN_EXPORT const struct moed_plugin moed_plugin = {
	.abi_version = 999,
	.struct_size = sizeof(struct moed_plugin),
	.name = "bad-abi",
	.kind = MOED_PLUGIN_ROUTER,
	.init = bad_init,
	.fini = bad_fini,
};
