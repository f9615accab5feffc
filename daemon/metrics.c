/*
 * Metrics exposition.  Every family is written from the live state in one
 * pass; each (layer, expert) series is written even when it is zero, so a
 * scraper sees cold experts as 0 rather than as missing.  Latency histograms
 * come from daemon/stats.c's log-scale buckets: every fourth bucket bound is a
 * power of two in microseconds, which makes exact decimal `le` values (1 µs to
 * about 67 s), then +Inf.  The two formats differ only where OpenMetrics says
 * so: a counter's family name has no _total, info families have type info,
 * and the text ends with "# EOF".
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/batch.h"
#include "daemon/cluster.h"
#include "daemon/engine.h"
#include "daemon/metrics.h"
#include "daemon/service.h"
#include "daemon/stats.h"

/* Histogram bounds: buckets 0, 4, ..., HIST_LE_LAST (2^26 µs). */
#define HIST_LE_LAST 104

void mbuf_printf(struct mbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = 1;
			return;
		}
		if (b->p && (size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + (size_t)n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

void mbuf_release(struct mbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

struct out {
	struct mbuf b;
	int om;                         /* OpenMetrics */
};

/* "# HELP" and "# TYPE" of a family; name is the sample name (with _total or
 * _info), from which OpenMetrics' family name is derived. */
static void family(struct out *o, const char *name, const char *type, const char *help)
{
	char fam[128];
	size_t n = strlen(name);

	snprintf(fam, sizeof(fam), "%s", name);
	if (o->om && !strcmp(type, "counter") && n > 6 && !strcmp(name + n - 6, "_total"))
		fam[n - 6] = '\0';
	if (o->om && !strcmp(type, "info") && n > 5 && !strcmp(name + n - 5, "_info"))
		fam[n - 5] = '\0';
	if (!o->om && !strcmp(type, "info"))
		type = "gauge";
	mbuf_printf(&o->b, "# HELP %s %s\n# TYPE %s %s\n", fam, help, fam, type);
}

/* A label value with \, " and newline escaped. */
static const char *esc(const char *s, char *buf, size_t len)
{
	size_t j = 0;

	for (; s && *s && j + 3 < len; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n') {
			buf[j++] = '\\';
			buf[j++] = *s == '\n' ? 'n' : *s;
		} else {
			buf[j++] = *s;
		}
	}
	buf[j] = '\0';
	return buf;
}

static void histogram(struct out *o, const char *name, uint32_t layer, const struct hist *h)
{
	uint64_t cum = 0;

	for (unsigned b = 0; b <= HIST_LE_LAST; b++) {
		cum += h->buckets[b];
		if (b % 4)
			continue;
		uint64_t us = 1ull << (b / 4);
		mbuf_printf(&o->b, "%s_bucket{layer=\"%u\",le=\"%llu.%06llu\"} %llu\n", name, layer,
			    (unsigned long long)(us / 1000000), (unsigned long long)(us % 1000000),
			    (unsigned long long)cum);
	}
	mbuf_printf(&o->b, "%s_bucket{layer=\"%u\",le=\"+Inf\"} %llu\n", name, layer,
		    (unsigned long long)h->count);
	mbuf_printf(&o->b, "%s_sum{layer=\"%u\"} %llu.%06llu\n", name, layer,
		    (unsigned long long)(h->sum_us / 1000000), (unsigned long long)(h->sum_us % 1000000));
	mbuf_printf(&o->b, "%s_count{layer=\"%u\"} %llu\n", name, layer, (unsigned long long)h->count);
}

static void requests(struct out *o, const struct service *svc, const struct batch_counters *bc)
{
	const uint64_t *a = svc->answers;
	char status[32];

	family(o, "moed_requests_total", "counter",
	       "Requests answered, by kind (a row of the request table; unknown: undecodable) and status.");
	for (size_t k = 0; a && k < SERVICE_ANSWER_KINDS; k++)
		for (unsigned st = 0; st < REPLY_STATUSES; st++) {
			/* every kind has its ok series; other statuses once they occur */
			if (st != MOED__STATUS__OK && a[k * REPLY_STATUSES + st] == 0)
				continue;
			const ProtobufCEnumValue *v =
				protobuf_c_enum_descriptor_get_value(&moed__status__descriptor, (int)st);
			size_t i = 0;
			for (; v && v->name[i] && i + 1 < sizeof(status); i++)
				status[i] = (char)(v->name[i] >= 'A' && v->name[i] <= 'Z' ? v->name[i] + 32
										: v->name[i]);
			status[i] = '\0';
			mbuf_printf(&o->b, "moed_requests_total{kind=\"%s\",status=\"%s\"} %llu\n",
				    k < n_request_kinds ? request_kinds[k].name : "unknown", status,
				    (unsigned long long)a[k * REPLY_STATUSES + st]);
		}
	family(o, "moed_tokens_total", "counter", "Tokens of the infer and route requests served.");
	mbuf_printf(&o->b, "moed_tokens_total %llu\n", (unsigned long long)bc->tokens_served);
}

static void layers(struct out *o, struct engine *e, uint64_t now)
{
	uint32_t E = e->model->n_experts;
	uint64_t *window = calloc(E ? E : 1, sizeof(*window));
	float *bias = calloc(E ? E : 1, sizeof(*bias));

	if (!window || !bias) {
		o->b.oom = 1;
		goto out;
	}
	family(o, "moed_request_duration_seconds", "histogram",
	       "Time from a request's arrival to its answer, per layer.");
	for (uint32_t i = 0; i < e->n_layers; i++)
		histogram(o, "moed_request_duration_seconds", e->layers[i].w->index,
			  &e->layers[i].stats.request);
	family(o, "moed_compute_duration_seconds", "histogram",
	       "Time of the engine call that served a request, per layer.");
	for (uint32_t i = 0; i < e->n_layers; i++)
		histogram(o, "moed_compute_duration_seconds", e->layers[i].w->index,
			  &e->layers[i].stats.compute);
	family(o, "moed_expert_tokens_total", "counter",
	       "Tokens routed to each expert since start (each token counts once per chosen expert).");
	for (uint32_t i = 0; i < e->n_layers; i++)
		for (uint32_t x = 0; x < E; x++)
			mbuf_printf(&o->b, "moed_expert_tokens_total{layer=\"%u\",expert=\"%u\"} %llu\n",
				    e->layers[i].w->index, x,
				    (unsigned long long)e->layers[i].stats.total[x]);
	family(o, "moed_layer_max_violation", "gauge",
	       "(max - mean) / mean of the expert load, over the stats window (recent) or since start (total).");
	for (uint32_t i = 0; i < e->n_layers; i++) {
		struct engine_layer *l = &e->layers[i];
		stats_window(&l->stats, now, window);
		mbuf_printf(&o->b, "moed_layer_max_violation{layer=\"%u\",window=\"recent\"} %.9g\n",
			    l->w->index, (double)stats_max_vio(window, E));
		mbuf_printf(&o->b, "moed_layer_max_violation{layer=\"%u\",window=\"total\"} %.9g\n",
			    l->w->index, (double)stats_max_vio(l->stats.total, E));
	}
	family(o, "moed_router_bias", "gauge",
	       "The selection bias the router adds per expert (layers whose router shows one).");
	for (uint32_t i = 0; i < e->n_layers; i++) {
		uint32_t frozen;
		size_t n = engine_router_bias(&e->layers[i], bias, &frozen);
		for (size_t x = 0; x < n && x < E; x++)
			mbuf_printf(&o->b, "moed_router_bias{layer=\"%u\",expert=\"%zu\"} %.9g\n",
				    e->layers[i].w->index, x, (double)bias[x]);
	}
out:
	free(window);
	free(bias);
}

/* The shadow routers' comparison, per layer that has one: one summary per
 * layer, then the families in order. */
static void shadows(struct out *o, struct engine *e, uint64_t now)
{
	struct shadow_summary *sum = calloc(e->n_layers ? e->n_layers : 1, sizeof(*sum));
	char name[256];
	int any = 0;

	if (!sum) {
		o->b.oom = 1;
		return;
	}
	for (uint32_t i = 0; i < e->n_layers; i++) {
		struct engine_layer *l = &e->layers[i];
		if (!l->shadow)
			continue;
		if (shadow_stats_summary(l->shadow_stats, now, l->rspec.top_k, &sum[i]) < 0)
			o->b.oom = 1;
		any = 1;
	}
	if (!any)
		goto out;
#define EACH for (uint32_t i = 0; i < e->n_layers; i++) if (e->layers[i].shadow)
#define L e->layers[i].w->index
	family(o, "moed_shadow_overlap", "gauge",
	       "Mean |A n B| / k of the shadow's and the serving router's experts over the stats window.");
	EACH mbuf_printf(&o->b, "moed_shadow_overlap{layer=\"%u\",router=\"%s\"} %.9g\n", L,
			 esc(e->layers[i].shadow->gen->name, name, sizeof(name)), sum[i].overlap);
	family(o, "moed_shadow_top1_agreement", "gauge",
	       "Fraction of the window's tokens whose top-1 expert is the same under both routers.");
	EACH mbuf_printf(&o->b, "moed_shadow_top1_agreement{layer=\"%u\",router=\"%s\"} %.9g\n", L,
			 esc(e->layers[i].shadow->gen->name, name, sizeof(name)),
			 sum[i].top1_agreement);
	family(o, "moed_shadow_max_violation", "gauge",
	       "MaxVio over the stats window of the load the shadow (which=candidate) and the serving router (which=serving) gave the same tokens.");
	EACH {
		mbuf_printf(&o->b, "moed_shadow_max_violation{layer=\"%u\",which=\"candidate\"} %.9g\n",
			    L, (double)sum[i].max_vio);
		mbuf_printf(&o->b, "moed_shadow_max_violation{layer=\"%u\",which=\"serving\"} %.9g\n",
			    L, (double)sum[i].serving_max_vio);
	}
	family(o, "moed_shadow_drift", "gauge",
	       "Relative output drift ||y_shadow - y|| / ||y|| of the window's sampled tokens, by quantile.");
	EACH {
		mbuf_printf(&o->b, "moed_shadow_drift{layer=\"%u\",quantile=\"0.5\"} %.9g\n", L,
			    sum[i].drift_p50);
		mbuf_printf(&o->b, "moed_shadow_drift{layer=\"%u\",quantile=\"0.99\"} %.9g\n", L,
			    sum[i].drift_p99);
	}
	family(o, "moed_shadow_tokens_total", "counter", "Tokens the shadow routed since it was set.");
	EACH mbuf_printf(&o->b, "moed_shadow_tokens_total{layer=\"%u\"} %llu\n", L,
			 (unsigned long long)sum[i].tokens_total);
	family(o, "moed_shadow_sampled_tokens_total", "counter",
	       "Tokens whose output drift was computed (the expert backend ran for them).");
	EACH mbuf_printf(&o->b, "moed_shadow_sampled_tokens_total{layer=\"%u\"} %llu\n", L,
			 (unsigned long long)sum[i].sampled_total);
	family(o, "moed_shadow_compute_seconds_total", "counter",
	       "Worker time spent on the shadow: its routing and the sampled forwards.");
	EACH mbuf_printf(&o->b, "moed_shadow_compute_seconds_total{layer=\"%u\"} %llu.%06llu\n", L,
			 (unsigned long long)(sum[i].compute_us / 1000000),
			 (unsigned long long)(sum[i].compute_us % 1000000));
#undef EACH
#undef L
out:
	free(sum);
}

/* One series per distinct generation bound to any layer. */
static void plugins(struct out *o, const struct engine *e)
{
	size_t max = 3 * (size_t)e->n_layers + 1, n;
	const struct plugin_gen **gens = calloc(max, sizeof(*gens));
	int *roles = calloc(max, sizeof(*roles));
	static const char *const kinds[] = { "router", "expert", "shadow" };
	char name[256];

	if (!gens || !roles) {
		o->b.oom = 1;
		goto out;
	}
	family(o, "moed_plugin_info", "info",
	       "The plugin generations bound to a layer (a shadow router has kind shadow).");
	n = engine_bound_gens(e, gens, roles, max);
	for (size_t i = 0; i < n; i++)
		mbuf_printf(&o->b, "moed_plugin_info{kind=\"%s\",name=\"%s\",generation=\"%llu\"} 1\n",
			    kinds[roles[i]], esc(gens[i]->name, name, sizeof(name)),
			    (unsigned long long)gens[i]->generation);
out:
	free(gens);
	free(roles);
}

/* Expert parallelism (under mpirun): the ranks, the placement's epoch, per
 * rank the batches and bytes exchanged and its compute, and the front's
 * time per phase of dispatch + combine. */
static void cluster(struct out *o, struct cluster *cl)
{
	static const char *const phase[4] = { "split", "own_share", "wait", "combine" };
	struct cluster_rank_counters *rk;
	struct cluster_counters c;
	uint64_t us[4];

	rk = calloc((size_t)cluster_size(cl), sizeof(*rk));
	if (!rk) {
		o->b.oom = 1;
		return;
	}
	cluster_counters(cl, &c, rk, (size_t)cluster_size(cl));
	family(o, "moed_cluster_ranks", "gauge", "Ranks of the mpirun job, the front included.");
	mbuf_printf(&o->b, "moed_cluster_ranks %d\n", c.ranks);
	family(o, "moed_cluster_placement_epoch", "gauge", "Placements switched to since start.");
	mbuf_printf(&o->b, "moed_cluster_placement_epoch %llu\n", (unsigned long long)c.epoch);
	family(o, "moed_cluster_dispatches_total", "counter", "Batches sent to a rank.");
	for (int r = 1; r < c.ranks; r++)
		mbuf_printf(&o->b, "moed_cluster_dispatches_total{rank=\"%d\"} %llu\n", r,
			    (unsigned long long)rk[r].dispatches);
	family(o, "moed_cluster_bytes_total", "counter",
	       "Bytes of hidden states sent to a rank (out) and of partial sums back (in).");
	for (int r = 1; r < c.ranks; r++)
		mbuf_printf(&o->b, "moed_cluster_bytes_total{rank=\"%d\",direction=\"out\"} %llu\n"
			    "moed_cluster_bytes_total{rank=\"%d\",direction=\"in\"} %llu\n", r,
			    (unsigned long long)rk[r].bytes_out, r, (unsigned long long)rk[r].bytes_in);
	family(o, "moed_cluster_rank_compute_seconds_total", "counter",
	       "Expert compute a rank reported for the front's batches.");
	for (int r = 1; r < c.ranks; r++)
		mbuf_printf(&o->b, "moed_cluster_rank_compute_seconds_total{rank=\"%d\"} %.6f\n", r,
			    (double)rk[r].compute_us / 1e6);
	family(o, "moed_cluster_batch_seconds_total", "counter",
	       "The front's time per phase of a batch: split and send, its own share of the "
	       "compute, waiting for the ranks, adding their sums.");
	us[0] = c.split_us, us[1] = c.local_us, us[2] = c.wait_us, us[3] = c.combine_us;
	for (int i = 0; i < 4; i++)
		mbuf_printf(&o->b, "moed_cluster_batch_seconds_total{phase=\"%s\"} %.6f\n", phase[i],
			    (double)us[i] / 1e6);
	free(rk);
}

int metrics_render(struct service *svc, int openmetrics, char **ret_text, size_t *ret_len)
{
	struct out o = { .om = openmetrics };
	const struct batch_counters *bc = batcher_counters(svc->batcher);
	uint64_t now = uv_now(svc->loop);

	family(&o, "moed_build_info", "info", "The moed version serving.");
	mbuf_printf(&o.b, "moed_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
	family(&o, "moed_uptime_seconds", "gauge", "Seconds since moed started.");
	mbuf_printf(&o.b, "moed_uptime_seconds %.3f\n", (double)(now - svc->start_ms) / 1000.0);
	requests(&o, svc, bc);
	layers(&o, svc->engine, now);
	shadows(&o, svc->engine, now);
	plugins(&o, svc->engine);
	if (svc->cluster)
		cluster(&o, svc->cluster);
	family(&o, "moed_queued_tokens", "gauge", "Accepted infer and route tokens not yet answered.");
	mbuf_printf(&o.b, "moed_queued_tokens %llu\n", (unsigned long long)bc->queued_tokens);
	family(&o, "moed_connections", "gauge", "Open client connections.");
	mbuf_printf(&o.b, "moed_connections %u\n", svc->connections);
	family(&o, "moed_memory_bytes", "gauge",
	       "Memory held: the model's weights (of them, mapped from the checkpoint files), "
	       "and what the expert backends hold beyond them (packed copies, scratch).");
	mbuf_printf(&o.b, "moed_memory_bytes{part=\"weights\"} %llu\n"
			  "moed_memory_bytes{part=\"mapped\"} %llu\n"
			  "moed_memory_bytes{part=\"backend\"} %llu\n",
		    (unsigned long long)svc->engine->model->weight_bytes,
		    (unsigned long long)svc->engine->model->mapped_bytes,
		    (unsigned long long)engine_backend_bytes(svc->engine));
	if (o.om)
		mbuf_printf(&o.b, "# EOF\n");
	if (o.b.oom || !o.b.p) {
		mbuf_release(&o.b);
		return -ENOMEM;
	}
	*ret_text = o.b.p;
	*ret_len = o.b.len;
	return 0;
}

int handle_metrics(struct service *svc, struct caller *c, const struct reply_to *to,
		   Moed__Request *req)
{
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__MetricsResponse mr = MOED__METRICS_RESPONSE__INIT;
	int om = req->metrics->has_openmetrics && req->metrics->openmetrics;
	size_t len;
	char *text;

	(void)c;
	if (metrics_render(svc, om, &text, &len) < 0) {
		reply_error(to, MOED__STATUS__INTERNAL, "out of memory");
		return 0;
	}
	mr.text = text;
	mr.content_type = om ? METRICS_TYPE_OPENMETRICS : METRICS_TYPE_TEXT;
	resp.body_case = MOED__RESPONSE__BODY_METRICS;
	resp.metrics = &mr;
	reply_ok(to, &resp);
	free(text);
	return 0;
}
