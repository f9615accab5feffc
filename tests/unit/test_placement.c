/*
 * Expert placement (daemon/placement.c).  Properties over a sweep of sizes,
 * computing-rank patterns, loads and replica counts: every expert has a copy,
 * n_slots = E + replicas, no rank holds two copies of one expert, a computing
 * rank holds at most ceil(n_slots / computing ranks) copies and an idle one
 * none, and the slot / copy arrays agree with each other.  Hand-derived cases:
 * contiguous ranges, balancedness, a replicated expert's tokens split evenly
 * by placement_pick, the refusals.  With MOED_TEST_CASES (set by
 * tests/numerics/placement.sh) it also compares with tests/ref/placement_ref.py,
 * an independent implementation of the same EPLB-style greedy: the experts of
 * every rank, the copies per expert, rank loads and balancedness.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "daemon/placement.h"

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Check the invariants of p (sizes up to 16 ranks, 64 experts). */
static void check_invariants(const struct placement *p, enum placement_kind kind, uint32_t E,
			     uint32_t n_ranks, const uint8_t *computes, uint32_t replicas)
{
	uint32_t n_comp = 0, per_rank[16] = { 0 };
	uint8_t seen[16][64] = { { 0 } };

	for (uint32_t r = 0; r < n_ranks; r++)
		n_comp += computes[r] != 0;
	assert_int_equal(p->n_experts, E);
	assert_int_equal(p->n_ranks, n_ranks);
	assert_int_equal(p->n_slots, kind == PLACEMENT_BALANCED ? E + replicas : E);
	for (uint32_t s = 0; s < p->n_slots; s++) {
		uint32_t e = p->slot_expert[s], r = p->slot_rank[s];
		assert_true(e < E);
		assert_true(r < n_ranks);
		assert_true(computes[r]);               /* idle ranks hold none */
		assert_false(seen[r][e]);               /* one copy per rank */
		seen[r][e] = 1;
		per_rank[r]++;
		if (s)                                   /* a rank's slots are one run */
			assert_true(p->slot_rank[s - 1] <= r);
	}
	for (uint32_t r = 0; r < n_ranks; r++)
		assert_true(per_rank[r] <= (p->n_slots + n_comp - 1) / n_comp);
	for (uint32_t e = 0, start = 0; e < E; e++) {
		uint32_t on = 0;
		assert_true(p->n_copies[e] >= 1);
		assert_int_equal(p->copy_start[e], start);
		for (uint32_t j = 0; j < p->n_copies[e]; j++)
			assert_int_equal(p->slot_expert[p->copies[start + j]], e);
		for (uint32_t r = 0; r < n_ranks; r++)
			on += seen[r][e];
		assert_int_equal(on, p->n_copies[e]);
		start += p->n_copies[e];
	}
}

static void test_sweep(void **state)
{
	uint64_t seed = 16, load[64];
	uint8_t computes[16];
	unsigned n_cases = 0;

	(void)state;
	for (uint32_t E = 1; E <= 40; E += (E < 10 ? 1 : 7))
		for (uint32_t n = 1; n <= 6; n++)
			for (int pattern = 0; pattern < 3; pattern++) {
				uint32_t n_comp = 0;
				for (uint32_t r = 0; r < n; r++) {
					/* all compute; the front idle; every other rank idle */
					computes[r] = pattern == 0 || (pattern == 1 ? r > 0 : r % 2 == 0);
					n_comp += computes[r];
				}
				if (!n_comp)
					continue;
				for (uint32_t e = 0; e < E; e++)
					load[e] = splitmix(&seed) % (pattern == 2 ? 5 : 100000);
				for (uint32_t R = 0; R <= E * (n_comp - 1); R += 1 + E / 3) {
					struct placement p;
					for (int kind = 0; kind < 2; kind++) {
						assert_int_equal(placement_compute(kind, E, n, computes,
										   load, R, &p), 0);
						check_invariants(&p, kind, E, n, computes, R);
						placement_free(&p);
						n_cases++;
					}
				}
			}
	assert_true(n_cases > 500);
}

