/*
 * Client connection.  Every wait is a poll() with the remaining timeout, so a
 * daemon that stops answering makes moectl fail with a reason instead of hang.
 * Replies with an id other than the one awaited are skipped (none should come:
 * moectl never pipelines).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "client/conn.h"
#include "client/moectl.h"
#include "proto/frame.h"

#define CLIENT_MAX_FRAME (1u << 30)

static const char *status_name(Moed__Status s)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&moed__status__descriptor, s);

	return v ? v->name : "UNKNOWN";
}

static int fail(const struct conn *c, const char *what, int e)
{
	fprintf(stderr, "moectl: %s '%s': %s\n", what, c->path, strerror(e));
	return EXIT_UNREACHABLE;
}

static int wait_readable(const struct conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	int r;

	do
		r = poll(&p, 1, c->timeout_ms > 0 ? c->timeout_ms : -1);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return -ETIMEDOUT;
	return r < 0 ? -errno : 0;
}

static int exchange(struct conn *c, Moed__Request *req, Moed__Response **ret)
{
	uint8_t *frame;
	size_t len;
	int r;

	req->id = ++c->next_id;
	r = frame_write_fd(c->fd, &req->base);
	if (r < 0)
		return fail(c, "cannot send to moed at", -r);
	for (;;) {
		r = wait_readable(c);
		if (r < 0) {
			if (r == -ETIMEDOUT) {
				fprintf(stderr, "moectl: no reply from moed at '%s' within %d ms\n",
					c->path, c->timeout_ms);
				return EXIT_UNREACHABLE;
			}
			return fail(c, "lost moed at", -r);
		}
		r = frame_read_fd(c->fd, CLIENT_MAX_FRAME, &frame, &len);
		if (r < 0)
			return fail(c, r == -ECONNRESET ? "moed closed the connection at"
							 : "cannot read from moed at", -r);
		Moed__Response *resp = moed__response__unpack(NULL, len, frame);
		free(frame);
		if (!resp) {
			fprintf(stderr, "moectl: protocol error: undecodable reply from '%s'\n", c->path);
			return EXIT_UNREACHABLE;
		}
		if (resp->id == req->id || resp->id == 0) {
			*ret = resp;
			return EXIT_OK;
		}
		moed__response__free_unpacked(resp, NULL);
	}
}

int conn_call(struct conn *c, Moed__Request *req, Moed__Response **ret_resp)
{
	Moed__Response *resp = NULL;
	int r = exchange(c, req, &resp);

	*ret_resp = NULL;
	if (r != EXIT_OK)
		return r;
	if (resp->status != MOED__STATUS__OK) {
		fprintf(stderr, "moectl: %s: %s\n", status_name(resp->status),
			resp->message ? resp->message : "(no message)");
		moed__response__free_unpacked(resp, NULL);
		return EXIT_SERVER;
	}
	*ret_resp = resp;
	return EXIT_OK;
}

int conn_open(struct conn *c, const char *path, int timeout_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__HelloRequest hello = MOED__HELLO_REQUEST__INIT;
	Moed__Response *resp;
	int r;

	c->path = path;
	c->timeout_ms = timeout_ms;
	c->next_id = 0;
	c->fd = -1;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "moectl: socket path '%s' is longer than %zu bytes\n", path,
			sizeof(sa.sun_path) - 1);
		return EXIT_USAGE;
	}
	memcpy(sa.sun_path, path, strlen(path));
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = fail(c, "cannot connect to moed at", errno);
		conn_close(c);
		return r;
	}
	hello.protocol_version = 1;
	hello.client = "moectl/" PACKAGE_VERSION;
	req.body_case = MOED__REQUEST__BODY_HELLO;
	req.hello = &hello;
	r = conn_call(c, &req, &resp);
	if (r != EXIT_OK) {
		conn_close(c);
		return r == EXIT_SERVER ? EXIT_UNREACHABLE : r;
	}
	moed__response__free_unpacked(resp, NULL);
	return EXIT_OK;
}

void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}
