/*
 * Commands that change or observe how moed serves: router set/show, expert
 * set, stats (optionally refreshed with --watch), bias show/reset/freeze/thaw,
 * reload.  The daemon checks admin rights; a denial comes back as
 * PERMISSION_DENIED and is printed like any other server error.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/moectl.h"
#include "client/output.h"

#define MAX_PARAMS 32

static json_object *params_json(Moed__Param **p, size_t n)
{
	json_object *o = json_object_new_object();

	for (size_t i = 0; i < n; i++)
		json_object_object_add(o, p[i]->key, json_object_new_string(p[i]->value));
	return o;
}

static void params_print(Moed__Param **p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf(" %s=%s", p[i]->key, p[i]->value);
}

static void bindings_print(const struct global *g, const Moed__RouterShowResponse *s)
{
	if (g->json) {
		json_object *o = json_object_new_object(), *a = json_object_new_array();
		for (size_t i = 0; i < s->n_layers; i++) {
			const Moed__LayerBinding *b = s->layers[i];
			json_object *l = json_object_new_object();
			json_object_object_add(l, "layer", json_object_new_int64(b->layer));
			json_object_object_add(l, "router", json_object_new_string(b->router));
			json_object_object_add(l, "generation",
					       json_object_new_uint64(b->router_generation));
			json_object_object_add(l, "params",
					       params_json(b->router_params, b->n_router_params));
			json_object_object_add(l, "expert", json_object_new_string(b->expert));
			json_object_object_add(l, "expert_generation",
					       json_object_new_uint64(b->expert_generation));
			json_object_object_add(l, "expert_params",
					       params_json(b->expert_params, b->n_expert_params));
			if (b->shadow) {
				json_object_object_add(l, "shadow", json_object_new_string(b->shadow));
				json_object_object_add(l, "shadow_generation",
						       json_object_new_uint64(b->shadow_generation));
				json_object_object_add(l, "shadow_sample",
						       json_object_new_double(b->shadow_sample));
			}
			json_object_array_add(a, l);
		}
		json_object_object_add(o, "layers", a);
		json_print(o);
		return;
	}
	printf("%-6s %-16s %-5s %-16s %-5s\n", "layer", "router", "gen", "expert", "gen");
	for (size_t i = 0; i < s->n_layers; i++) {
		const Moed__LayerBinding *b = s->layers[i];
		printf("%-6u %-16s %-5llu %-16s %-5llu", b->layer, b->router,
		       (unsigned long long)b->router_generation, b->expert,
		       (unsigned long long)b->expert_generation);
		params_print(b->router_params, b->n_router_params);
		params_print(b->expert_params, b->n_expert_params);
		if (b->shadow)
			printf("  shadow %s (generation %llu, sample %g)", b->shadow,
			       (unsigned long long)b->shadow_generation, (double)b->shadow_sample);
		printf("\n");
	}
}

/* router set / expert set NAME [--param K=V]... [--layer L]; router shadow
 * (router 2) also takes --sample F, or --off [--layer L] */
