/*
 * The cpu expert backend against an independent numpy reference.
 * tests/numerics/cpu_expert.sh runs tests/ref/gen_expert_cases.py into a temp
 * folder and points MOED_TEST_CASES at it; this test dlopens the built plugin
 * from MOED_TEST_PLUGIN_DIR with the fake host of tests/common, runs every case
 * with each path (auto, small kernel forced, sgemm forced) and each
 * instruction set the CPU has, its tasks spread over three threads (the
 * caller and two workers of the daemon's pool) by the host's parallel_for,
 * and compares per token: max|y - ref| / max|ref| <= 1e-5, for
 * fp32, bf16 and FP8 E4M3 weights alike (the reference uses the same
 * bf16-rounded weights, or the FP8 codes times their 128x128 block scales
 * dequantised in numpy, so only fp32 summation order differs).  It also checks that a
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
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "include/moed/plugin.h"
#include "tests/common/fake_host.h"
#include "tests/unit/expert_case.h"

#define TOL 1e-5
#define TOL_BATCH 2e-6

static const struct moed_plugin *plugin;
static void *plugin_state;
static void *dl;
static const char *cases_dir;
static const char *const isas[] = { "amx", "avx512bf16", "avx512", "avx2", "generic" };

static struct tcase *case_load(const char *name)
{
	char err[600];
	struct tcase *c = expert_case_load(cases_dir, name, err, sizeof(err));

	if (!c)
		fail_msg("%s", err);
	return c;
}

#define case_free expert_case_free
#define token_err expert_case_err

static int layer_new_prec(const struct moed_expert_spec *spec, const char *kernel,
			  const char *isa, const char *precision, void **ret)
{
	/* split_min_kb = 0: every call is cut into tasks, however small */
	struct moed_param p[4] = { { "kernel", kernel }, { "isa", isa }, { "split_min_kb", "0" },
				   { "precision", precision } };

	return plugin->expert->layer_new(plugin_state, spec, p, 4, ret);
}

