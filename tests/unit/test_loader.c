/*
 * Plugin loader and engine binding tests with the mock plugins in tests/plugins:
 * a good router loads, binds to every layer and routes; a plugin with a wrong
 * ABI, without the descriptor symbol, of the wrong kind, with an invalid name,
 * or whose init() fails is rejected with a message saying so while the current
 * generation keeps serving; fini() runs exactly once, after the last layer is
 * released, and never after a failed init().  ABI 2: a router built against the
 * frozen ABI-1 header loads and routes; declared parameters are checked before
 * init(); listing never maps a refused file and maps a permitted one once per
 * change; files owned by another user (also through a link) are refused;
 * prepare/commit swaps all or nothing.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
	expect_reject("abi-three", MOED_PLUGIN_ROUTER, "ABI 3, want 1 to 2");
	expect_reject("tiny-desc", MOED_PLUGIN_ROUTER, "descriptor is 16 bytes, want at least");
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

static void copy_file(const char *from, const char *to, mode_t mode)
{
	char buf[65536];
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	size_t n;

	assert_non_null(in);
	assert_non_null(out);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	fclose(out);
	assert_int_equal(chmod(to, mode), 0);
}

static void mock_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s.so", mock_dir, name);
}

static void test_abi1_plugin(void **state)
{
	struct plugin_gen *g = NULL;
	struct moed_model *model;
	struct engine *e;
	char err[512] = "";

	assert_int_equal(loader_open(mock_dir, "abi1-router", MOED_PLUGIN_ROUTER, NULL, 0, 1, &g,
				     err, sizeof(err)), 0);
	assert_int_equal(g->desc->abi_version, 1);
	assert_null(g->desc->params);                   /* members ABI 1 lacks are absent */
	assert_null(g->desc->router->state_save);
	assert_null(g->desc->router->state_restore);
	assert_non_null(g->desc->router->set_bias);      /* ABI 1 members are there */
	plugin_gen_unref(g);

	assert_int_equal(model_load("synthetic:S0", &model, err, sizeof(err)), 0);
	assert_int_equal(engine_new(model, mock_dir, &e), 0);
	const struct moed_param off[] = { { "offset", "3" } };
	assert_int_equal(engine_set_plugin(e, MOED_PLUGIN_ROUTER, "abi1-router", off, 1, -1, err,
					   sizeof(err)), 0);
	struct engine_layer *l = &e->layers[e->n_layers - 1];
	size_t k = l->rspec.top_k, E = l->rspec.n_experts, H = l->rspec.hidden_size;
	float *x = calloc(3 * H, sizeof(float)), w[3 * 64];
	int32_t ex[3 * 64];
	struct engine_call c = { .x = x, .n_tokens = 3, .experts = ex, .weights = w };
	engine_call_begin(&c, l);
	engine_call_run(&c);
	engine_call_end(&c);
	assert_int_equal(c.rc, 0);
	for (size_t t = 0; t < 3; t++)
		for (size_t j = 0; j < k; j++) {
			assert_int_equal(ex[t * k + j], (int32_t)((3 + t + j) % E));
			assert_float_equal(w[t * k + j], 1.0f / (float)k, 1e-7);
		}
	/* not declared: the host passes it on and the plugin itself refuses it */
	const struct moed_param bad[] = { { "nope", "1" } };
	assert_true(engine_set_plugin(e, MOED_PLUGIN_ROUTER, "abi1-router", bad, 1, -1, err,
				      sizeof(err)) < 0);
	assert_non_null(strstr(err, "unknown parameter 'nope'"));
	engine_free(e);
	free(x);
}

/* Features ABI 1 cannot describe are never handed to an ABI-1 backend; the
 * ABI-2 backends refuse them too, until they implement them. */
