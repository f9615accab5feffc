/*
 * Placement of one layer's routed experts on the ranks of a cluster (the
 * interface and the rules are in placement.h).  Two greedy passes, as in
 * DeepSeek's EPLB:
 *
 *   replicate: each extra copy goes to the expert with the highest load per
 *     copy (load / copies, compared exactly by cross-multiplying), lowest id
 *     on ties, among the experts with fewer copies than computing ranks (a
 *     rank never holds two copies of one expert).
 *   pack: experts in order of load per copy (heaviest first, lowest id on
 *     ties), each expert's copies one after another, each copy onto the
 *     computing rank with the least load (lowest rank on ties) that has room,
 *     does not hold the expert yet, and leaves the copies still to place
 *     placeable.
 *
 * The last condition is where this differs from EPLB, whose packs have no
 * "distinct experts" rule: without it the greedy can, rarely, end with the
 * copies of one expert and room on a single rank.  Placeability is the
 * bipartite (Gale-Ryser) cut condition: with the other experts untouched and
 * the current one partly placed on the ranks H with d copies left, the rest
 * fits iff for every t, the t experts with the most copies left need at most
 * sum_r min(room_r, t) slots, and d plus them at most sum over r outside H of
 * min(room_r, t + 1) plus over r in H of min(room_r, t).  The initial state
 * satisfies it (copies <= computing ranks, slots <= their room), and a
 * feasible state always has a copy move that keeps it feasible, so packing
 * never fails.  Cost: O(slots * ranks * room * ranks), milliseconds for
 * DeepSeek-V3's 256 experts on tens of ranks.
 *
 * Rank loads are doubles summed in placement order (the same operations the
 * reference in tests/ref/placement_ref.py does), so ties and results are
 * reproducible bit for bit.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/placement.h"

struct item {
	uint64_t load;
	uint32_t copies;
	uint32_t id;
};

/* heavier per copy first: a/ca > b/cb  <=>  a*cb > b*ca (no rounding) */
static int cmp_item(const void *pa, const void *pb)
{
	const struct item *a = pa, *b = pb;
	unsigned __int128 l = (unsigned __int128)a->load * b->copies;
	unsigned __int128 r = (unsigned __int128)b->load * a->copies;

	if (l != r)
		return l > r ? -1 : 1;
	return a->id < b->id ? -1 : a->id > b->id;
}

static int alloc_arrays(struct placement *p, uint32_t n_experts, uint32_t n_ranks, uint32_t n_slots)
{
	memset(p, 0, sizeof(*p));
	p->n_experts = n_experts;
	p->n_ranks = n_ranks;
	p->n_slots = n_slots;
	p->slot_expert = malloc(n_slots * sizeof(uint32_t));
	p->slot_rank = malloc(n_slots * sizeof(uint32_t));
	p->copies = malloc(n_slots * sizeof(uint32_t));
	p->copy_start = malloc(n_experts * sizeof(uint32_t));
	p->n_copies = malloc(n_experts * sizeof(uint32_t));
	if (!p->slot_expert || !p->slot_rank || !p->copies || !p->copy_start || !p->n_copies) {
		placement_free(p);
		return -ENOMEM;
	}
	return 0;
}

void placement_free(struct placement *p)
{
	if (!p)
		return;
	free(p->slot_expert);
	free(p->slot_rank);
	free(p->copies);
	free(p->copy_start);
	free(p->n_copies);
	memset(p, 0, sizeof(*p));
}

int placement_copy(const struct placement *p, struct placement *ret)
{
	struct placement q;
	int r = alloc_arrays(&q, p->n_experts, p->n_ranks, p->n_slots);

	if (r < 0)
		return r;
	memcpy(q.slot_expert, p->slot_expert, p->n_slots * sizeof(uint32_t));
	memcpy(q.slot_rank, p->slot_rank, p->n_slots * sizeof(uint32_t));
	memcpy(q.copies, p->copies, p->n_slots * sizeof(uint32_t));
	memcpy(q.copy_start, p->copy_start, p->n_experts * sizeof(uint32_t));
	memcpy(q.n_copies, p->n_copies, p->n_experts * sizeof(uint32_t));
	*ret = q;
	return 0;
}

/* Fill the slot arrays from per-rank membership: slots ordered by rank, then
 * expert id (held[r * E + e] != 0), so a rank's slots are one run. */
static void fill_slots(struct placement *p, const uint8_t *held)
{
	uint32_t E = p->n_experts, s = 0;

	memset(p->n_copies, 0, E * sizeof(uint32_t));
	for (uint32_t r = 0; r < p->n_ranks; r++)
		for (uint32_t e = 0; e < E; e++)
			if (held[(size_t)r * E + e]) {
				p->slot_expert[s] = e;
				p->slot_rank[s] = r;
				p->n_copies[e]++;
				s++;
			}
	for (uint32_t e = 0, start = 0; e < E; e++) {
		p->copy_start[e] = start;
		start += p->n_copies[e];
		p->n_copies[e] = 0;
	}
	for (s = 0; s < p->n_slots; s++) {
		uint32_t e = p->slot_expert[s];
		p->copies[p->copy_start[e] + p->n_copies[e]++] = s;
	}
}