/* 10 experts on ranks 0, 2, 3 (1 idle): runs [0,3), [3,6), [6,10) by i*E/n */
static void test_contiguous(void **state)
{
	static const uint8_t computes[4] = { 1, 0, 1, 1 };
	static const uint32_t want_rank[10] = { 0, 0, 0, 2, 2, 2, 3, 3, 3, 3 };
	struct placement p;

	(void)state;
	assert_int_equal(placement_compute(PLACEMENT_CONTIGUOUS, 10, 4, computes, NULL, 5, &p), 0);
	assert_int_equal(p.n_slots, 10);                 /* replicas ignored */
	for (uint32_t e = 0; e < 10; e++) {
		assert_int_equal(p.n_copies[e], 1);
		assert_int_equal(p.slot_rank[p.copies[p.copy_start[e]]], want_rank[e]);
		assert_int_equal(p.slot_expert[e], e);  /* slots in rank, then id order */
	}
	placement_free(&p);
}

static void test_determinism(void **state)
{
	static const uint8_t computes[5] = { 0, 1, 1, 1, 1 };
	uint64_t load[32], seed = 7;
	struct placement a, b, c;

	(void)state;
	for (int i = 0; i < 32; i++)
		load[i] = splitmix(&seed) % 7;          /* many ties */
	assert_int_equal(placement_compute(PLACEMENT_BALANCED, 32, 5, computes, load, 9, &a), 0);
	assert_int_equal(placement_compute(PLACEMENT_BALANCED, 32, 5, computes, load, 9, &b), 0);
	assert_int_equal(placement_copy(&a, &c), 0);
	for (const struct placement *q = &b; q; q = q == &b ? &c : NULL) {
		assert_int_equal(q->n_slots, a.n_slots);
		assert_memory_equal(q->slot_expert, a.slot_expert, a.n_slots * 4);
		assert_memory_equal(q->slot_rank, a.slot_rank, a.n_slots * 4);
		assert_memory_equal(q->copies, a.copies, a.n_slots * 4);
		assert_memory_equal(q->copy_start, a.copy_start, 32 * 4);
		assert_memory_equal(q->n_copies, a.n_copies, 32 * 4);
	}
	placement_free(&a);
	placement_free(&b);
	placement_free(&c);
	placement_free(NULL);
}

/* Expert 0 carries nearly all load: 3 replicas make it 4 copies on 4 ranks,
 * and token sequence numbers 0..399 land 100 on each copy. */
static void test_pick(void **state)
{
	static const uint8_t computes[4] = { 1, 1, 1, 1 };
	static const uint64_t load[6] = { 1000, 1, 1, 1, 1, 1 };
	uint32_t hits[16] = { 0 };
	struct placement p;

	(void)state;
	assert_int_equal(placement_compute(PLACEMENT_BALANCED, 6, 4, computes, load, 3, &p), 0);
	assert_int_equal(p.n_copies[0], 4);
	for (uint64_t seq = 0; seq < 400; seq++) {
		uint32_t s = placement_pick(&p, 0, seq);
		assert_int_equal(p.slot_expert[s], 0);
		hits[s]++;
	}
	for (uint32_t j = 0; j < 4; j++)
		assert_int_equal(hits[p.copies[p.copy_start[0] + j]], 100);
	for (uint32_t e = 1; e < 6; e++)                 /* one copy: always it */
		assert_int_equal(placement_pick(&p, e, 12345), p.copies[p.copy_start[e]]);
	placement_free(&p);
}

static void test_balancedness(void **state)
{
	static const uint8_t two[2] = { 1, 1 }, idle_front[3] = { 0, 1, 1 };
	static const uint64_t skew[4] = { 6, 2, 1, 1 }, hot[2] = { 10, 2 }, zero[4] = { 0 };
	double rl[3];
	struct placement p;

	(void)state;
	/* contiguous {0,1} {2,3}: rank loads 8 and 2, mean 5 / max 8 */
	assert_int_equal(placement_compute(PLACEMENT_CONTIGUOUS, 4, 2, two, NULL, 0, &p), 0);
	assert_float_equal(placement_balancedness(&p, two, skew, rl), 0.625, 1e-12);
	assert_float_equal(rl[0], 8, 0);
	assert_float_equal(rl[1], 2, 0);
	assert_float_equal(placement_balancedness(&p, two, zero, NULL), 1.0, 0);
	placement_free(&p);
	/* balanced, loads {6,2,1,1}: 6 -> r0, 2 -> r1, 1 -> r1, 1 -> r1 would be
	 * 3 on r1 > room 2, so the last 1 goes to r0: 7 and 3, mean 5 / max 7 */
	assert_int_equal(placement_compute(PLACEMENT_BALANCED, 4, 2, two, skew, 0, &p), 0);
	assert_float_equal(placement_balancedness(&p, two, skew, rl), 5.0 / 7.0, 1e-12);
	assert_float_equal(rl[0], 7, 0);
	placement_free(&p);
	/* {10, 2} and one replica: expert 0 gets it (10/1 > 2/1), copies of 5 on
	 * ranks 1 and 2 (rank 0 idle), expert 1 onto rank 1 (tie, lowest):
	 * 7 and 5, mean 6 / max 7 */
	assert_int_equal(placement_compute(PLACEMENT_BALANCED, 2, 3, idle_front, hot, 1, &p), 0);
	assert_int_equal(p.n_copies[0], 2);
	assert_float_equal(placement_balancedness(&p, idle_front, hot, rl), 6.0 / 7.0, 1e-12);
	assert_float_equal(rl[0], 0, 0);
	assert_float_equal(rl[1], 7, 0);
	assert_float_equal(rl[2], 5, 0);
	placement_free(&p);
}

