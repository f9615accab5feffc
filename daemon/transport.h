/*
 * The message transport of a cluster (expert parallelism), as a table of
 * operations.  The Open MPI implementation lives in its own module,
 * cluster/mpi.c, built as $(pkglibdir)/cluster/mpi.so when configured
 * --with-mpi and dlopen()ed by daemon/cluster_comm.c, so the moed binary never
 * links MPI: a host without Open MPI runs moed as before, and the Debian
 * package moed-mpi brings the module and libmpi together.
 *
 * Every operation is called from one thread only, the communication thread
 * that called init() (MPI_THREAD_FUNNELED is enough).  Sends are
 * non-blocking (a blocking send of a large message can deadlock two ranks
 * sending to each other); buffers stay the caller's until test() says done.
 */
#ifndef MOED_TRANSPORT_H
#define MOED_TRANSPORT_H

#include <stddef.h>

#define MOED_TRANSPORT_VERSION 1u
/* the largest message (MPI counts are int) */
#define MOED_TRANSPORT_MAX_MESSAGE ((size_t)0x7fffffff)

struct moed_transport {
	unsigned version;               /* MOED_TRANSPORT_VERSION */
	const char *name;               /* "mpi" */
	/* Join the job: rank and size; 0 or -errno with a reason in err. */
	int (*init)(int *ret_rank, int *ret_size, char *err, size_t errlen);
	/* Start sending len bytes to dest with tag; *ret_req is passed to test(). */
	int (*isend)(int dest, int tag, const void *buf, size_t len, void **ret_req);
	/* 1 when the send is complete (req is freed), 0 while pending, -errno. */
	int (*test)(void *req);
	/* Is a message waiting?  1 (source, tag and length set), 0 none, -errno. */
	int (*probe)(int *ret_source, int *ret_tag, size_t *ret_len);
	/* Receive the message probe() announced into buf (len bytes). */
	int (*recv)(int source, int tag, void *buf, size_t len);
	/* End the whole job now with exit code `code` (does not return). */
	void (*abort)(int code);
	/* Leave the job in order (every rank calls it once, at exit). */
	void (*finalize)(void);
	/* The library's own description, e.g. "Open MPI v4.1.4". */
	const char *(*library)(void);
};

/* The symbol a transport module exports. */
extern const struct moed_transport moed_transport_mpi;

#endif
