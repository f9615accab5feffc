/*
 * Statistics.  The ring advances lazily: every record or read first rotates
 * past the slots whose time has gone, clearing them, so an idle daemon spends
 * nothing.  Histogram bucket b covers (2^((b-1)/4), 2^(b/4)] µs.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/stats.h"

int stats_init(struct layer_stats *st, uint32_t n_experts, uint64_t window_ms, uint64_t now_ms)
{
	memset(st, 0, sizeof(*st));
	st->n_experts = n_experts;
	st->total = calloc(n_experts, sizeof(uint64_t));
	st->slots = calloc((size_t)n_experts * STATS_SLOTS, sizeof(uint64_t));
	if (!st->total || !st->slots) {
		stats_release(st);
		return -ENOMEM;
	}
	st->slot_ms = window_ms / STATS_SLOTS ? window_ms / STATS_SLOTS : 1;
	st->slot_start = now_ms;
	return 0;
}

void stats_release(struct layer_stats *st)
{
	free(st->total);
	free(st->slots);
	st->total = st->slots = NULL;
}

static void rotate(struct layer_stats *st, uint64_t now_ms)
{
	unsigned steps = 0;

	while (now_ms >= st->slot_start + st->slot_ms && steps < STATS_SLOTS) {
		st->cur = (st->cur + 1) % STATS_SLOTS;
		memset(st->slots + (size_t)st->cur * st->n_experts, 0,
		       st->n_experts * sizeof(uint64_t));
		st->slot_tokens[st->cur] = 0;
		st->slot_start += st->slot_ms;
		steps++;
	}
	if (now_ms >= st->slot_start + st->slot_ms)    /* idle longer than the window */
		st->slot_start = now_ms;
}

void stats_record(struct layer_stats *st, uint64_t now_ms, const int32_t *experts,
		  uint64_t n_choices, uint64_t n_tokens, uint64_t compute_us, uint64_t request_us)
{
	uint64_t *slot;

	rotate(st, now_ms);
	slot = st->slots + (size_t)st->cur * st->n_experts;
	for (uint64_t i = 0; i < n_choices; i++) {
		uint32_t e = (uint32_t)experts[i];
		if (e < st->n_experts) {
			st->total[e]++;
			slot[e]++;
		}
	}
	st->slot_tokens[st->cur] += n_tokens;
	st->requests++;
	st->tokens += n_tokens;
	hist_add(&st->compute, compute_us);
	hist_add(&st->request, request_us);
}

uint64_t stats_window(struct layer_stats *st, uint64_t now_ms, uint64_t *ret_load)
{
	uint64_t tokens = 0;

	rotate(st, now_ms);
	memset(ret_load, 0, st->n_experts * sizeof(uint64_t));
	for (unsigned s = 0; s < STATS_SLOTS; s++) {
		const uint64_t *slot = st->slots + (size_t)s * st->n_experts;
		for (uint32_t e = 0; e < st->n_experts; e++)
			ret_load[e] += slot[e];
		tokens += st->slot_tokens[s];
	}
	return tokens;
}

float stats_max_vio(const uint64_t *load, uint32_t n)
{
	uint64_t max = 0, sum = 0;

	for (uint32_t i = 0; i < n; i++) {
		sum += load[i];
		if (load[i] > max)
			max = load[i];
	}
	if (sum == 0 || n == 0)
		return 0.0f;
	double mean = (double)sum / n;
	return (float)(((double)max - mean) / mean);
}

