/*
 * Framing unit tests: the incremental reader against split headers, byte-by-byte
 * delivery, several frames in one read, the length cap (checked before any body
 * is allocated), zero and 2^32-1 lengths, and an encode/read round trip over a
 * socketpair.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "proto/frame.h"
#include "proto/moed.pb-c.h"

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void test_byte_by_byte(void **state)
{
	uint8_t wire[4 + 5] = { 0 }, *frame = NULL;
	struct frame_reader r;
	size_t len = 0;

	put_be32(wire, 5);
	memcpy(wire + 4, "hello", 5);
	frame_reader_init(&r, 100);
	for (size_t i = 0; i < sizeof(wire); i++) {
		assert_null(frame);
		assert_int_equal(frame_reader_feed(&r, wire + i, 1, &frame, &len), 1);
		if (i < sizeof(wire) - 1)
			assert_true(frame_reader_partial(&r));
	}
	assert_non_null(frame);
	assert_int_equal(len, 5);
	assert_memory_equal(frame, "hello", 5);
	assert_false(frame_reader_partial(&r));
	free(frame);
	frame_reader_release(&r);
}

static void test_two_frames_one_read(void **state)
{
	uint8_t wire[4 + 3 + 4 + 2], *frame;
	struct frame_reader r;
	size_t len;
	ssize_t used;

	put_be32(wire, 3);
	memcpy(wire + 4, "abc", 3);
	put_be32(wire + 7, 2);
	memcpy(wire + 11, "de", 2);
	frame_reader_init(&r, 100);
	used = frame_reader_feed(&r, wire, sizeof(wire), &frame, &len);
	assert_int_equal(used, 7);              /* stops at the end of the first frame */
	assert_int_equal(len, 3);
	assert_memory_equal(frame, "abc", 3);
	free(frame);
	used = frame_reader_feed(&r, wire + 7, sizeof(wire) - 7, &frame, &len);
	assert_int_equal(used, 6);
	assert_int_equal(len, 2);
	assert_memory_equal(frame, "de", 2);
	free(frame);
	frame_reader_release(&r);
}

static void test_split_header(void **state)
{
	uint8_t wire[4 + 4], *frame;
	struct frame_reader r;
	size_t len;

	put_be32(wire, 4);
	memcpy(wire + 4, "wxyz", 4);
	frame_reader_init(&r, 100);
	assert_int_equal(frame_reader_feed(&r, wire, 2, &frame, &len), 2);
	assert_null(frame);
	assert_int_equal(frame_reader_feed(&r, wire + 2, 3, &frame, &len), 3);
	assert_null(frame);
	assert_int_equal(frame_reader_feed(&r, wire + 5, 3, &frame, &len), 3);
	assert_non_null(frame);
	assert_memory_equal(frame, "wxyz", 4);
	free(frame);
	frame_reader_release(&r);
}

static void test_oversize(void **state)
{
	uint32_t lens[] = { 101, 0xffffffffu, 1u << 31 };

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint8_t hdr[4], *frame;
		struct frame_reader r;
		size_t len = 0;

		put_be32(hdr, lens[i]);
		frame_reader_init(&r, 100);
		assert_int_equal(frame_reader_feed(&r, hdr, 4, &frame, &len), -EMSGSIZE);
		assert_int_equal(len, lens[i]);
		assert_null(r.body);            /* nothing allocated for it */
		frame_reader_release(&r);
	}
}

static void test_exact_cap_and_zero(void **state)
{
	uint8_t wire[4 + 100] = { 0 }, *frame;
	struct frame_reader r;
	size_t len;

	put_be32(wire, 100);
	frame_reader_init(&r, 100);
	assert_int_equal(frame_reader_feed(&r, wire, sizeof(wire), &frame, &len), 104);
	assert_int_equal(len, 100);
	free(frame);
	put_be32(wire, 0);
	assert_int_equal(frame_reader_feed(&r, wire, 4, &frame, &len), -EBADMSG);
	frame_reader_release(&r);
}

static void test_roundtrip_socketpair(void **state)
{
	Moed__Request req = MOED__REQUEST__INIT, *back;
	Moed__HelloRequest hello = MOED__HELLO_REQUEST__INIT;
	uint8_t *frame;
	size_t len;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	req.id = 0x123456789abcULL;
	req.body_case = MOED__REQUEST__BODY_HELLO;
	req.hello = &hello;
	hello.protocol_version = 1;
	hello.client = "test";
	assert_int_equal(frame_write_fd(sv[0], &req.base), 0);
	assert_int_equal(frame_write_fd(sv[0], &req.base), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(frame_read_fd(sv[1], 1024, &frame, &len), 0);
		back = moed__request__unpack(NULL, len, frame);
		assert_non_null(back);
		assert_int_equal(back->id, 0x123456789abcULL);
		assert_int_equal(back->body_case, MOED__REQUEST__BODY_HELLO);
		assert_string_equal(back->hello->client, "test");
		moed__request__free_unpacked(back, NULL);
		free(frame);
	}
	/* a reader with a smaller cap refuses the same frame */
	assert_int_equal(frame_write_fd(sv[0], &req.base), 0);
	assert_int_equal(frame_read_fd(sv[1], 4, &frame, &len), -EMSGSIZE);
	close(sv[0]);
	close(sv[1]);
	/* peer gone in the middle of a frame */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	uint8_t partial[4 + 3] = { 0, 0, 0, 10, 'a', 'b', 'c' };
	assert_int_equal(write(sv[0], partial, sizeof(partial)), (ssize_t)sizeof(partial));
	close(sv[0]);
	assert_int_equal(frame_read_fd(sv[1], 1024, &frame, &len), -ECONNRESET);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_two_frames_one_read),
		cmocka_unit_test(test_split_header),
		cmocka_unit_test(test_oversize),
		cmocka_unit_test(test_exact_cap_and_zero),
		cmocka_unit_test(test_roundtrip_socketpair),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