static void test_einval(void **state)
{
	static const uint8_t none[3] = { 0, 0, 0 }, front_idle[3] = { 0, 1, 1 };
	struct placement p;

	(void)state;
	assert_int_equal(placement_compute(PLACEMENT_BALANCED, 8, 0, front_idle, NULL, 0, &p), -EINVAL);
	assert_int_equal(placement_compute(PLACEMENT_CONTIGUOUS, 8, 3, none, NULL, 0, &p), -EINVAL);
	assert_int_equal(placement_compute(PLACEMENT_BALANCED, 8, 3, NULL, NULL, 0, &p), -EINVAL);
	assert_int_equal(placement_compute(PLACEMENT_BALANCED, 0, 3, front_idle, NULL, 0, &p), -EINVAL);
	assert_int_equal(placement_compute((enum placement_kind)7, 8, 3, front_idle, NULL, 0, &p),
			 -EINVAL);
	/* two computing ranks: at most 8 * (2 - 1) replicas, every expert on both */
	assert_int_equal(placement_compute(PLACEMENT_BALANCED, 8, 3, front_idle, NULL, 9, &p), -EINVAL);
	assert_int_equal(placement_compute(PLACEMENT_BALANCED, 8, 3, front_idle, NULL, 8, &p), 0);
	for (uint32_t e = 0; e < 8; e++)
		assert_int_equal(p.n_copies[e], 2);
	placement_free(&p);
}

static void test_kind_names(void **state)
{
	enum placement_kind k = PLACEMENT_CONTIGUOUS;

	(void)state;
	assert_int_equal(placement_kind_parse("balanced", &k), 0);
	assert_int_equal(k, PLACEMENT_BALANCED);
	assert_int_equal(placement_kind_parse("contiguous", &k), 0);
	assert_int_equal(k, PLACEMENT_CONTIGUOUS);
	assert_int_equal(placement_kind_parse("eplb", &k), -EINVAL);
	assert_int_equal(placement_kind_parse(NULL, &k), -EINVAL);
	assert_string_equal(placement_kind_name(PLACEMENT_BALANCED), "balanced");
	assert_string_equal(placement_kind_name(PLACEMENT_CONTIGUOUS), "contiguous");
}

/* ---- against tests/ref/placement_ref.py ---- */

#define MAX_N 4096

struct ref_case {
	char name[64], kind[16];
	uint32_t E, n_ranks, replicas;
	uint8_t computes[64];
	int has_load;
	uint64_t load[MAX_N];
	uint32_t copies[MAX_N];
	uint8_t *held;          /* [n_ranks * E] */
	double rank_load[64], balancedness;
};

/* Split line into at most max numbers after its keyword; returns the count. */
static size_t numbers(char *line, double *v, size_t max)
{
	size_t n = 0;
	char *save, *tok = strtok_r(line, " \n", &save);

	while ((tok = strtok_r(NULL, " \n", &save)) && n < max)
		v[n++] = strtod(tok, NULL);
	return n;
}

