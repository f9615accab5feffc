/*
 * moectl's connection to moed: connect to the Unix socket, hello handshake
 * (pipelined with the first request), then one request at a time, each
 * waited for with a timeout.  Failures print
 * one line "moectl: ..." on stderr and return an exit code (see moectl.h), so
 * the commands only decide what to print on success.
 */
#ifndef MOECTL_CONN_H
#define MOECTL_CONN_H

#include <stdint.h>

#include "proto/moed.pb-c.h"

/* The largest reply moectl accepts; the daemon's own cap on requests is
 * smaller (max_frame_bytes) and is reported by the daemon. */
#define CONN_MAX_FRAME (1u << 30)

struct conn {
	int fd;
	uint64_t next_id;
	uint64_t hello_id;      /* the sent hello whose reply is still to read, or 0 */
	int timeout_ms;         /* per request; <= 0 waits forever */
	const char *path;       /* borrowed from the caller, used in messages */
};

/* Connect to path and send hello (its reply is read by the first
 * conn_call, which then fails with EXIT_UNREACHABLE if the daemon refused
 * it).  Returns EXIT_OK, EXIT_USAGE (path too long for a Unix socket) or
 * EXIT_UNREACHABLE; c is closed on failure. */
int conn_open(struct conn *c, const char *path, int timeout_ms);
/* Send req (its id is set here) and wait for the reply with that id.  Returns
 * EXIT_OK with *ret_resp the reply (the caller frees it with
 * moed__response__free_unpacked), its body guaranteed to be the one that
 * answers req's body.  A non-OK status is printed and returned as EXIT_SERVER,
 * a lost connection, timeout or malformed reply as EXIT_UNREACHABLE; *ret_resp
 * is then NULL. */
int conn_call(struct conn *c, Moed__Request *req, Moed__Response **ret_resp);
/* Accepts a closed or never-opened conn (fd -1). */
void conn_close(struct conn *c);

#endif
