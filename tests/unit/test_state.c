/*
 * router.state and the generic router state, with the mock routers in
 * tests/plugins and the real bias-balanced: a stateful router's blob survives a
 * swap away and back and a save + load into a new engine; the router set at
 * run time comes back when the config's [router] is the one the file was
 * written under, and not otherwise; a failed save says so (never 0); stale
 * temporary files are removed; anything but a regular file is refused without
 * blocking; an old bias.state is migrated into bias-balanced's state and
 * removed after the first save, and one with a valid checksum but a NaN bias is
 * refused, as is a NaN blob given to bias-balanced.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "daemon/engine.h"
#include "daemon/hash.h"
#include "daemon/host.h"
#include "daemon/model_load.h"
#include "daemon/state.h"

static const char *mock_dir, *plugin_dir;
static char dir[] = "/tmp/moed-state.XXXXXX";

static void path_in(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static void clear_dir(void)
{
	const char *names[] = { "router.state", "bias.state", ".router.state.a1", ".bias.state.b2",
				"keep" };
	char p[600];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		path_in(p, sizeof(p), names[i]);
		if (unlink(p) < 0)
			rmdir(p);
	}
}

static int setup(void **state)
{
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	clear_dir();
	rmdir(dir);
	return 0;
}

static struct engine *new_engine(const char *pdir)
{
	struct moed_model *model;
	struct engine *e;
	char err[512];

	assert_int_equal(model_load("synthetic:S0", &model, err, sizeof(err)), 0);
	assert_int_equal(engine_new(model, pdir, &e), 0);
	return e;
}

static void bind(struct engine *e, const char *name, const struct moed_param *p, size_t n)
{
	char err[512] = "";

	if (engine_set_plugin(e, MOED_PLUGIN_ROUTER, name, p, n, -1, err, sizeof(err)) < 0)
		fail_msg("bind '%s': %s", name, err);
}

/* Route one token through layer i; the declared mock's weights are its counter. */
static float route_once(struct engine *e, uint32_t i)
{
	struct engine_layer *l = &e->layers[i];
	float *x = calloc(l->rspec.hidden_size, sizeof(float)), w[64];
	int32_t ex[64];
	struct engine_call c = { .x = x, .n_tokens = 1, .experts = ex, .weights = w };

	engine_call_begin(&c, l);
	engine_call_run(&c);
	engine_call_end(&c);
	assert_int_equal(c.rc, 0);
	free(x);
	return w[0];
}

static void test_blob_across_swaps(void **state)
{
	struct engine *e = new_engine(mock_dir);

	bind(e, "declared", NULL, 0);
	assert_float_equal(route_once(e, 0), 1.0f, 0);
	assert_float_equal(route_once(e, 0), 2.0f, 0);
	bind(e, "mock-router", NULL, 0);                /* keeps no state: blob kept */
	bind(e, "declared", NULL, 0);
	assert_float_equal(route_once(e, 0), 3.0f, 0);
	assert_float_equal(route_once(e, 1), 1.0f, 0);  /* per layer */
	engine_free(e);
}

static void test_save_load_and_runtime_router(void **state)
{
	const struct moed_param n2[] = { { "n", "2" } };
	struct engine *e = new_engine(mock_dir);
	char err[512] = "", p[600];
	struct stat st;

	clear_dir();
	assert_int_equal(state_restore_routers(e, "mock-router", NULL, 0, err, sizeof(err)), 0);
	bind(e, "mock-router", NULL, 0);                /* the config's */
	bind(e, "declared", n2, 1);                     /* set at run time */
	for (int i = 0; i < 3; i++)
		route_once(e, 0);                       /* counter 3 x 2 = 6 */
	assert_int_equal(state_save(e, dir, err, sizeof(err)), 0);
	path_in(p, sizeof(p), STATE_ROUTER_FILE);
	assert_int_equal(stat(p, &st), 0);
	engine_free(e);

	/* restart under the same config: the run-time router and its state return */
	e = new_engine(mock_dir);
	assert_int_equal(state_load(e, dir, err, sizeof(err)), 0);
	bind(e, "mock-router", NULL, 0);
	assert_int_equal(state_restore_routers(e, "mock-router", NULL, 0, err, sizeof(err)), 0);
	for (uint32_t i = 0; i < e->n_layers; i++) {
		assert_string_equal(e->layers[i].router->gen->name, "declared");
		assert_int_equal(e->layers[i].router->gen->n_params, 1);
		assert_string_equal(e->layers[i].router->gen->params[0].value, "2");
	}
	assert_float_equal(route_once(e, 0), 8.0f, 0);
	assert_float_equal(route_once(e, 1), 2.0f, 0);
	engine_free(e);

	/* the config's [router] changed since: the config's router serves */
	e = new_engine(mock_dir);
	assert_int_equal(state_load(e, dir, err, sizeof(err)), 0);
	bind(e, "abi1-router", NULL, 0);
	assert_int_equal(state_restore_routers(e, "abi1-router", NULL, 0, err, sizeof(err)), 0);
	assert_string_equal(e->layers[0].router->gen->name, "abi1-router");
	engine_free(e);
	e = new_engine(mock_dir);
	assert_int_equal(state_load(e, dir, err, sizeof(err)), 0);
	const struct moed_param eps[] = { { "x", "1" } };
	bind(e, "mock-router", eps, 1);
	assert_int_equal(state_restore_routers(e, "mock-router", eps, 1, err, sizeof(err)), 0);
	assert_string_equal(e->layers[0].router->gen->name, "mock-router");
	/* but a router of the saved plugin still gets its state */
	bind(e, "declared", NULL, 0);
	assert_float_equal(route_once(e, 0), 7.0f, 0);
	engine_free(e);
}

