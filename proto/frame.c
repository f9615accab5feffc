/*
 * Length-prefixed framing.  The reader is a two-state machine (header, body)
 * driven by frame_reader_feed(); it never allocates before the length has passed
 * the cap, and it hands each completed body to the caller so that the next frame
 * starts clean.  The blocking helpers at the bottom serve moectl and tests.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/frame.h"

void frame_reader_init(struct frame_reader *r, size_t max_frame)
{
	memset(r, 0, sizeof(*r));
	r->max_frame = max_frame;
}

void frame_reader_release(struct frame_reader *r)
{
	free(r->body);
	r->body = NULL;
	r->hdr_have = r->body_have = r->body_len = 0;
}

int frame_reader_partial(const struct frame_reader *r)
{
	return r->hdr_have > 0;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

ssize_t frame_reader_feed(struct frame_reader *r, const uint8_t *data, size_t n,
			  uint8_t **ret_frame, size_t *ret_len)
{
	size_t used = 0;

	*ret_frame = NULL;
	if (r->hdr_have < FRAME_HEADER_BYTES) {
		size_t take = FRAME_HEADER_BYTES - r->hdr_have;
		if (take > n)
			take = n;
		memcpy(r->hdr + r->hdr_have, data, take);
		r->hdr_have += take;
		used += take;
		if (r->hdr_have < FRAME_HEADER_BYTES)
			return (ssize_t)used;
		r->body_len = be32(r->hdr);
		if (r->body_len == 0)
			return -EBADMSG;
		if (r->body_len > r->max_frame) {
			*ret_len = r->body_len;
			return -EMSGSIZE;
		}
		if (r->admit && r->admit(r->admit_arg, r->body_len) < 0) {
			*ret_len = r->body_len;
			return -ENOBUFS;
		}
		r->body = malloc(r->body_len);
		if (!r->body)
			return -ENOMEM;
		r->body_have = 0;
	}
	size_t take = r->body_len - r->body_have;
	if (take > n - used)
		take = n - used;
	memcpy(r->body + r->body_have, data + used, take);
	r->body_have += take;
	used += take;
	if (r->body_have == r->body_len) {
		*ret_frame = r->body;
		*ret_len = r->body_len;
		r->body = NULL;
		r->hdr_have = r->body_have = r->body_len = 0;
	}
	return (ssize_t)used;
}

int frame_encode(const ProtobufCMessage *msg, uint8_t **ret_buf, size_t *ret_len)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf;

	if (len > UINT32_MAX)
		return -EMSGSIZE;
	buf = malloc(FRAME_HEADER_BYTES + len);
	if (!buf)
		return -ENOMEM;
	buf[0] = (uint8_t)(len >> 24);
	buf[1] = (uint8_t)(len >> 16);
	buf[2] = (uint8_t)(len >> 8);
	buf[3] = (uint8_t)len;
	protobuf_c_message_pack(msg, buf + FRAME_HEADER_BYTES);
	*ret_buf = buf;
	*ret_len = FRAME_HEADER_BYTES + len;
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int frame_write_fd(int fd, const ProtobufCMessage *msg)
{
	uint8_t *buf;
	size_t len;
	int r = frame_encode(msg, &buf, &len);

	if (r < 0)
		return r;
	r = write_all(fd, buf, len);
	free(buf);
	return r;
}

int frame_read_fd(int fd, size_t max_frame, uint8_t **ret_frame, size_t *ret_len)
{
	struct frame_reader rd;
	uint8_t chunk[4096];

	frame_reader_init(&rd, max_frame);
	for (;;) {
		/* read at most what the current frame still needs: never past its end */
		size_t want = rd.hdr_have < FRAME_HEADER_BYTES ? FRAME_HEADER_BYTES - rd.hdr_have
							       : rd.body_len - rd.body_have;
		if (want > sizeof(chunk))
			want = sizeof(chunk);
		ssize_t n = read(fd, chunk, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = -errno;
			frame_reader_release(&rd);
			return e;
		}
		if (n == 0) {
			frame_reader_release(&rd);
			return -ECONNRESET;
		}
		uint8_t *frame;
		size_t len;
		ssize_t used = frame_reader_feed(&rd, chunk, (size_t)n, &frame, &len);
		if (used < 0) {
			frame_reader_release(&rd);
			return (int)used;
		}
		if (frame) {
			*ret_frame = frame;
			*ret_len = len;
			return 0;
		}
	}
}
