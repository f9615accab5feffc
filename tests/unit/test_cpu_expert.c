/*
 * The cpu expert backend against an independent numpy reference.
 * tests/numerics/cpu_expert.sh runs tests/ref/gen_expert_cases.py into a temp
 * folder and points MOED_TEST_CASES at it; this test dlopens the built plugin
 * from MOED_TEST_PLUGIN_DIR with a host table of its own, runs every case with
 * each path (auto, small kernel forced, sgemm forced) and each instruction set
 * the CPU has, its tasks spread over three threads by the test host's
 * parallel_for, and compares per token: max|y - ref| / max|ref| <= 1e-5, for
 * fp32 and for bf16 weights alike (the reference uses the same bf16-rounded
 * weights, so only fp32 summation order differs).  It also checks that a
 * token's output does not depend on the rest of the batch (bit-exact with the
 * small kernel; 2e-6 in auto mode, where a lone token takes the small kernel
 * and its batch sgemm, a different summation order), that the task split
 * gives bit-equal results whatever order or thread runs the tasks (threads,
 * in order, reversed), every T from 1 to 40 on an odd-sized case (H 65,
 * I 33), concurrent calls on one
 * layer, refusal of bad expert ids (y untouched), F16 weights, bad specs and
 * bad parameters.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "include/moed/plugin.h"
#include "tests/unit/npy_test.h"

#define TOL 1e-5
#define TOL_BATCH 2e-6

struct tcase {
	char name[96];
	uint32_t E, H, I, Is, k, T;
	int bf16;
	struct npy_test x, experts, weights, gate, up, down, y, sg, su, sd;
	void *wbuf[6];                  /* bf16 copies of gate, up, down, sg, su, sd */
	const void **gp, **upp, **dp;   /* E pointers each */
	struct moed_expert_spec spec;
};

static const struct moed_plugin *plugin;
static void *plugin_state;
static void *dl;
static const char *cases_dir;
static const char *const isas[] = { "avx512", "avx2", "generic" };

static void test_log(int level, const char *name, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "  [%s] ", name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* How the host's parallel_for runs its tasks: the plugin splits every call
 * into (expert, row-slice) and column-slice tasks through it. */
enum par_mode { PAR_THREADS, PAR_FORWARD, PAR_REVERSE };
static enum par_mode par_mode = PAR_THREADS;

struct par_job {
	void (*fn)(void *arg, size_t i);
	void *arg;
	size_t n;
	atomic_size_t next;
};

static void *par_worker(void *arg)
{
	struct par_job *j = arg;
	size_t i;

	while ((i = atomic_fetch_add(&j->next, 1)) < j->n)
		j->fn(j->arg, i);
	return NULL;
}

/* Like the daemon's pool: the caller and (here) two more threads claim indices. */
static void test_parallel_for(size_t n, void (*fn)(void *arg, size_t i), void *arg)
{
	struct par_job j = { .fn = fn, .arg = arg, .n = n };
	pthread_t th[2];

	switch (par_mode) {
	case PAR_FORWARD:
		for (size_t i = 0; i < n; i++)
			fn(arg, i);
		return;
	case PAR_REVERSE:
		for (size_t i = n; i-- > 0;)
			fn(arg, i);
		return;
	case PAR_THREADS:
		atomic_init(&j.next, 0);
		for (int t = 0; t < 2; t++)
			assert_int_equal(pthread_create(&th[t], NULL, par_worker, &j), 0);
		par_worker(&j);
		for (int t = 0; t < 2; t++)
			pthread_join(th[t], NULL);
		return;
	}
}

static const struct moed_host host = {
	.struct_size = sizeof(struct moed_host),
	.abi_version = MOED_PLUGIN_ABI_VERSION,
	.log = test_log,
	.parallel_for = test_parallel_for,
};

static int load(const char *dir, const char *file, const char *descr, struct npy_test *a)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return npy_test_load(path, descr, a);
}

/* Float32 array holding bf16 values -> its top halves. */
static void *to_bf16(const struct npy_test *a)
{
	uint16_t *o = malloc(a->count * 2 + 1);
	const uint32_t *u = a->data;

	assert_non_null(o);
	for (size_t i = 0; i < a->count; i++) {
		assert_int_equal(u[i] & 0xffff, 0);
		o[i] = (uint16_t)(u[i] >> 16);
	}
	return o;
}