static unsigned bucket_of(uint64_t us)
{
	if (us <= 1)
		return 0;
	unsigned b = (unsigned)ceil(4.0 * log2((double)us));
	return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

void hist_add(struct hist *h, uint64_t us)
{
	h->buckets[bucket_of(us)]++;
	h->count++;
	h->sum_us += us;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
	uint64_t want, seen = 0;

	if (h->count == 0)
		return 0;
	want = (uint64_t)ceil(p * (double)h->count);
	if (want == 0)
		want = 1;
	for (unsigned b = 0; b < HIST_BUCKETS; b++) {
		seen += h->buckets[b];
		if (seen >= want)
			return (uint64_t)ceil(exp2((double)b / 4.0));
	}
	return UINT64_MAX;
}

void stats_add(struct layer_stats *st, uint64_t now_ms, const uint64_t *counts,
	       uint64_t n_tokens)
{
	uint64_t *slot;

	rotate(st, now_ms);
	slot = st->slots + (size_t)st->cur * st->n_experts;
	for (uint32_t e = 0; e < st->n_experts; e++) {
		st->total[e] += counts[e];
		slot[e] += counts[e];
	}
	st->slot_tokens[st->cur] += n_tokens;
	st->tokens += n_tokens;
}

int shadow_stats_init(struct shadow_stats *s, uint32_t n_experts, uint64_t window_ms,
		      uint64_t now_ms)
{
	memset(s, 0, sizeof(*s));
	s->window_ms = window_ms;
	if (stats_init(&s->serving, n_experts, window_ms, now_ms) < 0 ||
	    stats_init(&s->candidate, n_experts, window_ms, now_ms) < 0 ||
	    stats_init(&s->agree, SHADOW_COUNTS, window_ms, now_ms) < 0) {
		shadow_stats_release(s);
		return -ENOMEM;
	}
	return 0;
}

void shadow_stats_release(struct shadow_stats *s)
{
	stats_release(&s->serving);
	stats_release(&s->candidate);
	stats_release(&s->agree);
}

void shadow_stats_drift_add(struct shadow_stats *s, uint64_t now_ms, double drift)
{
	s->drift[s->n_drift % SHADOW_DRIFT_MAX] = drift;
	s->drift_ms[s->n_drift % SHADOW_DRIFT_MAX] = now_ms;
	s->n_drift++;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double shadow_stats_drift(const struct shadow_stats *s, uint64_t now_ms, double p)
{
	size_t held = s->n_drift < SHADOW_DRIFT_MAX ? (size_t)s->n_drift : SHADOW_DRIFT_MAX, n = 0;
	double *v, r;
	size_t rank;

	if (held == 0 || !(v = malloc(held * sizeof(*v))))
		return 0.0;
	for (size_t i = 0; i < held; i++)
		if (s->drift_ms[i] + s->window_ms > now_ms)
			v[n++] = s->drift[i];
	if (n == 0) {
		free(v);
		return 0.0;
	}
	qsort(v, n, sizeof(*v), cmp_double);
	rank = (size_t)ceil(p * (double)n);
	r = v[rank ? rank - 1 : 0];
	free(v);
	return r;
}

int shadow_stats_summary(struct shadow_stats *s, uint64_t now_ms, uint32_t top_k,
			 struct shadow_summary *ret)
{
	uint32_t E = s->serving.n_experts;
	uint64_t *load = calloc(E ? E : 1, sizeof(*load)), agree[SHADOW_COUNTS];
	double t;

	if (!load)
		return -ENOMEM;
	memset(ret, 0, sizeof(*ret));
	ret->tokens = stats_window(&s->agree, now_ms, agree);
	t = (double)ret->tokens;
	ret->overlap = t ? (double)agree[SHADOW_SAME] / (t * top_k) : 0.0;
	ret->top1_agreement = t ? (double)agree[SHADOW_TOP1] / t : 0.0;
	ret->sampled = agree[SHADOW_SAMPLED];
	stats_window(&s->candidate, now_ms, load);
	ret->max_vio = stats_max_vio(load, E);
	stats_window(&s->serving, now_ms, load);
	ret->serving_max_vio = stats_max_vio(load, E);
	ret->drift_p50 = shadow_stats_drift(s, now_ms, 0.50);
	ret->drift_p99 = shadow_stats_drift(s, now_ms, 0.99);
	ret->tokens_total = s->agree.tokens;
	ret->sampled_total = s->agree.total[SHADOW_SAMPLED];
	ret->compute_us = s->compute_ns / 1000;
	free(load);
	return 0;
}