static void contiguous(struct placement *p, const uint32_t *comp, uint32_t n_comp, uint8_t *held)
{
	uint32_t E = p->n_experts;

	for (uint32_t i = 0; i < n_comp; i++) {
		uint32_t lo = (uint32_t)((uint64_t)i * E / n_comp);
		uint32_t hi = (uint32_t)((uint64_t)(i + 1) * E / n_comp);
		for (uint32_t e = lo; e < hi; e++)
			held[(size_t)comp[i] * E + e] = 1;
	}
}

/* Copies per expert: each replica to the highest load per copy. */
static void replicate(const struct item *load, uint32_t E, uint32_t n_comp, uint32_t replicas,
		      uint32_t *cnt)
{
	for (uint32_t e = 0; e < E; e++)
		cnt[e] = 1;
	for (uint32_t k = 0; k < replicas; k++) {
		uint32_t best = UINT32_MAX;
		for (uint32_t e = 0; e < E; e++) {
			if (cnt[e] >= n_comp)
				continue;
			if (best == UINT32_MAX ||
			    (unsigned __int128)load[e].load * cnt[best] >
			    (unsigned __int128)load[best].load * cnt[e])
				best = e;
		}
		cnt[best]++;    /* replicas <= E * (n_comp - 1): some expert has room */
	}
}

struct packer {
	uint32_t n_comp;
	uint32_t *room;         /* [n_comp] slots left per computing rank */
	uint8_t *in_h;          /* [n_comp] rank holds the expert being placed */
	uint32_t *left;         /* [n_comp + 1] fresh experts with this many copies */
};

/* sum over computing ranks of min(room, t), H ranks counting min(room, t - 1) */
static uint64_t cut_room(const struct packer *k, uint32_t t, int h_one_less)
{
	uint64_t sum = 0;

	for (uint32_t i = 0; i < k->n_comp; i++) {
		uint32_t c = h_one_less && k->in_h[i] ? t - 1 : t;
		sum += k->room[i] < c ? k->room[i] : c;
	}
	return sum;
}

/* Can the fresh experts (k->left) plus d more copies of the current expert
 * (not onto its ranks k->in_h) still be placed?  See the file comment: need
 * is the demand of the t fresh experts with the most copies; for t past the
 * largest room both bounds stop growing, so t = m (all of them) decides. */
static int placeable(const struct packer *k, uint32_t d)
{
	uint32_t max_room = 0, m = 0, c = k->n_comp, at_c = k->left[k->n_comp];
	uint64_t need = 0, total = 0;

	for (uint32_t i = 0; i < k->n_comp; i++)
		if (k->room[i] > max_room)
			max_room = k->room[i];
	for (uint32_t i = 1; i <= k->n_comp; i++) {
		m += k->left[i];
		total += (uint64_t)i * k->left[i];
	}
	for (uint32_t t = 0;; t++) {
		if (t && need > cut_room(k, t, 0))
			return 0;
		if (d && d + need > cut_room(k, t + 1, 1))
			return 0;
		if (t == m)
			return 1;
		if (t == max_room + 1)
			break;
		while (!at_c)           /* t < m: some count c >= 1 has experts left */
			at_c = k->left[--c];
		need += c;
		at_c--;
	}
	return total <= cut_room(k, m, 0) && (!d || d + total <= cut_room(k, m + 1, 1));
}

/* The computing rank for the next copy of the expert being placed (k->in_h:
 * its ranks so far, k->left: the fresh experts), UINT32_MAX if none. */
static uint32_t pick_rank(struct packer *k, const double *rank_load, uint32_t d, uint8_t *tried)
{
	uint32_t best = UINT32_MAX;

	memset(tried, 0, k->n_comp);
	for (;;) {
		uint32_t cand = UINT32_MAX;
		for (uint32_t i = 0; i < k->n_comp; i++) {
			if (!k->room[i] || k->in_h[i] || tried[i])
				continue;
			if (cand == UINT32_MAX || rank_load[i] < rank_load[cand])
				cand = i;
		}
		if (cand == UINT32_MAX)
			return best;
		k->room[cand]--;
		k->in_h[cand] = 1;
		if (placeable(k, d))
			return cand;
		k->room[cand]++;
		k->in_h[cand] = 0;
		tried[cand] = 1;
	}
}

