/*
 * The reply interface's helpers: fill in id and status, format error messages
 * (bounded at 512 bytes), and forward to the peer's ops.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include "daemon/reply.h"

void reply_ok(const struct reply_to *to, Moed__Response *resp)
{
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
