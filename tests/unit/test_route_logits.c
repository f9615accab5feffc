/*
 * The router's logits (plugins/common/route_logits.c): a token's logits are
 * the same bits whatever batch it is in and wherever it sits in it (T = 1..41
 * against the same token alone, shapes that exercise the tiles' short edges,
 * the column blocks and an odd tail), and each is within 1e-5 (relative to
 * the sum of |x_h g_h|) of a dot product in long double.  The routes built on
 * them are then batch-independent too; tests/python/client.sh checks that
 * through the daemon (coalesced requests against single ones).
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "plugins/common/route.h"

static float frand(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((*s >> 40) & 0xffffff) / (1 << 24) * 2.0f - 1.0f;
}

static void check_shape(size_t T, uint32_t E, uint32_t H)
{
	uint64_t seed = T * 1000003u + E * 1009u + H;
	float *x = malloc(T * H * sizeof(float)), *g = malloc((size_t)E * H * sizeof(float));
	float *all = malloc(T * E * sizeof(float)), *one = malloc(E * sizeof(float));

	assert_non_null(x);
	assert_non_null(g);
	assert_non_null(all);
	assert_non_null(one);
	for (size_t i = 0; i < T * H; i++)
		x[i] = frand(&seed);
	for (size_t i = 0; i < (size_t)E * H; i++)
		g[i] = frand(&seed);
	assert_int_equal(route_logits(T, E, H, x, g, all), 0);
	for (size_t t = 0; t < T; t++) {
		assert_int_equal(route_logits(1, E, H, x + t * H, g, one), 0);
		if (memcmp(one, all + t * E, E * sizeof(float)))
			fail_msg("T=%zu E=%u H=%u: token %zu alone differs from in the batch", T, E,
				 H, t);
		for (uint32_t e = 0; e < E; e++) {
			long double ref = 0, mag = 0;

			for (uint32_t h = 0; h < H; h++) {
				ref += (long double)x[t * H + h] * g[(size_t)e * H + h];
				mag += fabsl((long double)x[t * H + h] * g[(size_t)e * H + h]);
			}
			if (fabsl(all[t * E + e] - ref) > 1e-5L * mag)
				fail_msg("T=%zu E=%u H=%u: logit [%zu][%u] %g, want %Lg", T, E, H, t,
					 e, all[t * E + e], ref);
		}
	}
	free(x);
	free(g);
	free(all);
	free(one);
}

static void test_batch_independent(void **state)
{
	static const uint32_t shapes[][2] = { { 16, 64 }, { 7, 61 }, { 9, 700 }, { 64, 2048 } };

	(void)state;
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
		for (size_t T = 1; T <= 41; T += (T < 9 ? 1 : 8))
			check_shape(T, shapes[s][0], shapes[s][1]);
	/* more tokens than a chunk, and more columns than a block */
	check_shape(70, 6, 1100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_batch_independent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
