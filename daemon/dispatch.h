/*
 * Request dispatch: decode one frame into a Request, enforce the handshake and
 * per-connection limits, answer descriptive requests on the loop thread, and
 * send inference/routing work to the worker pool.
 */
#ifndef MOED_DISPATCH_H
#define MOED_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

struct session;

#define MOED_PROTOCOL_VERSION 1u

void dispatch_frame(struct session *s, const uint8_t *frame, size_t len);

#endif