static void case_free(struct tcase *c)
{
	struct npy_test *all[] = { &c->x, &c->experts, &c->weights, &c->gate, &c->up,
				   &c->down, &c->y, &c->sg, &c->su, &c->sd };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		free(all[i]->data);
	for (int i = 0; i < 6; i++)
		free(c->wbuf[i]);
	free(c->gp);
	free(c->upp);
	free(c->dp);
	free(c);
}

static struct tcase *case_load(const char *name)
{
	struct tcase *c = calloc(1, sizeof(*c));
	char dir[400], dtype[8] = "", path[512];
	const struct npy_test *w[6];
	const void *wp[6];
	FILE *f;

	assert_non_null(c);
	snprintf(c->name, sizeof(c->name), "%s", name);
	snprintf(dir, sizeof(dir), "%s/%s", cases_dir, name);
	snprintf(path, sizeof(path), "%s/meta.txt", dir);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%u %u %u %u %u %u %7s", &c->E, &c->H, &c->I, &c->Is, &c->k,
				&c->T, dtype), 7);
	fclose(f);
	c->bf16 = !strcmp(dtype, "bf16");
	assert_int_equal(load(dir, "x.npy", "<f4", &c->x), 0);
	assert_int_equal(load(dir, "experts.npy", "<i4", &c->experts), 0);
	assert_int_equal(load(dir, "weights.npy", "<f4", &c->weights), 0);
	assert_int_equal(load(dir, "gate.npy", "<f4", &c->gate), 0);
	assert_int_equal(load(dir, "up.npy", "<f4", &c->up), 0);
	assert_int_equal(load(dir, "down.npy", "<f4", &c->down), 0);
	assert_int_equal(load(dir, "y.npy", "<f4", &c->y), 0);
	if (c->Is) {
		assert_int_equal(load(dir, "shared_gate.npy", "<f4", &c->sg), 0);
		assert_int_equal(load(dir, "shared_up.npy", "<f4", &c->su), 0);
		assert_int_equal(load(dir, "shared_down.npy", "<f4", &c->sd), 0);
	}
	assert_int_equal(c->x.count, (size_t)c->T * c->H);
	assert_int_equal(c->experts.count, (size_t)c->T * c->k);
	assert_int_equal(c->gate.count, (size_t)c->E * c->I * c->H);
	assert_int_equal(c->down.count, (size_t)c->E * c->H * c->I);

	w[0] = &c->gate, w[1] = &c->up, w[2] = &c->down;
	w[3] = &c->sg, w[4] = &c->su, w[5] = &c->sd;
	for (int i = 0; i < 6; i++) {
		wp[i] = w[i]->data;
		if (c->bf16 && w[i]->data)
			wp[i] = c->wbuf[i] = to_bf16(w[i]);
	}
	c->gp = calloc(c->E, sizeof(void *));
	c->upp = calloc(c->E, sizeof(void *));
	c->dp = calloc(c->E, sizeof(void *));
	assert_true(c->gp && c->upp && c->dp);
	for (uint32_t e = 0; e < c->E; e++) {
		size_t es = c->bf16 ? 2 : 4, n = (size_t)c->I * c->H * es;

		c->gp[e] = (const char *)wp[0] + e * n;
		c->upp[e] = (const char *)wp[1] + e * n;
		c->dp[e] = (const char *)wp[2] + e * n;
	}
	c->spec = (struct moed_expert_spec){
		.struct_size = sizeof(struct moed_expert_spec),
		.hidden_size = c->H,
		.intermediate_size = c->I,
		.n_experts = c->E,
		.shared_intermediate_size = c->Is,
		.dtype = c->bf16 ? MOED_DTYPE_BF16 : MOED_DTYPE_F32,
		.gate = (const void *const *)c->gp,
		.up = (const void *const *)c->upp,
		.down = (const void *const *)c->dp,
		.shared_gate = wp[3],
		.shared_up = wp[4],
		.shared_down = wp[5],
	};
	return c;
}

static int layer_new(const struct moed_expert_spec *spec, const char *kernel, const char *isa,
		     void **ret)
{
	/* split_min_kb = 0: every call is cut into tasks, however small */
	struct moed_param p[3] = { { "kernel", kernel }, { "isa", isa }, { "split_min_kb", "0" } };

	return plugin->expert->layer_new(plugin_state, spec, p, 3, ret);
}

