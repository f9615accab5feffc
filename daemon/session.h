/*
 * One client connection: reads frames, hands each to dispatch, writes replies.
 * A session stays allocated while the socket is open or requests it started are
 * still running (`inflight`); replies for a session whose socket has closed are
 * dropped.  Loop thread only.
 */
#ifndef MOED_SESSION_H
#define MOED_SESSION_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "proto/frame.h"
#include "proto/moed.pb-c.h"

struct server;

struct session {
	uv_pipe_t pipe;
	struct server *srv;
	struct session *prev, *next;
	struct frame_reader reader;
	uint64_t id;                    /* for logs */
	uid_t uid;
	pid_t pid;
	int hello_done;
	int admin_socket;               /* accepted on the admin socket */
	int closing;                    /* close started */
	int closed;                     /* handle close callback ran */
	int close_after_write;
	unsigned inflight;              /* requests on the worker pool */
	unsigned writes_pending;
	int read_paused;                /* slow reader over write_high_water */
	uint64_t last_activity_ms;      /* last byte read */
	uint64_t frame_start_ms;        /* first byte of an incomplete frame; 0 = none */
};

/* Periodic check of idle and partial-frame deadlines (server's sweep timer). */
void session_sweep(struct session *s, uint64_t now_ms);

int session_accept(struct server *srv, uv_stream_t *listener, int admin_socket);
/* Pack and queue resp.  Does not take ownership of resp. */
void session_send(struct session *s, const Moed__Response *resp);
/* Reply with an error status and message for request `id`. */
void session_send_error(struct session *s, uint64_t id, Moed__Status status, const char *fmt,
			...) __attribute__((format(printf, 4, 5)));
void session_close(struct session *s);
/* Close once queued replies are written. */
void session_close_after_write(struct session *s);
void session_hold(struct session *s);
void session_release(struct session *s);

#endif
