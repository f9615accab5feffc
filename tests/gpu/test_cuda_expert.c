/*
 * The cuda expert backend against the independent numpy reference of
 * tests/ref/gen_expert_cases.py (tests/gpu/cuda_expert.sh writes the cases and
 * points MOED_TEST_CASES at them).  Needs a GPU: without one (cudaGetDeviceCount
 * fails or finds none) it prints the reason and exits 77.
 *
 * Every case runs with the default parameters, with every segment on cuBLAS
 * (gemm_min_tokens=1), with every segment of up to 16 rows on the row-reading
 * kernel (17), and with bf16_gemm=fp32 / tf32=1.  Tolerance, per token,
 * max|y - ref| / max|ref|: 1e-4 for fp32 weights and for bf16 weights computed
 * in fp32; 2e-2 where bf16 tensor-core GEMMs ran (activations rounded to bf16);
 * 5e-3 with tf32=1.  Also: repeated calls are bit-identical, a token's result
 * does not depend on the batch beyond tolerance, concurrent calls on one layer
 * equal the serial result bit for bit, bad expert ids leave y untouched,
 * memory_limit_mb is enforced over all layers and released by layer_free, and
 * bad specs and devices are refused.  TAP-style output; exit 0 pass, 1 fail.
 * `test_cuda_expert --probe` only checks for a device (0, or 77 with the reason).
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "daemon/loader.h"
#include "include/moed/plugin.h"
#include "tests/common/fake_host.h"
#include "tests/unit/expert_case.h"

#define TOL_F32 1e-4
#define TOL_BF16_TENSOR 2e-2
#define TOL_TF32 5e-3

static const struct moed_plugin *plugin;
static void *plugin_state;
static const char *cases_dir;
static int failures, checks;

static void check(int ok, const char *fmt, ...)
{
	va_list ap;

	checks++;
	printf("%s %d - ", ok ? "ok" : "not ok", checks);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (!ok)
		failures++;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		perror("malloc");
		exit(1);
	}
	return p;
}

static void must(int ok, const char *what)
{
	if (!ok) {
		printf("Bail out! %s\n", what);
		exit(1);
	}
}

static struct tcase *case_load(const char *name)
{
	char err[600];
	struct tcase *c = expert_case_load(cases_dir, name, err, sizeof(err));

	must(c != NULL, err);
	return c;
}

#define case_free expert_case_free
#define token_err expert_case_err

static int layer_new(const struct moed_expert_spec *s, const struct moed_param *p, size_t n,
		     void **ret)
{
	return plugin->expert->layer_new(plugin_state, s, p, n, ret);
}

static int forward(void *layer, const struct tcase *c, const float *x, size_t T,
		   const int32_t *ex, const float *w, float *y)
{
	return plugin->expert->forward(layer, x, T, c->k, ex, w, y);
}

/* Does any GEMM segment exist with this gemm_min_tokens (what tolerance applies)? */
static int has_large(const struct tcase *c, uint32_t gemm_min)
{
	const int32_t *ex = c->experts.data;
	int large = c->Is && (c->T >= gemm_min || c->T > 16);

	for (uint32_t e = 0; e < c->E && !large; e++) {
		uint32_t n = 0;

		for (size_t i = 0; i < (size_t)c->T * c->k; i++)
			n += ex[i] == (int32_t)e;
		large = n && (n >= gemm_min || n > 16);
	}
	return large;
}

struct config {
	const char *name;
	struct moed_param p[3];
	size_t n;
	uint32_t gemm_min;
	int only;               /* 0 both, 1 f32 only, 2 bf16 only */
	int tf32, bf16_fp32;
};

static const struct config configs[] = {
	{ "default", { { 0 } }, 0, 16, 0, 0, 0 },
	{ "all-gemm", { { "gemm_min_tokens", "1" } }, 1, 1, 0, 0, 0 },
	{ "small<=16", { { "gemm_min_tokens", "17" } }, 1, 17, 0, 0, 0 },
	{ "tf32", { { "gemm_min_tokens", "1" }, { "tf32", "1" } }, 2, 1, 1, 1, 0 },
	{ "bf16-fp32", { { "gemm_min_tokens", "1" }, { "bf16_gemm", "fp32" } }, 2, 1, 2, 0, 1 },
};

