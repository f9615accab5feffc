/*
 * Fuzz target: the daemon's request path up to dispatch — the stream is cut
 * into frames by the incremental reader (with a small cap), each frame is
 * decoded as a moed.Request with the same byte-budgeted allocator, and every
 * tensor it carries goes through tensor_check().
 */
#include <stdint.h>
#include <stdlib.h>

#include "proto/frame.h"
#include "proto/moed.pb-c.h"
#include "proto/tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct budget {
	size_t left;
};

static void *b_alloc(void *d, size_t n)
{
	struct budget *b = d;

	if (n > b->left)
		return NULL;
	b->left -= n;
	return malloc(n);
}

static void b_free(void *d, void *p)
{
	free(p);
}

static void check_request(const Moed__Request *req)
{
	char err[256];
	const Moed__Tensor *t = NULL;

	if (req->body_case == MOED__REQUEST__BODY_INFER && req->infer)
		t = req->infer->hidden;
	else if (req->body_case == MOED__REQUEST__BODY_ROUTE && req->route)
		t = req->route->hidden;
	if (t)
		tensor_check(t, MOED__DTYPE__F32, 2, err, sizeof(err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct frame_reader r;
	size_t off = 0;

	frame_reader_init(&r, 1 << 16);
	while (off < size) {
		uint8_t *frame;
		size_t len;
		ssize_t used = frame_reader_feed(&r, data + off, size - off, &frame, &len);
		if (used < 0)
			break;
		off += (size_t)used;
		if (frame) {
			struct budget b = { 4 * len + (256u << 10) };
			ProtobufCAllocator a = { b_alloc, b_free, &b };
			Moed__Request *req = moed__request__unpack(&a, len, frame);
			if (req) {
				check_request(req);
				moed__request__free_unpacked(req, NULL);
			}
			free(frame);
		}
	}
	frame_reader_release(&r);
	return 0;
}
