/*
 * Dispatch.  One table, generated from proto/requests.def, maps each Request
 * body case to its handler and admin policy; the path reads decode -> hello
 * check -> row -> admin check -> handler.  The handler answers through the
 * reply interface; dispatch never answers on a handler's behalf except for
 * the checks it makes itself.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include "daemon/conf.h"
#include "daemon/dispatch.h"
#include "daemon/log.h"
#include "daemon/service.h"
#include "proto/protocol.h"

typedef int handler_fn(struct service *svc, struct caller *c, const struct reply_to *to,
		       Moed__Request *req);

static handler_fn *const handlers[] = {
#define REQUEST(body, name, reply, admin, command) [MOED__REQUEST__BODY_##body] = handle_##name,
#include "proto/requests.def"
#undef REQUEST
};

int service_caller_is_admin(const struct service *svc, const struct caller *c)
{
	const char *group = svc->cfg->admin_group;
	struct passwd *pw;
	struct group *gr;
	gid_t groups[256];
	int n = 256;

	if (c->admin_socket || c->uid == 0 || c->uid == geteuid())
		return 1;
	if (!group || !(gr = getgrnam(group)) || !(pw = getpwuid(c->uid)))
		return 0;
	if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0)
		return 0;
	for (int i = 0; i < n; i++)
		if (groups[i] == gr->gr_gid)
			return 1;
	return 0;
}

/* For rows whose admin policy is "changes": does this request change state? */
static int changes_state(const Moed__Request *req)
{
	switch (req->body_case) {
	case MOED__REQUEST__BODY_BIAS:
		return req->bias->op != MOED__BIAS_OP__BIAS_SHOW;
	default:
		return 1;
	}
}

static int needs_admin(const struct request_kind *k, const Moed__Request *req)
{
	return k->admin == REQUEST_ADMIN_always ||
	       (k->admin == REQUEST_ADMIN_changes && changes_state(req));
}

/*
 * protobuf-c's unpack may allocate many times the input size; this allocator
 * gives it a byte budget proportional to the frame.  The memory is plain
 * malloc(), so requests are later freed with the default allocator (handlers
 * keep them after the budget, which lives on this stack, is gone).
 */
struct budget {
	size_t left;
};

static void *budget_alloc(void *data, size_t size)
{
	struct budget *b = data;

	if (!b || size > b->left)
		return NULL;
	b->left -= size;
	return malloc(size);
}

static void budget_free(void *data, void *ptr)
{
	free(ptr);
}

void dispatch_frame(struct service *svc, struct caller *c, const struct reply_to *peer,
		    const uint8_t *frame, size_t len)
{
	struct budget budget = { .left = 4 * len + (256u << 10) };
	ProtobufCAllocator alloc = { budget_alloc, budget_free, &budget };
	Moed__Request *req = moed__request__unpack(&alloc, len, frame);
	struct reply_to to = *peer;
	const struct request_kind *k;

	to.id = 0;
	to.counts = svc->answers;
	to.kind = (unsigned)n_request_kinds;   /* "unknown" until the row is known */
	if (!req) {
		log_warn("session %llu (uid %u pid %d): undecodable request (%zu bytes)",
			 (unsigned long long)c->session, (unsigned)c->uid, (int)c->pid, len);
		reply_error(&to, MOED__STATUS__INVALID_ARGUMENT,
			    "cannot decode the request (%zu bytes) as moed.Request", len);
		return;
	}
	to.id = req->id;
	k = request_kind_of(req->body_case);
	if (k)
		to.kind = (unsigned)(k - request_kinds);
	if (!c->hello_done && req->body_case != MOED__REQUEST__BODY_HELLO) {
		reply_error(&to, MOED__STATUS__FAILED_PRECONDITION,
			    "the first request must be hello (protocol version %u)",
			    MOED_PROTOCOL_VERSION);
		goto done;
	}

	if (!k || (size_t)req->body_case >= sizeof(handlers) / sizeof(handlers[0]) ||
	    !handlers[req->body_case]) {
		reply_error(&to, MOED__STATUS__UNIMPLEMENTED, "unknown request type %d",
			    (int)req->body_case);
		goto done;
	}
	if (needs_admin(k, req) && !service_caller_is_admin(svc, c)) {
		log_warn("admin: %s from uid %u pid %d denied: not an admin peer", k->name,
			 (unsigned)c->uid, (int)c->pid);
		reply_error(&to, MOED__STATUS__PERMISSION_DENIED,
			    "%s needs uid 0 or membership of admin_group", k->name);
		goto done;
	}
	if (handlers[req->body_case](svc, c, &to, req))
		return;         /* the handler keeps req */
done:
	moed__request__free_unpacked(req, NULL);
}

int handle_hello(struct service *svc, struct caller *c, const struct reply_to *to,
		 Moed__Request *req)
{
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__HelloResponse hello = MOED__HELLO_RESPONSE__INIT;
	unsigned v = protocol_negotiate(req->hello);

	(void)svc;
	if (v == 0) {
		reply_error(to, MOED__STATUS__FAILED_PRECONDITION,
			    "protocol version %u not supported; this moed speaks versions %u..%u",
			    req->hello->protocol_version, MOED_PROTOCOL_VERSION_MIN,
			    MOED_PROTOCOL_VERSION);
		return 0;
	}
	c->hello_done = 1;
	c->protocol = v;
	log_debug("session %llu: hello from '%s', protocol %u", (unsigned long long)c->session,
		  req->hello->client ? req->hello->client : "?", v);
	hello.protocol_version = v;
	hello.server_version = PACKAGE_VERSION;
	resp.body_case = MOED__RESPONSE__BODY_HELLO;
	resp.hello = &hello;
	reply_ok(to, &resp);
	return 0;
}
