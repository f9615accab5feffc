/*
 * The statistics of every MoE layer as the JSON object `moectl --json stats`
 * prints (uptime_ms, layers[] with layer, router, generation, load,
 * window_load, window_tokens, max_vio, max_vio_total, bias, bias_frozen,
 * requests, batches, tokens, compute_latency, request_latency), built from the
 * live state for /api/stats.  Loop thread.
 */
#ifndef MOED_STATSJSON_H
#define MOED_STATSJSON_H

#include <stddef.h>

struct service;

/* A malloc'ed NUL-terminated text (the caller frees it); -ENOMEM. */
int stats_json_render(struct service *svc, char **ret_text, size_t *ret_len);

#endif
