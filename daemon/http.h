/*
 * The HTTP listener of [metrics] listen: /metrics (the Prometheus exposition,
 * OpenMetrics when the Accept header asks for it), /api/stats (the object of
 * `moectl --json stats`) and / (the live page, daemon/page.html).
 * libmicrohttpd serves it from its own thread; that thread never reads the
 * loop's state: each request queues a job, wakes the loop (uv_async_send) and
 * waits on a condition variable while the loop thread builds the answer, so
 * the values are current at the time of the request and the loop never waits
 * for HTTP.  Built without libmicrohttpd, http_start() refuses with -ENOTSUP.
 */
#ifndef MOED_HTTP_H
#define MOED_HTTP_H

#include <stddef.h>

struct http;
struct service;

/* Listen on `listen` and serve from svc (which outlives the listener).  Loop
 * thread; -errno with err. */
int http_start(struct service *svc, const char *listen, int allow_remote, struct http **ret,
	       char *err, size_t errlen);
/* The port bound (for port 0). */
unsigned http_port(const struct http *h);
/* Answer what is waiting with 503, stop the thread and free h (NULL ok). Loop thread. */
void http_stop(struct http *h);

#endif
