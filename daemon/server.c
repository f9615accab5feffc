/*
 * The listening socket and shutdown.  We either adopt a socket handed over by
 * the service manager or bind our own path (refusing to steal a path another
 * live daemon answers on, replacing a stale one).  Stopping closes the listener,
 * lets sessions finish their in-flight requests, and reports "drained" once the
 * last session with work is gone; idle sessions are closed right away.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/conf.h"
#include "daemon/log.h"
#include "daemon/server.h"
#include "daemon/service.h"

static void check_drained(struct server *srv);

static void on_sweep(uv_timer_t *t)
{
	struct server *srv = t->data;
	uint64_t now = uv_now(srv->svc->loop);

	for (struct session *s = srv->sessions, *next; s; s = next) {
		next = s->next;
		session_sweep(s, now);
	}
}

static void on_session_changed(void *arg, struct session *s, int gone)
{
	struct server *srv = arg;

	if (gone) {
		if (s->prev)
			s->prev->next = s->next;
		else
			srv->sessions = s->next;
		if (s->next)
			s->next->prev = s->prev;
		srv->svc->connections--;
	}
	check_drained(srv);
}

/* Over the buffered budget: close the sessions holding the most unsent answer
 * bytes (the asking one included), among those holding more than `slack` of
 * them (a client whose answers are merely in flight is not a hog), until
 * `need` more bytes fit.  Partly received frames are not shed: they are
 * bounded by frame_timeout_ms, and a frame that does not fit is refused. */
static int on_shed(void *arg, struct session *asking, uint64_t need, uint64_t slack)
{
	struct server *srv = arg;
	uint64_t budget = config_buffered_budget(srv->svc->cfg), sheddable = 0;

	/* drop nobody when dropping everybody still would not make room */
	for (struct session *s = srv->sessions; s; s = s->next)
		if (!s->closing && s->unsent > slack)
			sheddable += s->unsent;
	if (srv->svc->buffered_bytes - sheddable + need > budget)
		return -ENOBUFS;
	while (srv->svc->buffered_bytes + need > budget) {
		struct session *hog = NULL;
		for (struct session *s = srv->sessions; s; s = s->next)
			if (!s->closing && s->unsent > slack && (!hog || s->unsent > hog->unsent))
				hog = s;
		if (!hog)
			return -ENOBUFS;
		log_warn("session %llu (uid %u pid %d): holds %llu of the %llu buffered bytes; over max_buffered_bytes %llu, dropping it",
			 (unsigned long long)hog->caller.session, (unsigned)hog->caller.uid,
			 (int)hog->caller.pid, (unsigned long long)session_buffered(hog),
			 (unsigned long long)srv->svc->buffered_bytes, (unsigned long long)budget);
		session_close(hog);
		if (hog == asking)
			return -ENOBUFS;
	}
	return 0;
}

void server_init(struct server *srv, struct service *svc)
{
	memset(srv, 0, sizeof(*srv));
	srv->svc = svc;
	srv->owner = (struct session_owner){ on_session_changed, on_shed, srv };
	uv_timer_init(svc->loop, &srv->sweep);
	srv->sweep.data = srv;
	uv_timer_start(&srv->sweep, on_sweep, 1000, 1000);
}

static void on_connection(uv_stream_t *stream, int status)
{
	struct listener *l = stream->data;
	struct server *srv = l->srv;
	struct session *s = NULL;
	char msg[128];
	int r;

	if (status < 0) {
		log_warn("server: accept: %s", uv_strerror(status));
		return;
	}
	r = session_accept(srv->svc, &srv->owner, stream, l->admin, &s);
	if (!s) {
		log_warn("server: cannot accept a connection: %s", uv_strerror(r));
		return;
	}
	s->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = s;
	srv->sessions = s;
	srv->svc->connections++;
	if (r < 0) {
		log_warn("server: cannot accept a connection: %s", uv_strerror(r));
		session_close(s);
	} else if (srv->svc->connections > srv->svc->cfg->max_connections) {
		log_warn("session %llu (uid %u pid %d): over max_connections %u; refused",
			 (unsigned long long)s->caller.session, (unsigned)s->caller.uid,
			 (int)s->caller.pid, srv->svc->cfg->max_connections);
		snprintf(msg, sizeof(msg), "too many connections (max_connections %u)",
			 srv->svc->cfg->max_connections);
		session_refuse(s, MOED__STATUS__RESOURCE_EXHAUSTED, msg);
	}
}