/* The fp32-activation path (what every test but the bf16 ones checks). */
static int layer_new(const struct moed_expert_spec *spec, const char *kernel, const char *isa,
		     void **ret)
{
	return layer_new_prec(spec, kernel, isa, "exact", ret);
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
	static const char *const names[] = { "odd_dims_f32", "odd_dims_bf16", "odd_dims_fp8" };

	for (size_t n = 0; n < 3; n++) {
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

/* ---- precision = bf16 ---- */

/* Against the reference below, activations rounded to bf16 there too: only
 * fp32 summation order and the kernels' exp differ (TOL_B16), plus an act
 * element that lies so close to a bf16 rounding midpoint (AMBIGUOUS, relative)
 * that the kernel's fp32 sums may round it the other way: the reference adds
 * |w * down_hi| * (that element's bf16 step) to the allowed error of y_h.
 * Against the fp32-activation reference: the bound man/moed.conf.5 documents. */
#define TOL_B16 1e-5
#define AMBIGUOUS 2e-5
#define TOL_B16_EXACT 1e-2

static float round_bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	u = (u + 0x7fffu + ((u >> 16) & 1)) & 0xffff0000u;
	memcpy(&f, &u, 4);
	return f;
}

/* The bf16 step at f when f lies within AMBIGUOUS of a rounding midpoint, else 0. */
static double flip_step(float f)
{
	uint32_t u, lo, mid;
	float flo, fmid, fhi;

	memcpy(&u, &f, 4);
	lo = u & 0xffff0000u;
	mid = lo + 0x8000u;
	u = lo + 0x10000u;
	memcpy(&flo, &lo, 4);
	memcpy(&fmid, &mid, 4);
	memcpy(&fhi, &u, 4);
	return fabs((double)f - fmid) < AMBIGUOUS * fabs((double)f) ? fabs((double)fhi - flo) : 0;
}

/* y[t] += w * SwiGLU(x) with x and the act rounded to bf16, in double, and
 * slack[h] += the error a flipped act rounding may add; g, u: [I][H], d:
 * [H][I] (the weights as the plugin sees them: bf16 values or FP8 codes times
 * their scales); a, st: I scratch each. */
static void ref_expert_b16(const float *x, const float *g, const float *u, const float *d,
			   size_t H, size_t I, double w, double *y, double *slack, float *a,
			   double *st)
{
	for (size_t i = 0; i < I; i++) {
		double sg = 0, su = 0;
		float f;

		for (size_t h = 0; h < H; h++) {
			double xv = round_bf16(x[h]);

			sg += g[i * H + h] * xv;
			su += u[i * H + h] * xv;
		}
		f = (float)(sg / (1 + exp(-sg)) * su);
		a[i] = round_bf16(f);
		st[i] = flip_step(f);
	}
	for (size_t h = 0; h < H; h++) {
		double sum = 0, sl = 0;

		for (size_t i = 0; i < I; i++) {
			sum += (double)d[h * I + i] * a[i];
			sl += fabs((double)d[h * I + i]) * st[i];
		}
		y[h] += w * sum;
		slack[h] += fabs(w) * sl;
	}
}

/* Worst per-token max_h(|y - ref| - slack_h) / max|ref|. */
static double err_slack(const float *y, const float *ref, const float *slack, size_t T,
			size_t H)
{
	double worst = 0;

	for (size_t t = 0; t < T; t++) {
		double d = 0, m = 1e-30;

		for (size_t h = 0; h < H; h++) {
			double v = fabs((double)y[t * H + h] - ref[t * H + h]) - slack[t * H + h];

			d = isnan(v) ? INFINITY : v > d ? v : d;
			m = fabs(ref[t * H + h]) > m ? fabs(ref[t * H + h]) : m;
		}
		worst = d / m > worst ? d / m : worst;
	}
	return worst;
}

/* e4m3 code -> value (bias 7, exponent 0 subnormal: m * 2^-9). */
static double e4m3(int32_t code)
{
	int e = (code >> 3) & 15, m = code & 7;
	double v = e ? ldexp(8 + m, e - 10) : ldexp(m, -9);

	return code & 0x80 ? -v : v;
}

/* n matrices of R x C codes times their 128 x 128 block scales. */
static float *dequant(const struct npy_test *codes, const struct npy_test *scale, size_t n,
		      size_t R, size_t C)
{
	float *w = malloc(n * R * C * 4);
	size_t rb = (R + 127) / 128, cb = (C + 127) / 128;

	assert_non_null(w);
	for (size_t e = 0; e < n; e++)
		for (size_t r = 0; r < R; r++)
			for (size_t col = 0; col < C; col++) {
				size_t at = (e * R + r) * C + col;
				double s = ((const float *)scale->data)[(e * rb + r / 128) * cb +
									 col / 128];

				w[at] = (float)(e4m3(((const int32_t *)codes->data)[at]) * s);
			}
	return w;
}

/* The whole case's expected output on bf16-rounded activations, and into
 * *ret_slack the error act roundings may add. */
static float *ref_b16(const struct tcase *c, float **ret_slack)
{
	size_t H = c->H, I = c->I, Is = c->Is, T = c->T;
	double *acc = calloc(H, sizeof(double)), *sl = calloc(H, sizeof(double));
	double *st = malloc((I > Is ? I : Is) * 8 + 8);
	float *y = malloc(T * H * 4), *a = malloc((I > Is ? I : Is) * 4 + 4);
	float *slack = malloc(T * H * 4);
	const float *gate = c->gate.data, *up = c->up.data, *down = c->down.data;
	const float *sg = c->sg.data, *su = c->su.data, *sd = c->sd.data;
	float *deq[6] = { NULL };

	assert_true(acc && sl && st && y && a && slack);
	if (c->fp8) {
		gate = deq[0] = dequant(&c->gate, &c->scale[0], c->E, I, H);
		up = deq[1] = dequant(&c->up, &c->scale[1], c->E, I, H);
		down = deq[2] = dequant(&c->down, &c->scale[2], c->E, H, I);
		if (Is) {
			sg = deq[3] = dequant(&c->sg, &c->scale[3], 1, Is, H);
			su = deq[4] = dequant(&c->su, &c->scale[4], 1, Is, H);
			sd = deq[5] = dequant(&c->sd, &c->scale[5], 1, H, Is);
		}
	}
	for (size_t t = 0; t < T; t++) {
		const float *xt = (const float *)c->x.data + t * H;

		memset(acc, 0, H * sizeof(double));
		memset(sl, 0, H * sizeof(double));
		for (size_t j = 0; j < c->k; j++) {
			size_t e = (size_t)((const int32_t *)c->experts.data)[t * c->k + j];
			double w = ((const float *)c->weights.data)[t * c->k + j];

			ref_expert_b16(xt, gate + e * I * H, up + e * I * H, down + e * H * I, H, I,
				       w, acc, sl, a, st);
		}
		if (Is)
			ref_expert_b16(xt, sg, su, sd, H, Is, 1, acc, sl, a, st);
		for (size_t h = 0; h < H; h++) {
			y[t * H + h] = (float)acc[h];
			slack[t * H + h] = (float)sl[h];
		}
	}
	free(acc);
	free(sl);
	free(st);
	free(a);
	for (int i = 0; i < 6; i++)
		free(deq[i]);
	*ret_slack = slack;
	return y;
}

/* Every bf16 and fp8 case, every path and instruction set, precision = bf16;
 * the odd-sized cases also at every T from 1 to 40.  F32 weights ignore the
 * setting (bit-equal to exact). */
static void test_bf16_precision(void **state)
{
	static const char *const modes[] = { "auto", "small", "gemm" };
	struct dirent **names;
	int n = scandir(cases_dir, &names, NULL, alphasort);

	assert_true(n > 0);
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		struct tcase *c;
		float *want, *slack, *y;
		int prefixes = !strncmp(name, "odd_dims", 8);
		double worst = 0, worst_exact = 0;

		if (name[0] == '.') {
			free(names[i]);
			continue;
		}
		c = case_load(name);
		y = malloc((size_t)c->T * c->H * 4);
		assert_non_null(y);
		if (!c->bf16 && !c->fp8) {
			float *ye = malloc((size_t)c->T * c->H * 4);
			void *l1, *l2;

			assert_non_null(ye);
			assert_int_equal(layer_new_prec(&c->spec, "auto", "auto", "bf16", &l1), 0);
			assert_int_equal(layer_new_prec(&c->spec, "auto", "auto", "exact", &l2), 0);
			assert_int_equal(forward(l1, c, c->x.data, c->T, c->experts.data,
						 c->weights.data, y), 0);
			assert_int_equal(forward(l2, c, c->x.data, c->T, c->experts.data,
						 c->weights.data, ye), 0);
			assert_memory_equal(y, ye, (size_t)c->T * c->H * 4);
			plugin->expert->layer_free(l1);
			plugin->expert->layer_free(l2);
			free(ye);
			goto next;
		}
		/* exact: the avx512bf16 entry runs the avx512 kernels, bit for bit */
		for (size_t m = 0; m < 3; m++) {
			size_t sz = (size_t)c->T * c->H * 4;
			float *y2 = malloc(sz);
			void *l1, *l2;

			assert_non_null(y2);
			if (layer_new_prec(&c->spec, modes[m], "avx512bf16", "exact", &l1) == -ENOTSUP)
				break;
			assert_int_equal(layer_new_prec(&c->spec, modes[m], "avx512", "exact", &l2), 0);
			assert_int_equal(forward(l1, c, c->x.data, c->T, c->experts.data,
						 c->weights.data, y), 0);
			assert_int_equal(forward(l2, c, c->x.data, c->T, c->experts.data,
						 c->weights.data, y2), 0);
			assert_memory_equal(y, y2, sz);
			plugin->expert->layer_free(l1);
			plugin->expert->layer_free(l2);
			free(y2);
		}
		want = ref_b16(c, &slack);
		for (size_t m = 0; m < 3; m++)
			for (size_t k = 0; k < sizeof(isas) / sizeof(isas[0]); k++) {
				void *layer;
				int r = layer_new_prec(&c->spec, modes[m], isas[k], "bf16", &layer);

				if (r == -ENOTSUP)
					continue;
				assert_int_equal(r, 0);
				for (size_t T = prefixes ? 1 : c->T; T <= c->T; T++) {
					double err, ex;

					assert_int_equal(forward(layer, c, c->x.data, T,
								 c->experts.data, c->weights.data,
								 y), 0);
					err = err_slack(y, want, slack, T, c->H);
					ex = token_err(y, c->y.data, T, c->H);
					worst = err > worst ? err : worst;
					worst_exact = ex > worst_exact ? ex : worst_exact;
					if (getenv("MOED_TEST_VERBOSE") && T == c->T)
						printf("    %s %s %s: %.2e %.2e\n", name, modes[m],
						       isas[k], err, ex);
					if (err > TOL_B16 || ex > TOL_B16_EXACT)
						fail_msg("%s %s %s T=%zu: rel err %.2e (bf16 ref), "
							 "%.2e (fp32 ref)", name, modes[m], isas[k],
							 T, err, ex);
				}
				plugin->expert->layer_free(layer);
			}
		printf("  %-16s precision=bf16, every path and isa%s: rel err %.2e against the "
		       "bf16-activation reference, %.2e against fp32\n", name,
		       prefixes ? ", T=1..40" : "", worst, worst_exact);
		free(want);
		free(slack);
next:
		free(y);
		case_free(c);
		free(names[i]);
	}
	free(names);
}

