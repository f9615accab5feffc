/*
 * The HTTP listener.  A request on libmicrohttpd's thread becomes a job on a
 * mutex-protected list; uv_async_send() wakes the loop, whose callback takes
 * the whole list, builds each answer (metrics_render, stats_json_render or
 * the page) and marks the jobs done under the mutex; the HTTP thread waits on
 * the condition variable for its job.  A loop that does not answer within
 * HTTP_WAIT_S gets the job withdrawn and a 503; http_stop() answers every
 * waiting job 503 before it joins the thread, so stopping never waits on the
 * loop it runs on.  Only GET and HEAD of the three paths are served; the
 * connection count and time are bounded.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/http.h"
#include "daemon/listen_addr.h"
#include "daemon/log.h"

#ifndef HAVE_MICROHTTPD

int http_start(struct service *svc, const char *listen, int allow_remote, struct http **ret,
	       char *err, size_t errlen)
{
	(void)svc;
	(void)ret;
	if (listen_addr_check(listen, allow_remote, err, errlen) == 0)
		snprintf(err, errlen, "[metrics] listen: moed was built without libmicrohttpd");
	return -ENOTSUP;
}

unsigned http_port(const struct http *h)
{
	(void)h;
	return 0;
}

void http_stop(struct http *h)
{
	(void)h;
}

#else

#include <microhttpd.h>
#include <pthread.h>
#include <time.h>
#include <uv.h>

#include "daemon/metrics.h"
#include "daemon/service.h"
#include "daemon/statsjson.h"

#define HTTP_WAIT_S 10
#define HTTP_MAX_CONNECTIONS 16
#define HTTP_TIMEOUT_S 15

extern const char moed_page_html[];

enum what { WHAT_METRICS, WHAT_OPENMETRICS, WHAT_STATS };

struct job {
	struct job *next;
	enum what what;
	int taken;              /* the loop is building it */
	int done;
	int rc;
	char *body;             /* malloc'ed; handed to libmicrohttpd */
	size_t len;
};

struct http {
	struct service *svc;
	struct MHD_Daemon *mhd;
	uv_async_t *async;      /* freed by its close callback */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head;
	int stopping;
	unsigned port;
};

static void build(struct http *h, struct job *j)
{
	if (!h->svc->batcher) {         /* draining: nothing to count from */
		j->rc = -ESHUTDOWN;
		return;
	}
	if (j->what == WHAT_STATS)
		j->rc = stats_json_render(h->svc, &j->body, &j->len);
	else
		j->rc = metrics_render(h->svc, j->what == WHAT_OPENMETRICS, &j->body, &j->len);
}

static void on_async(uv_async_t *a)
{
	struct http *h = a->data;
	struct job *list, *j;

	pthread_mutex_lock(&h->mu);
	list = h->head;
	h->head = NULL;
	for (j = list; j; j = j->next)
		j->taken = 1;
	pthread_mutex_unlock(&h->mu);
	for (j = list; j; j = j->next)
		build(h, j);
	pthread_mutex_lock(&h->mu);
	for (j = list; j;) {
		struct job *next = j->next;
		j->done = 1;
		j = next;
	}
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

/* HTTP thread: queue j, wake the loop, wait.  0 when j was built. */
static int ask_loop(struct http *h, struct job *j)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += HTTP_WAIT_S;
	pthread_mutex_lock(&h->mu);
	if (h->stopping) {
		pthread_mutex_unlock(&h->mu);
		return -ESHUTDOWN;
	}
	j->next = h->head;
	h->head = j;
	uv_async_send(h->async);
	while (!j->done) {
		if (!j->taken && h->stopping)
			break;
		if (pthread_cond_timedwait(&h->cv, &h->mu, &until) == ETIMEDOUT && !j->taken)
			break;
	}
	if (!j->done) {                 /* withdraw it: the loop has not taken it */
		for (struct job **p = &h->head; *p; p = &(*p)->next)
			if (*p == j) {
				*p = j->next;
				break;
			}
		j->rc = -ETIMEDOUT;
	}
	pthread_mutex_unlock(&h->mu);
	return j->rc;
}

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned code, const char *type,
			      void *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
	enum MHD_Result r;

	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	r = MHD_queue_response(conn, code, resp);
	MHD_destroy_response(resp);
	return r;
}

static enum MHD_Result text_answer(struct MHD_Connection *conn, unsigned code, const char *msg)
{
	return answer(conn, code, "text/plain; charset=utf-8", (void *)msg, strlen(msg),
		      MHD_RESPMEM_PERSISTENT);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_len, void **state)
{
	struct http *h = cls;
	struct job j = { 0 };
	const char *accept, *type;

	(void)version;
	(void)upload;
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return text_answer(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
	if (*upload_len)
		return text_answer(conn, MHD_HTTP_BAD_REQUEST, "no body expected\n");
	if (!*state) {                  /* headers only so far: answer on the next call */
		*state = h;
		return MHD_YES;
	}
	if (!strcmp(url, "/"))
		return answer(conn, MHD_HTTP_OK, "text/html; charset=utf-8", (void *)moed_page_html,
			      strlen(moed_page_html), MHD_RESPMEM_PERSISTENT);
	if (!strcmp(url, "/metrics")) {
		accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
		j.what = accept && strstr(accept, "application/openmetrics-text") ? WHAT_OPENMETRICS
										  : WHAT_METRICS;
	} else if (!strcmp(url, "/api/stats")) {
		j.what = WHAT_STATS;
	} else {
		return text_answer(conn, MHD_HTTP_NOT_FOUND, "not found: try /, /metrics or /api/stats\n");
	}
	if (ask_loop(h, &j) < 0) {
		free(j.body);
		return text_answer(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
				   j.rc == -ENOMEM ? "out of memory\n" : "moed is not answering\n");
	}
	type = j.what == WHAT_STATS ? "application/json"
	       : j.what == WHAT_OPENMETRICS ? METRICS_TYPE_OPENMETRICS : METRICS_TYPE_TEXT;
	return answer(conn, MHD_HTTP_OK, type, j.body, j.len, MHD_RESPMEM_MUST_FREE);
}

static void on_async_closed(uv_handle_t *a)
{
	free(a);
}

int http_start(struct service *svc, const char *listen, int allow_remote, struct http **ret,
	       char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	struct http *h;
	const union MHD_DaemonInfo *info;
	int r = listen_addr_check(listen, allow_remote, err, errlen);

	if (r < 0)
		return r;
	listen_addr_parse(listen, &ss, err, errlen);
	h = calloc(1, sizeof(*h));
	if (!h || !(h->async = calloc(1, sizeof(*h->async)))) {
		free(h);
		snprintf(err, errlen, "metrics: out of memory");
		return -ENOMEM;
	}
	h->svc = svc;
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	uv_async_init(svc->loop, h->async, on_async);
	h->async->data = h;
	h->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
				  (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
				  0, NULL, NULL, on_request, h,
				  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_MAX_CONNECTIONS,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S,
				  MHD_OPTION_END);
	if (!h->mhd) {
		r = errno ? -errno : -EADDRINUSE;
		snprintf(err, errlen, "metrics: cannot listen on '%s': %s", listen, strerror(-r));
		http_stop(h);
		return r;
	}
	info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info ? info->port : 0;
	*ret = h;
	return 0;
}

unsigned http_port(const struct http *h)
{
	return h ? h->port : 0;
}

void http_stop(struct http *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->stopping = 1;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
	if (h->mhd)
		MHD_stop_daemon(h->mhd);
	uv_close((uv_handle_t *)h->async, on_async_closed);
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

#endif
