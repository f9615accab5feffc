/*
 * A router plugin whose constructor has a side effect, for the plugin-listing
 * tests.  Built as evil-marker.so, installed by the tests as evil.so (so the
 * descriptor is named "evil"): the constructor creates the file named by
 * $MOED_EVIL_MARKER, so a test that installs it world-writable can tell whether
 * moed (or any helper it starts) ran code from a file the loader refuses.
 * Built with -DSLOW as slow.so: a plugin that passes every check but whose
 * constructor sleeps 3 s, so a test can tell whether listing plugins stalls
 * the other clients.  Both route every token to experts 0..k-1.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "include/moed/plugin.h"

#ifdef SLOW
#define EVIL_NAME "slow"
#else
#define EVIL_NAME "evil"
#endif

__attribute__((constructor)) static void evil_constructor(void)
{
#ifdef SLOW
	sleep(3);
#else
	const char *path = getenv("MOED_EVIL_MARKER");
	int fd;

	if (!path)
		return;
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0) {
		(void)!write(fd, "constructor ran\n", 16);
		close(fd);
	}
#endif
}

static int evil_init(const struct moed_host *host, const struct moed_param *params,
		     size_t n_params, void **ret_state)
{
	*ret_state = NULL;
	return 0;
}

static void evil_fini(void *state)
{
}

static int evil_layer_new(void *state, const struct moed_router_spec *spec,
			  const struct moed_param *params, size_t n_params, void **ret_layer)
{
	unsigned *k = malloc(sizeof(*k));

	if (!k)
		return -ENOMEM;
	*k = spec->top_k;
	*ret_layer = k;
	return 0;
}

static void evil_layer_free(void *layer)
{
	free(layer);
}

static int evil_route(void *layer, const float *x, size_t n_tokens, int32_t *ret_experts,
		      float *ret_weights)
{
	unsigned k = *(unsigned *)layer;

	for (size_t t = 0; t < n_tokens; t++)
		for (unsigned j = 0; j < k; j++) {
			ret_experts[t * k + j] = (int32_t)j;
			ret_weights[t * k + j] = 1.0f / (float)k;
		}
	return 0;
}

static const struct moed_router_ops ops = {
	.struct_size = sizeof(struct moed_router_ops),
	.layer_new = evil_layer_new,
	.layer_free = evil_layer_free,
	.route = evil_route,
};

MOED_PLUGIN_DECLARE(.name = EVIL_NAME, .description = "test router with a constructor",
		    .kind = MOED_PLUGIN_ROUTER, .init = evil_init, .fini = evil_fini,
		    .router = &ops);
