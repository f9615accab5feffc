/*
 * /api/stats.  The keys and their meaning are those of client/cmd_admin.c's
 * stats_json(); the values come from the same places as the stats reply
 * (daemon/admin.c), so the page and moectl never disagree.
 */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine.h"
#include "daemon/service.h"
#include "daemon/statsjson.h"
#include "daemon/stats.h"

static json_object *latency(const struct hist *h)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "count", json_object_new_uint64(h->count));
	json_object_object_add(o, "p50_us", json_object_new_uint64(hist_percentile(h, 0.50)));
	json_object_object_add(o, "p90_us", json_object_new_uint64(hist_percentile(h, 0.90)));
	json_object_object_add(o, "p99_us", json_object_new_uint64(hist_percentile(h, 0.99)));
	return o;
}

static json_object *shadow(struct engine_layer *l, uint64_t now)
{
	json_object *o = json_object_new_object();
	struct shadow_summary sum;

	if (shadow_stats_summary(l->shadow_stats, now, l->rspec.top_k, &sum) < 0)
		return o;
	json_object_object_add(o, "router", json_object_new_string(l->shadow->gen->name));
	json_object_object_add(o, "generation", json_object_new_uint64(l->shadow->gen->generation));
	json_object_object_add(o, "overlap", json_object_new_double(sum.overlap));
	json_object_object_add(o, "top1_agreement", json_object_new_double(sum.top1_agreement));
	json_object_object_add(o, "max_vio", json_object_new_double(sum.max_vio));
	json_object_object_add(o, "serving_max_vio", json_object_new_double(sum.serving_max_vio));
	json_object_object_add(o, "drift_p50", json_object_new_double(sum.drift_p50));
	json_object_object_add(o, "drift_p99", json_object_new_double(sum.drift_p99));
	json_object_object_add(o, "tokens", json_object_new_uint64(sum.tokens));
	json_object_object_add(o, "sampled", json_object_new_uint64(sum.sampled));
	return o;
}

static json_object *u64s(const uint64_t *v, size_t n)
{
	json_object *a = json_object_new_array();

	for (size_t i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_uint64(v[i]));
	return a;
}

int stats_json_render(struct service *svc, char **ret_text, size_t *ret_len)
{
	struct engine *e = svc->engine;
	uint32_t E = e->model->n_experts;
	uint64_t now = uv_now(svc->loop);
	uint64_t *window = calloc(E ? E : 1, sizeof(*window));
	float *bias = calloc(E ? E : 1, sizeof(*bias));
	json_object *o = json_object_new_object(), *layers = json_object_new_array();
	const char *s;
	int r = -ENOMEM;

	if (!window || !bias || !o || !layers)
		goto out;
	for (uint32_t i = 0; i < e->n_layers; i++) {
		struct engine_layer *l = &e->layers[i];
		json_object *j = json_object_new_object(), *b = json_object_new_array();
		uint32_t frozen;
		uint64_t wt = stats_window(&l->stats, now, window);
		size_t nb = engine_router_bias(l, bias, &frozen);

		for (size_t x = 0; x < nb; x++)
			json_object_array_add(b, json_object_new_double(bias[x]));
		json_object_object_add(j, "layer", json_object_new_int64(l->w->index));
		json_object_object_add(j, "router", json_object_new_string(l->router->gen->name));
		json_object_object_add(j, "generation",
				       json_object_new_uint64(l->router->gen->generation));
		json_object_object_add(j, "load", u64s(l->stats.total, E));
		json_object_object_add(j, "window_load", u64s(window, E));
		json_object_object_add(j, "window_tokens", json_object_new_uint64(wt));
		json_object_object_add(j, "max_vio", json_object_new_double(stats_max_vio(window, E)));
		json_object_object_add(j, "max_vio_total",
				       json_object_new_double(stats_max_vio(l->stats.total, E)));
		json_object_object_add(j, "bias", b);
		json_object_object_add(j, "bias_frozen", json_object_new_boolean(nb && frozen));
		json_object_object_add(j, "requests", json_object_new_uint64(l->stats.requests));
		json_object_object_add(j, "batches", json_object_new_uint64(l->stats.batches));
		json_object_object_add(j, "tokens", json_object_new_uint64(l->stats.tokens));
		json_object_object_add(j, "compute_latency", latency(&l->stats.compute));
		json_object_object_add(j, "request_latency", latency(&l->stats.request));
		if (l->shadow)
			json_object_object_add(j, "shadow", shadow(l, now));
		json_object_array_add(layers, j);
	}
	json_object_object_add(o, "uptime_ms", json_object_new_uint64(now - svc->start_ms));
	json_object_object_add(o, "layers", layers);
	layers = NULL;
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (s && (*ret_text = strdup(s))) {
		*ret_len = strlen(s);
		r = 0;
	}
out:
	json_object_put(layers);
	json_object_put(o);
	free(window);
	free(bias);
	return r;
}
