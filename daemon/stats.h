/*
 * Per-layer serving statistics: tokens routed to each expert since start and
 * over a sliding window, request/token counters, and latency histograms for the
 * compute step and for whole requests.  Updated and read on the loop thread only.
 *
 * The window is STATS_SLOTS ring slots of window_ms / STATS_SLOTS each; the
 * window load is the sum of the slots, so it covers between (STATS_SLOTS-1)/
 * STATS_SLOTS and all of window_ms.  Latencies go into log-scale buckets (four
 * per power of two) from 1 µs to about 1.2 hours; a percentile is reported as
 * its bucket's upper bound, so it is at most 19% above the true value.
 */
#ifndef MOED_STATS_H
#define MOED_STATS_H

#include <stdint.h>

#define STATS_SLOTS 10
#define HIST_BUCKETS 128

struct hist {
	uint64_t count;
	uint64_t buckets[HIST_BUCKETS];
	uint64_t sum_us;                /* of every value added (the metrics' _sum) */
};

struct layer_stats {
	uint32_t n_experts;
	uint64_t *total;                /* [E] */
	uint64_t *slots;                /* [STATS_SLOTS][E] */
	uint64_t slot_tokens[STATS_SLOTS];
	uint64_t slot_ms;               /* width of one slot */
	uint64_t slot_start;            /* start time of the current slot */
	unsigned cur;
	uint64_t requests, tokens;
	uint64_t batches;               /* engine calls (several requests when coalesced) */
	uint64_t timeouts;              /* calls written off after compute_timeout_ms */
	struct hist compute, request;
};

int stats_init(struct layer_stats *st, uint32_t n_experts, uint64_t window_ms, uint64_t now_ms);
void stats_release(struct layer_stats *st);
/* Count the T*k expert choices of one request. */
void stats_record(struct layer_stats *st, uint64_t now_ms, const int32_t *experts,
		  uint64_t n_choices, uint64_t n_tokens, uint64_t compute_us, uint64_t request_us);
/* Sum of the window's slots into ret_load[E]; returns the window's token count. */
uint64_t stats_window(struct layer_stats *st, uint64_t now_ms, uint64_t *ret_load);
/* (max - mean) / mean; 0 when nothing was routed. */
float stats_max_vio(const uint64_t *load, uint32_t n);

/* Add counts[E] (any per-category counts) and n_tokens to the current slot
 * and the totals, like stats_record without the latencies and requests. */
void stats_add(struct layer_stats *st, uint64_t now_ms, const uint64_t *counts,
	       uint64_t n_tokens);

/*
 * A shadow router's record against the serving one, over the same sliding
 * window as the layer's statistics: the load each would have given (serving,
 * candidate), and per token category counts in `agree` (SHADOW_SAME: experts
 * in both sets, summed; SHADOW_TOP1: tokens whose top-1 agree; SHADOW_SAMPLED:
 * tokens whose drift was computed), with its totals since the shadow was set.
 * The relative output drift of the last SHADOW_DRIFT_MAX sampled tokens is kept
 * exactly with its time, so the window's percentiles are exact nearest-rank
 * values.
 */
#define SHADOW_DRIFT_MAX 4096
enum { SHADOW_SAME, SHADOW_TOP1, SHADOW_SAMPLED, SHADOW_COUNTS };

struct shadow_stats {
	struct layer_stats serving, candidate, agree;
	uint64_t window_ms;
	uint64_t compute_ns;
	double drift[SHADOW_DRIFT_MAX];
	uint64_t drift_ms[SHADOW_DRIFT_MAX];
	uint64_t n_drift;               /* ever recorded; the ring holds the last ones */
};

int shadow_stats_init(struct shadow_stats *s, uint32_t n_experts, uint64_t window_ms,
		      uint64_t now_ms);
void shadow_stats_release(struct shadow_stats *s);
void shadow_stats_drift_add(struct shadow_stats *s, uint64_t now_ms, double drift);
/* Nearest-rank percentile of the window's drifts (p in (0,1]); 0 when none. */
double shadow_stats_drift(const struct shadow_stats *s, uint64_t now_ms, double p);

/* What stats, the metrics and the page show of a shadow: over the window,
 * except the *_total counters (since the shadow was set). */
struct shadow_summary {
	double overlap, top1_agreement;
	float max_vio, serving_max_vio;
	double drift_p50, drift_p99;
	uint64_t tokens, sampled;
	uint64_t tokens_total, sampled_total;
	uint64_t compute_us;
};
int shadow_stats_summary(struct shadow_stats *s, uint64_t now_ms, uint32_t top_k,
			 struct shadow_summary *ret);

void hist_add(struct hist *h, uint64_t us);
uint64_t hist_percentile(const struct hist *h, double p);   /* p in (0,1] */

#endif