static void check_case(const char *name)
{
	struct tcase *c = case_load(name);
	size_t TH = (size_t)c->T * c->H;
	float *y = xmalloc(TH * 4), *y2 = xmalloc(TH * 4);

	for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
		const struct config *cf = &configs[i];
		double tol = TOL_F32, err;
		void *layer;
		int r;

		if ((cf->only == 1 && c->bf16) || (cf->only == 2 && !c->bf16))
			continue;
		if (cf->tf32)
			tol = TOL_TF32;
		else if (c->bf16 && !cf->bf16_fp32 && has_large(c, cf->gemm_min))
			tol = TOL_BF16_TENSOR;
		r = layer_new(&c->spec, cf->p, cf->n, &layer);
		check(r == 0, "%s %s: layer_new", c->name, cf->name);
		if (r)
			continue;
		r = forward(layer, c, c->x.data, c->T, c->experts.data, c->weights.data, y);
		err = token_err(y, c->y.data, c->T, c->H);
		check(r == 0 && err <= tol, "%s %s: rel err %.2e (tol %.0e)", c->name, cf->name,
		      err, tol);
		r = forward(layer, c, c->x.data, c->T, c->experts.data, c->weights.data, y2);
		check(r == 0 && !memcmp(y, y2, TH * 4), "%s %s: repeat is bit-identical", c->name,
		      cf->name);
		plugin->expert->layer_free(layer);
	}
	free(y), free(y2);
	case_free(c);
}

static int is_case(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

static void test_reference_cases(void)
{
	struct dirent **names;
	int n = scandir(cases_dir, &names, is_case, alphasort);

	must(n > 0, "no cases in MOED_TEST_CASES");
	for (int i = 0; i < n; i++) {
		check_case(names[i]->d_name);
		free(names[i]);
	}
	free(names);
}

/* Each token alone and the batch reversed, against the whole batch. */
static void test_batch_independence(const char *name, double tol)
{
	struct tcase *c = case_load(name);
	size_t T = c->T, H = c->H, k = c->k;
	float *all = xmalloc(T * H * 4), *one = xmalloc(T * H * 4), *rev = xmalloc(T * H * 4);
	float *xr = xmalloc(T * H * 4), *wr = xmalloc(T * k * 4);
	int32_t *er = xmalloc(T * k * 4);
	const float *x = c->x.data, *w = c->weights.data;
	const int32_t *ex = c->experts.data;
	int r = 0;
	void *layer;

	must(layer_new(&c->spec, NULL, 0, &layer) == 0, "layer_new");
	r |= forward(layer, c, x, T, ex, w, all);
	for (size_t t = 0; t < T; t++) {
		size_t s = T - 1 - t;

		r |= forward(layer, c, x + t * H, 1, ex + t * k, w + t * k, one + t * H);
		memcpy(xr + s * H, x + t * H, H * 4);
		memcpy(er + s * k, ex + t * k, k * 4);
		memcpy(wr + s * k, w + t * k, k * 4);
	}
	r |= forward(layer, c, xr, T, er, wr, rev);
	for (size_t t = 0; t < T; t++)
		memcpy(xr + t * H, rev + (T - 1 - t) * H, H * 4);
	check(r == 0 && token_err(one, all, T, H) <= tol && token_err(xr, all, T, H) <= tol,
	      "%s: alone %.2e, reversed %.2e vs batch (tol %.0e)", name,
	      token_err(one, all, T, H), token_err(xr, all, T, H), tol);
	plugin->expert->layer_free(layer);
	free(all), free(one), free(rev), free(xr), free(wr), free(er);
	case_free(c);
}

static void test_bad_expert_id(void)
{
	struct tcase *c = case_load("t4_f32");
	size_t n = (size_t)c->T * c->k, TH = (size_t)c->T * c->H;
	int32_t *ex = xmalloc(n * 4);
	float *y = xmalloc(TH * 4);
	const int32_t bad[] = { -1, (int32_t)c->E, INT32_MAX, INT32_MIN };
	void *layer;
	int ok = 1;

	must(layer_new(&c->spec, NULL, 0, &layer) == 0, "layer_new");
	for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
		memcpy(ex, c->experts.data, n * 4);
		ex[n - 1] = bad[b];
		for (size_t i = 0; i < TH; i++)
			y[i] = 42.0f;
		ok &= forward(layer, c, c->x.data, c->T, ex, c->weights.data, y) == -EINVAL;
		for (size_t i = 0; i < TH; i++)
			ok &= y[i] == 42.0f;
	}
	check(ok, "bad expert ids: -EINVAL, y untouched");
	check(forward(layer, c, c->x.data, 0, ex, c->weights.data, y) == 0, "T = 0 is a no-op");
	plugin->expert->layer_free(layer);
	free(ex), free(y);
	case_free(c);
}

