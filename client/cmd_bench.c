/*
 * moectl bench: an end-to-end load generator.  N threads, each with its own
 * connection, send infer requests of T --random-style tokens (a new seed per
 * request) to one layer for S seconds, one request at a time per connection.
 * Every request's latency is kept, so the percentiles are exact.  --compare
 * first runs one client for S seconds, then N, and prints the tokens/s ratio:
 * what the daemon's coalescing and worker pool make of concurrency.  A live
 * progress line goes to stderr when it is a terminal.  --dtype bf16 sends the
 * hidden states as bf16, as moectl infer --dtype does.  Each reply's
 * compute_us (the daemon's time in the backend) is kept beside the round
 * trip, so the report also says how much of a request is compute.
 */
#include "config.h"

#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/moectl.h"
#include "client/output.h"
#include "common/clock.h"
#include "proto/tensor.h"

struct bench_cfg {
	const struct global *g;
	uint64_t clients, tokens, seconds;
	uint32_t layer, hidden;
	int compare;
	Moed__DType dtype;              /* of the hidden states on the wire */
	const char *output;
};

struct client {
	const struct bench_cfg *cfg;
	pthread_t thread;
	double deadline;
	uint64_t seed;
	double *lat;                    /* round trips, microseconds */
	double *comp;                   /* the daemon's compute_us of each */
	size_t n, cap;
	int unreachable;
};

struct phase {
	uint64_t clients, requests, errors;
	double seconds, tokens_per_s, p50, p90, p99;
	double compute_p50, compute_p99;        /* compute_us percentiles */
};

static atomic_ullong done_requests, failed_requests;

static double now_s(void)
{
	return mono_ns() / 1e9;
}

static int keep_latency(struct client *c, double us, double compute_us)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 1024;
		double *v = realloc(c->lat, cap * sizeof(*v));
		if (!v)
			return -1;
		c->lat = v;
		v = realloc(c->comp, cap * sizeof(*v));
		if (!v)
			return -1;
		c->comp = v;
		c->cap = cap;
	}
	c->comp[c->n] = compute_us;
	c->lat[c->n++] = us;
	return 0;
}