/* An ABI-1 router's live bias (get_bias/set_bias) is kept like a blob. */
static void test_abi1_bias(void **state)
{
	const struct moed_param off2[] = { { "offset", "2" } };
	struct engine *e = new_engine(mock_dir);
	uint32_t E = e->model->n_experts, frozen = 0;
	float *got = calloc(E, sizeof(float));
	char err[512] = "";

	clear_dir();
	bind(e, "abi1-router", off2, 1);                /* bias[e] = 2e */
	assert_int_equal(engine_bias_op(e, -1, MOED_BIAS_FREEZE, err, sizeof(err)), 0);
	bind(e, "mock-router", NULL, 0);
	bind(e, "abi1-router", NULL, 0);                /* fresh: zeros, not frozen */
	assert_int_equal(engine_router_bias(&e->layers[1], got, &frozen), E);
	assert_int_equal(frozen, 1);
	for (uint32_t i = 0; i < E; i++)
		assert_float_equal(got[i], 2.0f * (float)i, 0);
	assert_int_equal(state_save(e, dir, err, sizeof(err)), 0);
	engine_free(e);

	e = new_engine(mock_dir);
	assert_int_equal(state_load(e, dir, err, sizeof(err)), 0);
	bind(e, "abi1-router", NULL, 0);
	memset(got, 0, E * sizeof(float));
	assert_int_equal(engine_router_bias(&e->layers[0], got, &frozen), E);
	assert_int_equal(frozen, 1);
	for (uint32_t i = 0; i < E; i++)
		assert_float_equal(got[i], 2.0f * (float)i, 0);
	engine_free(e);
	free(got);
}

static void test_save_failures(void **state)
{
	struct engine *e = new_engine(mock_dir);
	char err[512] = "", p[600];

	bind(e, "mock-router", NULL, 0);
	assert_true(state_save(e, "/nonexistent/moed/state", err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "/nonexistent/moed/state"));
	err[0] = '\0';
	clear_dir();
	path_in(p, sizeof(p), "keep");
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fclose(f);
	assert_true(state_save(e, p, err, sizeof(err)) < 0);    /* not a directory */
	assert_true(err[0] != '\0');
	engine_free(e);
}

static void touch(const char *name)
{
	char p[600];
	FILE *f;

	path_in(p, sizeof(p), name);
	f = fopen(p, "w");
	assert_non_null(f);
	fclose(f);
}

static void test_cleanup(void **state)
{
	char p[600];
	struct stat st;

	clear_dir();
	touch(".router.state.a1");
	touch(".bias.state.b2");
	touch("keep");
	touch("router.state");
	assert_int_equal(state_cleanup(dir), 2);
	path_in(p, sizeof(p), "keep");
	assert_int_equal(stat(p, &st), 0);
	path_in(p, sizeof(p), "router.state");
	assert_int_equal(stat(p, &st), 0);
	path_in(p, sizeof(p), ".router.state.a1");
	assert_true(stat(p, &st) < 0);
	assert_int_equal(state_cleanup(dir), 0);
	assert_true(state_cleanup("/nonexistent/moed") < 0);
}

static void test_not_regular(void **state)
{
	struct engine *e = new_engine(mock_dir);
	char err[512] = "", p[600];

	clear_dir();
	path_in(p, sizeof(p), STATE_ROUTER_FILE);
	assert_int_equal(mkfifo(p, 0600), 0);
	assert_int_equal(state_load(e, dir, err, sizeof(err)), -EINVAL);   /* no hang */
	assert_non_null(strstr(err, "is a FIFO, not a regular file"));
	unlink(p);
	assert_int_equal(mkdir(p, 0700), 0);
	assert_int_equal(state_load(e, dir, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "is a directory, not a regular file"));
	rmdir(p);
	assert_int_equal(symlink("/etc/hostname", p), 0);
	assert_int_equal(state_load(e, dir, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "symbolic link"));
	unlink(p);
	assert_int_equal(state_load(e, dir, err, sizeof(err)), -ENOENT);
	engine_free(e);
}

