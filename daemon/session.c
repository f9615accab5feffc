/*
 * Client sessions.  Reads go into one loop-wide buffer (the loop thread handles
 * one read at a time) and through the session's frame reader; every complete
 * frame is dispatched at once.  A framing error is answered with a status and
 * the connection is closed after that reply is written.  Writes are one
 * uv_write per reply with the packed frame freed in the callback.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "daemon/dispatch.h"
#include "daemon/log.h"
#include "daemon/server.h"
#include "daemon/session.h"

struct write_req {
	uv_write_t req;
	uint8_t *buf;
};

static char read_buf[65536];
static uint64_t session_ids;

static void maybe_free(struct session *s)
{
	struct server *srv = s->srv;

	if (!s->closed || s->inflight > 0 || s->writes_pending > 0)
		return;
	frame_reader_release(&s->reader);
	free(s);
	server_check_drained(srv);
}

static void on_closed(uv_handle_t *h)
{
	struct session *s = h->data;
	struct server *srv = s->srv;

	if (s->prev)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	srv->n_sessions--;
	s->closed = 1;
	log_debug("session %llu: closed", (unsigned long long)s->id);
	maybe_free(s);
}

void session_close(struct session *s)
{
	if (s->closing)
		return;
	s->closing = 1;
	uv_read_stop((uv_stream_t *)&s->pipe);
	uv_close((uv_handle_t *)&s->pipe, on_closed);
}

void session_close_after_write(struct session *s)
{
	uv_read_stop((uv_stream_t *)&s->pipe);
	if (s->writes_pending == 0)
		session_close(s);
	else
		s->close_after_write = 1;
}

void session_hold(struct session *s)
{
	s->inflight++;
}

void session_release(struct session *s)
{
	s->inflight--;
	maybe_free(s);
	/* the session may be gone now */
}

static void on_write(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct session *s = req->data;

	free(w->buf);
	free(w);
	s->writes_pending--;
	if (status < 0 && status != UV_ECANCELED) {
		log_debug("session %llu: write failed: %s", (unsigned long long)s->id,
			  uv_strerror(status));
		session_close(s);
	} else if (s->close_after_write && s->writes_pending == 0) {
		session_close(s);
	}
	maybe_free(s);
}

void session_send(struct session *s, const Moed__Response *resp)
{
	struct write_req *w;
	size_t len;
	uv_buf_t b;
	int r;

	if (s->closing)
		return;
	w = calloc(1, sizeof(*w));
	if (!w || frame_encode(&resp->base, &w->buf, &len) < 0) {
		free(w);
		log_err("session %llu: out of memory for a reply; closing", (unsigned long long)s->id);
		session_close(s);
		return;
	}
	b = uv_buf_init((char *)w->buf, (unsigned int)len);
	w->req.data = s;
	r = uv_write(&w->req, (uv_stream_t *)&s->pipe, &b, 1, on_write);
	if (r < 0) {
		free(w->buf);
		free(w);
		session_close(s);
		return;
	}
	s->writes_pending++;
}

void session_send_error(struct session *s, uint64_t id, Moed__Status status, const char *fmt, ...)
{
	Moed__Response resp = MOED__RESPONSE__INIT;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	resp.id = id;
	resp.status = status;
	resp.message = msg;
	session_send(s, &resp);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	buf->base = read_buf;
	buf->len = sizeof(read_buf);
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
	struct session *s = stream->data;
	size_t off = 0;

	if (n < 0) {
		if (n != UV_EOF)
			log_debug("session %llu: read: %s", (unsigned long long)s->id,
				  uv_strerror((int)n));
		session_close(s);
		return;
	}
	while (off < (size_t)n && !s->closing && !s->close_after_write) {
		uint8_t *frame;
		size_t len = 0;
		ssize_t used = frame_reader_feed(&s->reader, (const uint8_t *)buf->base + off,
						 (size_t)n - off, &frame, &len);
		if (used == -EMSGSIZE) {
			log_warn("session %llu (uid %u pid %d): frame of %zu bytes exceeds max_frame_bytes %u; closing",
				 (unsigned long long)s->id, (unsigned)s->uid, (int)s->pid, len,
				 s->srv->cfg->max_frame_bytes);
			session_send_error(s, 0, MOED__STATUS__RESOURCE_EXHAUSTED,
					   "frame of %zu bytes exceeds the limit of %u bytes", len,
					   s->srv->cfg->max_frame_bytes);
			session_close_after_write(s);
			return;
		}
		if (used < 0) {
			session_send_error(s, 0, MOED__STATUS__INVALID_ARGUMENT,
					   used == -EBADMSG ? "zero-length frame" : "framing error");
			session_close_after_write(s);
			return;
		}
		off += (size_t)used;
		if (frame) {
			dispatch_frame(s, frame, len);
			free(frame);
		}
	}
}

int session_accept(struct server *srv, uv_stream_t *listener, int admin_socket)
{
	struct session *s = calloc(1, sizeof(*s));
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	uv_os_fd_t fd;
	int r;

	if (!s)
		return -ENOMEM;
	s->srv = srv;
	s->id = ++session_ids;
	s->admin_socket = admin_socket;
	frame_reader_init(&s->reader, srv->cfg->max_frame_bytes);
	r = uv_pipe_init(srv->loop, &s->pipe, 0);
	if (r < 0) {
		free(s);
		return r;
	}
	s->pipe.data = s;
	s->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = s;
	srv->sessions = s;
	srv->n_sessions++;
	r = uv_accept(listener, (uv_stream_t *)&s->pipe);
	if (r < 0) {
		session_close(s);
		return r;
	}
	if (uv_fileno((uv_handle_t *)&s->pipe, &fd) == 0 &&
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0) {
		s->uid = cred.uid;
		s->pid = cred.pid;
	}
	log_debug("session %llu: connected (uid %u pid %d)", (unsigned long long)s->id,
		  (unsigned)s->uid, (int)s->pid);
	if (srv->n_sessions > srv->cfg->max_connections) {
		log_warn("session %llu (uid %u pid %d): over max_connections %u; refused",
			 (unsigned long long)s->id, (unsigned)s->uid, (int)s->pid,
			 srv->cfg->max_connections);
		session_send_error(s, 0, MOED__STATUS__RESOURCE_EXHAUSTED,
				   "too many connections (max_connections %u)",
				   srv->cfg->max_connections);
		session_close_after_write(s);
		return 0;
	}
	r = uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read);
	if (r < 0)
		session_close(s);
	return 0;
}
