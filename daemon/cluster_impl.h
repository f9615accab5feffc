/*
 * The cluster's state, shared by cluster.c (joining, epochs, the front's
 * dispatch), cluster_rank.c (a rank's loop) and cluster_admin.c (requests).
 * `lock` guards what both the communication thread and other threads touch:
 * peers, epochs' reference counts, pending dispatches, the loss flag and the
 * event queue handed to the loop.
 */
#ifndef MOED_CLUSTER_IMPL_H
#define MOED_CLUSTER_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "daemon/cluster.h"
#include "daemon/cluster_comm.h"
#include "daemon/engine.h"
#include "daemon/placement.h"

struct cluster_peer {
	char host[64];
	uint32_t pid;
	uint64_t bytes;                 /* routed-expert bytes it holds (hello, counts) */
	int hello;
	uint64_t last_seen_ns;          /* any message from it */
	uint64_t last_sent_ns;          /* our last message to it */
	uint64_t dispatches;            /* batches sent to it */
	uint64_t bytes_out, bytes_in;   /* dispatch and result bytes */
	uint64_t compute_ns;            /* its compute for our batches (results say) */
};

/* The front's cost of dispatch and combine since start (atomic adds). */
struct cluster_cost {
	uint64_t calls, split_ns, local_ns, wait_ns, combine_ns;
};

/* One placement generation.  refs: batches using it + 1 while current. */
struct cluster_epoch {
	uint64_t epoch;
	unsigned refs;
	int retired;                    /* its live reference is dropped */
	uint32_t n_layers;              /* the engine's layers, in its order */
	struct placement *p;            /* [n_layers] */
	uint8_t **mask;                 /* [n_layers][E]: experts this rank holds */
	struct binding **b;             /* [n_layers]: this rank's layer objects */
	struct cluster_epoch *next;     /* live epochs, newest first */
};

/* A dispatch waiting for its ranks' results. */
struct cluster_pending {
	uint64_t id;
	int n_wait;
	void **res;                     /* [size] result messages, owned */
	size_t *res_len;
	struct cluster_pending *next;
};

/* A message the loop handles (PREPARED, COUNTS on the front; everything a
 * rank serves). */
struct cluster_event {
	struct cluster_event *next;
	int source, tag;
	void *buf;
	size_t len;
};

struct cluster_admin;

struct cluster {
	struct comm *comm;
	int rank, size;
	enum placement_kind kind;
	uint32_t replicas;
	int front_computes;
	uint64_t timeout_ns, heartbeat_ns;
	struct model_want want;         /* the first placement's share of this rank */
	struct placement first;         /* computed once the model's E is known */
	uint32_t first_E;
	int first_done;
	uint8_t *computes;              /* [size] */
	uint8_t **front_masks;          /* the front: the first placement's share, per layer
					 * (the engine's expert specs point at them) */
	uint32_t n_front_masks;
	char host[64];
	uint64_t **front_computed;      /* the front: [n_layers][E] pairs computed here */
	struct cluster_epoch *preparing;        /* an epoch being mapped in, or NULL */
	int rebalanced;
	struct cluster_cost cost;

	pthread_mutex_t lock;
	pthread_cond_t cond;            /* results, hellos, loss */
	struct cluster_peer *peers;     /* [size] */
	struct cluster_epoch *current, *epochs;
	struct cluster_pending *pending;
	uint64_t next_id;
	atomic_uint_fast64_t token_seq;
	int lost_rank;                  /* -1 = none */
	char lost_why[160];
	int loss_reported;
	struct cluster_event *events, **events_tail;
	uint64_t front_seen_ns;         /* ranks: last message from the front */
	void *hello;                    /* ranks: our hello, sent again with every
					 * heartbeat until the front acknowledges it */
	size_t hello_len;
	int hello_acked;

	uv_loop_t *loop;
	uv_async_t async;
	int async_open;
	struct engine *engine;
	const struct moed_param *expert_params;
	size_t n_expert_params;
	void (*on_lost)(void *arg);
	void *lost_arg;
	struct cluster_admin *admin;    /* cluster_admin.c's requests in progress */
	struct cluster_rank_state *rs;  /* cluster_rank.c */
};

/* cluster.c, for the others */
void cluster_epoch_unref(struct cluster *cl, struct cluster_epoch *ep);     /* under lock */
struct cluster_epoch *cluster_epoch_new(uint32_t n_layers, uint64_t epoch);
void cluster_epoch_free(struct cluster_epoch *ep);
/* The flags of the experts rank r holds under p, malloc'ed [E]. */
uint8_t *cluster_mask(const struct placement *p, int r);
void cluster_lose(struct cluster *cl, int rank, const char *why);   /* under lock */
/* Queue a message for the loop (takes buf). */
void cluster_post(struct cluster *cl, int source, int tag, void *buf, size_t len);
struct cluster_event *cluster_take_events(struct cluster *cl);
/* Send a fixed-size message (copied). */
int cluster_send_copy(struct cluster *cl, int dest, int tag, const void *msg, size_t len);

/* model_want: an expert a live epoch or the one being prepared holds here
 * (ctx: the cluster; cl->engine set). */
int cluster_want_live(void *ctx, uint32_t E, uint32_t layer, uint32_t e);
/* Start the loop's event handle (cluster.c). */
int cluster_open_async(struct cluster *cl);
/* cluster_rank.c: a message for a rank's loop (takes ev); the front is lost */
void cluster_rank_event(struct cluster *cl, struct cluster_event *ev);
void cluster_rank_lost(struct cluster *cl);

/* cluster_admin.c: PREPARED and COUNTS from a rank (loop thread, takes ev) */
void cluster_admin_event(struct cluster *cl, struct cluster_event *ev);
/* cluster_admin.c: the front's epoch `ep` is unused: tell the ranks */
void cluster_admin_retire(struct cluster *cl, uint64_t epoch);

#endif