/* prepack = on: BF16 and FP8 weights packed once at layer_new give the
 * GEMM's results bit for bit (the same panels and scales, the same sums), for
 * every T of the odd-sized cases; the auto path (for BF16 the GEMM from one
 * token) is checked against both references; F32 weights accept the setting
 * and are unchanged. */
static const char *packed_isa;

static int layer_new_packed(const struct moed_expert_spec *spec, const char *kernel,
			    const char *prepack, void **ret)
{
	struct moed_param p[5] = { { "kernel", kernel }, { "isa", packed_isa },
				   { "split_min_kb", "0" }, { "precision", "bf16" },
				   { "prepack", prepack } };

	return plugin->expert->layer_new(plugin_state, spec, p, 5, ret);
}

static void prepack_isa(const char *isa)
{
	struct dirent **names;
	int n = scandir(cases_dir, &names, NULL, alphasort), checked = 0;

	assert_true(n > 0);
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		int prefixes = !strncmp(name, "odd_dims", 8);
		void *lp, *lg, *la;
		struct tcase *c;
		float *y, *y2, *want = NULL, *slack = NULL;
		size_t sz;

		if (name[0] == '.') {
			free(names[i]);
			continue;
		}
		c = case_load(name);
		sz = (size_t)c->T * c->H * 4;
		y = malloc(sz);
		y2 = malloc(sz);
		assert_non_null(y);
		assert_non_null(y2);
		if (layer_new_packed(&c->spec, "gemm", "on", &lp) == -ENOTSUP)
			goto next;      /* not on this CPU */
		assert_int_equal(layer_new_packed(&c->spec, "gemm", "off", &lg), 0);
		assert_int_equal(layer_new_packed(&c->spec, "auto", "on", &la), 0);
		if (c->bf16 || c->fp8)
			want = ref_b16(c, &slack);
		for (size_t T = prefixes ? 1 : c->T; T <= c->T; T++) {
			assert_int_equal(forward(lp, c, c->x.data, T, c->experts.data,
						 c->weights.data, y), 0);
			assert_int_equal(forward(lg, c, c->x.data, T, c->experts.data,
						 c->weights.data, y2), 0);
			if (memcmp(y, y2, T * c->H * 4))
				fail_msg("%s T=%zu: prepack = on differs from the GEMM packing per "
					 "call", name, T);
			assert_int_equal(forward(la, c, c->x.data, T, c->experts.data,
						 c->weights.data, y), 0);
			if (want && (err_slack(y, want, slack, T, c->H) > TOL_B16 ||
					token_err(y, c->y.data, T, c->H) > TOL_B16_EXACT))
				fail_msg("%s T=%zu prepack auto: rel err %.2e (bf16 ref), %.2e "
					 "(fp32 ref)", name, T, err_slack(y, want, slack, T, c->H),
					 token_err(y, c->y.data, T, c->H));
		}
		checked += c->bf16 || c->fp8;
		plugin->expert->layer_free(lp);
		plugin->expert->layer_free(lg);
		plugin->expert->layer_free(la);
		free(want);
		free(slack);
next:
		free(y);
		free(y2);
		case_free(c);
		free(names[i]);
	}
	free(names);
	printf("  prepack = on, isa %s: %d BF16 and FP8 cases bit-equal to the GEMM packing per "
	       "call and within the references%s\n", isa, checked,
	       checked ? "" : " (none: not on this CPU)");
}

