/*
 * The server: the listening sockets and the set of client sessions.  There is
 * an API socket and, optionally, an admin socket whose peers may use admin
 * operations whatever their uid (its file mode, 0600 by default, is the access
 * control).  It serves requests from a `struct service` it does not own, and
 * keeps service->connections and service->stopping current.  Loop thread only.
 */
#ifndef MOED_SERVER_H
#define MOED_SERVER_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "daemon/session.h"

struct service;

struct server {
	struct service *svc;
	struct session_owner owner;     /* how sessions reach back (callbacks) */
	struct listener {
		uv_pipe_t pipe;
		struct server *srv;
		const char *path;       /* NULL when inherited */
		int active;             /* open (close not yet finished) */
		int admin;
	} listeners[2];                 /* LISTEN_API, LISTEN_ADMIN */
	uv_timer_t sweep;               /* session deadlines, once a second */
	struct session *sessions;       /* doubly linked */
	int stopping;
	void (*on_drained)(struct server *srv);  /* stopping and no work left */
};

void server_init(struct server *srv, struct service *svc);
enum { LISTEN_API = 0, LISTEN_ADMIN = 1 };

/* Listen on an inherited fd (fd >= 0) or bind `path` with `mode`, `gid`
 * ((gid_t)-1 = keep).  -errno, err set. */
int server_listen(struct server *srv, int which, int fd, const char *path, unsigned mode,
		  gid_t gid, char *err, size_t errlen);
/* Stop accepting; in-flight requests finish; sessions close once idle;
 * on_drained is called when nothing is left. */
void server_stop(struct server *srv);
/* Force-close every session (shutdown deadline passed). */
void server_close_all(struct server *srv);

#endif
