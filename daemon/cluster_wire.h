/*
 * The messages between the ranks of a cluster, as fixed headers followed by
 * arrays.  Every rank runs the same moed build (HELLO checks it), so host
 * byte order and struct layout are shared; arrays follow their header
 * 8-byte aligned.  Bytes per batch (H = hidden size, k_r = most pairs one
 * token has on rank r, n_r = tokens with a pair on r):
 *   dispatch to r:  48 + n_r * (4 H + 8 k_r)
 *   result from r:  40 + n_r * 4 H
 */
#ifndef MOED_CLUSTER_WIRE_H
#define MOED_CLUSTER_WIRE_H

#include <stdint.h>

#define CLUSTER_MAGIC 0x6d6f6564434c5531ull     /* "moedCLU1" */

enum cluster_tag {
	TAG_HELLO = 1,          /* rank -> front, once: struct wire_hello */
	TAG_DISPATCH,           /* front -> rank: struct wire_dispatch + x, experts, weights */
	TAG_RESULT,             /* rank -> front: struct wire_result + y (or an error text) */
	TAG_PREPARE,            /* front -> rank: struct wire_epoch + per layer wire_layer_ids */
	TAG_PREPARED,           /* rank -> front: struct wire_prepared (+ error text) */
	TAG_RETIRE,             /* front -> rank: struct wire_epoch (n_layers 0) */
	TAG_QUERY,              /* front -> rank: struct wire_query */
	TAG_COUNTS,             /* rank -> front: struct wire_counts + per layer ids, counts */
	TAG_HEARTBEAT,          /* both ways, about 4 per timeout_ms when idle */
	TAG_SHUTDOWN,           /* front -> rank: leave the job */
};

struct wire_hello {
	uint64_t magic;
	uint32_t rank, pid;
	uint64_t bytes;                 /* routed-expert bytes held */
	uint32_t n_layers, n_experts;
	char host[64];
	char version[32];
};

struct wire_dispatch {
	uint64_t id;
	uint64_t epoch;
	uint32_t layer;                 /* checkpoint layer index */
	uint32_t n_rows, k, hidden;
	uint64_t pad[2];
	/* then float x[n_rows][hidden], int32 experts[n_rows][k] (-1 = none),
	 * float weights[n_rows][k] */
};

struct wire_result {
	uint64_t id;
	int32_t rc;                     /* 0, or -errno with an error text after */
	uint32_t n_rows, hidden;
	uint32_t pad;
	uint64_t compute_ns;
	uint64_t pad2;
	/* then float y[n_rows][hidden] */
};

struct wire_epoch {
	uint64_t epoch;
	uint32_t n_layers;
	uint32_t pad;
	/* then n_layers x (struct wire_layer_ids + uint32 ids[n_ids]) */
};

struct wire_layer_ids {
	uint32_t layer, n_ids;
};

struct wire_prepared {
	uint64_t epoch;
	int32_t rc;
	uint32_t pad;
	uint64_t bytes;
	/* then an error text when rc < 0 */
};

struct wire_query {
	uint64_t id;
};

struct wire_counts {
	uint64_t id;
	uint64_t epoch;                 /* the newest epoch it holds */
	uint64_t bytes;
	uint64_t dispatches;
	uint32_t n_layers, pad;
	/* then n_layers x (struct wire_layer_ids + uint32 ids[n_ids] (+ pad to 8)
	 * + uint64 computed[n_ids]) */
};

#endif