static int balanced(struct placement *p, const uint32_t *comp, uint32_t n_comp,
		    const uint64_t *load, uint32_t replicas, uint8_t *held)
{
	uint32_t E = p->n_experts, cap = (p->n_slots + n_comp - 1) / n_comp;
	struct item *items = malloc(E * sizeof(*items));
	uint32_t *cnt = malloc(E * sizeof(uint32_t));
	double *rank_load = calloc(n_comp, sizeof(double));
	uint8_t *tried = malloc(n_comp);
	struct packer k = {
		.n_comp = n_comp,
		.room = malloc(n_comp * sizeof(uint32_t)),
		.in_h = malloc(n_comp),
		.left = calloc(n_comp + 1, sizeof(uint32_t)),
	};
	int r = -ENOMEM;

	if (!items || !cnt || !rank_load || !tried || !k.room || !k.in_h || !k.left)
		goto out;
	for (uint32_t e = 0; e < E; e++)
		items[e] = (struct item){ .load = load ? load[e] : 1, .copies = 1, .id = e };
	replicate(items, E, n_comp, replicas, cnt);
	for (uint32_t e = 0; e < E; e++) {
		items[e].copies = cnt[e];
		k.left[cnt[e]]++;
	}
	qsort(items, E, sizeof(*items), cmp_item);
	for (uint32_t i = 0; i < n_comp; i++)
		k.room[i] = cap;
	for (uint32_t n = 0; n < E; n++) {
		const struct item *it = &items[n];
		double w = (double)it->load / it->copies;

		k.left[it->copies]--;
		memset(k.in_h, 0, n_comp);
		for (uint32_t j = 0; j < it->copies; j++) {
			uint32_t best = pick_rank(&k, rank_load, it->copies - j - 1, tried);
			if (best == UINT32_MAX) {       /* cannot happen, see the file comment */
				r = -EINVAL;
				goto out;
			}
			rank_load[best] += w;
			held[(size_t)comp[best] * E + it->id] = 1;
		}
	}
	r = 0;
out:
	free(items);
	free(cnt);
	free(rank_load);
	free(tried);
	free(k.room);
	free(k.in_h);
	free(k.left);
	return r;
}

int placement_compute(enum placement_kind kind, uint32_t n_experts, uint32_t n_ranks,
		      const uint8_t *computes, const uint64_t *load, uint32_t replicas,
		      struct placement *ret)
{
	struct placement p;
	uint32_t n_comp = 0, *comp = NULL;
	uint8_t *held = NULL;
	int r;

	if (!ret || !computes || !n_experts || !n_ranks ||
	    (kind != PLACEMENT_CONTIGUOUS && kind != PLACEMENT_BALANCED))
		return -EINVAL;
	for (uint32_t i = 0; i < n_ranks; i++)
		n_comp += computes[i] != 0;
	if (!n_comp)
		return -EINVAL;
	if (kind == PLACEMENT_CONTIGUOUS)
		replicas = 0;
	if ((uint64_t)replicas > (uint64_t)n_experts * (n_comp - 1))
		return -EINVAL;
	comp = malloc(n_comp * sizeof(uint32_t));
	held = calloc((size_t)n_ranks * n_experts, 1);
	if (!comp || !held) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0, j = 0; i < n_ranks; i++)
		if (computes[i])
			comp[j++] = i;
	r = alloc_arrays(&p, n_experts, n_ranks, n_experts + replicas);
	if (r < 0)
		goto out;
	if (kind == PLACEMENT_CONTIGUOUS)
		contiguous(&p, comp, n_comp, held);
	else
		r = balanced(&p, comp, n_comp, load, replicas, held);
	if (r < 0) {
		placement_free(&p);
		goto out;
	}
	fill_slots(&p, held);
	*ret = p;
out:
	free(comp);
	free(held);
	return r;
}

double placement_balancedness(const struct placement *p, const uint8_t *computes,
			      const uint64_t *load, double *ret_rank_load)
{
	double *rl = ret_rank_load, sum = 0, max = 0;
	uint32_t n_comp = 0;

	if (!rl) {
		rl = calloc(p->n_ranks, sizeof(double));
		if (!rl)
			return 0;
	}
	for (uint32_t r = 0; r < p->n_ranks; r++)
		rl[r] = 0;
	for (uint32_t s = 0; s < p->n_slots; s++) {
		uint32_t e = p->slot_expert[s];
		rl[p->slot_rank[s]] += (double)load[e] / p->n_copies[e];
	}
	for (uint32_t r = 0; r < p->n_ranks; r++) {
		if (!computes[r])
			continue;
		n_comp++;
		sum += rl[r];
		if (rl[r] > max)
			max = rl[r];
	}
	if (rl != ret_rank_load)
		free(rl);
	return max > 0 ? sum / n_comp / max : 1.0;
}

static const char *const kind_names[] = {
	[PLACEMENT_CONTIGUOUS] = "contiguous",
	[PLACEMENT_BALANCED] = "balanced",
};

int placement_kind_parse(const char *s, enum placement_kind *ret)
{
	for (size_t i = 0; s && i < sizeof(kind_names) / sizeof(kind_names[0]); i++)
		if (!strcmp(s, kind_names[i])) {
			*ret = (enum placement_kind)i;
			return 0;
		}
	return -EINVAL;
}

const char *placement_kind_name(enum placement_kind k)
{
	return (unsigned)k < sizeof(kind_names) / sizeof(kind_names[0]) ? kind_names[k] : "unknown";
}
