/*
 * Client connection.  Each call has one deadline: the wait for the reply is a
 * poll() with what is left of it, and SO_RCVTIMEO/SO_SNDTIMEO bound the
 * blocking reads and writes inside a frame, so a daemon that stops answering
 * (or stops reading) makes moectl fail with a reason instead of hang.
 *
 * The hello is pipelined: conn_open sends it and returns, and the first
 * conn_call writes its request right behind it, then reads the hello's reply
 * before its own (the daemon answers a connection's frames in order, and
 * refuses anything after a refused hello).  A one-shot command so waits for
 * one round trip instead of two.  Other replies with an id other than the one
 * awaited are skipped (none should come); id 0 is the daemon's answer to a
 * frame it could not read as a request, and is taken as the reply.  When the daemon closes the
 * connection while a request is still being written (it does so after an
 * oversized frame), the reply it sent before closing is read and shown, since
 * it says why.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "client/conn.h"
#include "common/clock.h"
#include "client/moectl.h"
#include "proto/frame.h"
#include "proto/protocol.h"

/* After a failed write: how long to wait for the daemon's last word. */
#define LAST_WORD_MS 200

static const char *status_name(Moed__Status s)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&moed__status__descriptor,
									   s);

	return v ? v->name : "UNKNOWN";
}

/* The response body that answers a request body: the request table's row. */
static Moed__Response__BodyCase answer_to(Moed__Request__BodyCase q)
{
	const struct request_kind *k = request_kind_of(q);

	return k ? k->reply : MOED__RESPONSE__BODY__NOT_SET;
}

static int fail(const struct conn *c, const char *what, int e)
{
	fprintf(stderr, "moectl: %s '%s': %s\n", what, c->path, strerror(e));
	return EXIT_UNREACHABLE;
}

static int timed_out(const struct conn *c)
{
	fprintf(stderr, "moectl: no reply from moed at '%s' within %d ms\n", c->path,
		c->timeout_ms);
	return EXIT_UNREACHABLE;
}

static int64_t now_ms(void)
{
	return (int64_t)(mono_ns() / 1000000u);
}

/* Wait until fd is readable or deadline (ms, CLOCK_MONOTONIC; < 0 none) passes. */
static int wait_readable(int fd, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r, wait;

	do {
		wait = -1;
		if (deadline >= 0) {
			int64_t left = deadline - now_ms();
			wait = left > 0 ? (int)left : 0;
		}
		r = poll(&p, 1, wait);
	} while (r < 0 && errno == EINTR);
	if (r == 0)
		return -ETIMEDOUT;
	return r < 0 ? -errno : 0;
}

static int set_io_timeouts(int fd, int timeout_ms)
{
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = timeout_ms % 1000 * 1000 };

	if (timeout_ms <= 0)
		return 0;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	return 0;
}

/* Read one Response frame; 0, -ETIMEDOUT, -EBADMSG (undecodable) or -errno. */
static int read_response(const struct conn *c, int64_t deadline, Moed__Response **ret)
{
	Moed__Response *resp;
	uint8_t *frame;
	size_t len;
	int r;

	r = wait_readable(c->fd, deadline);
	if (r < 0)
		return r;
	r = frame_read_fd(c->fd, CONN_MAX_FRAME, &frame, &len);
	if (r == -EAGAIN || r == -EWOULDBLOCK)
		return -ETIMEDOUT;
	if (r < 0)
		return r;
	resp = moed__response__unpack(NULL, len, frame);
	free(frame);
	if (!resp)
		return -EBADMSG;
	*ret = resp;
	return 0;
}

static int read_failed(const struct conn *c, int r)
{
	switch (r) {
	case -ETIMEDOUT:
		return timed_out(c);
	case -EBADMSG:
		fprintf(stderr, "moectl: protocol error: undecodable reply from moed at '%s'\n",
			c->path);
		return EXIT_UNREACHABLE;
	case -EMSGSIZE:
		fprintf(stderr, "moectl: protocol error: reply from moed at '%s' exceeds %u bytes\n",
			c->path, CONN_MAX_FRAME);
		return EXIT_UNREACHABLE;
	case -ECONNRESET:
		return fail(c, "moed closed the connection at", ECONNRESET);
	default:
		return fail(c, "cannot read from moed at", -r);
	}
}

/* Print a non-OK reply as "moectl: STATUS: message"; EXIT_SERVER. */
static int server_error(const Moed__Response *resp)
{
	fprintf(stderr, "moectl: %s: %s\n", status_name(resp->status),
		resp->message && *resp->message ? resp->message : "(no message)");
	return EXIT_SERVER;
}

/* The daemon hung up on a request being written: show its reason if it gave one. */
static int send_failed(const struct conn *c, int r)
{
	Moed__Response *resp = NULL;

	if ((r == -EPIPE || r == -ECONNRESET) &&
	    read_response(c, now_ms() + LAST_WORD_MS, &resp) == 0) {
		if (resp->status != MOED__STATUS__OK) {
			r = server_error(resp);
			moed__response__free_unpacked(resp, NULL);
			return r;
		}
		moed__response__free_unpacked(resp, NULL);
	}
	if (r == -EAGAIN || r == -EWOULDBLOCK) {
		fprintf(stderr, "moectl: moed at '%s' did not take the request within %d ms\n",
			c->path, c->timeout_ms);
		return EXIT_UNREACHABLE;
	}
	return fail(c, "cannot send to moed at", -r);
}

