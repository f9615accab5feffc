/*
 * Micro-benchmark of the cpu expert backend on shape S1 (H 2048, I 1408,
 * E 64, top-6, 2 shared experts) with random weights, against the limits
 * measured in the same run: cblas_sgemm peak (2048^3) and a streaming read of
 * 512 MiB.  Not part of make check; build with `make bench/expert_bench` and
 * run with the plugin folder:
 *
 *	bench/expert_bench plugins/.libs [f32|bf16] [auto|small|gemm] [MAX_T]
 *
 * Single-threaded: OpenBLAS is set to one thread, as the daemon's workers call
 * it.  For T = 1..1024 random top-6 routes (fresh each repetition) it prints
 * the median time, tokens/s, weight bytes of the experts touched per second
 * over the read bandwidth, and FLOP/s over the sgemm peak.  A second table
 * sends every token to the same 6 experts (group = T) with the small kernel
 * and with sgemm forced, to place gemm_min_tokens (only when MAX_T is 1024).
 */
#include <cblas.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "include/moed/plugin.h"

#define S1_H 2048u
#define S1_I 1408u
#define S1_E 64u
#define S1_K 6u
#define S1_IS (2u * S1_I)
#define REPS 7

static uint64_t rng = 88172645463325252ull;

static uint32_t next_u32(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 32);
}

static float next_f(void)
{
	return ((float)next_u32() / 4294967296.0f - 0.5f) * 0.05f;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	return v[n / 2];
}

static void host_log(int level, const char *plugin, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static const struct moed_host host = {
	.struct_size = sizeof(struct moed_host),
	.abi_version = MOED_PLUGIN_ABI_VERSION,
	.log = host_log,
};

/* n weights, fp32 or bf16. */
static void *weights(size_t n, int bf16)
{
	void *p = malloc(n * (bf16 ? 2 : 4));

	if (!p) {
		perror("malloc");
		exit(1);
	}
	for (size_t i = 0; i < n; i++) {
		float f = next_f();
		uint32_t u;

		memcpy(&u, &f, 4);
		if (bf16)
			((uint16_t *)p)[i] = (uint16_t)(u >> 16);
		else
			((float *)p)[i] = f;
	}
	return p;
}

static double sgemm_peak(void)
{
	size_t n = 2048;
	float *a = malloc(n * n * 4), *b = malloc(n * n * 4), *c = malloc(n * n * 4);
	double t[3];

	for (size_t i = 0; i < n * n; i++)
		a[i] = next_f(), b[i] = next_f();
	for (int r = 0; r < 3; r++) {
		double t0 = now();

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)n, 1.0f, a,
			    (int)n, b, (int)n, 0.0f, c, (int)n);
		t[r] = now() - t0;
	}
	free(a), free(b), free(c);
	return 2.0 * n * n * n / median(t, 3) / 1e9;
}

typedef float v4f __attribute__((vector_size(16)));

static double read_bw(void)
{
	size_t n = (512u << 20) / 4;
	float *a = malloc(n * 4);
	double t[5];
	volatile float sink;

	for (size_t i = 0; i < n; i++)
		a[i] = (float)(i & 7);
	for (int r = 0; r < 5; r++) {
		v4f s[8] = { { 0 } };
		double t0 = now();

		for (size_t i = 0; i < n; i += 32)
			for (int j = 0; j < 8; j++) {
				v4f v;

				memcpy(&v, a + i + 4 * j, sizeof(v));
				s[j] += v;
			}
		t[r] = now() - t0;
		sink = s[0][0] + s[7][3];
	}
	(void)sink;
	free(a);
	return n * 4.0 / median(t, 5) / 1e9;
}

/* Random distinct top-k routes; returns the number of distinct experts. */
static unsigned routes(size_t T, int32_t *ex, float *w, int hot)
{
	unsigned char used[S1_E] = { 0 };
	unsigned distinct = 0;

	for (size_t t = 0; t < T; t++) {
		for (unsigned j = 0; j < S1_K; j++) {
			int32_t e;
			int dup;

			do {
				e = hot ? (int32_t)j : (int32_t)(next_u32() % S1_E);
				dup = 0;
				for (unsigned q = 0; q < j; q++)
					dup |= ex[t * S1_K + q] == e;
			} while (dup);
			ex[t * S1_K + j] = e;
			w[t * S1_K + j] = 0.4f;
			distinct += !used[e];
			used[e] = 1;
		}
	}
	return distinct;
}

/* Median seconds of forward on T tokens; *ret_distinct: experts touched (median run). */
static double run(const struct moed_expert_ops *ops, void *layer, size_t T, int hot,
		  unsigned *ret_distinct)
{
	float *x = malloc(T * S1_H * 4), *y = malloc(T * S1_H * 4), *w = malloc(T * S1_K * 4);
	int32_t *ex = malloc(T * S1_K * 4);
	double t[REPS];
	unsigned d[REPS], dsum = 0;

	for (size_t i = 0; i < T * S1_H; i++)
		x[i] = next_f() * 20;
	for (int r = 0; r < REPS; r++) {
		double t0;

		d[r] = routes(T, ex, w, hot);
		t0 = now();
		if (ops->forward(layer, x, T, S1_K, ex, w, y)) {
			fprintf(stderr, "forward failed\n");
			exit(1);
		}
		t[r] = now() - t0;
		dsum += d[r];
	}
	*ret_distinct = (dsum + REPS / 2) / REPS;
	free(x), free(y), free(w), free(ex);
	return median(t, REPS);
}

