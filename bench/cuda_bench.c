/*
 * Benchmark of the cuda expert backend (not part of make check; needs a GPU).
 * First the limits, measured here in the same process: device memory
 * bandwidth (a device-to-device cudaMemcpy, read + write bytes) and GEMM peaks
 * (cublasSgemm 8192^3 in fp32; cublasGemmEx in bf16 with fp32 accumulation).
 * Then, for shapes S1-S3 of ROUTING.md, fp32 and bf16 weights, and T = 1 .. 4096
 * tokens with uniformly random distinct top-k experts: the median wall time of
 * forward() (host to host, copies included) and two ratios against the limits:
 * weight bytes of the distinct experts touched per second / bandwidth (what
 * decode is bound by) and FLOP/s / GEMM peak (what prefill is bound by).
 *
 * Usage: cuda_bench [PLUGIN_DIR] (default $MOED_TEST_PLUGIN_DIR, else
 * plugins/.libs).  Environment: BENCH_SHAPES (e.g. "S1 S3"), BENCH_SECONDS per
 * point (default 0.25), BENCH_PARAMS ("key=value,..." passed to layer_new).
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "bench/util.h"
#include "include/moed/plugin.h"
#include "tests/common/fake_host.h"

struct shape {
	const char *id;
	uint32_t H, I, E, k, shared;
};

static const struct shape shapes[] = {
	{ "S1", 2048, 1408, 64, 6, 2 },
	{ "S2", 2048, 768, 128, 8, 0 },
	{ "S3", 1792, 512, 256, 8, 1 },
};

static const size_t Ts[] = { 1, 2, 4, 16, 64, 256, 1024, 4096 };

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 32);
}

/* uniform in [-a, a) */
static float frnd(float a)
{
	return a * ((float)(rnd() >> 8) * (2.0f / 16777216.0f) - 1.0f);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p) {
		fprintf(stderr, "out of host memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

#define CHECK(x) \
	do { \
		if ((x) != 0) { \
			fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #x); \
			exit(1); \
		} \
	} while (0)

/* Device memory bandwidth in bytes/s: read + write of a 1 GiB copy. */
static double measure_bandwidth(void)
{
	size_t bytes = (size_t)1 << 30;
	cudaEvent_t a, b;
	void *src, *dst;
	float ms, best = 1e30f;

	CHECK(cudaMalloc(&src, bytes));
	CHECK(cudaMalloc(&dst, bytes));
	CHECK(cudaMemset(src, 1, bytes));
	CHECK(cudaEventCreate(&a));
	CHECK(cudaEventCreate(&b));
	for (int i = 0; i < 6; i++) {
		CHECK(cudaEventRecord(a, 0));
		CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
		CHECK(cudaEventRecord(b, 0));
		CHECK(cudaEventSynchronize(b));
		CHECK(cudaEventElapsedTime(&ms, a, b));
		if (i && ms < best)
			best = ms;
	}
	cudaFree(src);
	cudaFree(dst);
	cudaEventDestroy(a);
	cudaEventDestroy(b);
	return 2.0 * bytes / (best * 1e-3);
}

/* GEMM peak in FLOP/s: n^3, fp32 (cublasSgemm) or bf16 in, fp32 out. */
static double measure_gemm(int bf16)
{
	const int n = 8192;
	const float one = 1.0f, zero = 0.0f;
	size_t es = bf16 ? 2 : 4;
	cublasHandle_t h;
	cudaEvent_t a, b;
	void *A, *B, *C;
	float ms, best = 1e30f;

	CHECK(cublasCreate(&h));
	CHECK(cudaMalloc(&A, (size_t)n * n * es));
	CHECK(cudaMalloc(&B, (size_t)n * n * es));
	CHECK(cudaMalloc(&C, (size_t)n * n * 4));
	CHECK(cudaMemset(A, 0, (size_t)n * n * es));
	CHECK(cudaMemset(B, 0, (size_t)n * n * es));
	CHECK(cudaEventCreate(&a));
	CHECK(cudaEventCreate(&b));
	for (int i = 0; i < 4; i++) {
		CHECK(cudaEventRecord(a, 0));
		if (bf16)
			CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, A,
					   CUDA_R_16BF, n, B, CUDA_R_16BF, n, &zero, C, CUDA_R_32F,
					   n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
		else
			CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, A, n, B, n,
					  &zero, C, n));
		CHECK(cudaEventRecord(b, 0));
		CHECK(cudaEventSynchronize(b));
		CHECK(cudaEventElapsedTime(&ms, a, b));
		if (i && ms < best)
			best = ms;
	}
	cudaFree(A), cudaFree(B), cudaFree(C);
	cudaEventDestroy(a), cudaEventDestroy(b);
	cublasDestroy(h);
	return 2.0 * n * n * (double)n / (best * 1e-3);
}