/* Is somebody answering on path?  Then it is not stale. */
static int path_in_use(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

	if (fd < 0)
		return 0;
	memcpy(sa.sun_path, path, strlen(path));
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return r;
}

static int bind_path(struct listener *l, const char *path, unsigned mode, gid_t gid, char *err,
		     size_t errlen)
{
	struct stat st;
	int r;

	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		snprintf(err, errlen, "server: socket path '%s' longer than 107 bytes", path);
		return -ENAMETOOLONG;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "server: '%s' exists and is not a socket", path);
			return -EEXIST;
		}
		if (path_in_use(path)) {
			snprintf(err, errlen, "server: another daemon is listening on '%s'", path);
			return -EADDRINUSE;
		}
		unlink(path);
	}
	r = uv_pipe_bind(&l->pipe, path);
	if (r < 0) {
		snprintf(err, errlen, "server: cannot bind '%s': %s", path, uv_strerror(r));
		return r;
	}
	l->path = path;
	if ((gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0) || chmod(path, (mode_t)mode) < 0) {
		r = -errno;
		snprintf(err, errlen, "server: socket '%s': %s", path, strerror(errno));
		unlink(path);
		l->path = NULL;
		return r;
	}
	return 0;
}

int server_listen(struct server *srv, int which, int fd, const char *path, unsigned mode,
		  gid_t gid, char *err, size_t errlen)
{
	struct listener *l = &srv->listeners[which];
	int r;

	r = uv_pipe_init(srv->svc->loop, &l->pipe, 0);
	if (r < 0) {
		snprintf(err, errlen, "server: %s", uv_strerror(r));
		return r;
	}
	l->pipe.data = l;
	l->srv = srv;
	l->admin = which == LISTEN_ADMIN;
	l->active = 1;
	if (fd >= 0) {
		r = uv_pipe_open(&l->pipe, fd);
		if (r < 0)
			snprintf(err, errlen, "server: inherited socket fd %d: %s", fd, uv_strerror(r));
	} else {
		r = bind_path(l, path, mode, gid, err, errlen);
	}
	if (r == 0) {
		r = uv_listen((uv_stream_t *)&l->pipe, 128, on_connection);
		if (r < 0)
			snprintf(err, errlen, "server: cannot listen on '%s': %s",
				 path ? path : "inherited socket", uv_strerror(r));
	}
	if (r < 0) {
		if (l->path)
			unlink(l->path);
		l->path = NULL;
		l->active = 0;
		uv_close((uv_handle_t *)&l->pipe, NULL);
	}
	return r;
}

/* Stopping: once the listeners are closed and no session has work, close the
 * idle ones; the last close reports "drained".  A session whose request is
 * stuck in a written-off call is not busy (the batcher released it). */
static void check_drained(struct server *srv)
{
	if (!srv->stopping || srv->listeners[0].active || srv->listeners[1].active)
		return;
	for (struct session *s = srv->sessions; s; s = s->next)
		if (session_busy(s))
			return;
	/* idle sessions: close them; their close callbacks come back here */
	for (struct session *s = srv->sessions; s; s = s->next)
		session_close(s);
	if (srv->sessions == NULL && srv->on_drained) {
		void (*cb)(struct server *) = srv->on_drained;
		srv->on_drained = NULL;
		cb(srv);
	}
}

static void on_listener_closed(uv_handle_t *h)
{
	struct listener *l = h->data;

	l->active = 0;
	check_drained(l->srv);
}

void server_stop(struct server *srv)
{
	if (srv->stopping)
		return;
	srv->stopping = 1;
	srv->svc->stopping = 1;
	uv_close((uv_handle_t *)&srv->sweep, NULL);
	for (int i = 0; i < 2; i++) {
		struct listener *l = &srv->listeners[i];
		if (!l->active)
			continue;
		if (l->path)
			unlink(l->path);
		uv_close((uv_handle_t *)&l->pipe, on_listener_closed);
	}
	check_drained(srv);
}

void server_close_all(struct server *srv)
{
	for (struct session *s = srv->sessions; s; s = s->next)
		session_close(s);
}