/* Worst per-token max|a - b| / max|b| over T tokens of width H. */
static double token_err(const float *a, const float *b, size_t T, size_t H)
{
	double worst = 0;

	for (size_t t = 0; t < T; t++) {
		double d = 0, m = 1e-30;

		for (size_t h = 0; h < H; h++) {
			double v = fabs((double)a[t * H + h] - b[t * H + h]);

			d = v > d ? v : d;
			m = fabs(b[t * H + h]) > m ? fabs(b[t * H + h]) : m;
		}
		if (isnan(d) || d / m > worst)
			worst = isnan(d) ? INFINITY : d / m;
	}
	return worst;
}

static int forward(void *layer, const struct tcase *c, const float *x, size_t T,
		   const int32_t *ex, const float *w, float *y)
{
	return plugin->expert->forward(layer, x, T, c->k, ex, w, y);
}

static void check_case(const char *name)
{
	static const char *const modes[] = { "auto", "small", "gemm" };
	struct tcase *c = case_load(name);
	float *y = malloc((size_t)c->T * c->H * sizeof(float));

	assert_non_null(y);
	for (size_t m = 0; m < 3; m++) {
		for (size_t i = 0; i < sizeof(isas) / sizeof(isas[0]); i++) {
			void *layer;
			double err;
			int r = layer_new(&c->spec, modes[m], isas[i], &layer);

			if (r == -ENOTSUP)
				continue;
			assert_int_equal(r, 0);
			assert_int_equal(forward(layer, c, c->x.data, c->T, c->experts.data,
						 c->weights.data, y), 0);
			err = token_err(y, c->y.data, c->T, c->H);
			printf("  %-16s %-5s %-7s rel err %.2e\n", c->name, modes[m], isas[i], err);
			plugin->expert->layer_free(layer);
			assert_true(err <= TOL);
		}
	}
	free(y);
	case_free(c);
}

/* T = 1..40 (every prefix of the odd-sized case's batch: a token's reference
 * output does not depend on the others), each path and instruction set. */
static void test_prefixes(void **state)
{
	static const char *const modes[] = { "auto", "small", "gemm" };
	static const char *const names[] = { "odd_dims_f32", "odd_dims_bf16" };

	for (size_t n = 0; n < 2; n++) {
		struct tcase *c = case_load(names[n]);
		float *y = malloc((size_t)c->T * c->H * sizeof(float));
		double worst = 0;

		assert_non_null(y);
		assert_int_equal(c->T, 40);
		for (size_t m = 0; m < 3; m++)
			for (size_t i = 0; i < sizeof(isas) / sizeof(isas[0]); i++) {
				void *layer;
				int r = layer_new(&c->spec, modes[m], isas[i], &layer);

				if (r == -ENOTSUP)
					continue;
				assert_int_equal(r, 0);
				for (size_t T = 1; T <= c->T; T++) {
					double err;

					assert_int_equal(forward(layer, c, c->x.data, T,
								 c->experts.data, c->weights.data,
								 y), 0);
					err = token_err(y, c->y.data, T, c->H);
					worst = err > worst ? err : worst;
					if (err > TOL)
						fail_msg("%s %s %s T=%zu: rel err %.2e", c->name,
							 modes[m], isas[i], T, err);
				}
				plugin->expert->layer_free(layer);
			}
		printf("  %-16s T=1..40, every path and isa: worst rel err %.2e\n", c->name, worst);
		free(y);
		case_free(c);
	}
}

