/*
 * The Open MPI transport of a moed cluster (see daemon/transport.h): a thin
 * layer over MPI point-to-point calls on MPI_COMM_WORLD, with errors
 * returned rather than aborting (MPI_ERRORS_RETURN), so the daemon decides
 * what a failed send means.  Built as a module loaded with RTLD_GLOBAL (Open
 * MPI's own components resolve symbols of libmpi).  Messages are MPI_BYTE
 * runs; only the thread that called init() calls anything here.
 */
#include "config.h"

#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/transport.h"

static int mpi_init(int *ret_rank, int *ret_size, char *err, size_t errlen)
{
	int provided = 0, r;

	r = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
	if (r != MPI_SUCCESS) {
		snprintf(err, errlen, "MPI_Init_thread failed (%d)", r);
		return -EIO;
	}
	if (provided < MPI_THREAD_FUNNELED) {
		snprintf(err, errlen, "the MPI library gives thread level %d, moed needs "
			 "MPI_THREAD_FUNNELED", provided);
		MPI_Finalize();
		return -ENOTSUP;
	}
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	MPI_Comm_rank(MPI_COMM_WORLD, ret_rank);
	MPI_Comm_size(MPI_COMM_WORLD, ret_size);
	return 0;
}

static int mpi_isend(int dest, int tag, const void *buf, size_t len, void **ret_req)
{
	MPI_Request *req;

	if (len > MOED_TRANSPORT_MAX_MESSAGE)
		return -EMSGSIZE;
	req = malloc(sizeof(*req));
	if (!req)
		return -ENOMEM;
	if (MPI_Isend(buf, (int)len, MPI_BYTE, dest, tag, MPI_COMM_WORLD, req) != MPI_SUCCESS) {
		free(req);
		return -EIO;
	}
	*ret_req = req;
	return 0;
}

static int mpi_test(void *req)
{
	int done = 0;

	if (MPI_Test(req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
		return -EIO;
	if (done)
		free(req);
	return done;
}

static int mpi_probe(int *ret_source, int *ret_tag, size_t *ret_len)
{
	MPI_Status st;
	int flag = 0, count = 0;

	if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st) != MPI_SUCCESS)
		return -EIO;
	if (!flag)
		return 0;
	MPI_Get_count(&st, MPI_BYTE, &count);
	*ret_source = st.MPI_SOURCE;
	*ret_tag = st.MPI_TAG;
	*ret_len = (size_t)count;
	return 1;
}

static int mpi_recv(int source, int tag, void *buf, size_t len)
{
	if (MPI_Recv(buf, (int)len, MPI_BYTE, source, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE) !=
	    MPI_SUCCESS)
		return -EIO;
	return 0;
}

static void mpi_abort(int code)
{
	MPI_Abort(MPI_COMM_WORLD, code);
	exit(code);
}

static void mpi_finalize(void)
{
	MPI_Finalize();
}

static const char *mpi_library(void)
{
	static char v[MPI_MAX_LIBRARY_VERSION_STRING];
	int n = 0;

	if (!v[0]) {
		MPI_Get_library_version(v, &n);
		v[strcspn(v, ",\n")] = '\0';
	}
	return v;
}

__attribute__((visibility("default")))
const struct moed_transport moed_transport_mpi = {
	.version = MOED_TRANSPORT_VERSION,
	.name = "mpi",
	.init = mpi_init,
	.isend = mpi_isend,
	.test = mpi_test,
	.probe = mpi_probe,
	.recv = mpi_recv,
	.abort = mpi_abort,
	.finalize = mpi_finalize,
	.library = mpi_library,
};
