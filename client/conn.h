/*
 * moectl's connection to moed: connect to the Unix socket, hello handshake,
 * then one request at a time, each waited for with a timeout.  Failures print
 * one line "moectl: ..." on stderr and return an exit code (see moectl.h).
 */
#ifndef MOECTL_CONN_H
#define MOECTL_CONN_H

#include <stdint.h>

#include "proto/moed.pb-c.h"

struct conn {
	int fd;
	uint64_t next_id;
	int timeout_ms;
	const char *path;
};

int conn_open(struct conn *c, const char *path, int timeout_ms);
/* Send req (its id is set here) and wait for the reply.  A non-OK status is
 * printed and returned as EXIT_SERVER; *ret_resp is then NULL. */
int conn_call(struct conn *c, Moed__Request *req, Moed__Response **ret_resp);
void conn_close(struct conn *c);

#endif
