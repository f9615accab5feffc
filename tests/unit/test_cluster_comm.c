/*
 * The communication thread (daemon/cluster_comm.c) over a fake in-process
 * transport (tests/plugins/fake_transport.c, 4 ranks, rank 3 dead): messages
 * queued from any thread are sent, freed when complete and what arrives is
 * handed to the handler in order; a failed send is reported, not lost; the
 * joined callback runs before any message; a missing module, a module that
 * is not a transport and a failing init are clear errors; comm_launched()
 * reads only the launcher's environment.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/cluster_comm.h"

static char module[4096];

struct seen {
	pthread_mutex_t lock;
	int joined_rank, joined_size, joined_before_message;
	int n;
	int source[16], tag[16];
	char text[16][32];
	int failed_dest, failed_err, n_failed;
	unsigned ticks;
};

static int on_joined(void *ctx, int rank, int size)
{
	struct seen *s = ctx;

	s->joined_rank = rank;
	s->joined_size = size;
	s->joined_before_message = s->n == 0;
	return 0;
}

static void on_message(void *ctx, int source, int tag, void *buf, size_t len)
{
	struct seen *s = ctx;

	pthread_mutex_lock(&s->lock);
	if (s->n < 16) {
		s->source[s->n] = source;
		s->tag[s->n] = tag;
		snprintf(s->text[s->n], sizeof(s->text[0]), "%.*s", (int)len, (char *)buf);
		s->n++;
	}
	pthread_mutex_unlock(&s->lock);
	free(buf);
}

static void on_tick(void *ctx, uint64_t now)
{
	struct seen *s = ctx;

	(void)now;
	__atomic_fetch_add(&s->ticks, 1, __ATOMIC_RELAXED);
}

static void on_failed(void *ctx, int dest, int err)
{
	struct seen *s = ctx;

	pthread_mutex_lock(&s->lock);
	s->failed_dest = dest;
	s->failed_err = err;
	s->n_failed++;
	pthread_mutex_unlock(&s->lock);
}

static int wait_for(struct seen *s, int messages, int failures)
{
	for (int i = 0; i < 2000; i++) {
		int done;

		pthread_mutex_lock(&s->lock);
		done = s->n >= messages && s->n_failed >= failures;
		pthread_mutex_unlock(&s->lock);
		if (done)
			return 1;
		usleep(1000);
	}
	return 0;
}

static char *dup_text(const char *t)
{
	char *b = malloc(strlen(t));

	memcpy(b, t, strlen(t));        /* no terminator: lengths travel */
	return b;
}

static void test_roundtrip(void **state)
{
	struct seen s = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct comm_handler h = { .joined = on_joined, .message = on_message, .tick = on_tick,
				  .send_failed = on_failed, .ctx = &s };
	struct comm *c;
	int rank = -1, size = -1;
	char err[256];

	(void)state;
	assert_int_equal(comm_open(module, &h, &c, &rank, &size, err, sizeof(err)), 0);
	assert_int_equal(rank, 0);
	assert_int_equal(size, 4);
	assert_int_equal(s.joined_size, 4);
	assert_true(s.joined_before_message);
	assert_string_equal(comm_library(c), "fake transport");
	comm_busy(c, 1);
	assert_int_equal(comm_send(c, 1, 7, dup_text("first"), 5), 0);
	assert_int_equal(comm_send(c, 2, 8, dup_text("second"), 6), 0);
	assert_int_equal(comm_send(c, 3, 9, dup_text("to the dead"), 11), 0);
	assert_int_equal(comm_send(c, 1, 10, dup_text("third"), 5), 0);
	assert_true(wait_for(&s, 3, 1));
	comm_busy(c, -1);
	/* in order, each from the rank it went to, with its tag and bytes */
	assert_int_equal(s.n, 3);
	assert_int_equal(s.source[0], 1);
	assert_int_equal(s.tag[0], 7);
	assert_string_equal(s.text[0], "first");
	assert_int_equal(s.source[1], 2);
	assert_string_equal(s.text[1], "second");
	assert_int_equal(s.tag[2], 10);
	assert_string_equal(s.text[2], "third");
	/* the dead rank's send is reported with the transport's error */
	assert_int_equal(s.n_failed, 1);
	assert_int_equal(s.failed_dest, 3);
	assert_int_equal(s.failed_err, -EPIPE);
	assert_true(__atomic_load_n(&s.ticks, __ATOMIC_RELAXED) > 0);
	comm_close(c, 1000);
}

static void test_open_errors(void **state)
{
	struct seen s = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct comm_handler h = { .message = on_message, .send_failed = on_failed, .ctx = &s };
	char err[512], path[4200];
	struct comm *c;
	int rank, size;

	(void)state;
	assert_int_equal(comm_open("/nonexistent/mpi.so", &h, &c, &rank, &size, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "cannot load the MPI transport '/nonexistent/mpi.so'"));
	assert_non_null(strstr(err, "moed-mpi"));
	/* a module without the symbol: a plugin, not a transport */
	snprintf(path, sizeof(path), "%s/mock-router.so", getenv("MOED_TEST_MOCK_DIR"));
	assert_int_equal(comm_open(path, &h, &c, &rank, &size, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "is not a moed transport"));
	setenv("FAKE_INIT_FAIL", "1", 1);
	assert_int_equal(comm_open(module, &h, &c, &rank, &size, err, sizeof(err)), -EIO);
	assert_string_equal(err, "fake: init refused");
	unsetenv("FAKE_INIT_FAIL");
}

static void test_launched(void **state)
{
	(void)state;
	unsetenv("OMPI_COMM_WORLD_SIZE");
	unsetenv("PMI_SIZE");
	unsetenv("PMIX_RANK");
	assert_false(comm_launched());
	setenv("OMPI_COMM_WORLD_SIZE", "3", 1);
	assert_true(comm_launched());
	unsetenv("OMPI_COMM_WORLD_SIZE");
	setenv("PMIX_RANK", "0", 1);
	assert_true(comm_launched());
	unsetenv("PMIX_RANK");
}

int main(void)
{
	const char *dir = getenv("MOED_TEST_MOCK_DIR");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_launched),
	};

	if (!dir) {
		fprintf(stderr, "MOED_TEST_MOCK_DIR is not set (run through make check)\n");
		return 1;
	}
	snprintf(module, sizeof(module), "%s/fake-transport.so", dir);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
