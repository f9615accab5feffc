/*
 * Placement of one layer's routed experts on the ranks of a cluster (expert
 * parallelism, see daemon/cluster.h).  Pure functions, no I/O, no MPI: the
 * front computes a placement, the ranks receive it as slot lists.
 *
 * A placement has n_slots = E + replicas physical copies ("slots"); slot s
 * holds expert slot_expert[s] on rank slot_rank[s].  Every expert has at least
 * one slot; replicas add copies of the hottest experts (each extra copy goes to
 * the expert with the highest load per copy, as DeepSeek's EPLB
 * replicate_experts does), never two copies of one expert on one rank.
 * Ranks with computes[r] == 0 (the front with front_computes = 0) hold none.
 *
 * contiguous: experts split into equal runs in id order over the computing
 *   ranks (rank r holds ids [r*E/n, (r+1)*E/n)); replicas are ignored.
 * balanced: copies packed onto ranks by load (greedy balanced packing as in
 *   EPLB's balanced_packing: heaviest copy first, onto the computing rank with
 *   the least load that still has room; room = ceil(n_slots / n computing
 *   ranks) copies, so bytes stay even); ties broken by lowest id / rank, so
 *   the result is deterministic.  A copy's load is its expert's load divided
 *   by the expert's number of copies.
 *
 * A token routed to an expert with c copies goes to copy (token_seq % c)
 * (placement_pick), splitting its tokens evenly between them.
 */
#ifndef MOED_PLACEMENT_H
#define MOED_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

enum placement_kind {
	PLACEMENT_CONTIGUOUS = 0,
	PLACEMENT_BALANCED = 1,
};

struct placement {
	uint32_t n_experts;             /* E */
	uint32_t n_ranks;
	uint32_t n_slots;               /* E + replicas actually placed */
	uint32_t *slot_expert;          /* [n_slots] */
	uint32_t *slot_rank;            /* [n_slots] */
	/* per expert, its slots: copies[copy_start[e] .. copy_start[e] + n_copies[e]) */
	uint32_t *copy_start;           /* [E] */
	uint32_t *n_copies;             /* [E] */
	uint32_t *copies;               /* [n_slots] slot indices, grouped by expert */
};

/* Compute a placement into *ret (its arrays malloc'ed; free with
 * placement_free).  load: [E] observed token-expert pairs (NULL = all equal;
 * ignored by contiguous).  computes: [n_ranks], at least one non-zero.
 * replicas: extra copies (balanced only), at most E * (n computing ranks - 1).
 * -EINVAL for impossible arguments, -ENOMEM. */
int placement_compute(enum placement_kind kind, uint32_t n_experts, uint32_t n_ranks,
		      const uint8_t *computes, const uint64_t *load, uint32_t replicas,
		      struct placement *ret);
void placement_free(struct placement *p);
/* Deep copy; -ENOMEM. */
int placement_copy(const struct placement *p, struct placement *ret);

/* The slot serving (expert e, token sequence number seq). */
static inline uint32_t placement_pick(const struct placement *p, uint32_t e, uint64_t seq)
{
	return p->copies[p->copy_start[e] + (uint32_t)(seq % p->n_copies[e])];
}

/* Per-rank load under p for per-expert load (each expert's load split evenly
 * between its copies) into ret_rank_load [n_ranks]; returns the balancedness
 * mean / max over the computing ranks (1 when all load is 0). */
double placement_balancedness(const struct placement *p, const uint8_t *computes,
			      const uint64_t *load, double *ret_rank_load);

/* Parse "contiguous" / "balanced"; -EINVAL.  And back. */
int placement_kind_parse(const char *s, enum placement_kind *ret);
const char *placement_kind_name(enum placement_kind k);

#endif
