/*
 * The server: the listening sockets, the set of client sessions, and the shared
 * state requests are answered from (config limits, engine, worker pool,
 * counters).  There is an API socket and, optionally, an admin socket whose
 * peers may use admin operations whatever their uid (its file mode, 0600 by
 * default, is the access control).  Lives on the loop thread.
 */
#ifndef MOED_SERVER_H
#define MOED_SERVER_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "daemon/conf.h"

struct batch;
struct engine;
struct pool;
struct session;

/* What a reload applied and what needs a restart (static strings). */
struct reload_result {
	const char *applied[16];
	size_t n_applied;
	const char *restart[16];
	size_t n_restart;
};

struct server {
	uv_loop_t *loop;
	struct moed_config *cfg;
	struct engine *engine;
	struct pool *pool;
	struct listener {
		uv_pipe_t pipe;
		struct server *srv;
		const char *path;       /* NULL when inherited */
		int active;             /* open (close not yet finished) */
		int admin;
	} listeners[2];                 /* LISTEN_API, LISTEN_ADMIN */
	uv_timer_t sweep;               /* session deadlines, once a second */
	struct batch **pending;         /* per MoE layer: infer requests waiting to coalesce */
	uv_timer_t window_timer;        /* coalesce_window_us */
	int window_timer_init;
	struct session *sessions;       /* doubly linked */
	uint32_t n_sessions;
	uint64_t queued_tokens;         /* accepted infer/route tokens not yet answered */
	uint64_t requests_served;
	uint64_t tokens_served;
	uint64_t start_ms;              /* uv_now at start */
	int stopping;
	void (*on_drained)(struct server *srv);  /* stopping and no work left */
	/* re-read the config and apply it; -errno with err, nothing changed */
	int (*reload)(struct server *srv, struct reload_result *res, char *err, size_t errlen);
};

void server_init(struct server *srv, uv_loop_t *loop, struct moed_config *cfg,
		 struct engine *engine, struct pool *pool);
enum { LISTEN_API = 0, LISTEN_ADMIN = 1 };

/* Listen on an inherited fd (fd >= 0) or bind `path` with `mode`, `gid`
 * ((gid_t)-1 = keep).  -errno, err set. */
int server_listen(struct server *srv, int which, int fd, const char *path, unsigned mode,
		  gid_t gid, char *err, size_t errlen);
/* Stop accepting; in-flight requests finish; sessions close once idle;
 * on_drained is called when nothing is left. */
void server_stop(struct server *srv);
/* Called by sessions whenever their work or existence ends. */
void server_check_drained(struct server *srv);
/* Force-close every session (shutdown deadline passed). */
void server_close_all(struct server *srv);

#endif