/* "k=v,k=v" -> params (pointers into a copy of s) */
static size_t parse_params(char *s, struct moed_param *p, size_t max)
{
	size_t n = 0;

	for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ",")) {
		char *eq = strchr(tok, '=');

		if (!eq)
			continue;
		*eq = '\0';
		p[n++] = (struct moed_param){ tok, eq + 1 };
	}
	return n;
}

static void run_shape(const struct moed_plugin *pl, void *state, const struct shape *s, int bf16,
		      double bw, double peak32, double peak16, const struct moed_param *params,
		      size_t n_params, double seconds)
{
	uint32_t H = s->H, I = s->I, E = s->E, k = s->k, Is = s->shared * s->I;
	size_t es = bf16 ? 2 : 4, per = (size_t)I * H, n_w = 3 * per * E + 3 * (size_t)Is * H;
	size_t maxT = Ts[sizeof(Ts) / sizeof(Ts[0]) - 1];
	char *w = xmalloc(n_w * es);
	const void **g = xmalloc(E * sizeof(void *)), **u = xmalloc(E * sizeof(void *));
	const void **d = xmalloc(E * sizeof(void *));
	float *x = xmalloc(maxT * H * 4), *y = xmalloc(maxT * H * 4);
	float *wt = xmalloc(maxT * k * 4);
	int32_t *ex = xmalloc(maxT * k * 4);
	struct moed_expert_spec spec;
	double t0 = bench_now();
	void *layer;
	int r;

	for (size_t i = 0; i < n_w; i++) {
		float v = frnd(0.03f);

		if (bf16) {
			uint32_t b;

			memcpy(&b, &v, 4);
			((uint16_t *)w)[i] = (uint16_t)(b >> 16);
		} else {
			((float *)w)[i] = v;
		}
	}
	for (uint32_t e = 0; e < E; e++) {
		g[e] = w + (3 * e) * per * es;
		u[e] = w + (3 * e + 1) * per * es;
		d[e] = w + (3 * e + 2) * per * es;
	}
	spec = (struct moed_expert_spec){
		.struct_size = sizeof(spec), .hidden_size = H, .intermediate_size = I,
		.n_experts = E, .shared_intermediate_size = Is,
		.dtype = bf16 ? MOED_DTYPE_BF16 : MOED_DTYPE_F32,
		.gate = (const void *const *)g, .up = (const void *const *)u,
		.down = (const void *const *)d,
		.shared_gate = Is ? w + 3 * per * E * es : NULL,
		.shared_up = Is ? w + (3 * per * E + (size_t)Is * H) * es : NULL,
		.shared_down = Is ? w + (3 * per * E + 2 * (size_t)Is * H) * es : NULL,
	};
	r = pl->expert->layer_new(state, &spec, params, n_params, &layer);
	if (r) {
		printf("%s %s: layer_new failed (%d)\n", s->id, bf16 ? "bf16" : "fp32", r);
		goto out;
	}
	printf("\n%s %s: H %u, I %u, E %u, k %u, shared %u; %.2f GB of weights, set up in %.1f s\n",
	       s->id, bf16 ? "bf16" : "fp32", H, I, E, k, Is, n_w * es / 1e9, bench_now() - t0);
	printf("%6s %10s %10s %8s %10s %8s %8s%s\n", "T", "ms", "tok/s", "experts", "GB/s",
	       "bw", "flop/s", bf16 ? "  (bf16 peak)" : "");
	for (size_t i = 0; i < maxT * H; i++)
		x[i] = frnd(1.0f);
	for (size_t ti = 0; ti < sizeof(Ts) / sizeof(Ts[0]); ti++) {
		size_t T = Ts[ti], distinct = 0, reps = 0;
		double times[200], med, bytes, flops;
		char *seen = calloc(E, 1);

		for (size_t t = 0; t < T; t++) {
			for (uint32_t j = 0; j < k; j++) {
				int32_t e;
				int dup;

				do {
					e = (int32_t)(rnd() % E);
					dup = 0;
					for (uint32_t q = 0; q < j; q++)
						dup |= ex[t * k + q] == e;
				} while (dup);
				ex[t * k + j] = e;
				wt[t * k + j] = 1.0f / k;
				distinct += !seen[e];
				seen[e] = 1;
			}
		}
		free(seen);
		for (int wup = 0; wup < 2; wup++)
			CHECK(pl->expert->forward(layer, x, T, k, ex, wt, y));
		for (double start = bench_now(); reps < 200 && (reps < 5 || bench_now() - start < seconds);
		     reps++) {
			double a = bench_now();

			CHECK(pl->expert->forward(layer, x, T, k, ex, wt, y));
			times[reps] = bench_now() - a;
		}
		med = bench_median(times, reps);
		bytes = ((double)distinct * 3 * per + 3.0 * Is * H) * es;
		flops = 6.0 * H * ((double)I * k + Is) * T;
		printf("%6zu %10.3f %10.0f %8zu %10.1f %7.1f%% %7.1f%%", T, med * 1e3, T / med,
		       distinct, bytes / med / 1e9, 100 * bytes / med / bw,
		       100 * flops / med / peak32);
		if (bf16)
			printf("  %7.1f%%", 100 * flops / med / peak16);
		putchar('\n');
		fflush(stdout);
	}
	pl->expert->layer_free(layer);
out:
	free(w), free(g), free(u), free(d), free(x), free(y), free(wt), free(ex);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : getenv("MOED_TEST_PLUGIN_DIR");
	const char *only = getenv("BENCH_SHAPES");
	double seconds = getenv("BENCH_SECONDS") ? atof(getenv("BENCH_SECONDS")) : 0.25;
	char path[512], *pstr = strdup(getenv("BENCH_PARAMS") ? getenv("BENCH_PARAMS") : "");
	struct moed_param params[8];
	size_t n_params = parse_params(pstr, params, 8);
	const struct moed_plugin *pl;
	struct cudaDeviceProp prop;
	double bw, p32, p16;
	void *dl, *state;
	int n = 0;

	if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
		printf("no CUDA device: nothing to measure\n");
		return 77;
	}
	CHECK(cudaGetDeviceProperties(&prop, 0));
	snprintf(path, sizeof(path), "%s/cuda.so", dir ? dir : "plugins/.libs");
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 1;
	}
	pl = dlsym(dl, MOED_PLUGIN_SYMBOL);
	fake_host_set_verbosity(MOED_LOG_NOTICE);
	if (!pl || pl->init(fake_host(), NULL, 0, &state)) {
		fprintf(stderr, "cuda plugin: init failed\n");
		return 1;
	}
	bw = measure_bandwidth();
	p32 = measure_gemm(0);
	p16 = measure_gemm(1);
	printf("device: %s (sm_%d%d, %d SMs, %.0f GiB)\n", prop.name, prop.major, prop.minor,
	       prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0);
	printf("limits: copy bandwidth %.0f GB/s (read+write), sgemm 8192^3 %.1f TFLOP/s, "
	       "bf16 gemm %.1f TFLOP/s\n", bw / 1e9, p32 / 1e12, p16 / 1e12);
	printf("ratios: bw = weight bytes of the distinct experts touched per second / copy "
	       "bandwidth; flop/s = 6*H*(I*k + Is)*T per second / sgemm peak; forward() is "
	       "host to host, copies included\n");
	if (n_params)
		printf("parameters: %s\n", getenv("BENCH_PARAMS"));
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		if (only && !strstr(only, shapes[i].id))
			continue;
		for (int bf16 = 0; bf16 < 2; bf16++)
			run_shape(pl, state, &shapes[i], bf16, bw, p32, p16, params, n_params,
				  seconds);
	}
	pl->fini(state);
	dlclose(dl);
	free(pstr);
	return 0;
}
