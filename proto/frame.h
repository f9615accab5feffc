/*
 * Stream framing shared by moed and moectl: a 4-byte big-endian length, then that
 * many bytes of one protobuf message.
 *
 * The reader is incremental and allocation-safe: it validates the length against
 * its cap as soon as the 4 header bytes are in (they may arrive split across
 * reads) and only then allocates the body.  Feed it whatever the socket produced;
 * it stops consuming at the end of each complete frame and hands that frame over.
 */
#ifndef MOED_FRAME_H
#define MOED_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

#define FRAME_HEADER_BYTES 4u

struct frame_reader {
	uint8_t hdr[FRAME_HEADER_BYTES];
	size_t hdr_have;
	uint8_t *body;          /* owned while a frame is being assembled */
	size_t body_len;
	size_t body_have;
	size_t max_frame;       /* largest accepted body length */
	/* Optional: asked before a body of len bytes is allocated; < 0 refuses
	 * it (feed returns -ENOBUFS).  For a budget over many readers. */
	int (*admit)(void *arg, size_t len);
	void *admit_arg;
};

void frame_reader_init(struct frame_reader *r, size_t max_frame);
void frame_reader_release(struct frame_reader *r);   /* frees a partial body */
/* Is a frame partly received (header or body bytes held)? */
int frame_reader_partial(const struct frame_reader *r);

/* Consume up to n bytes.  Returns the number consumed (>= 0), or
 *   -EMSGSIZE  the announced length exceeds max_frame (*ret_len says how much),
 *   -EBADMSG   the announced length is zero,
 *   -ENOBUFS   admit() refused the announced length (*ret_len says how much),
 *   -ENOMEM.
 * When a frame completes, consumption stops there and *ret_frame gets the body
 * (malloc'ed, the caller frees it) and *ret_len its length; otherwise *ret_frame is
 * set to NULL.  After an error the reader must not be fed again. */
ssize_t frame_reader_feed(struct frame_reader *r, const uint8_t *data, size_t n,
			  uint8_t **ret_frame, size_t *ret_len);

/* Serialise msg behind a length header into one malloc'ed buffer. */
int frame_encode(const ProtobufCMessage *msg, uint8_t **ret_buf, size_t *ret_len);

/* Blocking helpers for clients: write one frame; read one frame (caller frees). */
int frame_write_fd(int fd, const ProtobufCMessage *msg);
int frame_read_fd(int fd, size_t max_frame, uint8_t **ret_frame, size_t *ret_len);

#endif
