/*
 * The Prometheus exposition of what moed counts: requests and tokens, latency
 * histograms, tokens per (layer, expert) since start, MaxVio, the router's
 * bias, the bound plugin generations, queued tokens, connections and build
 * info.  Text format 0.0.4 by default, OpenMetrics 1.0 when asked.  Built on
 * the loop thread from the live counters, so it is current when it is built;
 * the `metrics` request and the HTTP listener (daemon/http.c) both serve it.
 */
#ifndef MOED_METRICS_H
#define MOED_METRICS_H

#include <stddef.h>

struct service;

#define METRICS_TYPE_TEXT "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_TYPE_OPENMETRICS "application/openmetrics-text; version=1.0.0; charset=utf-8"

/* A growing text buffer; oom is set (and text dropped) when malloc fails. */
struct mbuf {
	char *p;
	size_t len, cap;
	int oom;
};

void mbuf_printf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mbuf_release(struct mbuf *b);

/* The exposition of svc's state now into ret_text (malloc'ed, NUL-terminated,
 * the caller frees it) and its length.  Loop thread; -ENOMEM. */
int metrics_render(struct service *svc, int openmetrics, char **ret_text, size_t *ret_len);

#endif
