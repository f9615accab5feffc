/*
 * Client sessions.  Reads go into one loop-wide buffer (the loop thread handles
 * one read at a time) and through the session's frame reader; every complete
 * frame is dispatched at once.  A framing error is answered with a status and
 * the connection is closed after that reply is written.  Writes are one
 * uv_write per reply with the packed frame freed in the callback.
 *
 * Back-pressure: a client that does not read its replies stops being read once
 * its unsent bytes pass write_high_water (so it cannot queue more work), is read
 * again below half of that, and is dropped past write_hard_cap.  A silent
 * connection is closed after idle_timeout_ms, and a frame whose first byte came
 * in must be complete within frame_timeout_ms.
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
	if (s->closing)
		return;
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

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf);

static void check_backpressure(struct session *s)
{
	const struct moed_config *cfg = s->srv->cfg;
	size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&s->pipe);

	if (s->closing)
		return;
	if (queued > cfg->write_hard_cap) {
		log_warn("session %llu (uid %u pid %d): %zu reply bytes unread, over write_hard_cap; dropping",
			 (unsigned long long)s->id, (unsigned)s->uid, (int)s->pid, queued);
		session_close(s);
	} else if (!s->read_paused && queued > cfg->write_high_water) {
		log_info("session %llu (uid %u pid %d): slow reader, %zu reply bytes queued; pausing reads",
			 (unsigned long long)s->id, (unsigned)s->uid, (int)s->pid, queued);
		uv_read_stop((uv_stream_t *)&s->pipe);
		s->read_paused = 1;
	} else if (s->read_paused && queued < cfg->write_high_water / 2 && !s->close_after_write) {
		s->read_paused = 0;
		uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read);
	}
}

void session_sweep(struct session *s, uint64_t now_ms)
{
	const struct moed_config *cfg = s->srv->cfg;

	if (s->closing || s->close_after_write)
		return;
	if (s->frame_start_ms && now_ms - s->frame_start_ms > cfg->frame_timeout_ms) {
		log_warn("session %llu (uid %u pid %d): frame incomplete after %u ms; closing",
			 (unsigned long long)s->id, (unsigned)s->uid, (int)s->pid,
			 cfg->frame_timeout_ms);
		session_send_error(s, 0, MOED__STATUS__DEADLINE_EXCEEDED,
				   "frame incomplete after %u ms (frame_timeout_ms)",
				   cfg->frame_timeout_ms);
		session_close_after_write(s);
	} else if (cfg->idle_timeout_ms && s->inflight == 0 && s->writes_pending == 0 &&
		   now_ms - s->last_activity_ms > cfg->idle_timeout_ms) {
		log_debug("session %llu: idle for %u ms; closing", (unsigned long long)s->id,
			  cfg->idle_timeout_ms);
		session_close(s);
	}
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
	} else if (s->read_paused) {
		check_backpressure(s);
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
	check_backpressure(s);
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
	s->last_activity_ms = uv_now(s->srv->loop);
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
			s->frame_start_ms = 0;
			dispatch_frame(s, frame, len);
			free(frame);
		}
	}
	if (frame_reader_partial(&s->reader) && !s->frame_start_ms)
		s->frame_start_ms = s->last_activity_ms;
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
	s->last_activity_ms = uv_now(srv->loop);
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
