/*
 * A fake transport for tests/unit/test_cluster_comm: a job of FAKE_SIZE
 * ranks in one process, this one rank 0.  A message sent to rank r comes
 * back as if rank r had sent it (tag and bytes unchanged), once its send has
 * been tested twice (so sends are pending for a while, as with MPI); sends
 * to rank FAKE_DEAD fail, as to a dead peer.  FAKE_INIT_FAIL in the
 * environment makes init fail.  Only the communication thread calls it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/transport.h"

#define FAKE_SIZE 4
#define FAKE_DEAD 3

struct msg {
	struct msg *next;
	int source, tag;
	size_t len;
	char *buf;
	int tests;              /* test() calls so far */
	int delivered;
};

static struct msg *sent, **sent_tail = &sent;

static int fake_init(int *ret_rank, int *ret_size, char *err, size_t errlen)
{
	if (getenv("FAKE_INIT_FAIL")) {
		snprintf(err, errlen, "fake: init refused");
		return -EIO;
	}
	*ret_rank = 0;
	*ret_size = FAKE_SIZE;
	return 0;
}

static int fake_isend(int dest, int tag, const void *buf, size_t len, void **ret_req)
{
	struct msg *m;

	if (dest == FAKE_DEAD)
		return -EPIPE;
	m = calloc(1, sizeof(*m));
	if (!m || !(m->buf = malloc(len ? len : 1))) {
		free(m);
		return -ENOMEM;
	}
	memcpy(m->buf, buf, len);
	m->source = dest;
	m->tag = tag;
	m->len = len;
	*sent_tail = m;
	sent_tail = &m->next;
	*ret_req = m;
	return 0;
}

static int fake_test(void *req)
{
	struct msg *m = req;

	return ++m->tests >= 2;
}

static struct msg *next_arrival(void)
{
	for (struct msg *m = sent; m; m = m->next)
		if (!m->delivered && m->tests >= 2)
			return m;
	return NULL;
}

static int fake_probe(int *ret_source, int *ret_tag, size_t *ret_len)
{
	struct msg *m = next_arrival();

	if (!m)
		return 0;
	*ret_source = m->source;
	*ret_tag = m->tag;
	*ret_len = m->len;
	return 1;
}

static int fake_recv(int source, int tag, void *buf, size_t len)
{
	struct msg *m = next_arrival();

	if (!m || m->source != source || m->tag != tag || m->len != len)
		return -EPROTO;
	memcpy(buf, m->buf, len);
	m->delivered = 1;
	return 0;
}

static void fake_abort(int code)
{
	exit(code);
}

static void fake_finalize(void)
{
	while (sent) {
		struct msg *m = sent;

		sent = m->next;
		free(m->buf);
		free(m);
	}
	sent_tail = &sent;
}

static const char *fake_library(void)
{
	return "fake transport";
}

__attribute__((visibility("default")))
const struct moed_transport moed_transport_mpi = {
	.version = MOED_TRANSPORT_VERSION,
	.name = "fake",
	.init = fake_init,
	.isend = fake_isend,
	.test = fake_test,
	.probe = fake_probe,
	.recv = fake_recv,
	.abort = fake_abort,
	.finalize = fake_finalize,
	.library = fake_library,
};
