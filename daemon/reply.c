/*
 * The reply interface's helpers: fill in id and status, format error messages
 * (bounded at 512 bytes), count the answer by request kind and status, and
 * forward to the peer's ops.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include "daemon/reply.h"

static void count(const struct reply_to *to, Moed__Status status)
{
	if (to->counts && (unsigned)status < REPLY_STATUSES)
		to->counts[to->kind * REPLY_STATUSES + (unsigned)status]++;
}

void reply_ok(const struct reply_to *to, Moed__Response *resp)
{
	count(to, MOED__STATUS__OK);
	resp->id = to->id;
	resp->status = MOED__STATUS__OK;
	to->ops->send(to->peer, resp);
}

void reply_error(const struct reply_to *to, Moed__Status status, const char *fmt, ...)
{
	Moed__Response resp = MOED__RESPONSE__INIT;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	count(to, status);
	resp.id = to->id;
	resp.status = status;
	resp.message = msg;
	to->ops->send(to->peer, &resp);
}

void reply_hold(const struct reply_to *to)
{
	to->ops->hold(to->peer);
}

void reply_release(const struct reply_to *to)
{
	to->ops->release(to->peer);
}