/* ... with the vdpbf16ps GEMM and with the AMX tiles, which read the same
 * panels. */
static void test_prepack(void **state)
{
	packed_isa = "avx512bf16";
	prepack_isa(packed_isa);
	packed_isa = "amx";
	prepack_isa(packed_isa);
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
static void batch_independence_isa(const char *name, const char *kernel, const char *isa,
				   const char *prec, double tol)
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
	assert_int_equal(layer_new_prec(&c->spec, kernel, isa, prec, &layer), 0);
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

static void batch_independence_prec(const char *name, const char *kernel, const char *prec,
				    double tol)
{
	batch_independence_isa(name, kernel, "auto", prec, tol);
}

static void batch_independence(const char *name, const char *kernel, double tol)
{
	batch_independence_prec(name, kernel, "exact", tol);
}

static void test_batch_independence(void **state)
{
	/* precision = bf16: a token's sums do not depend on its neighbours in
	 * either bf16 kernel (each token has its own accumulators) */
	batch_independence_prec("hot_bf16", "small", "bf16", 0);
	batch_independence_prec("hot_bf16", "gemm", "bf16", 0);
	batch_independence_prec("slices_fp8", "gemm", "bf16", 0);
	batch_independence_prec("t1000_bf16", "gemm", "bf16", 0);
	/* isa = amx: BF16 takes the AMX GEMM from one token on, so in auto mode
	 * too a token alone gets the bits it gets in any batch */
	{
		struct tcase *c = case_load("hot_bf16");
		void *l;

		if (layer_new_prec(&c->spec, "auto", "amx", "bf16", &l) == 0) {
			plugin->expert->layer_free(l);
			batch_independence_isa("hot_bf16", "auto", "amx", "bf16", 0);
			batch_independence_isa("t1000_bf16", "auto", "amx", "bf16", 0);
			batch_independence_isa("k8_e64_bf16", "auto", "amx", "bf16", 0);
		} else {
			printf("  no AMX here: auto-mode batch independence of isa = amx not run\n");
		}
		case_free(c);
	}
	batch_independence("k8_e64_f32", "small", 0);
	batch_independence("hot_bf16", "small", 0);
	batch_independence("hot_fp8", "small", 0);
	batch_independence("slices_fp8", "small", 0);
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
	static const enum fake_host_order orders[] = { FAKE_HOST_POOL, FAKE_HOST_FORWARD,
						       FAKE_HOST_REVERSE };
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
		for (size_t m = 0; m < 4; m++) {
			size_t sz = (size_t)c->T * c->H * 4;
			float *y[3] = { malloc(sz), malloc(sz), malloc(sz) };
			void *layer;

			/* m = 2, 3: precision = bf16 */
			assert_true(y[0] && y[1] && y[2]);
			assert_int_equal(layer_new_prec(&c->spec, modes[m % 2], "auto",
							m < 2 ? "exact" : "bf16", &layer),
					 0);
			for (int p = 0; p < 3; p++) {
				fake_host_set_order(orders[p]);
				assert_int_equal(forward(layer, c, c->x.data, c->T,
							 c->experts.data, c->weights.data, y[p]),
						 0);
			}
			fake_host_set_order(FAKE_HOST_POOL);
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
	if (fake_host_set_threads(3) < 0)
		return -1;
	return plugin->init(fake_host(), NULL, 0, &plugin_state);
}

static int group_teardown(void **state)
{
	if (plugin && plugin->fini)
		plugin->fini(plugin_state);
	if (dl)
		dlclose(dl);
	fake_host_stop();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_cases),
		cmocka_unit_test(test_batch_independence),
		cmocka_unit_test(test_task_order),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_bf16_precision),
		cmocka_unit_test(test_prepack),
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
