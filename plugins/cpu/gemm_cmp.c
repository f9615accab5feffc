/*
 * One expert of S1 (H 2048, I 1408) on T tokens, one thread: the cpu
 * backend's paths against each other and against oneDNN's bf16 matmul, to
 * choose the bf16 prefill kernel and the small/GEMM crossover (not part of
 * the build or of make check).  Ours runs through the plugin (dlopen, the
 * tests' fake host, one thread), a layer of one expert that every token
 * chooses (NE copies of it in turn); oneDNN runs gate+up as one [T,H]x[H,2I] bf16 matmul (weights
 * reordered once into its preferred layout, as PyTorch prepacks), silu*up in
 * C, act to bf16, then [T,I]x[I,H]: the same work.  Best of REPS calls (the machine is shared: the
 * best is the kernel, the rest is the neighbours).
 *
 *	gcc -O2 -march=native -I. plugins/cpu/gemm_cmp.c tests/common/fake_host.c \
 *	    -o /tmp/gemm_cmp -ldnnl -ldl -lpthread -lm   (add -DNO_DNNL without it)
 *	OMP_NUM_THREADS=1 /tmp/gemm_cmp plugins/.libs T...
 *
 * Columns: f32 and bf16ex (precision = exact: sgemm, bf16 widened), bf16
 * and fp8 (precision = bf16, auto path), bf16sm/fp8sm (row kernel forced),
 * bf16gm/fp8gm (packed GEMM forced), onednn.  GEMM_CMP_FAST=1 skips the exact
 * ones, GEMM_CMP_NO_DNNL=1 oneDNN; GEMM_CMP_PREPACK=on sets prepack = on; GEMM_CMP_DUMP=PREFIX writes each
 * run's y to PREFIX.dtype.kernel.precision.T (to compare two builds' bits).  Figures (2026-12-02): plugins/cpu/bf16.c, bf16_gemm.c
 * and cpu.c (the crossover).
 */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "include/moed/plugin.h"
#include "tests/common/fake_host.h"
#ifndef NO_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

#define H 2048
#define I 1408
#define REPS 9
/* Copies of the expert, one per call in turn, so that calls on few tokens
 * read their weights from memory, not from the previous call's L3 (32 MB). */
#define NE 8

