/*
 * Statistics unit tests with hand-derived values: MaxVio of known loads, the
 * sliding window forgetting old slots, and histogram percentiles falling in
 * the right log-scale bucket (within the documented 19%).
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_max_vio),
		cmocka_unit_test(test_window),
		cmocka_unit_test(test_percentiles),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