static int is_case(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

static void test_reference_cases(void **state)
{
	struct dirent **names;
	int n = scandir(cases_dir, &names, is_case, alphasort);

	assert_true(n > 0);
	for (int i = 0; i < n; i++) {
		check_case(names[i]->d_name);
		free(names[i]);
	}
	free(names);
}

/* Each token alone, and the batch reversed, against the whole batch. */
static void batch_independence(const char *name, const char *kernel, double tol)
{
	struct tcase *c = case_load(name);
	size_t T = c->T, H = c->H, k = c->k;
	float *all = malloc(T * H * 4), *one = malloc(T * H * 4), *rev = malloc(T * H * 4);
	float *xr = malloc(T * H * 4), *wr = malloc(T * k * 4);
	int32_t *er = malloc(T * k * 4);
	const float *x = c->x.data, *w = c->weights.data;
	const int32_t *ex = c->experts.data;
	void *layer;

	assert_true(all && one && rev && xr && wr && er);
	assert_int_equal(layer_new(&c->spec, kernel, "auto", &layer), 0);
	assert_int_equal(forward(layer, c, x, T, ex, w, all), 0);
	for (size_t t = 0; t < T; t++) {
		size_t s = T - 1 - t;

		assert_int_equal(forward(layer, c, x + t * H, 1, ex + t * k, w + t * k, one + t * H),
				 0);
		memcpy(xr + s * H, x + t * H, H * 4);
		memcpy(er + s * k, ex + t * k, k * 4);
		memcpy(wr + s * k, w + t * k, k * 4);
	}
	assert_int_equal(forward(layer, c, xr, T, er, wr, rev), 0);
	for (size_t t = 0; t < T / 2; t++)
		for (size_t h = 0; h < H; h++) {
			float v = rev[t * H + h];

			rev[t * H + h] = rev[(T - 1 - t) * H + h];
			rev[(T - 1 - t) * H + h] = v;
		}
	if (tol == 0) {
		assert_memory_equal(all, one, T * H * 4);
		assert_memory_equal(all, rev, T * H * 4);
	} else {
		double e1 = token_err(one, all, T, H), e2 = token_err(rev, all, T, H);

		printf("  %-16s %-5s alone vs batch %.2e, reversed vs batch %.2e\n", name, kernel,
		       e1, e2);
		assert_true(e1 <= tol && e2 <= tol);
	}
	plugin->expert->layer_free(layer);
	free(all), free(one), free(rev), free(xr), free(wr), free(er);
	case_free(c);
}

static void test_batch_independence(void **state)
{
	batch_independence("k8_e64_f32", "small", 0);
	batch_independence("hot_bf16", "small", 0);
	batch_independence("hot_f32", "auto", TOL_BATCH);
	batch_independence("t1000_f32", "auto", TOL_BATCH);
}

static void test_bad_expert_id(void **state)
{
	struct tcase *c = case_load("t4_f32");
	size_t n = (size_t)c->T * c->k;
	int32_t *ex = malloc(n * 4);
	float *y = malloc((size_t)c->T * c->H * 4);
	const int32_t bad[] = { -1, (int32_t)c->E, INT32_MAX, INT32_MIN };
	void *layer;

	assert_true(ex && y);
	assert_int_equal(layer_new(&c->spec, "auto", "auto", &layer), 0);
	for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
		memcpy(ex, c->experts.data, n * 4);
		ex[n - 1] = bad[b];
		for (size_t i = 0; i < (size_t)c->T * c->H; i++)
			y[i] = 42.0f;
		assert_int_equal(forward(layer, c, c->x.data, c->T, ex, c->weights.data, y),
				 -EINVAL);
		for (size_t i = 0; i < (size_t)c->T * c->H; i++)
			assert_true(y[i] == 42.0f);
	}
	assert_int_equal(forward(layer, c, c->x.data, 0, ex, c->weights.data, y), 0);
	plugin->expert->layer_free(layer);
	free(ex);
	free(y);
	case_free(c);
}

static void test_refusals(void **state)
{
	struct tcase *c = case_load("t1_f32");
	struct moed_expert_spec s;
	struct moed_param p[] = { { "gemm_min_tokens", "0" }, { "nope", "1" },
				  { "gemm_min_tokens", "x" } };
	void *layer = NULL;

	s = c->spec;
	s.dtype = MOED_DTYPE_F16;
	assert_int_equal(layer_new(&s, "auto", "auto", &layer), -ENOTSUP);
	s = c->spec;
	s.hidden_size = 0;
	assert_int_equal(layer_new(&s, "auto", "auto", &layer), -EINVAL);
	s = c->spec;
	s.shared_gate = NULL;
	assert_int_equal(layer_new(&s, "auto", "auto", &layer), -EINVAL);
	s = c->spec;
	c->gp[3] = NULL;
	assert_int_equal(layer_new(&s, "auto", "auto", &layer), -EINVAL);
	c->gp[3] = c->gp[2];
	assert_int_equal(layer_new(&c->spec, "fast", "auto", &layer), -EINVAL);
	assert_int_equal(layer_new(&c->spec, "auto", "neon", &layer), -ENOTSUP);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(plugin->expert->layer_new(plugin_state, &c->spec, &p[i], 1, &layer),
				 -EINVAL);
	assert_null(layer);
	plugin->expert->layer_free(NULL);
	case_free(c);
}