static void test_abi2_features_refused(void **state)
{
	static const float gate[4096];
	static const uint8_t local[4096];
	struct moed_model *model;
	struct engine *e;
	char err[512] = "";
	const char *pdir = getenv("MOED_TEST_PLUGIN_DIR");

	assert_int_equal(model_load("synthetic:S0", &model, err, sizeof(err)), 0);
	assert_int_equal(engine_new(model, mock_dir, &e), 0);
	assert_int_equal(engine_set_plugin(e, MOED_PLUGIN_EXPERT, "abi1-expert", NULL, 0, -1, err,
					   sizeof(err)), 0);
	struct plugin_gen *first = e->layers[0].expert->gen;
	struct engine_layer *l = &e->layers[e->n_layers - 1];
	l->espec.shared_expert_gate = gate;
	assert_int_equal(engine_set_plugin(e, MOED_PLUGIN_EXPERT, "abi1-expert", NULL, 0, -1, err,
					   sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "built for ABI 1, which cannot describe a shared-expert gate"));
	l->espec.shared_expert_gate = NULL;
	l->espec.local = local;
	assert_int_equal(engine_set_plugin(e, MOED_PLUGIN_EXPERT, "abi1-expert", NULL, 0, -1, err,
					   sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "a local subset of the experts"));
	l->espec.local = NULL;
	l->espec.dtype = MOED_DTYPE_F8_E4M3;
	assert_int_equal(engine_set_plugin(e, MOED_PLUGIN_EXPERT, "abi1-expert", NULL, 0, -1, err,
					   sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "FP8 weights"));
	for (uint32_t i = 0; i < e->n_layers; i++)
		assert_ptr_equal(e->layers[i].expert->gen, first);
	l->espec.dtype = e->model->dtype;
	engine_free(e);

	/* the cpu backend (ABI 2) is given them and refuses what it lacks */
	if (!pdir)
		return;
	assert_int_equal(model_load("synthetic:S0", &model, err, sizeof(err)), 0);
	assert_int_equal(engine_new(model, pdir, &e), 0);
	l = &e->layers[0];
	/* the cpu backend computes a local subset (expert parallelism) */
	l->espec.local = local;
	assert_int_equal(engine_set_plugin(e, MOED_PLUGIN_EXPERT, "cpu", NULL, 0, -1, err,
					   sizeof(err)), 0);
	l->espec.local = NULL;
	/* FP8 without its block scales is malformed (the cpu backend computes FP8) */
	l->espec.dtype = MOED_DTYPE_F8_E4M3;
	assert_true(engine_set_plugin(e, MOED_PLUGIN_EXPERT, "cpu", NULL, 0, -1, err,
				      sizeof(err)) < 0);
	assert_non_null(strstr(err, "FP8 weights without a block size or a scale"));
	l->espec.dtype = e->model->dtype;
	/* the cpu backend computes Qwen2-MoE's shared-expert gate */
	l->espec.shared_expert_gate = gate;
	assert_int_equal(engine_set_plugin(e, MOED_PLUGIN_EXPERT, "cpu", NULL, 0, -1, err,
					   sizeof(err)), 0);
	l->espec.shared_expert_gate = NULL;
	assert_int_equal(engine_set_plugin(e, MOED_PLUGIN_EXPERT, "cpu", NULL, 0, -1, err,
					   sizeof(err)), 0);
	engine_free(e);
}

static void expect_param_error(const struct moed_param *p, const char *needle)
{
	struct plugin_gen *g = NULL;
	char err[512] = "";

	assert_int_equal(loader_open(mock_dir, "declared", MOED_PLUGIN_ROUTER, p, 1, 1, &g, err,
				     sizeof(err)), -EINVAL);
	assert_null(g);
	if (!strstr(err, needle))
		fail_msg("open: message '%s' lacks '%s'", err, needle);
	err[0] = '\0';
	assert_int_equal(loader_check_params(mock_dir, "declared", MOED_PLUGIN_ROUTER, p, 1, err,
					     sizeof(err)), -EINVAL);
	if (!strstr(err, needle))
		fail_msg("check: message '%s' lacks '%s'", err, needle);
}

static void test_declared_params(void **state)
{
	const struct moed_param range[] = { { "n", "99" } }, unknown[] = { { "nn", "1" } },
				 choice[] = { { "mode", "quiet" } }, frac[] = { { "n", "1.5" } },
				 good[] = { { "n", "2" }, { "mode", "loud" } };
	struct plugin_gen *g = NULL;
	char err[512] = "";

	assert_int_equal(truncate(trace_path, 0), 0);
	expect_param_error(range, "parameter 'n' = '99': want an integer in [1, 8]");
	expect_param_error(unknown, "unknown parameter 'nn' (known: n, mode)");
	expect_param_error(choice, "parameter 'mode' = 'quiet': want one of plain, loud");
	expect_param_error(frac, "want an integer in [1, 8]");
	assert_int_equal(loader_check_params(mock_dir, "declared", MOED_PLUGIN_ROUTER, good, 2, err,
					     sizeof(err)), 0);
	assert_int_equal(count_lines("declared-init"), 0);      /* refused before init */
	assert_true(loader_check_params(mock_dir, "declared", MOED_PLUGIN_EXPERT, good, 2, err,
					sizeof(err)) < 0);
	assert_non_null(strstr(err, "is a router plugin, want expert"));
	assert_true(loader_check_params(mock_dir, "bad-abi", MOED_PLUGIN_ROUTER, NULL, 0, err,
					sizeof(err)) < 0);
	assert_non_null(strstr(err, "ABI 999"));
	/* no declarations (ABI 1): not checked by the host */
	assert_int_equal(loader_check_params(mock_dir, "abi1-router", MOED_PLUGIN_ROUTER, unknown, 1,
					     err, sizeof(err)), 0);
	assert_int_equal(loader_open(mock_dir, "declared", MOED_PLUGIN_ROUTER, good, 2, 1, &g, err,
				     sizeof(err)), 0);
	assert_int_equal(count_lines("declared-init"), 1);
	plugin_gen_unref(g);
}