static void *make_layer(const struct moed_plugin *p, const struct moed_expert_spec *s,
			const char *kernel)
{
	struct moed_param prm[] = { { "kernel", kernel } };
	void *layer;

	if (p->expert->layer_new(NULL, s, prm, 1, &layer)) {
		fprintf(stderr, "layer_new failed\n");
		exit(1);
	}
	return layer;
}

int main(int argc, char **argv)
{
	static const size_t Ts[] = { 1, 4, 16, 64, 256, 1024 };
	static const size_t sweep[] = { 4, 8, 16, 24, 32, 48, 64, 128 };
	const char *dtype = argc > 2 ? argv[2] : "f32", *kernel = argc > 3 ? argv[3] : "auto";
	size_t max_t = argc > 4 ? strtoul(argv[4], NULL, 10) : 1024;
	int bf16 = !strcmp(dtype, "bf16");
	size_t bpw = bf16 ? 2 : 4;
	const void *gate[S1_E], *up[S1_E], *down[S1_E];
	const struct moed_plugin *p;
	struct moed_expert_spec s;
	char path[512];
	double peak, bw;
	void *dl, *state, *layer, *small, *gemm;

	if (argc < 2) {
		fprintf(stderr, "usage: %s PLUGIN_DIR [f32|bf16] [auto|small|gemm] [MAX_T]\n",
			argv[0]);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/cpu.so", argv[1]);
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	p = dl ? dlsym(dl, MOED_PLUGIN_SYMBOL) : NULL;
	if (!p || p->init(&host, NULL, 0, &state)) {
		fprintf(stderr, "cannot load %s: %s\n", path, dl ? "no descriptor" : dlerror());
		return 1;
	}
	openblas_set_num_threads(1);
	peak = sgemm_peak();
	bw = read_bw();
	printf("S1 %s, kernel=%s, 1 thread, OpenBLAS core %s\n", dtype, kernel,
	       openblas_get_corename());
	printf("limits: sgemm 2048^3 %.1f GFLOP/s, read 512 MiB %.1f GB/s\n", peak, bw);

	for (unsigned e = 0; e < S1_E; e++) {
		gate[e] = weights((size_t)S1_I * S1_H, bf16);
		up[e] = weights((size_t)S1_I * S1_H, bf16);
		down[e] = weights((size_t)S1_H * S1_I, bf16);
	}
	s = (struct moed_expert_spec){
		.struct_size = sizeof(s), .hidden_size = S1_H, .intermediate_size = S1_I,
		.n_experts = S1_E, .shared_intermediate_size = S1_IS,
		.dtype = bf16 ? MOED_DTYPE_BF16 : MOED_DTYPE_F32,
		.gate = gate, .up = up, .down = down,
		.shared_gate = weights((size_t)S1_IS * S1_H, bf16),
		.shared_up = weights((size_t)S1_IS * S1_H, bf16),
		.shared_down = weights((size_t)S1_H * S1_IS, bf16),
	};
	layer = make_layer(p, &s, kernel);
	printf("%6s %10s %10s %8s %10s %8s\n", "T", "ms", "tok/s", "experts", "bytes/bw",
	       "flop/pk");
	for (size_t i = 0; i < sizeof(Ts) / sizeof(Ts[0]) && Ts[i] <= max_t; i++) {
		unsigned d;
		double sec = run(p->expert, layer, Ts[i], 0, &d);
		double bytes = ((double)d * 3 * S1_H * S1_I + 3.0 * S1_H * S1_IS) * bpw;
		double flops = (double)Ts[i] * (S1_K * 6.0 * S1_H * S1_I + 6.0 * S1_H * S1_IS);

		printf("%6zu %10.3f %10.1f %8u %10.2f %8.2f\n", Ts[i], sec * 1e3, Ts[i] / sec, d,
		       bytes / sec / 1e9 / bw, flops / sec / 1e9 / peak);
	}
	p->expert->layer_free(layer);
	if (max_t < 1024)
		return 0;

	small = make_layer(p, &s, "small");
	gemm = make_layer(p, &s, "gemm");
	printf("group = T on 6 experts + shared: ms small / sgemm\n");
	for (size_t i = 0; i < sizeof(sweep) / sizeof(sweep[0]); i++) {
		unsigned d;
		double a = run(p->expert, small, sweep[i], 1, &d);
		double b = run(p->expert, gemm, sweep[i], 1, &d);

		printf("%6zu %10.3f %10.3f %6.2f\n", sweep[i], a * 1e3, b * 1e3, a / b);
	}
	p->expert->layer_free(small);
	p->expert->layer_free(gemm);
	p->fini(state);
	return 0;
}