/* Read the next case from f into c; 0 at the end of the file. */
static int read_case(FILE *f, struct ref_case *c)
{
	static double v[MAX_N];
	char *line = NULL;
	size_t cap = 0;
	int got = 0;

	while (getline(&line, &cap, f) > 0) {
		if (!strncmp(line, "case ", 5)) {
			assert_int_equal(sscanf(line, "case %63s %15s %u %u %u", c->name, c->kind,
						&c->E, &c->n_ranks, &c->replicas), 5);
			assert_true(c->E <= MAX_N && c->n_ranks <= 64);
			c->held = calloc((size_t)c->E * c->n_ranks, 1);
			assert_non_null(c->held);
			got = 1;
		} else if (!strncmp(line, "computes ", 9)) {
			assert_int_equal(numbers(line, v, MAX_N), c->n_ranks);
			for (uint32_t r = 0; r < c->n_ranks; r++)
				c->computes[r] = (uint8_t)v[r];
		} else if (!strncmp(line, "load ", 5)) {
			c->has_load = strncmp(line, "load -", 6) != 0;
			if (c->has_load) {
				assert_int_equal(numbers(line, v, MAX_N), c->E);
				for (uint32_t e = 0; e < c->E; e++)
					c->load[e] = (uint64_t)v[e];
			} else {
				for (uint32_t e = 0; e < c->E; e++)
					c->load[e] = 1;
			}
		} else if (!strncmp(line, "copies ", 7)) {
			assert_int_equal(numbers(line, v, MAX_N), c->E);
			for (uint32_t e = 0; e < c->E; e++)
				c->copies[e] = (uint32_t)v[e];
		} else if (!strncmp(line, "rank_load ", 10)) {
			assert_int_equal(numbers(line, v, 2), 2);
			c->rank_load[(uint32_t)v[0]] = v[1];
		} else if (!strncmp(line, "rank ", 5)) {
			size_t n = numbers(line, v, MAX_N);
			assert_true(n >= 1 && v[0] < c->n_ranks);
			for (size_t i = 1; i < n; i++)
				c->held[(size_t)v[0] * c->E + (size_t)v[i]] = 1;
		} else if (!strncmp(line, "balancedness ", 13)) {
			assert_int_equal(numbers(line, v, 1), 1);
			c->balancedness = v[0];
		} else if (!strncmp(line, "end", 3)) {
			break;
		}
	}
	free(line);
	return got;
}

static void test_reference(void **state)
{
	const char *dir = getenv("MOED_TEST_CASES");
	static struct ref_case c;
	char path[4096];
	unsigned n_cases = 0;
	FILE *f;

	(void)state;
	if (!dir) {
		printf("skipping the reference comparison: MOED_TEST_CASES unset "
		       "(tests/numerics/placement.sh sets it)\n");
		skip();
	}
	snprintf(path, sizeof(path), "%s/placement_cases.txt", dir);
	f = fopen(path, "re");
	assert_non_null(f);
	while (memset(&c, 0, sizeof(c)), read_case(f, &c)) {
		enum placement_kind kind;
		struct placement p;
		double rl[64];
		int r;

		assert_int_equal(placement_kind_parse(c.kind, &kind), 0);
		r = placement_compute(kind, c.E, c.n_ranks, c.computes, c.has_load ? c.load : NULL,
				      c.replicas, &p);
		if (r)
			fail_msg("case %s: placement_compute %d", c.name, r);
		for (uint32_t e = 0; e < c.E; e++)
			if (p.n_copies[e] != c.copies[e])
				fail_msg("case %s: expert %u has %u copies, reference %u", c.name, e,
					 p.n_copies[e], c.copies[e]);
		for (uint32_t s = 0; s < p.n_slots; s++)
			if (!c.held[(size_t)p.slot_rank[s] * c.E + p.slot_expert[s]])
				fail_msg("case %s: expert %u on rank %u, not in the reference", c.name,
					 p.slot_expert[s], p.slot_rank[s]);
		double bal = placement_balancedness(&p, c.computes, c.load, rl);
		for (uint32_t rk = 0; rk < c.n_ranks; rk++)
			if (fabs(rl[rk] - c.rank_load[rk]) > 1e-12 * fabs(c.rank_load[rk]))
				fail_msg("case %s: rank %u load %.17g, reference %.17g", c.name, rk,
					 rl[rk], c.rank_load[rk]);
		if (fabs(bal - c.balancedness) > 1e-12)
			fail_msg("case %s: balancedness %.17g, reference %.17g", c.name, bal,
				 c.balancedness);
		placement_free(&p);
		free(c.held);
		n_cases++;
	}
	fclose(f);
	printf("%u cases agree with tests/ref/placement_ref.py\n", n_cases);
	assert_true(n_cases >= 30);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sweep),
		cmocka_unit_test(test_contiguous),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_pick),
		cmocka_unit_test(test_balancedness),
		cmocka_unit_test(test_einval),
		cmocka_unit_test(test_kind_names),
		cmocka_unit_test(test_reference),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
