/*
 * Plugins the loader must refuse before calling anything, built three times:
 * bad-abi (ABI 999), abi-three (ABI 3, one past this host's) and tiny-desc (ABI
 * 1 but a descriptor smaller than ABI 1's).  BAD_NAME, BAD_ABI and BAD_SIZE
 * select the build; init and fini abort.
 */
#include <stdlib.h>

#include "include/moed/plugin.h"

#ifndef BAD_NAME
#define BAD_NAME "bad-abi"
#define BAD_ABI 999
#endif
#ifndef BAD_SIZE
#define BAD_SIZE sizeof(struct moed_plugin)
#endif

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
	.abi_version = BAD_ABI,
	.struct_size = BAD_SIZE,
	.name = BAD_NAME,
	.kind = MOED_PLUGIN_ROUTER,
	.init = bad_init,
	.fini = bad_fini,
};
