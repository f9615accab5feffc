/*
 * Request dispatch: decode one frame into a Request (with a byte budget),
 * enforce the handshake, look its kind up in the request table
 * (proto/requests.def), check the caller may use it, and hand it to the kind's
 * handler.  Every request gets exactly one answer with its id.
 */
#ifndef MOED_DISPATCH_H
#define MOED_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/reply.h"

struct caller;
struct service;

/* `to` carries the peer (its id is set here from the request). */
void dispatch_frame(struct service *svc, struct caller *c, const struct reply_to *to,
		    const uint8_t *frame, size_t len);

#endif