static void *client_main(void *arg)
{
	struct client *c = arg;
	const struct bench_cfg *cfg = c->cfg;
	size_t n = cfg->tokens * cfg->hidden;
	float *x = malloc(n * sizeof(float));
	uint16_t *h = cfg->dtype == MOED__DTYPE__BF16 ? malloc(n * sizeof(*h)) : NULL;
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__InferRequest ir = MOED__INFER_REQUEST__INIT;
	Moed__Tensor t;
	uint64_t shape[2];
	struct conn conn;

	if (!x || (cfg->dtype == MOED__DTYPE__BF16 && !h) ||
	    moectl_connect(cfg->g, &conn) != EXIT_OK) {
		c->unreachable = 1;
		free(x);
		free(h);
		return NULL;
	}
	if (h)
		tensor_wrap2(&t, shape, MOED__DTYPE__BF16, h, cfg->tokens, cfg->hidden);
	else
		tensor_wrap2(&t, shape, MOED__DTYPE__F32, x, cfg->tokens, cfg->hidden);
	ir.layer = cfg->layer;
	ir.hidden = &t;
	req.body_case = MOED__REQUEST__BODY_INFER;
	req.infer = &ir;
	while (now_s() < c->deadline) {
		Moed__Response *resp;
		random_fill(x, n, c->seed++);
		for (size_t i = 0; h && i < n; i++)
			h[i] = tensor_f32_to_bf16(x[i]);
		double t0 = now_s();
		int r = conn_call(&conn, &req, &resp);
		if (r == EXIT_UNREACHABLE) {
			atomic_fetch_add(&failed_requests, 1);
			c->unreachable = 1;
			break;
		}
		if (r != EXIT_OK) {
			atomic_fetch_add(&failed_requests, 1);
			continue;
		}
		double us = (now_s() - t0) * 1e6;
		double compute = resp->body_case == MOED__RESPONSE__BODY_INFER
				 ? (double)resp->infer->compute_us : 0;
		moed__response__free_unpacked(resp, NULL);
		if (keep_latency(c, us, compute) < 0)
			break;
		atomic_fetch_add(&done_requests, 1);
	}
	conn_close(&conn);
	free(x);
	free(h);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double percentile(const double *v, size_t n, double p)
{
	return n ? v[(size_t)fmin((double)n - 1, ceil(p * (double)n) - 1)] : 0;
}

static int run_phase(const struct bench_cfg *cfg, uint64_t clients, struct phase *ret)
{
	struct client *c = calloc(clients, sizeof(*c));
	double start = now_s(), *all, *comp;
	size_t total = 0;
	int unreachable = 0;

	if (!c)
		return EXIT_USAGE;
	atomic_store(&done_requests, 0);
	atomic_store(&failed_requests, 0);
	for (uint64_t i = 0; i < clients; i++) {
		c[i] = (struct client){ .cfg = cfg, .deadline = start + (double)cfg->seconds,
					.seed = (i + 1) << 32 };
		pthread_create(&c[i].thread, NULL, client_main, &c[i]);
	}
	while (isatty(STDERR_FILENO) && now_s() < start + (double)cfg->seconds) {
		usleep(500000);
		double el = now_s() - start;
		fprintf(stderr, "\r%llu clients: %llu requests, %.0f tokens/s, %llu errors   ",
			(unsigned long long)clients, atomic_load(&done_requests),
			(double)atomic_load(&done_requests) * (double)cfg->tokens / el,
			atomic_load(&failed_requests));
	}
	for (uint64_t i = 0; i < clients; i++) {
		pthread_join(c[i].thread, NULL);
		total += c[i].n;
		unreachable |= c[i].unreachable;
	}
	if (isatty(STDERR_FILENO))
		fputc('\n', stderr);
	double elapsed = now_s() - start;
	all = malloc((total ? total : 1) * sizeof(*all));
	comp = malloc((total ? total : 1) * sizeof(*comp));
	if (!all || !comp) {
		free(all), free(comp);
		all = comp = NULL;
	}
	total = 0;
	for (uint64_t i = 0; i < clients; i++) {
		if (all) {
			memcpy(all + total, c[i].lat, c[i].n * sizeof(*all));
			memcpy(comp + total, c[i].comp, c[i].n * sizeof(*comp));
		}
		total += c[i].n;
		free(c[i].lat);
		free(c[i].comp);
	}
	if (all) {
		qsort(all, total, sizeof(*all), cmp_double);
		qsort(comp, total, sizeof(*comp), cmp_double);
	}
	*ret = (struct phase){ .clients = clients, .requests = total,
			       .errors = atomic_load(&failed_requests), .seconds = elapsed,
			       .tokens_per_s = (double)total * (double)cfg->tokens / elapsed,
			       .p50 = all ? percentile(all, total, 0.50) : 0,
			       .p90 = all ? percentile(all, total, 0.90) : 0,
			       .p99 = all ? percentile(all, total, 0.99) : 0,
			       .compute_p50 = comp ? percentile(comp, total, 0.50) : 0,
			       .compute_p99 = comp ? percentile(comp, total, 0.99) : 0 };
	free(all);
	free(comp);
	free(c);
	return unreachable ? EXIT_UNREACHABLE : EXIT_OK;
}

static json_object *phase_json(const struct phase *p, uint64_t tokens)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "clients", json_object_new_uint64(p->clients));
	json_object_object_add(o, "requests", json_object_new_uint64(p->requests));
	json_object_object_add(o, "tokens", json_object_new_uint64(p->requests * tokens));
	json_object_object_add(o, "errors", json_object_new_uint64(p->errors));
	json_object_object_add(o, "seconds", json_object_new_double(p->seconds));
	json_object_object_add(o, "tokens_per_s", json_object_new_double(p->tokens_per_s));
	json_object_object_add(o, "p50_us", json_object_new_double(p->p50));
	json_object_object_add(o, "p90_us", json_object_new_double(p->p90));
	json_object_object_add(o, "p99_us", json_object_new_double(p->p99));
	json_object_object_add(o, "compute_p50_us", json_object_new_double(p->compute_p50));
	json_object_object_add(o, "compute_p99_us", json_object_new_double(p->compute_p99));
	return o;
}

static void phase_print(const struct phase *p, uint64_t tokens)
{
	printf("%3llu client%s: %llu requests (%llu tokens) in %.1f s: %.1f tokens/s, latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms (compute p50 %.2f ms), %llu errors\n",
	       (unsigned long long)p->clients, p->clients == 1 ? " " : "s",
	       (unsigned long long)p->requests, (unsigned long long)(p->requests * tokens),
	       p->seconds, p->tokens_per_s, p->p50 / 1e3, p->p90 / 1e3, p->p99 / 1e3,
	       p->compute_p50 / 1e3, (unsigned long long)p->errors);
}