/* Write a bias.state of the old format: one record, for layer index `index`. */
static void write_old_bias(struct engine *e, uint32_t index, const float *bias, uint32_t frozen)
{
	uint32_t version = 1, n = 1, E = e->model->n_experts;
	uint64_t fp = engine_model_fingerprint(e), sum;
	size_t len = 28 + 8 + E * 4, off = 0;
	uint8_t *b = malloc(len + 8);
	char p[600];
	FILE *f;

#define PUT(v, sz) (memcpy(b + off, (v), (sz)), off += (sz))
	PUT("MOEDBIAS", 8);
	PUT(&version, 4);
	PUT(&fp, 8);
	PUT(&n, 4);
	PUT(&E, 4);
	PUT(&index, 4);
	PUT(&frozen, 4);
	PUT(bias, E * 4);
	sum = moed_fnv1a(MOED_FNV1A_INIT, b, off);
	PUT(&sum, 8);
#undef PUT
	path_in(p, sizeof(p), STATE_BIAS_FILE);
	f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, off, f), off);
	fclose(f);
	free(b);
}

static void test_bias_migration(void **state)
{
	struct engine *e = new_engine(plugin_dir);
	uint32_t E = e->model->n_experts, frozen = 0;
	float *bias = calloc(E, sizeof(float)), *got = calloc(E, sizeof(float));
	char err[512] = "", p[600];
	struct stat st;

	clear_dir();
	for (uint32_t i = 0; i < E; i++)
		bias[i] = 0.25f * (float)i - 1.0f;
	write_old_bias(e, e->layers[0].w->index, bias, 1);
	assert_int_equal(state_load(e, dir, err, sizeof(err)), 0);
	bind(e, "bias-balanced", NULL, 0);
	assert_int_equal(engine_router_bias(&e->layers[0], got, &frozen), E);
	assert_int_equal(frozen, 1);
	assert_memory_equal(got, bias, E * sizeof(float));
	assert_int_equal(state_save(e, dir, err, sizeof(err)), 0);
	path_in(p, sizeof(p), STATE_BIAS_FILE);
	assert_true(stat(p, &st) < 0);                  /* migrated, removed */
	engine_free(e);

	e = new_engine(plugin_dir);
	assert_int_equal(state_load(e, dir, err, sizeof(err)), 0);
	bind(e, "bias-balanced", NULL, 0);
	memset(got, 0, E * sizeof(float));
	assert_int_equal(engine_router_bias(&e->layers[0], got, &frozen), E);
	assert_memory_equal(got, bias, E * sizeof(float));
	assert_int_equal(frozen, 1);

	/* a blob with a NaN is refused by bias-balanced: the layer starts afresh */
	uint8_t *blob = malloc(8 + E * 4);
	float nan_bias = NAN;
	memset(blob, 0, 8 + E * 4);
	memcpy(blob + 4, &E, 4);
	memcpy(blob + 8, &nan_bias, 4);
	engine_saved_clear(&e->layers[1].saved);
	e->layers[1].saved.plugin = strdup("bias-balanced");
	e->layers[1].saved.version = 1;
	e->layers[1].saved.blob = blob;
	e->layers[1].saved.len = 8 + E * 4;
	bind(e, "bias-balanced", NULL, 0);
	assert_int_equal(engine_router_bias(&e->layers[1], got, &frozen), E);
	for (uint32_t i = 0; i < E; i++)
		assert_true(isfinite(got[i]));
	assert_int_equal(frozen, 0);
	engine_free(e);

	/* an old file with a valid checksum and a NaN bias is refused */
	clear_dir();
	e = new_engine(plugin_dir);
	bias[2] = INFINITY;
	write_old_bias(e, e->layers[0].w->index, bias, 0);
	assert_int_equal(state_load(e, dir, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "non-finite"));
	engine_free(e);
	free(bias);
	free(got);
}

static void test_corrupt(void **state)
{
	struct engine *e = new_engine(mock_dir);
	char err[512] = "", p[600];
	uint8_t byte;
	FILE *f;

	clear_dir();
	bind(e, "declared", NULL, 0);
	route_once(e, 0);
	assert_int_equal(state_save(e, dir, err, sizeof(err)), 0);
	path_in(p, sizeof(p), STATE_ROUTER_FILE);
	f = fopen(p, "r+b");
	assert_non_null(f);
	fseek(f, 30, SEEK_SET);
	assert_int_equal(fread(&byte, 1, 1, f), 1);
	byte ^= 0x40;
	fseek(f, 30, SEEK_SET);
	fwrite(&byte, 1, 1, f);
	fclose(f);
	assert_int_equal(state_load(e, dir, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "checksum"));
	engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blob_across_swaps),
		cmocka_unit_test(test_save_load_and_runtime_router),
		cmocka_unit_test(test_abi1_bias),
		cmocka_unit_test(test_save_failures),
		cmocka_unit_test(test_cleanup),
		cmocka_unit_test(test_not_regular),
		cmocka_unit_test(test_bias_migration),
		cmocka_unit_test(test_corrupt),
	};

	mock_dir = getenv("MOED_TEST_MOCK_DIR");
	plugin_dir = getenv("MOED_TEST_PLUGIN_DIR");
	if (!mock_dir || !plugin_dir) {
		fprintf(stderr, "MOED_TEST_MOCK_DIR or MOED_TEST_PLUGIN_DIR is not set (run through make check)\n");
		return 77;
	}
	host_init();
	return cmocka_run_group_tests(tests, setup, teardown);
}
