/*
 * One client connection: reads frames, hands each to dispatch, writes the
 * answers.  A session stays allocated while its socket is open or requests it
 * started still hold it (caller.inflight); answers for a session whose socket
 * has closed are dropped.  The owner (the server) keeps the list of sessions
 * and hears through `struct session_owner` when one changed or went away, and
 * picks which session to drop when the buffered-bytes budget is exceeded.
 * Loop thread only.
 */
#ifndef MOED_SESSION_H
#define MOED_SESSION_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "daemon/service.h"
#include "proto/frame.h"

struct session;
struct write_req;

struct session_owner {
	/* The session became idle (no work, nothing to write), closed, or is
	 * about to be freed (gone = 1: unlink it). */
	void (*changed)(void *arg, struct session *s, int gone);
	/* Buffered bytes over budget: drop sessions holding the most unsent
	 * answer bytes (more than `slack` each) until `need` more bytes fit;
	 * returns 0 when they fit.  `asking` is the session that wants them. */
	int (*shed)(void *arg, struct session *asking, uint64_t need, uint64_t slack);
	void *arg;
};

struct session {
	uv_pipe_t pipe;
	struct service *svc;
	const struct session_owner *owner;
	struct session *prev, *next;    /* the owner's list */
	struct frame_reader reader;
	struct caller caller;
	int closing;                    /* close started */
	int closed;                     /* handle close callback ran */
	int close_after_write;
	int eof;                        /* the peer half-closed: answer, then close */
	int read_paused;                /* slow reader over write_high_water */
	unsigned writes_pending;
	struct write_req *writes;       /* pending writes (doubly linked) */
	uint64_t unsent;                /* bytes of pending writes charged to the budget */
	uint64_t frame_charged;         /* partial frame body charged to the budget */
	uint64_t last_activity_ms;      /* last byte read */
	uint64_t frame_start_ms;        /* first byte of an incomplete frame; 0 = none */
	uint64_t write_progress_ms;     /* last write completed (or first queued) */
};

/* Accept a connection from listener into a new session (the owner links it). */
int session_accept(struct service *svc, const struct session_owner *owner, uv_stream_t *listener,
		   int admin_socket, struct session **ret);
/* Periodic check of idle, partial-frame and write deadlines. */
void session_sweep(struct session *s, uint64_t now_ms);
/* Bytes this session holds in the buffered budget. */
uint64_t session_buffered(const struct session *s);
/* Has it work in flight or answers to write? */
int session_busy(const struct session *s);
/* Send an error with request id 0 (refusing the connection), then close. */
void session_refuse(struct session *s, Moed__Status status, const char *msg);
void session_close(struct session *s);

#endif