struct found {
	const char *name;
	struct plugin_probe p;
	char path[512];
	char param_names[128], param_types[64], ranges[64], choices[64];
	int seen;
};

static void on_probe(const char *path, const struct plugin_probe *p, void *arg)
{
	struct found *f = arg;

	if (strcmp(p->name, f->name))
		return;
	f->seen++;
	f->p = *p;
	snprintf(f->path, sizeof(f->path), "%s", path);
	f->param_names[0] = f->param_types[0] = f->ranges[0] = f->choices[0] = '\0';
	for (size_t i = 0; i < p->n_params; i++) {
		const struct plugin_param_info *pi = &p->params[i];
		size_t n = strlen(f->param_names), m = strlen(f->param_types), r = strlen(f->ranges);
		snprintf(f->param_names + n, sizeof(f->param_names) - n, "%s;", pi->name);
		snprintf(f->param_types + m, sizeof(f->param_types) - m, "%s;", pi->type);
		snprintf(f->ranges + r, sizeof(f->ranges) - r, "%s..%s;", pi->min, pi->max);
		if (pi->choices[0])
			snprintf(f->choices, sizeof(f->choices), "%s", pi->choices);
	}
	f->p.params = NULL;     /* only valid during the callback */
}

static struct found scan_for(const char *dir, const char *name)
{
	struct found f = { .name = name };

	assert_int_equal(loader_scan(dir, on_probe, &f), 0);
	assert_int_equal(f.seen, 1);
	return f;
}

static void test_scan(void **state)
{
	char dir[] = "/tmp/moed-scan.XXXXXX", src[512], dst[600];
	struct found f;

	f = scan_for(mock_dir, "declared");
	assert_string_equal(f.p.error, "");
	assert_int_equal(f.p.abi_version, 2);
	assert_true(f.p.declares_params);
	assert_int_equal(f.p.n_params, 2);
	assert_string_equal(f.param_names, "n;mode;");
	assert_string_equal(f.param_types, "int;enum;");
	assert_string_equal(f.ranges, "1..8;..;");
	assert_string_equal(f.choices, "plain|loud");
	f = scan_for(mock_dir, "abi1-router");
	assert_string_equal(f.p.error, "");
	assert_int_equal(f.p.abi_version, 1);
	assert_false(f.p.declares_params);
	f = scan_for(mock_dir, "bad-abi");
	assert_non_null(strstr(f.p.error, "ABI 999"));

	/* a refused file is listed with the reason and never mapped */
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chmod(dir, 0755), 0);
	mock_path(src, sizeof(src), "evil");
	snprintf(dst, sizeof(dst), "%s/evil.so", dir);
	copy_file(src, dst, 0666);
	assert_int_equal(truncate(trace_path, 0), 0);
	f = scan_for(dir, "evil");
	assert_non_null(strstr(f.p.error, "is writable by others"));
	assert_int_equal(count_lines("evil-constructor"), 0);
	struct plugin_gen *g = NULL;
	char err[512];
	assert_true(loader_open(dir, "evil", MOED_PLUGIN_ROUTER, NULL, 0, 1, &g, err,
				sizeof(err)) < 0);
	assert_int_equal(count_lines("evil-constructor"), 0);
	/* permitted: mapped once, then listed from the cache until it changes */
	assert_int_equal(chmod(dst, 0644), 0);
	f = scan_for(dir, "evil");
	assert_string_equal(f.p.error, "");
	assert_int_equal(count_lines("evil-constructor"), 1);
	for (int i = 0; i < 3; i++)
		scan_for(dir, "evil");
	assert_int_equal(count_lines("evil-constructor"), 1);
	struct timespec ts[2] = { { 1000000, 0 }, { 1000000, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, dst, ts, 0), 0);
	scan_for(dir, "evil");
	assert_int_equal(count_lines("evil-constructor"), 2);
	/* a group-writable directory is refused before any file in it is read */
	assert_int_equal(chmod(dir, 0775), 0);
	f = scan_for(dir, "evil");
	assert_non_null(strstr(f.p.error, "is writable by its group"));
	assert_int_equal(chmod(dir, 0755), 0);
	unlink(dst);
	rmdir(dir);
}

