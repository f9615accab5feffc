/*
 * The reply interface: how a request handler answers, without knowing what a
 * session is.  A `struct reply_to` names the peer (through a small ops table
 * the session implements), and the request id the answer carries.  A handler
 * that answers later (after the worker pool ran it) takes a hold on the peer
 * first and releases it once it has answered, so the peer's memory outlives
 * the work; a peer whose connection has closed meanwhile drops the answer.
 * Loop thread only.
 */
#ifndef MOED_REPLY_H
#define MOED_REPLY_H

#include <stdint.h>

#include "proto/moed.pb-c.h"

struct reply_ops {
	/* Pack and queue resp; does not take ownership of it. */
	void (*send)(void *peer, const Moed__Response *resp);
	void (*hold)(void *peer);
	void (*release)(void *peer);    /* the peer may be freed here */
};

/* Statuses counted per request kind (gRPC codes 0..16). */
#define REPLY_STATUSES 17

struct reply_to {
	const struct reply_ops *ops;
	void *peer;
	uint64_t id;                    /* the request's id, echoed in the answer */
	/* answers counted here by kind and status, [kind][REPLY_STATUSES]
	 * (NULL: not counted; see struct service's answers) */
	uint64_t *counts;
	unsigned kind;
};

/* Answer OK with resp's body (its id and status are set here). */
void reply_ok(const struct reply_to *to, Moed__Response *resp);
/* Answer with a non-OK status and a message. */
void reply_error(const struct reply_to *to, Moed__Status status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void reply_hold(const struct reply_to *to);
void reply_release(const struct reply_to *to);

#endif
