/*
 * moectl's cluster formatting (client/cluster_fmt.c) on hand-built replies:
 * a three-rank job (the front idle, two layers, a replicated expert) as JSON
 * serialised and parsed back with json-c's parser, checking the keys and
 * values issue 16 fixes (layers as string keys, ids and per-id counts, bytes,
 * window tokens, balancedness, "previous" only for rebalance, null for fields
 * the daemon left out), and as text; and the single-process reply.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "client/cluster_fmt.h"

struct job {
	Moed__ClusterResponse cl;
	Moed__ClusterRank rank[3], *rankp[3];
	Moed__ClusterExperts ex[3][2], *exp[3][2];
	Moed__ClusterBalance bal[2], prev[2], *balp[2], *prevp[2];
};

/* Layers 3 and 5 of 4 experts; rank 0 the front (computes nothing), rank 1
 * holds 0 1 2 of layer 3, rank 2 holds 2 3 (expert 2 replicated), layer 5
 * split 0 1 / 2 3.  Rank 2 sends no pid (an older rank, say). */
static void build(struct job *j)
{
	static uint32_t ids[3][2][3] = { { { 0 }, { 0 } }, { { 0, 1, 2 }, { 0, 1 } },
					 { { 2, 3 }, { 2, 3 } } };
	static uint64_t computed[3][2][3] = { { { 0 }, { 0 } }, { { 70, 10, 5 }, { 40, 41 } },
					      { { 6, 9 }, { 1, 2 } } };
	static const size_t n_ids[3][2] = { { 0, 0 }, { 3, 2 }, { 2, 2 } };
	static char *hosts[3] = { "front.example", "node-a", "node-b" };

	memset(j, 0, sizeof(*j));
	moed__cluster_response__init(&j->cl);
	j->cl.enabled = 1;
	j->cl.placement = "balanced";
	j->cl.has_replicas = 1;
	j->cl.replicas = 1;
	j->cl.has_epoch = 1;
	j->cl.epoch = 2;
	j->cl.has_front_computes = 1;
	j->cl.front_computes = 0;
	j->cl.has_timeout_ms = 1;
	j->cl.timeout_ms = 10000;
	for (int r = 0; r < 3; r++) {
		Moed__ClusterRank *k = &j->rank[r];
		moed__cluster_rank__init(k);
		k->rank = (uint32_t)r;
		k->host = hosts[r];
		k->has_pid = r != 2;
		k->pid = 1000 + (uint32_t)r;
		k->has_front = 1;
		k->front = r == 0;
		k->has_bytes = 1;
		k->bytes = r ? (uint64_t)3 << 29 : 0;  /* 1.5 GiB */
		k->has_window_tokens = 1;
		k->window_tokens = r == 1 ? 85 : r == 2 ? 15 : 0;
		k->has_dispatches = 1;
		k->dispatches = r ? 7 : 0;
		for (int l = 0; l < 2 && r; l++) {
			Moed__ClusterExperts *e = &j->ex[r][l];
			moed__cluster_experts__init(e);
			e->layer = l ? 5 : 3;
			e->n_ids = e->n_computed = n_ids[r][l];
			e->ids = ids[r][l];
			e->computed = computed[r][l];
			j->exp[r][l] = e;
		}
		k->n_experts = r ? 2 : 0;
		k->experts = j->exp[r];
		j->rankp[r] = k;
	}
	j->cl.n_ranks = 3;
	j->cl.ranks = j->rankp;
	for (int l = 0; l < 2; l++) {
		moed__cluster_balance__init(&j->bal[l]);
		moed__cluster_balance__init(&j->prev[l]);
		j->bal[l].layer = j->prev[l].layer = l ? 5 : 3;
		j->bal[l].balancedness = l ? 0.95 : 0.85;
		j->prev[l].balancedness = l ? 0.9 : 0.5;
		j->balp[l] = &j->bal[l];
		j->prevp[l] = &j->prev[l];
	}
	j->cl.n_balancedness = j->cl.n_previous = 2;
	j->cl.balancedness = j->balp;
	j->cl.previous = j->prevp;
}

/* Serialise and parse back, so the test sees what a consumer sees. */
static json_object *roundtrip(const Moed__ClusterResponse *cl, int rebalance)
{
	json_object *o = cluster_json(cl, rebalance);
	json_object *back = json_tokener_parse(json_object_to_json_string(o));

	json_object_put(o);
	assert_non_null(back);
	return back;
}

static json_object *get(json_object *o, const char *key)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("no key '%s' in %s", key, json_object_to_json_string(o));
	return v;
}