static int plugin_set(const struct global *g, const char *cmd, int router, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "param", required_argument, NULL, 'p' },
		{ "layer", required_argument, NULL, 'l' },
		{ "sample", required_argument, NULL, 's' },
		{ "off", no_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__PluginSetRequest ps = MOED__PLUGIN_SET_REQUEST__INIT;
	Moed__RouterShadowRequest rs = MOED__ROUTER_SHADOW_REQUEST__INIT;
	char *end;
	Moed__Param params[MAX_PARAMS], *pp[MAX_PARAMS];
	char *copies[MAX_PARAMS];
	Moed__Response *resp;
	uint64_t layer;
	int c, r = EXIT_OK;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'l') {
			if (parse_uint(cmd, "--layer", optarg, UINT32_MAX, &layer) != EXIT_OK)
				return EXIT_USAGE;
			ps.has_layer = 1;
			ps.layer = (uint32_t)layer;
		} else if (c == 'p') {
			char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg)
				return usage_error(cmd, "--param wants KEY=VALUE, got '%s'", optarg);
			if (ps.n_params == MAX_PARAMS)
				return usage_error(cmd, "at most %d parameters", MAX_PARAMS);
			copies[ps.n_params] = strdup(optarg);
			if (!copies[ps.n_params])
				return usage_error(cmd, "out of memory");
			moed__param__init(&params[ps.n_params]);
			params[ps.n_params].key = copies[ps.n_params];
			copies[ps.n_params][eq - optarg] = '\0';
			params[ps.n_params].value = copies[ps.n_params] + (eq - optarg) + 1;
			pp[ps.n_params] = &params[ps.n_params];
			ps.n_params++;
		} else if (c == 's' && router == 2) {
			rs.has_sample = 1;
			rs.sample = strtof(optarg, &end);
			if (*end || end == optarg || !(rs.sample >= 0.0f && rs.sample <= 1.0f)) {
				r = usage_error(cmd, "--sample wants a fraction in [0, 1], got '%s'",
						optarg);
				goto out;
			}
		} else if (c == 'o' && router == 2) {
			rs.has_off = rs.off = 1;
		} else {
			r = usage_error(cmd, "unknown option");
			goto out;
		}
	}
	if (rs.off ? optind != argc || ps.n_params || rs.has_sample : optind + 1 != argc) {
		r = usage_error(cmd, rs.off ? "--off takes only --layer"
					    : "give exactly one plugin name");
		goto out;
	}
	ps.name = rs.off ? NULL : argv[optind];
	ps.params = pp;
	if (router == 2) {
		rs.name = ps.name;
		rs.n_params = ps.n_params;
		rs.params = pp;
		rs.has_layer = ps.has_layer;
		rs.layer = ps.layer;
		req.body_case = MOED__REQUEST__BODY_ROUTER_SHADOW;
		req.router_shadow = &rs;
	} else if (router) {
		req.body_case = MOED__REQUEST__BODY_ROUTER_SET;
		req.router_set = &ps;
	} else {
		req.body_case = MOED__REQUEST__BODY_EXPERT_SET;
		req.expert_set = &ps;
	}
	r = moectl_call_once(g, &req, &resp);
	if (r == EXIT_OK) {
		bindings_print(g, resp->bindings);
		moed__response__free_unpacked(resp, NULL);
	}
out:
	for (size_t i = 0; i < ps.n_params; i++)
		free(copies[i]);
	return r;
}

int cmd_router(const struct global *g, int argc, char **argv)
{
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__RouterShowRequest show = MOED__ROUTER_SHOW_REQUEST__INIT;
	Moed__Response *resp;
	int r;

	if (argc >= 2 && !strcmp(argv[1], "set"))
		return plugin_set(g, "router", 1, argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "shadow"))
		return plugin_set(g, "router", 2, argc - 1, argv + 1);
	if (argc != 2 || strcmp(argv[1], "show"))
		return usage_error("router", "want 'set NAME ...', 'show' or 'shadow NAME ...'");
	req.body_case = MOED__REQUEST__BODY_ROUTER_SHOW;
	req.router_show = &show;
	r = moectl_call_once(g, &req, &resp);
	if (r == EXIT_OK) {
		bindings_print(g, resp->bindings);
		moed__response__free_unpacked(resp, NULL);
	}
	return r;
}

int cmd_expert(const struct global *g, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "set"))
		return usage_error("expert", "want 'set NAME ...'");
	return plugin_set(g, "expert", 0, argc - 1, argv + 1);
}

static json_object *latency_json(const Moed__Latency *l)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "count", json_object_new_uint64(l->count));
	json_object_object_add(o, "p50_us", json_object_new_uint64(l->p50_us));
	json_object_object_add(o, "p90_us", json_object_new_uint64(l->p90_us));
	json_object_object_add(o, "p99_us", json_object_new_uint64(l->p99_us));
	return o;
}

static json_object *shadow_json(const Moed__ShadowStats *s)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "router", json_object_new_string(s->router));
	json_object_object_add(o, "generation", json_object_new_uint64(s->generation));
	json_object_object_add(o, "overlap", json_object_new_double(s->overlap));
	json_object_object_add(o, "top1_agreement", json_object_new_double(s->top1_agreement));
	json_object_object_add(o, "max_vio", json_object_new_double(s->max_vio));
	json_object_object_add(o, "serving_max_vio", json_object_new_double(s->serving_max_vio));
	json_object_object_add(o, "drift_p50", json_object_new_double(s->drift_p50));
	json_object_object_add(o, "drift_p99", json_object_new_double(s->drift_p99));
	json_object_object_add(o, "tokens", json_object_new_uint64(s->tokens));
	json_object_object_add(o, "sampled", json_object_new_uint64(s->sampled));
	return o;
}

