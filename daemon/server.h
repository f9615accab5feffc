/*
 * The server: the listening socket, the set of client sessions, and the shared
 * state requests are answered from (config limits, engine, worker pool,
 * counters).  Lives on the loop thread.
 */
#ifndef MOED_SERVER_H
#define MOED_SERVER_H

#include <stdint.h>
#include <uv.h>

#include "daemon/conf.h"

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
	uv_pipe_t listener;
	int listening;
	int owns_path;                  /* we bound it: unlink on stop */
	struct session *sessions;       /* doubly linked */
	uint32_t n_sessions;
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
/* Listen on an inherited fd (fd >= 0) or bind cfg->socket_path.  -errno, err set. */
int server_listen(struct server *srv, int fd, char *err, size_t errlen);
/* Stop accepting; in-flight requests finish; sessions close once idle;
 * on_drained is called when nothing is left. */
void server_stop(struct server *srv);
/* Called by sessions whenever their work or existence ends. */
void server_check_drained(struct server *srv);
/* Force-close every session (shutdown deadline passed). */
void server_close_all(struct server *srv);

#endif