/* The pipelined hello's reply (freed here): a refusal, or a protocol moectl
 * does not speak, means this daemon cannot be talked to at all. */
static int hello_reply(struct conn *c, Moed__Response *resp)
{
	int r = EXIT_UNREACHABLE;

	c->hello_id = 0;
	if (resp->status != MOED__STATUS__OK)
		server_error(resp);
	else if (resp->body_case != MOED__RESPONSE__BODY_HELLO)
		fprintf(stderr, "moectl: protocol error: moed at '%s' answered hello with body %u\n",
			c->path, (unsigned)resp->body_case);
	else if (resp->hello->protocol_version < MOED_PROTOCOL_VERSION_MIN ||
		 resp->hello->protocol_version > MOED_PROTOCOL_VERSION)
		fprintf(stderr, "moectl: protocol error: moed at '%s' (%s) speaks protocol %u, moectl %u..%u\n",
			c->path, resp->hello->server_version, resp->hello->protocol_version,
			MOED_PROTOCOL_VERSION_MIN, MOED_PROTOCOL_VERSION);
	else
		r = EXIT_OK;
	moed__response__free_unpacked(resp, NULL);
	return r;
}

int conn_call(struct conn *c, Moed__Request *req, Moed__Response **ret_resp)
{
	Moed__Response__BodyCase want = answer_to(req->body_case);
	int64_t deadline = c->timeout_ms > 0 ? now_ms() + c->timeout_ms : -1;
	Moed__Response *resp = NULL;
	int r;

	*ret_resp = NULL;
	req->id = ++c->next_id;
	r = frame_write_fd(c->fd, &req->base);
	if (r < 0)
		return send_failed(c, r);
	for (;;) {
		r = read_response(c, deadline, &resp);
		if (r < 0) {
			r = read_failed(c, r);
			return c->hello_id ? EXIT_UNREACHABLE : r;
		}
		if (c->hello_id && resp->id == c->hello_id) {
			/* the hello, answered before anything after it */
			r = hello_reply(c, resp);
			if (r != EXIT_OK)
				return r;
			continue;
		}
		if (resp->id == req->id || resp->id == 0)
			break;
		moed__response__free_unpacked(resp, NULL);
	}
	c->hello_id = 0;
	if (resp->status != MOED__STATUS__OK) {
		r = server_error(resp);
		goto fail;
	}
	if (resp->message && *resp->message)
		fprintf(stderr, "moectl: %s\n", resp->message);       /* a warning with an OK answer */
	if (resp->body_case != want) {
		fprintf(stderr, "moectl: protocol error: moed at '%s' answered request %u with body %u\n",
			c->path, (unsigned)req->body_case, (unsigned)resp->body_case);
		r = EXIT_UNREACHABLE;
		goto fail;
	}
	*ret_resp = resp;
	return EXIT_OK;
fail:
	moed__response__free_unpacked(resp, NULL);
	return r;
}

int conn_open(struct conn *c, const char *path, int timeout_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__HelloRequest hello = MOED__HELLO_REQUEST__INIT;
	size_t len = strlen(path);
	int r;

	c->path = path;
	c->timeout_ms = timeout_ms;
	c->next_id = 0;
	c->hello_id = 0;
	c->fd = -1;
	if (len == 0 || len >= sizeof(sa.sun_path)) {
		fprintf(stderr, "moectl: socket path '%s' is %s (a Unix socket path has 1..%zu bytes)\n",
			path, len ? "too long" : "empty", sizeof(sa.sun_path) - 1);
		return EXIT_USAGE;
	}
	memcpy(sa.sun_path, path, len);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return fail(c, "cannot create a socket for", errno);
	/* SO_SNDTIMEO also bounds connect() on a daemon whose backlog is full */
	r = set_io_timeouts(c->fd, timeout_ms);
	if (r < 0) {
		r = fail(c, "cannot set timeouts on the socket for", -r);
		goto fail;
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EAGAIN || errno == EINPROGRESS) {
			fprintf(stderr, "moectl: moed at '%s' did not accept within %d ms\n",
				path, timeout_ms);
			r = EXIT_UNREACHABLE;
		} else {
			r = fail(c, "cannot connect to moed at", errno);
		}
		goto fail;
	}
	hello.protocol_version = MOED_PROTOCOL_VERSION;
	hello.has_min_protocol_version = hello.has_max_protocol_version = 1;
	hello.min_protocol_version = MOED_PROTOCOL_VERSION_MIN;
	hello.max_protocol_version = MOED_PROTOCOL_VERSION;
	hello.client = "moectl/" PACKAGE_VERSION;
	req.body_case = MOED__REQUEST__BODY_HELLO;
	req.hello = &hello;
	req.id = ++c->next_id;
	r = frame_write_fd(c->fd, &req.base);
	if (r < 0) {
		/* a daemon that hangs up on a hello cannot be talked to at all */
		send_failed(c, r);
		r = EXIT_UNREACHABLE;
		goto fail;
	}
	c->hello_id = req.id;   /* its reply is read by the first conn_call */
	return EXIT_OK;
fail:
	conn_close(c);
	return r;
}

void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}
