/*
 * The communication thread of a cluster rank: the one thread that calls the
 * transport (daemon/transport.h, MPI_THREAD_FUNNELED), never the libuv loop.
 * Other threads queue messages with comm_send(); arriving messages are handed
 * to the handler on the communication thread, which must not block.
 *
 * The thread polls (MPI has nothing to wait on together with a condition
 * variable): after any activity it sleeps 20 us between polls, after 2 ms
 * idle 100 us, after 1 s idle 1 ms, and while comm_busy() holds it (someone
 * waits for an answer) never more than 20 us.  comm_send() wakes it at once.
 */
#ifndef MOED_CLUSTER_COMM_H
#define MOED_CLUSTER_COMM_H

#include <stddef.h>
#include <stdint.h>

struct comm;

struct comm_handler {
	/* once, after joining, before any message: 0, or -errno to leave */
	int (*joined)(void *ctx, int rank, int size);
	/* a message arrived: buf (malloc'ed, len bytes) now belongs to the callee */
	void (*message)(void *ctx, int source, int tag, void *buf, size_t len);
	/* every poll (about every 20 us to 1 ms): timeouts, heartbeats */
	void (*tick)(void *ctx, uint64_t now_ns);
	/* a send to dest failed (the rank is gone, or the transport broke) */
	void (*send_failed)(void *ctx, int dest, int err);
	void *ctx;
};

/* Load the transport module at `module` (NULL: $MOED_CLUSTER_MODULE, else
 * MOED_CLUSTER_DIR "/mpi.so"), start the thread, join the job.  The handler
 * is called from then on.  0, or -errno with a reason in err. */
int comm_open(const char *module, const struct comm_handler *h, struct comm **ret,
	      int *ret_rank, int *ret_size, char *err, size_t errlen);
/* Any thread: send len bytes of buf (malloc'ed; comm frees it when sent). */
int comm_send(struct comm *c, int dest, int tag, void *buf, size_t len);
/* Any thread: hold the poll interval at its shortest while > 0. */
void comm_busy(struct comm *c, int delta);
/* Flush queued sends (at most timeout_ms), stop the thread, leave the job,
 * free c.  NULL ok. */
void comm_close(struct comm *c, uint64_t timeout_ms);
/* Any thread: end the whole job with exit code `code`; does not return. */
__attribute__((noreturn)) void comm_abort(struct comm *c, int code);
/* "Open MPI v4.1.4" (the transport's own words). */
const char *comm_library(const struct comm *c);

/* Is this process one rank of an mpirun job?  (Open MPI's and the MPI
 * standard's launcher environment; reads nothing else.) */
int comm_launched(void);

#endif