/* loader_scan() from several threads at once, while the main thread loads. */
static void *scan_thread(void *arg)
{
	for (int i = 0; i < 20; i++) {
		struct found f = { .name = "declared" };
		if (loader_scan(mock_dir, on_probe, &f) < 0 || f.seen != 1 || f.p.n_params != 2 ||
		    strcmp(f.param_names, "n;mode;"))
			return (void *)1;
	}
	return NULL;
}

static void test_scan_threads(void **state)
{
	pthread_t t[4];
	char err[512];

	loader_cache_clear();
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, scan_thread, NULL), 0);
	for (int i = 0; i < 10; i++) {
		struct plugin_gen *g = NULL;
		struct plugin_param_info pi;
		assert_int_equal(loader_open(mock_dir, "declared", MOED_PLUGIN_ROUTER, NULL, 0, 1, &g,
					     err, sizeof(err)), 0);
		assert_int_equal(loader_gen_params(g, 1, &pi), 2);
		assert_string_equal(pi.name, "mode");
		assert_string_equal(pi.choices, "plain|loud");
		plugin_gen_unref(g);
	}
	for (int i = 0; i < 4; i++) {
		void *rv;
		assert_int_equal(pthread_join(t[i], &rv), 0);
		assert_null(rv);
	}
}

static void test_owner_rule(void **state)
{
	struct stat st = { .st_mode = S_IFREG | 0755, .st_uid = 1234 };
	char err[512] = "";

	assert_int_equal(loader_check_owner(&st, 1000, 0, "plugin file", "/p/x.so", "/home/u/x.so",
					    err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "'/p/x.so' -> '/home/u/x.so' is owned by uid 1234, not root or moed's uid 1000"));
	st.st_uid = 1000;
	assert_int_equal(loader_check_owner(&st, 1000, 0, "f", "p", NULL, err, sizeof(err)), 0);
	st.st_uid = 0;
	assert_int_equal(loader_check_owner(&st, 1000, 0, "f", "p", NULL, err, sizeof(err)), 0);
	st.st_mode = S_IFREG | 0775;
	assert_int_equal(loader_check_owner(&st, 1000, 0, "f", "p", NULL, err, sizeof(err)), -EPERM);
	assert_int_equal(loader_check_owner(&st, 1000, 1, "f", "p", NULL, err, sizeof(err)), 0);
	st.st_uid = 1000;
	assert_int_equal(loader_check_owner(&st, 1000, 1, "f", "p", NULL, err, sizeof(err)), -EPERM);
	st.st_mode = S_IFREG | 0757;
	st.st_uid = 0;
	assert_int_equal(loader_check_owner(&st, 1000, 1, "f", "p", NULL, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "writable by others"));
}

/* A link in the plugin directory to a 0755 file another user owns is refused,
 * and so is a file in a directory another user owns (needs root to chown). */
static void test_link_to_foreign_file(void **state)
{
	char dir[] = "/tmp/moed-pd.XXXXXX", other[] = "/tmp/moed-other.XXXXXX";
	char src[512], real[600], link[600], err[1024] = "";
	struct plugin_gen *g = NULL;
	struct found f;

	if (geteuid() != 0)
		skip();
	assert_non_null(mkdtemp(dir));
	assert_non_null(mkdtemp(other));
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(chmod(other, 0755), 0);
	mock_path(src, sizeof(src), "mock-router");
	snprintf(real, sizeof(real), "%s/real.so", other);
	snprintf(link, sizeof(link), "%s/mock-router.so", dir);
	copy_file(src, real, 0755);
	assert_int_equal(symlink(real, link), 0);
	assert_int_equal(loader_open(dir, "mock-router", MOED_PLUGIN_ROUTER, NULL, 0, 1, &g, err,
				     sizeof(err)), 0);      /* ours: fine */
	plugin_gen_unref(g);
	g = NULL;
	assert_int_equal(chown(real, 65534, 65534), 0);
	assert_int_equal(loader_open(dir, "mock-router", MOED_PLUGIN_ROUTER, NULL, 0, 1, &g, err,
				     sizeof(err)), -EPERM);
	assert_null(g);
	assert_non_null(strstr(err, "' -> '"));
	assert_non_null(strstr(err, "is owned by uid 65534"));
	f = scan_for(dir, "mock-router");
	assert_non_null(strstr(f.p.error, "is owned by uid 65534"));
	assert_int_equal(chown(real, 0, 0), 0);
	assert_int_equal(chown(other, 65534, 65534), 0);
	assert_int_equal(loader_open(dir, "mock-router", MOED_PLUGIN_ROUTER, NULL, 0, 1, &g, err,
				     sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "directory of plugin file"));
	unlink(link);
	unlink(real);
	rmdir(other);
	rmdir(dir);
}

