/*
 * Client sessions.  Reads go into one loop-wide buffer (the loop thread handles
 * one read at a time) and through the session's frame reader; every complete
 * frame is dispatched at once.  A framing error is answered with a status and
 * the connection is closed after that answer is written.  Writes are one
 * uv_write per answer with the packed frame freed in the callback.  The
 * session is the reply interface's peer (session_reply_ops).
 *
 * Bounds on what one client can make the daemon hold:
 * - a client that does not read its answers stops being read once its unsent
 *   bytes pass write_high_water (so it cannot queue more work), is read again
 *   below half of that, is dropped past write_hard_cap, and is dropped when no
 *   write completed for write_timeout_ms;
 * - all unsent answers and partially received frames of all clients share one
 *   budget, [limits] max_buffered_bytes: what does not fit makes the owner shed
 *   the sessions holding the most (a frame that still does not fit is refused
 *   before its body is allocated);
 * - a silent connection is closed after idle_timeout_ms, and a frame whose
 *   first byte came in must be complete within frame_timeout_ms.
 * A peer that half-closes (shutdown(SHUT_WR)) still gets the answers to what
 * it sent; the session closes once they are written.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "daemon/conf.h"
#include "daemon/dispatch.h"
#include "daemon/log.h"
#include "daemon/session.h"

struct write_req {
	uv_write_t req;
	struct session *s;
	uint8_t *buf;
	size_t len;
	int charged;                    /* len counted in the buffered budget */
	struct write_req *prev, *next;
};

static char read_buf[65536];
static uint64_t session_ids;

#define S_FMT "session %llu (uid %u pid %d)"
#define S_ARGS(s) (unsigned long long)(s)->caller.session, (unsigned)(s)->caller.uid, \
	(int)(s)->caller.pid

uint64_t session_buffered(const struct session *s)
{
	return s->unsent + s->frame_charged;
}

int session_busy(const struct session *s)
{
	return s->caller.inflight > 0 || s->writes_pending > 0;
}

static void uncharge_frame(struct session *s)
{
	s->svc->buffered_bytes -= s->frame_charged;
	s->frame_charged = 0;
}

/* Give back everything this session holds in the budget (it is closing). */
static void uncharge_all(struct session *s)
{
	for (struct write_req *w = s->writes; w; w = w->next)
		if (w->charged) {
			w->charged = 0;
			s->svc->buffered_bytes -= w->len;
		}
	s->unsent = 0;
	uncharge_frame(s);
}

static void maybe_free(struct session *s)
{
	if (!s->closed || session_busy(s)) {
		if (!session_busy(s)) {
			if (s->eof && !s->closing)
				session_close(s);
			else
				s->owner->changed(s->owner->arg, s, 0);
		}
		return;
	}
	s->owner->changed(s->owner->arg, s, 1);
	frame_reader_release(&s->reader);
	free(s);
}

static void on_closed(uv_handle_t *h)
{
	struct session *s = h->data;

	s->closed = 1;
	log_debug("session %llu: closed", (unsigned long long)s->caller.session);
	maybe_free(s);
}

void session_close(struct session *s)
{
	if (s->closing)
		return;
	s->closing = 1;
	uncharge_all(s);
	uv_read_stop((uv_stream_t *)&s->pipe);
	uv_close((uv_handle_t *)&s->pipe, on_closed);
}

static void close_after_write(struct session *s)
{
	if (s->closing)
		return;
	uv_read_stop((uv_stream_t *)&s->pipe);
	if (s->writes_pending == 0)
		session_close(s);
	else
		s->close_after_write = 1;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf);

static void check_backpressure(struct session *s)
{
	const struct moed_config *cfg = s->svc->cfg;
	size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&s->pipe);

	if (s->closing)
		return;
	if (queued > cfg->write_hard_cap) {
		log_warn(S_FMT ": %zu answer bytes unread, over write_hard_cap; dropping", S_ARGS(s),
			 queued);
		session_close(s);
	} else if (!s->read_paused && queued > cfg->write_high_water) {
		log_info(S_FMT ": slow reader, %zu answer bytes queued; pausing reads", S_ARGS(s),
			 queued);
		uv_read_stop((uv_stream_t *)&s->pipe);
		s->read_paused = 1;
	} else if (s->read_paused && queued < cfg->write_high_water / 2 && !s->close_after_write &&
		   !s->eof) {
		s->read_paused = 0;
		uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read);
	}
}

static const struct reply_ops session_reply_ops;

/* Errors about the connection itself carry request id 0. */
#define send_error(s, ...) \
	reply_error(&(struct reply_to){ .ops = &session_reply_ops, .peer = (s), \
					 .counts = (s)->svc->answers, .kind = (unsigned)n_request_kinds }, \
		    __VA_ARGS__)

