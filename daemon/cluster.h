/*
 * Expert parallelism over Open MPI: `mpirun -np N moed` is one job.  Rank 0,
 * the front, binds the sockets, talks to clients, routes, runs the shared
 * expert and combines; every rank (the front too unless [cluster]
 * front_computes = 0) holds a partition of every served layer's routed
 * experts and loads only those tensors.  Per batch the front sends each rank
 * that has pairs in it the tokens it needs (daemon/cluster_wire.h), computes
 * its own share meanwhile, and adds the ranks' partial sums in rank order
 * (so outputs equal a single process's up to fp32 summation order).
 *
 * Placement (daemon/placement.h) is versioned by epoch.  `cluster rebalance`
 * computes a balanced placement from the stats window's load, has every rank
 * map its new experts and create their layer objects (PREPARE), then switches
 * new batches to it at once; batches in flight finish on the epoch they
 * started with, and an epoch no batch uses any more is retired on every rank.
 *
 * MPI is not fault tolerant: a rank silent for [cluster] timeout_ms (ranks
 * send heartbeats) or a failed send ends the job: the front logs
 * "cluster: rank N ... lost", fails what is in flight with UNAVAILABLE and
 * exits non-zero (MPI_Abort ends the other ranks).  A dispatch unanswered
 * within timeout_ms fails its requests with UNAVAILABLE.
 *
 * Files: cluster.c (joining, placement epochs, the front's dispatch and
 * combine), cluster_rank.c (a rank's serving loop), cluster_admin.c (the
 * requests), cluster_comm.c (the communication thread), cluster_wire.h.
 */
#ifndef MOED_CLUSTER_H
#define MOED_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/conf.h"
#include "daemon/model.h"

struct cluster;
struct engine;

/* Join the job when this process was started by mpirun (else 0 and *ret
 * NULL).  1 when joined; -errno + err (no MPI module, bad [cluster] keys). */
int cluster_join(const struct moed_config *cfg, struct cluster **ret, char *err, size_t errlen);
int cluster_rank(const struct cluster *cl);     /* 0 = the front */
int cluster_size(const struct cluster *cl);
/* Which experts this rank loads (its share of the first placement). */
const struct model_want *cluster_model_want(struct cluster *cl);

/* A rank other than the front: load its experts, serve the front's batches
 * until it says stop or is lost; returns the process exit code. */
int cluster_rank_serve(struct cluster *cl, const struct moed_config *cfg);

/* The front, after engine_new() and before the expert backend is bound: give
 * every layer's expert spec the front's share of the first placement. */
int cluster_front_prepare(struct cluster *cl, struct engine *e, char *err, size_t errlen);
/* The front, after the plugins are bound: wait for every rank's hello (as
 * long as the ranks' heartbeats say they are alive: a rank may take long to
 * map its experts) and send the engine's batches through the cluster from
 * now on.  lost() is called on the loop when a rank is lost (then the
 * daemon stops and exits non-zero).  -errno + err. */
int cluster_front_start(struct cluster *cl, uv_loop_t *loop, struct engine *e,
			const struct moed_param *expert_params, size_t n_expert_params,
			void (*lost)(void *arg), void *arg, char *err, size_t errlen);
/* For the metrics: the front's counters (loop thread). */
struct cluster_rank_counters {
	uint64_t dispatches, bytes_out, bytes_in, compute_us;
};
struct cluster_counters {
	int ranks;
	uint64_t epoch;
	uint64_t calls, split_us, local_us, wait_us, combine_us;
};
/* *ret, and per rank 1.. into ret_ranks[rank] (at most max ranks). */
void cluster_counters(struct cluster *cl, struct cluster_counters *ret,
		      struct cluster_rank_counters *ret_ranks, size_t max);

/* The daemon's loop is closing: release the cluster's handles on it. */
void cluster_close_loop(struct cluster *cl);
/* At exit: tell the ranks to leave and leave, or end the whole job with
 * MPI_Abort (exit code 1) when `failing` (the front could not start) or a
 * rank was lost (or a rank's process on this host is gone).  NULL ok. */
void cluster_finish(struct cluster *cl, int failing);
/* Was a rank lost (the daemon must exit non-zero)? */
int cluster_failed(const struct cluster *cl);

#endif