static void test_refusals(void)
{
	struct tcase *c = case_load("t1000_f32");
	const struct moed_param lim[] = { { "memory_limit_mb", "5" } };
	const struct moed_param one_mb[] = { { "memory_limit_mb", "1" } };
	const struct moed_param dev[] = { { "device", "1000" } };
	struct moed_expert_spec s;
	void *a = NULL, *b = NULL;

	s = c->spec;
	s.dtype = MOED_DTYPE_F16;
	check(layer_new(&s, NULL, 0, &a) == -ENOTSUP, "F16 weights refused (-ENOTSUP)");
	s = c->spec;
	s.hidden_size = 0;
	check(layer_new(&s, NULL, 0, &a) == -EINVAL, "H = 0 refused (-EINVAL)");
	s = c->spec;
	s.shared_gate = NULL;
	check(layer_new(&s, NULL, 0, &a) == -EINVAL, "missing shared weights refused");
	check(layer_new(&c->spec, dev, 1, &a) == -ENODEV, "device=1000 refused (-ENODEV)");
	fake_host_reset_log();
	check(layer_new(&c->spec, one_mb, 1, &a) == -ENOMEM &&
		      strstr(fake_host_last_log(), "memory_limit_mb"),
	      "3.4 MiB of weights over memory_limit_mb=1: -ENOMEM, logged");
	/* 3.4 MiB each: the first fits under 5, the second not, until the first goes */
	check(layer_new(&c->spec, lim, 1, &a) == 0, "first layer under memory_limit_mb=5");
	check(layer_new(&c->spec, lim, 1, &b) == -ENOMEM, "second layer over the limit");
	plugin->expert->layer_free(a);
	check(layer_new(&c->spec, lim, 1, &b) == 0, "fits again after layer_free");
	plugin->expert->layer_free(b);
	plugin->expert->layer_free(NULL);
	case_free(c);
}

struct worker {
	void *layer;
	const struct tcase *c;
	const float *want;
	int ok;
};

static void *work(void *arg)
{
	struct worker *wk = arg;
	const struct tcase *c = wk->c;
	size_t TH = (size_t)c->T * c->H;
	float *y = xmalloc(TH * 4);

	wk->ok = 1;
	for (int i = 0; wk->ok && i < 10; i++)
		wk->ok = forward(wk->layer, c, c->x.data, c->T, c->experts.data, c->weights.data,
				 y) == 0 && !memcmp(y, wk->want, TH * 4);
	free(y);
	return NULL;
}

static void test_concurrent(void)
{
	static const char *const names[] = { "t4_f32", "hot_bf16", "t1000_f32", "k8_e64_f32" };

	for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
		struct tcase *c = case_load(names[n]);
		float *want = xmalloc((size_t)c->T * c->H * 4);
		struct worker wk[4];
		pthread_t th[4];
		void *layer;
		int ok;

		must(layer_new(&c->spec, NULL, 0, &layer) == 0, "layer_new");
		ok = forward(layer, c, c->x.data, c->T, c->experts.data, c->weights.data,
			     want) == 0;
		for (int i = 0; i < 4; i++) {
			wk[i] = (struct worker){ layer, c, want, 0 };
			must(pthread_create(&th[i], NULL, work, &wk[i]) == 0, "pthread_create");
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			ok &= wk[i].ok;
		}
		check(ok, "%s: 4 threads x 10 calls on one layer equal the serial result",
		      names[n]);
		plugin->expert->layer_free(layer);
		free(want);
		case_free(c);
	}
}

int main(int argc, char **argv)
{
	const char *dir = getenv("MOED_TEST_PLUGIN_DIR");
	char path[512];
	cudaError_t e;
	void *dl;
	int n = 0;

	e = cudaGetDeviceCount(&n);
	if (e != cudaSuccess || n == 0) {
		printf("SKIP: no CUDA device (%s)\n", e != cudaSuccess ? cudaGetErrorString(e)
								       : "cudaGetDeviceCount found 0");
		return 77;
	}
	if (argc > 1 && !strcmp(argv[1], "--probe"))
		return 0;
	cases_dir = getenv("MOED_TEST_CASES");
	if (!cases_dir || !dir) {
		printf("SKIP: needs MOED_TEST_CASES and MOED_TEST_PLUGIN_DIR "
		       "(run tests/gpu/cuda_expert.sh through make check)\n");
		return 77;
	}
	snprintf(path, sizeof(path), "%s/cuda.so", dir);
	dl = dlopen(path, LOADER_DLOPEN_FLAGS);   /* see daemon/loader.h */
	if (!dl) {
		printf("Bail out! dlopen: %s\n", dlerror());
		return 1;
	}
	plugin = dlsym(dl, MOED_PLUGIN_SYMBOL);
	must(plugin && plugin->abi_version == MOED_PLUGIN_ABI_VERSION &&
	     !strcmp(plugin->name, "cuda") && plugin->expert, "descriptor");
	must(plugin->init(fake_host(), NULL, 0, &plugin_state) == 0, "init on a GPU host");

	test_reference_cases();
	test_batch_independence("hot_f32", TOL_F32);
	test_batch_independence("k8_e64_f32", TOL_F32);
	test_batch_independence("t1000_bf16", TOL_BF16_TENSOR);
	test_bad_expert_id();
	test_refusals();
	test_concurrent();

	plugin->fini(plugin_state);
	dlclose(dl);
	printf("1..%d\n", checks);
	return failures ? 1 : 0;
}
