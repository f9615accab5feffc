/*
 * The protocol as data, shared by moed and moectl so the two can never
 * disagree: the versions and default socket path (proto/version.h), the request table
 * (proto/requests.def) as data: which reply body answers which request body,
 * and each kind's name and moectl command.
 */
#ifndef MOED_PROTOCOL_H
#define MOED_PROTOCOL_H

#include <stddef.h>

#include "proto/moed.pb-c.h"
#include "proto/version.h"

enum request_admin {
	REQUEST_ADMIN_never,            /* anyone who can connect */
	REQUEST_ADMIN_always,           /* admin peers only */
	REQUEST_ADMIN_changes,          /* admin peers when the request changes state */
};

struct request_kind {
	Moed__Request__BodyCase body;
	const char *name;
	Moed__Response__BodyCase reply;
	enum request_admin admin;
	const char *command;            /* moectl command, "" for none */
};

/* The rows of proto/requests.def, in order; n_request_kinds of them. */
extern const struct request_kind request_kinds[];
extern const size_t n_request_kinds;
/* The row of a body case, or NULL. */
const struct request_kind *request_kind_of(Moed__Request__BodyCase body);

/* The protocol version a hello asks for: the highest version in the client's
 * offered range that this build speaks, or 0 when there is none.  Takes
 * protocol_version alone when the range fields are absent. */
unsigned protocol_negotiate(const Moed__HelloRequest *hello);

#endif
