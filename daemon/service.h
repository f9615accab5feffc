/*
 * What request handlers serve from: the configuration, the engine, the worker
 * pool, the batcher, and a few facts the server and the main loop keep
 * current.  Each member has one writer, named beside it; handlers only read
 * what they do not own.  Also the per-connection facts a handler may need about
 * its caller (struct caller), and the handler table generated from
 * proto/requests.def.  Loop thread only.
 */
#ifndef MOED_SERVICE_H
#define MOED_SERVICE_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "daemon/reply.h"
#include "proto/moed.pb-c.h"
#include "proto/protocol.h"

struct batcher;
struct cluster;
struct engine;
struct moed_config;
struct pool;

/* What a reload applied and what needs a restart (static strings). */
#define RELOAD_RESULT_MAX 72
struct reload_result {
	const char *applied[RELOAD_RESULT_MAX];
	size_t n_applied;
	const char *restart[RELOAD_RESULT_MAX];
	size_t n_restart;
	char warning[256];              /* e.g. the state could not be saved */
};

struct service {
	uv_loop_t *loop;
	struct moed_config *cfg;        /* main.c (reload) */
	struct engine *engine;          /* main.c; bindings: admin.c */
	struct pool *pool;              /* main.c */
	struct batcher *batcher;        /* main.c creates it; batch.c owns its state */
	struct cluster *cluster;        /* main.c: under mpirun, the front's; else NULL */
	uint64_t start_ms;              /* main.c */
	uint32_t connections;           /* server.c */
	uint64_t buffered_bytes;        /* session.c: unsent replies + partial frames, all peers */
	int stopping;                   /* server.c */
	/* answers by request kind (the rows of proto/requests.def, then one for
	 * frames that decode as no known kind) and status: reply.c counts them
	 * for the reply_to dispatch.c prepares; main.c allocates it
	 * (SERVICE_ANSWER_KINDS x REPLY_STATUSES) */
	uint64_t *answers;
	const char *health;             /* main.c: NULL = healthy, else why not (status) */
	/* main.c: re-read the config and apply it all or nothing; -errno with err */
	int (*reload)(struct service *svc, struct reload_result *res, char *err, size_t errlen);
	/* main.c: save the router state now; -errno with err */
	int (*save_state)(struct service *svc, char *err, size_t errlen);
};

#define SERVICE_ANSWER_KINDS (n_request_kinds + 1)

/* Who sent a request: kept by the session, read (and hello_done written) by
 * dispatch and the handlers. */
struct caller {
	uint64_t session;               /* for logs */
	uid_t uid;
	pid_t pid;
	int admin_socket;               /* accepted on the admin socket */
	int hello_done;
	unsigned protocol;              /* negotiated version */
	unsigned inflight;              /* requests held (answers still to come) */
};

/* A handler answers through `to`; it returns 1 when it kept req (it frees it
 * later), 0 when dispatch frees it. */
#define REQUEST(body, name, reply, admin, command)                                      \
	int handle_##name(struct service *svc, struct caller *c, const struct reply_to *to, \
			  Moed__Request *req);
#include "proto/requests.def"
#undef REQUEST

/* May this caller use admin operations? (uid 0, the daemon's uid, a member of
 * [daemon] admin_group, or a peer of the admin socket) */
int service_caller_is_admin(const struct service *svc, const struct caller *c);

#endif