static json_object *stats_json(const Moed__StatsResponse *s)
{
	json_object *o = json_object_new_object(), *a = json_object_new_array();

	for (size_t i = 0; i < s->n_layers; i++) {
		const Moed__LayerStats *l = s->layers[i];
		json_object *j = json_object_new_object();
		json_object_object_add(j, "layer", json_object_new_int64(l->layer));
		json_object_object_add(j, "router", json_object_new_string(l->router));
		json_object_object_add(j, "generation", json_object_new_uint64(l->generation));
		json_object_object_add(j, "load", json_u64_array(l->load, l->n_load));
		json_object_object_add(j, "window_load",
				       json_u64_array(l->window_load, l->n_window_load));
		json_object_object_add(j, "window_tokens", json_object_new_uint64(l->window_tokens));
		json_object_object_add(j, "max_vio", json_object_new_double(l->max_vio));
		json_object_object_add(j, "max_vio_total", json_object_new_double(l->max_vio_total));
		json_object_object_add(j, "bias", json_float_array(l->bias, l->n_bias));
		json_object_object_add(j, "bias_frozen", json_object_new_boolean(l->bias_frozen));
		json_object_object_add(j, "requests", json_object_new_uint64(l->requests));
		json_object_object_add(j, "batches", json_object_new_uint64(l->batches));
		json_object_object_add(j, "tokens", json_object_new_uint64(l->tokens));
		json_object_object_add(j, "compute_latency", latency_json(l->compute));
		json_object_object_add(j, "request_latency", latency_json(l->request));
		if (l->shadow)
			json_object_object_add(j, "shadow", shadow_json(l->shadow));
		json_object_array_add(a, j);
	}
	json_object_object_add(o, "uptime_ms", json_object_new_uint64(s->uptime_ms));
	json_object_object_add(o, "layers", a);
	return o;
}

static void stats_print(const Moed__StatsResponse *s)
{
	for (size_t i = 0; i < s->n_layers; i++) {
		const Moed__LayerStats *l = s->layers[i];
		uint64_t max = 0;
		for (size_t e = 0; e < l->n_window_load; e++)
			if (l->window_load[e] > max)
				max = l->window_load[e];
		printf("layer %u  router %s (generation %llu)  %llu requests in %llu batches, %llu tokens\n",
		       l->layer, l->router, (unsigned long long)l->generation,
		       (unsigned long long)l->requests, (unsigned long long)l->batches,
		       (unsigned long long)l->tokens);
		printf("  MaxVio %.3f recent, %.3f since start; latency compute p50/p90/p99 %llu/%llu/%llu us, request %llu/%llu/%llu us\n",
		       l->max_vio, l->max_vio_total, (unsigned long long)l->compute->p50_us,
		       (unsigned long long)l->compute->p90_us, (unsigned long long)l->compute->p99_us,
		       (unsigned long long)l->request->p50_us, (unsigned long long)l->request->p90_us,
		       (unsigned long long)l->request->p99_us);
		if (l->shadow)
			printf("  shadow %s (generation %llu): overlap %.4f, top-1 agreement %.4f, MaxVio %.3f (serving %.3f), drift p50/p99 %.3g/%.3g on %llu of %llu tokens, %llu us\n",
			       l->shadow->router, (unsigned long long)l->shadow->generation,
			       l->shadow->overlap, l->shadow->top1_agreement, l->shadow->max_vio,
			       l->shadow->serving_max_vio, l->shadow->drift_p50, l->shadow->drift_p99,
			       (unsigned long long)l->shadow->sampled, (unsigned long long)l->shadow->tokens,
			       (unsigned long long)l->shadow->compute_us);
		for (size_t e = 0; e < l->n_window_load; e++) {
			printf("  %4zu ", e);
			print_bar(l->window_load[e], max, 30);
			printf(" %8llu", (unsigned long long)l->window_load[e]);
			if (e < l->n_bias)
				printf("  bias %+.4f", l->bias[e]);
			printf("\n");
		}
	}
}

int cmd_stats(const struct global *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "layer", required_argument, NULL, 'l' },
		{ "watch", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__StatsRequest sr = MOED__STATS_REQUEST__INIT;
	Moed__Response *resp;
	uint64_t v, watch = 0;
	struct conn conn;
	int c, r;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'l') {
			if (parse_uint("stats", "--layer", optarg, UINT32_MAX, &v) != EXIT_OK)
				return EXIT_USAGE;
			sr.has_layer = 1;
			sr.layer = (uint32_t)v;
		} else if (c == 'w') {
			if (parse_uint("stats", "--watch", optarg, 86400, &watch) != EXIT_OK)
				return EXIT_USAGE;
			if (!watch)
				return usage_error("stats", "--watch needs at least 1 second");
		} else {
			return usage_error("stats", "unknown option");
		}
	}
	if (optind < argc)
		return usage_error("stats", "unexpected argument '%s'", argv[optind]);
	req.body_case = MOED__REQUEST__BODY_STATS;
	req.stats = &sr;
	r = moectl_connect(g, &conn);
	if (r != EXIT_OK)
		return r;
	do {
		r = conn_call(&conn, &req, &resp);
		if (r != EXIT_OK)
			break;
		if (watch && !g->json)
			fputs("\033[H\033[2J", stdout);
		if (g->json)
			json_print(stats_json(resp->stats));
		else
			stats_print(resp->stats);
		fflush(stdout);
		moed__response__free_unpacked(resp, NULL);
		if (watch)
			sleep((unsigned)watch);
	} while (watch);
	conn_close(&conn);
	return r;
}