void session_sweep(struct session *s, uint64_t now_ms)
{
	const struct moed_config *cfg = s->svc->cfg;

	if (s->closing)
		return;
	if (cfg->write_timeout_ms && s->writes_pending &&
	    now_ms - s->write_progress_ms > cfg->write_timeout_ms) {
		log_warn(S_FMT ": read none of its %llu unsent answer bytes for %u ms (write_timeout_ms); dropping",
			 S_ARGS(s), (unsigned long long)s->unsent, cfg->write_timeout_ms);
		session_close(s);
	} else if (s->close_after_write) {
		return;
	} else if (s->frame_start_ms && now_ms - s->frame_start_ms > cfg->frame_timeout_ms) {
		log_warn(S_FMT ": frame incomplete after %u ms; closing", S_ARGS(s),
			 cfg->frame_timeout_ms);
		send_error(s, MOED__STATUS__DEADLINE_EXCEEDED,
			   "frame incomplete after %u ms (frame_timeout_ms)", cfg->frame_timeout_ms);
		close_after_write(s);
	} else if (cfg->idle_timeout_ms && !session_busy(s) &&
		   now_ms - s->last_activity_ms > cfg->idle_timeout_ms) {
		log_debug("session %llu: idle for %u ms; closing",
			  (unsigned long long)s->caller.session, cfg->idle_timeout_ms);
		session_close(s);
	}
}

static void on_write(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct session *s = w->s;

	if (w->prev)
		w->prev->next = w->next;
	else
		s->writes = w->next;
	if (w->next)
		w->next->prev = w->prev;
	if (w->charged) {
		s->svc->buffered_bytes -= w->len;
		s->unsent -= w->len;
	}
	free(w->buf);
	free(w);
	s->writes_pending--;
	s->write_progress_ms = uv_now(s->svc->loop);
	if (status < 0 && status != UV_ECANCELED) {
		log_debug("session %llu: write failed: %s", (unsigned long long)s->caller.session,
			  uv_strerror(status));
		session_close(s);
	} else if (s->close_after_write && s->writes_pending == 0) {
		session_close(s);
	} else if (s->read_paused) {
		check_backpressure(s);
	}
	maybe_free(s);
}

/* Every session may hold this much whatever the budget says: a refusal can
 * still say why, and a well-behaved client (one request or a few small ones in
 * flight) is never refused because others fill the budget.  What this lets
 * through is bounded by max_connections x 64 KiB. */
#define BUDGET_SLACK_BYTES 65536

/* Does len more fit in the buffered budget?  For an answer (may_shed), the
 * owner may first drop clients that sit on more than the slack of unsent
 * answers (they stopped reading); a frame is never a reason to drop others. */
static int budget_fits(struct session *s, uint64_t len, int may_shed)
{
	uint64_t budget = config_buffered_budget(s->svc->cfg);

	if (s->svc->buffered_bytes + len <= budget ||
	    session_buffered(s) + len <= BUDGET_SLACK_BYTES)
		return 1;
	return may_shed && s->owner->shed(s->owner->arg, s, len, BUDGET_SLACK_BYTES) == 0 && !s->closing;
}

static void session_send(void *peer, const Moed__Response *resp)
{
	struct session *s = peer;
	struct write_req *w;
	uv_buf_t b;
	int r;

	if (s->closing)
		return;
	w = calloc(1, sizeof(*w));
	if (!w || frame_encode(&resp->base, &w->buf, &w->len) < 0) {
		free(w);
		log_err(S_FMT ": out of memory for an answer; closing", S_ARGS(s));
		session_close(s);
		return;
	}
	if (!budget_fits(s, w->len, 1)) {
		if (!s->closing) {
			log_warn(S_FMT ": an answer of %zu bytes does not fit max_buffered_bytes with %llu unsent; dropping",
				 S_ARGS(s), w->len, (unsigned long long)s->unsent);
			session_close(s);
		}
		free(w->buf);
		free(w);
		return;
	}
	b = uv_buf_init((char *)w->buf, (unsigned int)w->len);
	w->req.data = s;
	w->s = s;
	r = uv_write(&w->req, (uv_stream_t *)&s->pipe, &b, 1, on_write);
	if (r < 0) {
		free(w->buf);
		free(w);
		session_close(s);
		return;
	}
	w->charged = 1;
	s->svc->buffered_bytes += w->len;
	s->unsent += w->len;
	w->next = s->writes;
	if (s->writes)
		s->writes->prev = w;
	s->writes = w;
	if (s->writes_pending++ == 0)
		s->write_progress_ms = uv_now(s->svc->loop);
	check_backpressure(s);
}

void session_refuse(struct session *s, Moed__Status status, const char *msg)
{
	send_error(s, status, "%s", msg);
	close_after_write(s);
}