static double now_ms(void)
{
	struct timespec ts;

	/* the thread's CPU time: on a shared machine, wall time also counts the
	 * neighbours' time slices (everything here runs on this one thread) */
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static uint16_t bf(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static float rnd(void)
{
	return (float)rand() / RAND_MAX - 0.5f;
}

static const struct moed_plugin *plugin;
static void *state;

/* Median ms of the plugin on T tokens, weights of dtype, params p. */
static double ours(size_t T, int dtype, const void *g, const void *u, const void *d,
		   const float *const sc[3], const float *x, const char *kernel, const char *prec)
{
	const void *gp[NE], *up[NE], *dp[NE];
	const float *gs[NE], *us[NE], *ds[NE];
	size_t es = dtype == MOED_DTYPE_F32 ? 4 : dtype == MOED_DTYPE_BF16 ? 2 : 1;
	struct moed_expert_spec s = {
		.struct_size = sizeof(s), .hidden_size = H, .intermediate_size = I,
		.n_experts = NE, .dtype = dtype, .gate = gp, .up = up, .down = dp,
	};
	const char *pp = getenv("GEMM_CMP_PREPACK");
	struct moed_param p[4] = { { "kernel", kernel }, { "precision", prec },
				   { "split_min_kb", "0" }, { "prepack", pp ? pp : "off" } };
	int32_t *ex = calloc(T, 4);
	float *w = malloc(T * 4), *y = malloc(T * H * 4);
	double t[REPS];
	void *l;

	for (int e = 0; e < NE; e++) {
		gp[e] = (const char *)g + (size_t)e * H * I * es;
		up[e] = (const char *)u + (size_t)e * H * I * es;
		dp[e] = (const char *)d + (size_t)e * H * I * es;
		gs[e] = sc[0], us[e] = sc[1], ds[e] = sc[2];
	}
	if (dtype == MOED_DTYPE_F8_E4M3) {
		s.gate_scale = gs, s.up_scale = us, s.down_scale = ds;
		s.scale_block_rows = s.scale_block_cols = 128;
	}
	for (size_t i = 0; i < T; i++)
		w[i] = 1;
	if (plugin->expert->layer_new(state, &s, p, 4, &l)) {
		fprintf(stderr, "layer_new failed\n");
		exit(1);
	}
	plugin->expert->forward(l, x, T, 1, ex, w, y);
	for (int r = 0; r < REPS; r++) {
		double t0;

		for (size_t i = 0; i < T; i++)
			ex[i] = (r + 1) % NE;
		t0 = now_ms();
		plugin->expert->forward(l, x, T, 1, ex, w, y);
		t[r] = now_ms() - t0;
	}
	plugin->expert->layer_free(l);
	if (getenv("GEMM_CMP_DUMP")) {     /* y of the last call, to compare builds' bits */
		char fn[600];
		FILE *f;

		snprintf(fn, sizeof(fn), "%s.%d.%s.%s.%zu", getenv("GEMM_CMP_DUMP"), dtype, kernel,
			 prec, T);
		f = fopen(fn, "wb");
		if (f) {
			fwrite(y, 4, T * H, f);
			fclose(f);
		}
	}
	free(ex), free(w), free(y);
	qsort(t, REPS, sizeof(double), cmp);
	return t[0];
}

#ifndef NO_DNNL
#define CK(x) \
	do { \
		if ((x) != dnnl_success) { \
			fprintf(stderr, "dnnl: %s failed\n", #x); \
			exit(1); \
		} \
	} while (0)

struct mm {
	dnnl_primitive_t prim;
	dnnl_memory_t src, wei, dst;
};

/* A [M,K] bf16 x [K,N] bf16 -> f32 matmul; w: [N][K] row-major bf16 (ours). */
static void mm_new(struct mm *m, dnnl_engine_t eng, dnnl_stream_t st, int64_t M, int64_t K,
		   int64_t N, const uint16_t *w, void *src, void *dst)
{
	dnnl_memory_desc_t smd, wmd, wany, dmd;
	dnnl_dims_t sd = { M, K }, wd = { K, N }, dd = { M, N };
	dnnl_matmul_desc_t desc;
	dnnl_primitive_desc_t pd, rpd;
	dnnl_primitive_t reorder;
	dnnl_memory_t wuser;
	const dnnl_memory_desc_t *wq;

	CK(dnnl_memory_desc_init_by_tag(&smd, 2, sd, dnnl_bf16, dnnl_ab));
	CK(dnnl_memory_desc_init_by_tag(&wany, 2, wd, dnnl_bf16, dnnl_format_tag_any));
	CK(dnnl_memory_desc_init_by_tag(&wmd, 2, wd, dnnl_bf16, dnnl_ba));
	CK(dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_ab));
	CK(dnnl_matmul_desc_init(&desc, &smd, &wany, NULL, &dmd));
	CK(dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL));
	wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	CK(dnnl_memory_create(&wuser, &wmd, eng, (void *)w));
	CK(dnnl_memory_create(&m->wei, wq, eng, DNNL_MEMORY_ALLOCATE));
	CK(dnnl_reorder_primitive_desc_create(&rpd, &wmd, eng, wq, eng, NULL));
	CK(dnnl_primitive_create(&reorder, rpd));
	{
		dnnl_exec_arg_t a[2] = { { DNNL_ARG_FROM, wuser }, { DNNL_ARG_TO, m->wei } };

		CK(dnnl_primitive_execute(reorder, st, 2, a));
		CK(dnnl_stream_wait(st));
	}
	CK(dnnl_memory_create(&m->src, &smd, eng, src));
	CK(dnnl_memory_create(&m->dst, &dmd, eng, dst));
	CK(dnnl_primitive_create(&m->prim, pd));
}

static void mm_run(struct mm *m, dnnl_stream_t st)
{
	dnnl_exec_arg_t a[3] = { { DNNL_ARG_SRC, m->src }, { DNNL_ARG_WEIGHTS, m->wei },
				 { DNNL_ARG_DST, m->dst } };

	CK(dnnl_primitive_execute(m->prim, st, 3, a));
	CK(dnnl_stream_wait(st));
}

static double onednn(size_t T, const uint16_t *gu, const uint16_t *d, const float *x)
{
	dnnl_engine_t eng;
	dnnl_stream_t st;
	struct mm m1, m2;
	uint16_t *xb = malloc(T * H * 2), *ab = malloc(T * I * 2);
	float *c1 = malloc(T * 2 * I * 4), *y = malloc(T * H * 4);
	double t[REPS + 1];

	CK(dnnl_engine_create(&eng, dnnl_cpu, 0));
	CK(dnnl_stream_create(&st, eng, dnnl_stream_default_flags));
	mm_new(&m1, eng, st, (int64_t)T, H, 2 * I, gu, xb, c1);
	mm_new(&m2, eng, st, (int64_t)T, I, H, d, ab, y);
	for (int r = 0; r <= REPS; r++) {
		double t0 = now_ms();

		for (size_t i = 0; i < T * H; i++)
			xb[i] = bf(x[i]);
		mm_run(&m1, st);
		for (size_t j = 0; j < T; j++)
			for (size_t i = 0; i < I; i++) {
				float gv = c1[j * 2 * I + i], uv = c1[j * 2 * I + I + i];

				ab[j * I + i] = bf(gv / (1 + expf(-gv)) * uv);
			}
		mm_run(&m2, st);
		t[r] = now_ms() - t0;
	}
	qsort(t + 1, REPS, sizeof(double), cmp);
	free(xb), free(ab), free(c1), free(y);
	return t[1];
}
#endif

/* Weights as the daemon holds what it generates: 2 MiB aligned, advised
 * transparent huge pages (MOED_NO_HUGEPAGES=1: plain malloc, 4 kB pages). */
static void *big(size_t bytes)
{
	const char *off = getenv("MOED_NO_HUGEPAGES");
	size_t huge = (size_t)2 << 20, len = (bytes + huge - 1) & ~(huge - 1);
	void *p;

	if (off && *off && strcmp(off, "0"))
		return malloc(bytes);
	if (posix_memalign(&p, huge, len))
		return NULL;
	madvise(p, len, MADV_HUGEPAGE);
	return p;
}

int main(int argc, char **argv)
{
	char path[512];
	void *dl;
	size_t n = (size_t)I * H;
	float *gf = big(NE * n * 4), *uf = big(NE * n * 4), *df = big(NE * n * 4), *x;
	uint16_t *gb = big(NE * n * 2), *ub = big(NE * n * 2), *db = big(NE * n * 2),
		 *gu = malloc(2 * n * 2);
	uint8_t *g8 = big(NE * n), *u8 = big(NE * n), *d8 = big(NE * n);
	float *sc[3];
	const float *scc[3], *none[3] = { NULL, NULL, NULL };
	int fast = getenv("GEMM_CMP_FAST") != NULL;

	if (argc < 3) {
		fprintf(stderr, "usage: gemm_cmp PLUGIN_DIR T...\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/cpu.so", argv[1]);
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	plugin = dl ? dlsym(dl, MOED_PLUGIN_SYMBOL) : NULL;
	if (!plugin || fake_host_set_threads(1) < 0 ||
	    plugin->init(fake_host(), NULL, 0, &state))
		return 1;
	for (size_t i = 0; i < n; i++) {
		uint32_t u;

		gf[i] = rnd() * 0.05f, uf[i] = rnd() * 0.05f, df[i] = rnd() * 0.05f;
		gb[i] = bf(gf[i]), ub[i] = bf(uf[i]), db[i] = bf(df[i]);
		u = (uint32_t)rand();
		g8[i] = (uint8_t)(u & 0x7e), u8[i] = (uint8_t)((u >> 8) & 0x7e);
		d8[i] = (uint8_t)((u >> 16) & 0x7e);
	}
	for (int e = 1; e < NE; e++) {
		memcpy(gf + e * n, gf, n * 4), memcpy(uf + e * n, uf, n * 4);
		memcpy(df + e * n, df, n * 4), memcpy(gb + e * n, gb, n * 2);
		memcpy(ub + e * n, ub, n * 2), memcpy(db + e * n, db, n * 2);
		memcpy(g8 + e * n, g8, n), memcpy(u8 + e * n, u8, n), memcpy(d8 + e * n, d8, n);
	}
	memcpy(gu, gb, n * 2);
	memcpy(gu + n, ub, n * 2);
	for (int m = 0; m < 3; m++) {
		sc[m] = malloc(12 * 16 * 4);
		for (int i = 0; i < 12 * 16; i++)
			sc[m][i] = 1e-3f * (1 + i % 3);
		scc[m] = sc[m];
	}
	printf("%6s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n", "T", "f32", "bf16ex", "bf16",
	       "bf16sm", "bf16gm", "fp8", "fp8sm", "fp8gm", "onednn");
	for (int a = 2; a < argc; a++) {
		size_t T = strtoul(argv[a], NULL, 10);
		double f32, bex, b16, bsm, bgm, f8, f8s, f8g, dn = NAN;

		x = malloc(T * H * 4);
		for (size_t i = 0; i < T * H; i++)
			x[i] = rnd();
		/* GEMM_CMP_FAST: precision = bf16 only */
		f32 = bex = NAN;
		if (!fast) {
			f32 = ours(T, MOED_DTYPE_F32, gf, uf, df, none, x, "auto", "exact");
			bex = ours(T, MOED_DTYPE_BF16, gb, ub, db, none, x, "auto", "exact");
		}
		bsm = ours(T, MOED_DTYPE_BF16, gb, ub, db, none, x, "small", "bf16");
		bgm = ours(T, MOED_DTYPE_BF16, gb, ub, db, none, x, "gemm", "bf16");
		f8s = ours(T, MOED_DTYPE_F8_E4M3, g8, u8, d8, scc, x, "small", "bf16");
		f8g = ours(T, MOED_DTYPE_F8_E4M3, g8, u8, d8, scc, x, "gemm", "bf16");
		b16 = ours(T, MOED_DTYPE_BF16, gb, ub, db, none, x, "auto", "bf16");
		f8 = ours(T, MOED_DTYPE_F8_E4M3, g8, u8, d8, scc, x, "auto", "bf16");
#ifndef NO_DNNL
		if (!getenv("GEMM_CMP_NO_DNNL"))
			dn = onednn(T, gu, db, x);
#endif
		printf("%6zu %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f   ms; bf16 "
		       "GFLOP/s %.0f\n",
		       T, f32, bex, b16, bsm, bgm, f8, f8s, f8g, dn, 6.0 * H * I * T / b16 / 1e6);
		fflush(stdout);
		free(x);
	}
	return 0;
}
