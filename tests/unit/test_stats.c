/*
 * Statistics unit tests with hand-derived values: MaxVio of known loads, the
 * sliding window forgetting old slots, and histogram percentiles falling in
 * the right log-scale bucket (within the documented 19%), and a shadow's
 * windowed summary.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "daemon/stats.h"

static void test_max_vio(void **state)
{
	uint64_t even[4] = { 5, 5, 5, 5 }, skew[4] = { 10, 2, 2, 2 }, none[4] = { 0 };

	assert_float_equal(stats_max_vio(even, 4), 0.0f, 1e-7);
	/* mean 4, max 10: (10 - 4) / 4 = 1.5 */
	assert_float_equal(stats_max_vio(skew, 4), 1.5f, 1e-6);
	assert_float_equal(stats_max_vio(none, 4), 0.0f, 0);
}

static void test_window(void **state)
{
	struct layer_stats st;
	int32_t a[2] = { 0, 1 }, b[2] = { 2, 2 };
	uint64_t w[3];

	assert_int_equal(stats_init(&st, 3, 1000, 0), 0);      /* 10 slots of 100 ms */
	stats_record(&st, 0, a, 2, 1, 10, 20);
	stats_record(&st, 550, b, 2, 1, 10, 20);
	assert_int_equal(stats_window(&st, 600, w), 2);
	assert_int_equal(w[0], 1);
	assert_int_equal(w[1], 1);
	assert_int_equal(w[2], 2);
	/* 1.05 s later the first record has left the window, the second not */
	assert_int_equal(stats_window(&st, 1050, w), 1);
	assert_int_equal(w[0], 0);
	assert_int_equal(w[2], 2);
	/* long idle: everything gone from the window, totals stay */
	assert_int_equal(stats_window(&st, 100000, w), 0);
	assert_int_equal(w[2], 0);
	assert_int_equal(st.total[2], 2);
	assert_int_equal(st.total[0], 1);
	assert_int_equal(st.requests, 2);
	assert_int_equal(st.tokens, 2);
	/* out-of-range expert ids are not counted */
	int32_t bad[2] = { 7, -1 };
	stats_record(&st, 100001, bad, 2, 1, 1, 1);
	assert_int_equal(st.total[0] + st.total[1] + st.total[2], 4);
	stats_release(&st);
}

static void test_percentiles(void **state)
{
	struct hist h = { 0 };

	assert_int_equal(hist_percentile(&h, 0.5), 0);
	for (uint64_t us = 1; us <= 1000; us++)
		hist_add(&h, us);
	/* true p50 = 500, p90 = 900, p99 = 990: reported within +19% and not below */
	uint64_t p50 = hist_percentile(&h, 0.5), p90 = hist_percentile(&h, 0.9);
	uint64_t p99 = hist_percentile(&h, 0.99);
	assert_in_range(p50, 500, 595);
	assert_in_range(p90, 900, 1071);
	assert_in_range(p99, 990, 1178);
	hist_add(&h, 5000000);
	assert_in_range(hist_percentile(&h, 1.0), 5000000, 5950000);
}

/* A shadow's summary: overlap = same / (k tokens), top-1 share, exact
 * nearest-rank drift percentiles, all forgetting what left the window while
 * the totals stay. */
static void test_shadow_window(void **state)
{
	struct shadow_stats *s = malloc(sizeof(*s));
	struct shadow_summary sum;
	uint64_t c1[SHADOW_COUNTS] = { [SHADOW_SAME] = 30, [SHADOW_TOP1] = 8, [SHADOW_SAMPLED] = 4 };
	uint64_t c2[SHADOW_COUNTS] = { [SHADOW_SAME] = 8, [SHADOW_TOP1] = 1, [SHADOW_SAMPLED] = 0 };

	(void)state;
	assert_non_null(s);
	assert_int_equal(shadow_stats_init(s, 4, 1000, 0), 0);
	stats_add(&s->agree, 0, c1, 10);                /* 10 tokens, k = 4 */
	for (int i = 1; i <= 4; i++)
		shadow_stats_drift_add(s, 0, 0.1 * (5 - i));    /* 0.4 0.3 0.2 0.1 */
	assert_int_equal(shadow_stats_summary(s, 50, 4, &sum), 0);
	assert_int_equal(sum.tokens, 10);
	assert_true(sum.overlap == 0.75 && sum.top1_agreement == 0.8);
	assert_int_equal(sum.sampled, 4);
	/* sorted 0.1 0.2 0.3 0.4: p50 is rank ceil(2) = 0.2, p99 rank ceil(3.96) = 0.4 */
	assert_true(sum.drift_p50 == 0.1 * 2 && sum.drift_p99 == 0.1 * 4);
	stats_add(&s->agree, 1500, c2, 2);              /* the first batch has left */
	assert_int_equal(shadow_stats_summary(s, 1500, 4, &sum), 0);
	assert_int_equal(sum.tokens, 2);
	assert_true(sum.overlap == 1.0 && sum.top1_agreement == 0.5);
	assert_int_equal(sum.sampled, 0);
	assert_true(sum.drift_p50 == 0.0 && sum.drift_p99 == 0.0);
	assert_int_equal(sum.tokens_total, 12);
	assert_int_equal(sum.sampled_total, 4);
	shadow_stats_release(s);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_max_vio),
		cmocka_unit_test(test_window),
		cmocka_unit_test(test_percentiles),
		cmocka_unit_test(test_shadow_window),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