static void session_hold(void *peer)
{
	((struct session *)peer)->caller.inflight++;
}

static void session_release(void *peer)
{
	struct session *s = peer;

	s->caller.inflight--;
	maybe_free(s);          /* the session may be gone now */
}

static const struct reply_ops session_reply_ops = {
	.send = session_send,
	.hold = session_hold,
	.release = session_release,
};

static int admit_frame(void *arg, size_t len)
{
	struct session *s = arg;

	if (!budget_fits(s, len, 0))
		return -ENOBUFS;
	s->frame_charged = len;
	s->svc->buffered_bytes += len;
	return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	buf->base = read_buf;
	buf->len = sizeof(read_buf);
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
	struct session *s = stream->data;
	const struct moed_config *cfg = s->svc->cfg;
	struct reply_to to = { .ops = &session_reply_ops, .peer = s };
	size_t off = 0;

	if (n == UV_EOF) {
		/* half-closed: answer what was asked, then close */
		s->eof = 1;
		uv_read_stop(stream);
		frame_reader_release(&s->reader);
		uncharge_frame(s);
		s->frame_start_ms = 0;
		if (!session_busy(s))
			session_close(s);
		return;
	}
	if (n < 0) {
		log_debug("session %llu: read: %s", (unsigned long long)s->caller.session,
			  uv_strerror((int)n));
		session_close(s);
		return;
	}
	s->last_activity_ms = uv_now(s->svc->loop);
	while (off < (size_t)n && !s->closing && !s->close_after_write) {
		uint8_t *frame;
		size_t len = 0;
		ssize_t used = frame_reader_feed(&s->reader, (const uint8_t *)buf->base + off,
						 (size_t)n - off, &frame, &len);
		if (used == -EMSGSIZE) {
			log_warn(S_FMT ": frame of %zu bytes exceeds max_frame_bytes %u; closing",
				 S_ARGS(s), len, cfg->max_frame_bytes);
			send_error(s, MOED__STATUS__RESOURCE_EXHAUSTED,
				   "frame of %zu bytes exceeds the limit of %u bytes", len,
				   cfg->max_frame_bytes);
			close_after_write(s);
			return;
		}
		if (used == -ENOBUFS) {
			log_warn(S_FMT ": a frame of %zu bytes does not fit max_buffered_bytes (%llu of %llu buffered); refused",
				 S_ARGS(s), len, (unsigned long long)s->svc->buffered_bytes,
				 (unsigned long long)config_buffered_budget(cfg));
			send_error(s, MOED__STATUS__RESOURCE_EXHAUSTED,
				   "busy: a frame of %zu bytes does not fit in max_buffered_bytes now; retry later",
				   len);
			close_after_write(s);
			return;
		}
		if (used < 0) {
			send_error(s, MOED__STATUS__INVALID_ARGUMENT,
				   used == -EBADMSG ? "zero-length frame" : "framing error");
			close_after_write(s);
			return;
		}
		off += (size_t)used;
		if (frame) {
			s->frame_start_ms = 0;
			uncharge_frame(s);      /* complete: its answer may be sent right away */
			dispatch_frame(s->svc, &s->caller, &to, frame, len);
			free(frame);
		}
	}
	if (frame_reader_partial(&s->reader) && !s->frame_start_ms)
		s->frame_start_ms = s->last_activity_ms;
}

int session_accept(struct service *svc, const struct session_owner *owner, uv_stream_t *listener,
		   int admin_socket, struct session **ret)
{
	struct session *s = calloc(1, sizeof(*s));
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	uv_os_fd_t fd;
	int r;

	if (!s)
		return -ENOMEM;
	s->svc = svc;
	s->owner = owner;
	s->caller.session = ++session_ids;
	s->caller.admin_socket = admin_socket;
	s->last_activity_ms = uv_now(svc->loop);
	frame_reader_init(&s->reader, svc->cfg->max_frame_bytes);
	s->reader.admit = admit_frame;
	s->reader.admit_arg = s;
	r = uv_pipe_init(svc->loop, &s->pipe, 0);
	if (r < 0) {
		free(s);
		return r;
	}
	s->pipe.data = s;
	*ret = s;               /* the owner links it before anything can close it */
	r = uv_accept(listener, (uv_stream_t *)&s->pipe);
	if (r < 0)
		return r;       /* the owner closes it */
	if (uv_fileno((uv_handle_t *)&s->pipe, &fd) == 0 &&
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0) {
		s->caller.uid = cred.uid;
		s->caller.pid = cred.pid;
	}
	log_debug("session %llu: connected (uid %u pid %d)", (unsigned long long)s->caller.session,
		  (unsigned)s->caller.uid, (int)s->caller.pid);
	return uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read);
}
