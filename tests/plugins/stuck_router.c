/*
 * A router whose route() never returns, for the compute-timeout tests: loaded
 * with hang=1 (init or layer parameter) every route() call blocks forever in
 * pause(); with hang=0 (the default) it routes every token to experts 0..k-1
 * with equal weights, like mock-router.  A stuck call stands for a plugin bug
 * or a wedged device: the daemon has to answer DEADLINE_EXCEEDED, keep serving
 * the other layers and still shut down.  delay_ms=N (0..10000) makes each
 * route() call sleep N ms first: a slow layer, for the coalescing tests.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "include/moed/plugin.h"

struct stuck_layer {
	unsigned k;
	int hang;
	long delay_ms;
};

/* hang=0|1 and delay_ms=0..10000 from a parameter list; anything else is
 * refused. */
static int parse_hang(const struct moed_param *params, size_t n_params, int *ret_hang,
		      long *ret_delay_ms)
{
	for (size_t i = 0; i < n_params; i++) {
		char *end;

		if (!strcmp(params[i].key, "delay_ms")) {
			*ret_delay_ms = strtol(params[i].value, &end, 10);
			if (end == params[i].value || *end || *ret_delay_ms < 0 ||
			    *ret_delay_ms > 10000)
				return -EINVAL;
			continue;
		}
		if (strcmp(params[i].key, "hang") != 0)
			return -EINVAL;
		if (strcmp(params[i].value, "0") && strcmp(params[i].value, "1"))
			return -EINVAL;
		*ret_hang = params[i].value[0] == '1';
	}
	return 0;
}

static int stuck_init(const struct moed_host *host, const struct moed_param *params,
		      size_t n_params, void **ret_state)
{
	int hang = 0;
	long delay_ms = 0;

	*ret_state = NULL;
	return parse_hang(params, n_params, &hang, &delay_ms);
}

static void stuck_fini(void *state)
{
}

static int stuck_layer_new(void *state, const struct moed_router_spec *spec,
			   const struct moed_param *params, size_t n_params, void **ret_layer)
{
	struct stuck_layer *l;
	int hang = 0, r;
	long delay_ms = 0;

	r = parse_hang(params, n_params, &hang, &delay_ms);
	if (r < 0)
		return r;
	l = malloc(sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->k = spec->top_k;
	l->hang = hang;
	l->delay_ms = delay_ms;
	*ret_layer = l;
	return 0;
}

static void stuck_layer_free(void *layer)
{
	free(layer);
}

static int stuck_route(void *layer, const float *x, size_t n_tokens, int32_t *ret_experts,
		       float *ret_weights)
{
	struct stuck_layer *l = layer;
	struct timespec d = { l->delay_ms / 1000, l->delay_ms % 1000 * 1000000 };

	while (l->delay_ms && nanosleep(&d, &d) < 0 && errno == EINTR)
		;
	/* pause() returns on every handled signal: go back to waiting */
	while (l->hang)
		pause();
	for (size_t t = 0; t < n_tokens; t++)
		for (unsigned j = 0; j < l->k; j++) {
			ret_experts[t * l->k + j] = (int32_t)j;
			ret_weights[t * l->k + j] = 1.0f / (float)l->k;
		}
	return 0;
}

static const struct moed_router_ops ops = {
	.struct_size = sizeof(struct moed_router_ops),
	.layer_new = stuck_layer_new,
	.layer_free = stuck_layer_free,
	.route = stuck_route,
};

MOED_PLUGIN_DECLARE(.name = "stuck-router",
		    .description = "test router: hang=1 blocks route() forever, hang=0 experts 0..k-1, delay_ms=N sleeps first",
		    .kind = MOED_PLUGIN_ROUTER, .init = stuck_init, .fini = stuck_fini,
		    .router = &ops);