static void assert_ids(json_object *a, const uint64_t *want, size_t n)
{
	assert_true(json_object_is_type(a, json_type_array));
	assert_int_equal(json_object_array_length(a), n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(json_object_get_uint64(json_object_array_get_idx(a, i)), want[i]);
}

static void test_json(void **state)
{
	static const uint64_t l3_r1[3] = { 0, 1, 2 }, l3_r2[2] = { 2, 3 }, c3_r1[3] = { 70, 10, 5 };
	static const uint64_t l5_r2[2] = { 2, 3 };
	struct job j;
	json_object *o, *ranks, *r1, *r2, *b;

	(void)state;
	build(&j);
	o = roundtrip(&j.cl, 0);
	assert_true(json_object_get_boolean(get(o, "enabled")));
	assert_string_equal(json_object_get_string(get(o, "placement")), "balanced");
	assert_int_equal(json_object_get_uint64(get(o, "replicas")), 1);
	assert_int_equal(json_object_get_uint64(get(o, "epoch")), 2);
	assert_false(json_object_get_boolean(get(o, "front_computes")));
	assert_int_equal(json_object_get_uint64(get(o, "timeout_ms")), 10000);
	assert_false(json_object_object_get_ex(o, "previous", NULL));
	ranks = get(o, "ranks");
	assert_int_equal(json_object_array_length(ranks), 3);
	assert_true(json_object_get_boolean(get(json_object_array_get_idx(ranks, 0), "front")));
	assert_int_equal(json_object_object_length(get(json_object_array_get_idx(ranks, 0),
							"experts")), 0);
	r1 = json_object_array_get_idx(ranks, 1);
	assert_int_equal(json_object_get_uint64(get(r1, "rank")), 1);
	assert_string_equal(json_object_get_string(get(r1, "host")), "node-a");
	assert_int_equal(json_object_get_uint64(get(r1, "pid")), 1001);
	assert_false(json_object_get_boolean(get(r1, "front")));
	assert_ids(get(get(r1, "experts"), "3"), l3_r1, 3);
	assert_ids(get(get(r1, "computed"), "3"), c3_r1, 3);
	assert_int_equal(json_object_get_uint64(get(r1, "bytes")), 1610612736);
	assert_int_equal(json_object_get_uint64(get(r1, "window_tokens")), 85);
	assert_int_equal(json_object_get_uint64(get(r1, "dispatches")), 7);
	r2 = json_object_array_get_idx(ranks, 2);
	assert_ids(get(get(r2, "experts"), "3"), l3_r2, 2);
	assert_ids(get(get(r2, "experts"), "5"), l5_r2, 2);
	assert_null(get(r2, "pid"));                    /* not sent: null, not 0 */
	b = get(o, "balancedness");
	assert_int_equal(json_object_object_length(b), 2);
	assert_float_equal(json_object_get_double(get(b, "3")), 0.85, 1e-15);
	assert_float_equal(json_object_get_double(get(b, "5")), 0.95, 1e-15);
	json_object_put(o);

	o = roundtrip(&j.cl, 1);                         /* rebalance: before, too */
	b = get(o, "previous");
	assert_float_equal(json_object_get_double(get(b, "3")), 0.5, 1e-15);
	assert_float_equal(json_object_get_double(get(b, "5")), 0.9, 1e-15);
	json_object_put(o);
}

static void test_single(void **state)
{
	Moed__ClusterResponse cl = MOED__CLUSTER_RESPONSE__INIT;
	json_object *o;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	o = roundtrip(&cl, 0);
	assert_false(json_object_get_boolean(get(o, "enabled")));
	assert_int_equal(json_object_array_length(get(o, "ranks")), 0);
	assert_int_equal(json_object_object_length(get(o, "balancedness")), 0);
	assert_null(get(o, "placement"));
	json_object_put(o);
	f = open_memstream(&text, &len);
	assert_non_null(f);
	cluster_print(f, &cl, 1);
	fclose(f);
	assert_string_equal(text, "cluster: not enabled (single process)\n");
	free(text);
}

/* the line of text that starts with prefix, or fail */
static const char *line_of(const char *text, const char *prefix)
{
	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, prefix, strlen(prefix)))
			return p;
	fail_msg("no line '%s' in:\n%s", prefix, text);
	return NULL;
}

static void test_text(void **state)
{
	struct job j;
	char *text = NULL, line[256];
	size_t len = 0;
	const char *p;
	FILE *f;

	(void)state;
	build(&j);
	f = open_memstream(&text, &len);
	assert_non_null(f);
	cluster_print(f, &j.cl, 1);
	fclose(f);
	p = line_of(text, "placement balanced");
	sscanf(p, "%255[^\n]", line);
	assert_string_equal(line, "placement balanced  replicas 1  epoch 2  front_computes no  "
			    "timeout_ms 10000");
	/* rank 1: 5 copies over two layers, 1.5 GiB, 85 window tokens */
	p = line_of(text, "1 ");
	assert_non_null(strstr(p, "node-a"));
	assert_int_equal(sscanf(p, "%*s %*s %*s %255[^\n]", line), 1);
	assert_int_equal(strncmp(line, "5", 1), 0);
	assert_non_null(strstr(line, "1.5 GiB"));
	assert_non_null(strstr(line, "85"));
	p = line_of(text, "0* ");                        /* the front is marked */
	assert_non_null(strstr(p, "front.example"));
	p = line_of(text, "2 ");
	assert_int_equal(sscanf(p, "%*s %*s %255s", line), 1);
	assert_string_equal(line, "-");                  /* no pid */
	p = line_of(text, "3 ");
	sscanf(p, "%255[^\n]", line);
	assert_string_equal(line, "3      0.8500       0.5000");
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_single),
		cmocka_unit_test(test_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