static void test_prepare_commit(void **state)
{
	struct engine_swap *a = NULL, *b = NULL, *bad = NULL;
	struct moed_model *model;
	struct engine *e;
	char err[512] = "";

	assert_int_equal(model_load("synthetic:S0", &model, err, sizeof(err)), 0);
	assert_int_equal(engine_new(model, mock_dir, &e), 0);
	assert_int_equal(engine_set_plugin(e, MOED_PLUGIN_ROUTER, "abi1-router", NULL, 0, -1, err,
					   sizeof(err)), 0);
	struct plugin_gen *first = e->layers[0].router->gen;
	assert_int_equal(truncate(trace_path, 0), 0);

	/* a failed prepare changes nothing and returns nothing */
	assert_true(engine_prepare(e, MOED_PLUGIN_ROUTER, "failing-init", NULL, 0, -1, &bad, err,
				   sizeof(err)) < 0);
	assert_null(bad);
	assert_true(engine_prepare(e, MOED_PLUGIN_ROUTER, "mock-router", NULL, 0, 9999, &bad, err,
				   sizeof(err)) < 0);
	assert_null(bad);
	/* two prepares: layer objects exist, nothing serves them yet */
	assert_int_equal(engine_prepare(e, MOED_PLUGIN_ROUTER, "mock-router", NULL, 0, -1, &a, err,
					sizeof(err)), 0);
	assert_int_equal(engine_prepare(e, MOED_PLUGIN_ROUTER, "declared", NULL, 0, -1, &b, err,
					sizeof(err)), 0);
	assert_int_equal(count_lines("layer_new"), (int)e->n_layers);
	assert_int_equal(count_lines("declared-layer_new"), (int)e->n_layers);
	for (uint32_t i = 0; i < e->n_layers; i++)
		assert_ptr_equal(e->layers[i].router->gen, first);
	uint64_t gen_a = engine_swap_generation(a);
	assert_true(gen_a != engine_swap_generation(b));
	/* one commit, one discard */
	engine_commit(e, a);
	engine_swap_free(b);
	engine_swap_free(NULL);
	for (uint32_t i = 0; i < e->n_layers; i++) {
		assert_string_equal(e->layers[i].router->gen->name, "mock-router");
		assert_int_equal(e->layers[i].router->gen->generation, gen_a);
	}
	assert_int_equal(count_lines("declared-layer_free"), (int)e->n_layers);
	assert_int_equal(count_lines("declared-fini"), 1);
	assert_int_equal(count_lines("layer_free"), 0);         /* the committed ones serve */
	engine_free(e);
	assert_int_equal(count_lines("layer_free"), count_lines("layer_new"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rejections),
		cmocka_unit_test(test_load_and_release),
		cmocka_unit_test(test_engine_keeps_old_generation),
		cmocka_unit_test(test_abi1_plugin),
		cmocka_unit_test(test_abi2_features_refused),
		cmocka_unit_test(test_declared_params),
		cmocka_unit_test(test_scan),
		cmocka_unit_test(test_scan_threads),
		cmocka_unit_test(test_owner_rule),
		cmocka_unit_test(test_link_to_foreign_file),
		cmocka_unit_test(test_prepare_commit),
	};

	mock_dir = getenv("MOED_TEST_MOCK_DIR");
	if (!mock_dir) {
		fprintf(stderr, "MOED_TEST_MOCK_DIR is not set (run through make check)\n");
		return 77;
	}
	host_init();
	return cmocka_run_group_tests(tests, setup, teardown);
}