struct worker {
	void *layer;
	const struct tcase *c;
	const float *want;      /* serial result */
	int ok;
};

static void *work(void *arg)
{
	struct worker *wk = arg;
	const struct tcase *c = wk->c;
	size_t TH = (size_t)c->T * c->H;
	float *y = malloc(TH * 4);

	wk->ok = y != NULL;
	for (int i = 0; wk->ok && i < 10; i++)
		wk->ok = forward(wk->layer, c, c->x.data, c->T, c->experts.data, c->weights.data,
				 y) == 0 && !memcmp(y, wk->want, TH * 4);
	free(y);
	return NULL;
}

static void test_concurrent(void **state)
{
	static const char *const names[] = { "t4_f32", "hot_f32", "t1000_f32", "k1_f32" };
	struct worker wk[4];
	pthread_t th[4];
	struct tcase *c;
	float *want = NULL;
	void *layer;

	/* one layer per case, 4 threads on it, every result bit-equal to serial */
	for (size_t n = 0; n < 4; n++) {
		c = case_load(names[n]);
		want = realloc(want, (size_t)c->T * c->H * 4);
		assert_non_null(want);
		assert_int_equal(layer_new(&c->spec, "auto", "auto", &layer), 0);
		assert_int_equal(forward(layer, c, c->x.data, c->T, c->experts.data,
					 c->weights.data, want), 0);
		for (int i = 0; i < 4; i++) {
			wk[i] = (struct worker){ layer, c, want, 0 };
			assert_int_equal(pthread_create(&th[i], NULL, work, &wk[i]), 0);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			assert_true(wk[i].ok);
		}
		plugin->expert->layer_free(layer);
		case_free(c);
	}
	free(want);
}

/* Every case and path: tasks on threads, in order and reversed, bit-equal. */
static void test_task_order(void **state)
{
	static const char *const modes[] = { "small", "gemm" };
	struct dirent **names;
	int n = scandir(cases_dir, &names, NULL, alphasort);

	assert_true(n > 0);
	for (int i = 0; i < n; i++) {
		struct tcase *c;

		if (names[i]->d_name[0] == '.') {
			free(names[i]);
			continue;
		}
		c = case_load(names[i]->d_name);
		for (size_t m = 0; m < 2; m++) {
			size_t sz = (size_t)c->T * c->H * 4;
			float *y[3] = { malloc(sz), malloc(sz), malloc(sz) };
			void *layer;

			assert_true(y[0] && y[1] && y[2]);
			assert_int_equal(layer_new(&c->spec, modes[m], "auto", &layer), 0);
			for (int p = 0; p < 3; p++) {
				par_mode = (enum par_mode)p;
				assert_int_equal(forward(layer, c, c->x.data, c->T,
							 c->experts.data, c->weights.data, y[p]),
						 0);
			}
			par_mode = PAR_THREADS;
			assert_memory_equal(y[0], y[1], sz);
			assert_memory_equal(y[0], y[2], sz);
			plugin->expert->layer_free(layer);
			free(y[0]), free(y[1]), free(y[2]);
		}
		case_free(c);
		free(names[i]);
	}
	free(names);
}

static int group_setup(void **state)
{
	const char *dir = getenv("MOED_TEST_PLUGIN_DIR");
	char path[512];

	snprintf(path, sizeof(path), "%s/cpu.so", dir);
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return -1;
	}
	plugin = dlsym(dl, MOED_PLUGIN_SYMBOL);
	if (!plugin || plugin->abi_version != MOED_PLUGIN_ABI_VERSION ||
	    strcmp(plugin->name, "cpu") || plugin->kind != MOED_PLUGIN_EXPERT || !plugin->expert)
		return -1;
	return plugin->init(&host, NULL, 0, &plugin_state);
}

static int group_teardown(void **state)
{
	if (plugin && plugin->fini)
		plugin->fini(plugin_state);
	if (dl)
		dlclose(dl);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_cases),
		cmocka_unit_test(test_batch_independence),
		cmocka_unit_test(test_task_order),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_bad_expert_id),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_concurrent),
	};

	cases_dir = getenv("MOED_TEST_CASES");
	if (!cases_dir || !getenv("MOED_TEST_PLUGIN_DIR")) {
		printf("SKIP: needs MOED_TEST_CASES and MOED_TEST_PLUGIN_DIR "
		       "(run tests/numerics/cpu_expert.sh through make check)\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