int cmd_bias(const struct global *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "layer", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *ops[] = { "show", "reset", "freeze", "thaw" };
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__BiasRequest br = MOED__BIAS_REQUEST__INIT;
	Moed__Response *resp;
	uint64_t v;
	int c, r, op = -1;

	if (argc >= 2)
		for (int i = 0; i < 4; i++)
			if (!strcmp(argv[1], ops[i]))
				op = i;
	if (op < 0)
		return usage_error("bias", "want show, reset, freeze or thaw");
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'l' || parse_uint("bias", "--layer", optarg, UINT32_MAX, &v) != EXIT_OK)
			return usage_error("bias", "unknown option");
		br.has_layer = 1;
		br.layer = (uint32_t)v;
	}
	if (optind < argc)
		return usage_error("bias", "unexpected argument '%s'", argv[optind]);
	br.op = (Moed__BiasOp)op;       /* BIAS_SHOW .. BIAS_THAW in this order */
	req.body_case = MOED__REQUEST__BODY_BIAS;
	req.bias = &br;
	r = moectl_call_once(g, &req, &resp);
	if (r != EXIT_OK)
		return r;
	const Moed__BiasResponse *b = resp->bias;
	if (g->json) {
		json_object *o = json_object_new_object(), *a = json_object_new_array();
		for (size_t i = 0; i < b->n_layers; i++) {
			json_object *l = json_object_new_object();
			json_object_object_add(l, "layer", json_object_new_int64(b->layers[i]->layer));
			json_object_object_add(l, "router", json_object_new_string(b->layers[i]->router));
			json_object_object_add(l, "live", json_object_new_boolean(b->layers[i]->live));
			json_object_object_add(l, "frozen", json_object_new_boolean(b->layers[i]->frozen));
			json_object_object_add(l, "bias", json_float_array(b->layers[i]->bias,
									    b->layers[i]->n_bias));
			json_object_array_add(a, l);
		}
		json_object_object_add(o, "layers", a);
		json_print(o);
	} else {
		for (size_t i = 0; i < b->n_layers; i++) {
			const Moed__LayerBias *l = b->layers[i];
			printf("layer %u  router %s  %s%s:", l->layer, l->router,
			       l->live ? "live" : "static", l->frozen && l->live ? ", frozen" : "");
			for (size_t e = 0; e < l->n_bias; e++)
				printf(" %+.4f", l->bias[e]);
			printf(l->n_bias ? "\n" : " (no bias)\n");
		}
	}
	moed__response__free_unpacked(resp, NULL);
	return EXIT_OK;
}

int cmd_reload(const struct global *g, int argc, char **argv)
{
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__ReloadRequest rr = MOED__RELOAD_REQUEST__INIT;
	Moed__Response *resp;
	int r;

	/* the daemon answers once the reload is complete, so --wait is the only mode */
	if (argc > 2 || (argc == 2 && strcmp(argv[1], "--wait")))
		return usage_error("reload", "unexpected argument '%s'", argv[1]);
	req.body_case = MOED__REQUEST__BODY_RELOAD;
	req.reload = &rr;
	r = moectl_call_once(g, &req, &resp);
	if (r != EXIT_OK)
		return r;
	const Moed__ReloadResponse *re = resp->reload;
	if (g->json) {
		json_object *o = json_object_new_object(), *ap = json_object_new_array(),
			    *nr = json_object_new_array();
		for (size_t i = 0; i < re->n_applied; i++)
			json_object_array_add(ap, json_object_new_string(re->applied[i]));
		for (size_t i = 0; i < re->n_needs_restart; i++)
			json_object_array_add(nr, json_object_new_string(re->needs_restart[i]));
		json_object_object_add(o, "applied", ap);
		json_object_object_add(o, "needs_restart", nr);
		json_print(o);
	} else {
		printf("reloaded:");
		for (size_t i = 0; i < re->n_applied; i++)
			printf(" %s", re->applied[i]);
		printf(re->n_applied ? "\n" : " nothing changed\n");
		for (size_t i = 0; i < re->n_needs_restart; i++)
			printf("needs a restart: %s\n", re->needs_restart[i]);
	}
	moed__response__free_unpacked(resp, NULL);
	return EXIT_OK;
}
