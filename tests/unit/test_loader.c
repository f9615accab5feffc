/*
 * Plugin loader and engine binding tests with the mock plugins in tests/plugins:
 * a good router loads, binds to every layer and routes; a plugin with a wrong
 * ABI, without the descriptor symbol, of the wrong kind, with an invalid name,
 * or whose init() fails is rejected with a message saying so while the current
 * generation keeps serving; fini() runs exactly once, after the last layer is
 * released, and never after a failed init().
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "daemon/engine.h"
#include "daemon/host.h"
#include "daemon/loader.h"
#include "daemon/model.h"
#include "daemon/model_load.h"

static const char *mock_dir;
static char trace_path[] = "/tmp/moed-loader-trace.XXXXXX";

static int count_lines(const char *prefix)
{
	char line[128];
	int n = 0;
	FILE *f = fopen(trace_path, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, prefix, strlen(prefix)) == 0)
			n++;
	fclose(f);
	return n;
}

static int setup(void **state)
{
	int fd = mkstemp(trace_path);

	if (fd < 0)
		return -1;
	close(fd);
	setenv("MOCK_TRACE", trace_path, 1);
	return 0;
}

static int teardown(void **state)
{
	unlink(trace_path);
	return 0;
}

static void expect_reject(const char *name, uint32_t kind, const char *needle)
{
	struct plugin_gen *g = NULL;
	char err[512] = "";

	assert_true(loader_open(mock_dir, name, kind, NULL, 0, 1, &g, err, sizeof(err)) < 0);
	assert_null(g);
	if (!strstr(err, needle))
		fail_msg("rejecting '%s': message '%s' lacks '%s'", name, err, needle);
}

static void test_rejections(void **state)
{
	expect_reject("bad-abi", MOED_PLUGIN_ROUTER, "ABI 999, want 1");
	expect_reject("no-symbol", MOED_PLUGIN_ROUTER, "no 'moed_plugin' symbol");
	expect_reject("mock-router", MOED_PLUGIN_EXPERT, "is a router plugin, want expert");
	expect_reject("failing-init", MOED_PLUGIN_ROUTER, "init failed");
	expect_reject("does-not-exist", MOED_PLUGIN_ROUTER, "does-not-exist.so");
	expect_reject("../plugins/mock-router", MOED_PLUGIN_ROUTER, "not valid");
	expect_reject("/etc/passwd", MOED_PLUGIN_ROUTER, "not valid");
	assert_int_equal(count_lines("fini"), 0);
}

static void test_load_and_release(void **state)
{
	struct plugin_gen *g = NULL;
	char err[512] = "";

	assert_int_equal(loader_open(mock_dir, "mock-router", MOED_PLUGIN_ROUTER, NULL, 0, 5, &g,
				     err, sizeof(err)), 0);
	assert_non_null(g);
	assert_string_equal(g->desc->name, "mock-router");
	assert_int_equal(g->generation, 5);
	int inits = count_lines("init");
	plugin_gen_ref(g);
	plugin_gen_unref(g);
	assert_int_equal(count_lines("fini"), 0);
	plugin_gen_unref(g);
	assert_int_equal(count_lines("fini"), 1);
	assert_int_equal(inits, 1);
}

static void test_engine_keeps_old_generation(void **state)
{
	struct moed_model *model;
	struct engine *e;
	char err[512] = "";

	assert_int_equal(truncate(trace_path, 0), 0);   /* count this test's events only */
	assert_int_equal(model_load("synthetic:S0", &model, err, sizeof(err)), 0);
	assert_int_equal(engine_new(model, mock_dir, &e), 0);
	assert_int_equal(engine_set_plugin(e, MOED_PLUGIN_ROUTER, "mock-router", NULL, 0, -1, err,
					   sizeof(err)), 0);
	struct plugin_gen *first = e->layers[0].router->gen;
	uint64_t gen = first->generation;
	assert_int_equal(count_lines("layer_new"), (int)e->n_layers);

	/* every broken candidate leaves every layer on the first generation */
	const char *bad[] = { "bad-abi", "no-symbol", "failing-init", "nope" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(engine_set_plugin(e, MOED_PLUGIN_ROUTER, bad[i], NULL, 0, -1, err,
					      sizeof(err)) < 0);
		for (uint32_t l = 0; l < e->n_layers; l++)
			assert_ptr_equal(e->layers[l].router->gen, first);
	}
	assert_int_equal(e->layers[0].router->gen->generation, gen);

	/* route through the bound generation */
	struct engine_layer *l = &e->layers[0];
	size_t k = l->rspec.top_k, H = l->rspec.hidden_size;
	float *x = calloc(2 * H, sizeof(float)), w[64];
	int32_t ex[64];
	struct engine_call c = { .x = x, .n_tokens = 2, .experts = ex, .weights = w };
	engine_call_begin(&c, l);
	engine_call_run(&c);
	assert_int_equal(c.rc, 0);
	for (size_t j = 0; j < k; j++) {
		assert_int_equal(ex[k + j], (int32_t)j);
		assert_float_equal(w[k + j], 1.0f / (float)k, 1e-7);
	}

	/* swap one layer while a call holds the old binding: fini waits for it */
	assert_int_equal(engine_set_plugin(e, MOED_PLUGIN_ROUTER, "mock-router", NULL, 0,
					   l->w->index, err, sizeof(err)), 0);
	assert_true(l->router->gen != first);
	assert_int_equal(count_lines("fini"), 0);
	engine_call_end(&c);
	assert_int_equal(count_lines("fini"), 0);       /* other layers still use it */
	assert_int_equal(engine_set_plugin(e, MOED_PLUGIN_ROUTER, "mock-router", NULL, 0, -1,
					   err, sizeof(err)), 0);
	assert_int_equal(count_lines("fini"), 2);       /* first and the one-layer generation */
	assert_true(engine_set_plugin(e, MOED_PLUGIN_ROUTER, "mock-router", NULL, 0, 9999, err,
				      sizeof(err)) < 0);
	assert_non_null(strstr(err, "not a MoE layer"));
	engine_free(e);
	assert_int_equal(count_lines("fini"), 3);
	assert_int_equal(count_lines("layer_free"), count_lines("layer_new"));
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rejections),
		cmocka_unit_test(test_load_and_release),
		cmocka_unit_test(test_engine_keeps_old_generation),
	};

	mock_dir = getenv("MOED_TEST_MOCK_DIR");
	if (!mock_dir) {
		fprintf(stderr, "MOED_TEST_MOCK_DIR is not set (run through make check)\n");
		return 77;
	}
	host_init();
	return cmocka_run_group_tests(tests, setup, teardown);
}