static int parse(const struct global *g, int argc, char **argv, struct bench_cfg *cfg)
{
	static const struct option opts[] = {
		{ "clients", required_argument, NULL, 'c' },
		{ "tokens", required_argument, NULL, 't' },
		{ "duration", required_argument, NULL, 'd' },
		{ "layer", required_argument, NULL, 'l' },
		{ "compare", no_argument, NULL, 'C' },
		{ "output", required_argument, NULL, 'o' },
		{ "dtype", required_argument, NULL, 'D' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c, have_layer = 0;

	*cfg = (struct bench_cfg){ .g = g, .clients = 1, .tokens = 1, .seconds = 10,
				   .dtype = MOED__DTYPE__F32 };
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (parse_uint("bench", "--clients", optarg, 1024, &cfg->clients) != EXIT_OK ||
			    !cfg->clients)
				return usage_error("bench", "--clients must be 1..1024");
			break;
		case 't':
			if (parse_uint("bench", "--tokens", optarg, 65536, &cfg->tokens) != EXIT_OK ||
			    !cfg->tokens)
				return usage_error("bench", "--tokens must be 1..65536");
			break;
		case 'd':
			if (parse_uint("bench", "--duration", optarg, 86400, &cfg->seconds) != EXIT_OK ||
			    !cfg->seconds)
				return usage_error("bench", "--duration must be 1..86400 seconds");
			break;
		case 'l':
			if (parse_uint("bench", "--layer", optarg, UINT32_MAX, &v) != EXIT_OK)
				return EXIT_USAGE;
			cfg->layer = (uint32_t)v;
			have_layer = 1;
			break;
		case 'C': cfg->compare = 1; break;
		case 'o': cfg->output = optarg; break;
		case 'D':
			if (!strcmp(optarg, "bf16"))
				cfg->dtype = MOED__DTYPE__BF16;
			else if (!strcmp(optarg, "f32") || !strcmp(optarg, "fp32"))
				cfg->dtype = MOED__DTYPE__F32;
			else
				return usage_error("bench", "--dtype '%s': want f32 or bf16", optarg);
			break;
		default: return usage_error("bench", "unknown option");
		}
	}
	if (optind < argc)
		return usage_error("bench", "unexpected argument '%s'", argv[optind]);
	return have_layer ? EXIT_OK : -1;       /* -1: ask the daemon for the first MoE layer */
}

int cmd_bench(const struct global *g, int argc, char **argv)
{
	struct bench_cfg cfg;
	struct phase serial = { 0 }, conc;
	struct conn conn;
	uint32_t first;
	int r = parse(g, argc, argv, &cfg), ask_layer = r == -1;

	if (r > 0)
		return r;
	r = moectl_connect(g, &conn);
	if (r != EXIT_OK)
		return r;
	r = model_shape(&conn, &cfg.hidden, &first);
	conn_close(&conn);
	if (r != EXIT_OK)
		return r;
	if (ask_layer)
		cfg.layer = first;
	if (cfg.compare && (r = run_phase(&cfg, 1, &serial)) != EXIT_OK)
		return r;
	r = run_phase(&cfg, cfg.clients, &conc);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "layer", json_object_new_int64(cfg.layer));
	json_object_object_add(o, "tokens_per_request", json_object_new_uint64(cfg.tokens));
	json_object_object_add(o, "dtype", json_object_new_string(
		cfg.dtype == MOED__DTYPE__BF16 ? "bf16" : "f32"));
	json_object_object_add(o, "concurrent", phase_json(&conc, cfg.tokens));
	if (cfg.compare) {
		json_object_object_add(o, "serial", phase_json(&serial, cfg.tokens));
		json_object_object_add(o, "speedup", json_object_new_double(
			serial.tokens_per_s > 0 ? conc.tokens_per_s / serial.tokens_per_s : 0));
	}
	if (cfg.output && json_object_to_file_ext(cfg.output, o, JSON_C_TO_STRING_PRETTY) < 0)
		fprintf(stderr, "moectl bench: cannot write '%s'\n", cfg.output);
	if (g->json) {
		json_print(o);
	} else {
		printf("layer %u, %llu token%s per request, %s hidden states\n", cfg.layer,
		       (unsigned long long)cfg.tokens, cfg.tokens == 1 ? "" : "s",
		       cfg.dtype == MOED__DTYPE__BF16 ? "bf16" : "f32");
		if (cfg.compare)
			phase_print(&serial, cfg.tokens);
		phase_print(&conc, cfg.tokens);
		if (cfg.compare && serial.tokens_per_s > 0)
			printf("%llu concurrent clients: %.2fx the tokens/s of one serial client\n",
			       (unsigned long long)cfg.clients, conc.tokens_per_s / serial.tokens_per_s);
		json_object_put(o);
	}
	if (r != EXIT_OK)
		return r;
	if (conc.errors + serial.errors) {
		fprintf(stderr, "moectl bench: %llu requests failed\n",
			(unsigned long long)(conc.errors + serial.errors));
		return EXIT_SERVER;
	}
	return EXIT_OK;
}
