/*
 * cuda: the GPU expert backend.  layer_new() uploads a layer's weights once
 * with plain cudaMalloc (fp32, or bf16 kept as bf16): gate and up stacked per
 * expert as one [2I][H] matrix, down as [H][I], the shared expert likewise.
 * forward() copies the hidden states, expert ids and router weights to the
 * device, sorts the T*k choices by expert there (kernels.h: histogram, scan,
 * stable scatter) and copies back only the E+1 segment offsets.  Then, per
 * non-empty expert: segments of fewer than gemm_min_tokens rows go to one
 * row-reading kernel launch (weights streamed once, fp32 arithmetic), larger
 * ones to one cuBLAS GEMM each, spread over four streams; the same for the
 * shared expert on all tokens.  A SwiGLU kernel between the gate/up and the
 * down projection; finally each token's k rows are scaled by their router
 * weights and summed in slot order, the shared expert added with weight 1
 * (no float atomics: the result is deterministic), and y copied back.
 *
 * Concurrency: forward() may run on many threads at once.  Each call takes a
 * workspace (streams, cuBLAS handles, device and pinned scratch, grown on
 * demand) from the layer's mutex-guarded pool, so calls share only the
 * read-only weights.
 *
 * Parameters (config [expert] or `moectl expert set cuda --param k=v`):
 * device (index, default 0); memory_limit_mb (0 = none: the most weight
 * memory this plugin generation may hold on the GPU, over all its layers;
 * scratch, which grows with the batch, comes on top); gemm_min_tokens
 * (1..17, default 16: smaller segments take the row-reading kernel);
 * bf16_gemm = tensor|fp32; tf32 = 0|1 (default 0: cuBLAS in full fp32).
 *
 * Numerics: fp32 weights are computed in fp32 throughout (max per-token
 * |y - ref| / max|ref| about 1e-6 against numpy; tests allow 1e-4).  bf16
 * weights are widened exactly; in segments of fewer than gemm_min_tokens rows
 * the arithmetic is fp32, as for fp32 weights.  Larger segments use bf16
 * tensor-core GEMMs with fp32 accumulation (bf16_gemm=tensor, the default),
 * which rounds the activations to bf16 as well: expect about 5e-3 of a
 * token's max |y|, tests allow 2e-2.  bf16_gemm=fp32 widens each expert's
 * weights to fp32 before an fp32 GEMM instead (slower, fp32 accuracy).
 * tf32=1 lets cuBLAS use TF32 tensor cores for fp32 GEMMs (about 1e-3).
 *
 * Failures (no driver or device, driver older than the runtime, kernels not
 * built for the GPU, not enough memory) are logged through the host and
 * returned from init() or layer_new() as -ENODEV, -EPROTO, -ENOEXEC or
 * -ENOMEM; the daemon then keeps its current backend.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "include/moed/plugin.h"
#include "plugins/common/expert_spec.h"
#include "plugins/common/params.h"
#include "plugins/cuda/kernels.h"

#define PLUGIN "cuda"
#define MAX_CHOICES (1u << 26)          /* T*k per call: int32 offsets on the device */
#define NAUX 4                          /* streams (and cuBLAS handles) for GEMMs */
#define N_CLASSES 5                     /* small-kernel row bounds 1, 2, 4, 8, 16 */
#define MIB ((size_t)1 << 20)
#define HEADROOM (256 * MIB)            /* left free at layer_new for scratch */
#define MAX_LOGGED_ERRORS 8             /* forward() errors logged per layer */

struct cuda_conf {
	uint32_t device;
	uint32_t memory_limit_mb;
	uint32_t gemm_min;
	uint32_t tf32;
	int bf16_tensor;
};

struct cuda_state {
	struct cuda_conf conf;          /* init's parameters: the layers' defaults */
	pthread_mutex_t lock;           /* guards used */
	size_t used;                    /* weight bytes held by this generation */
};

/* Device scratch of one call, carved from one allocation. */
struct bufs {
	float *x, *wts, *xs, *h1, *act, *h1s, *acts, *ysh, *y;
	int32_t *ex, *sort, *offs, *tok, *pos;
	uint16_t *xsb, *xb, *actb, *actsb;
};

struct ws {
	struct ws *next;
	cudaStream_t main, aux[NAUX];
	cudaEvent_t ready, done[NAUX];
	cublasHandle_t blas[NAUX];
	void *dbuf;                     /* device scratch */
	size_t dcap;
	void *hbuf;                     /* pinned: experts, weights, offsets */
	size_t hcap;
	float *wide[NAUX];              /* bf16_gemm=fp32: one widened matrix per stream */
	struct moe_items items[N_CLASSES];
};

struct cuda_layer {
	struct cuda_state *st;
	struct cuda_conf conf;
	uint32_t layer, H, I, E, Is;
	int bf16;
	size_t es;                      /* bytes per weight */
	size_t bytes;                   /* weight bytes on the device */
	void *w1, *w2, *sw1, *sw2;      /* [E][2I][H], [E][H][I], [2Is][H], [H][Is] */
	pthread_mutex_t lock;           /* guards pool */
	struct ws *pool;
	atomic_uint errors;
};

/* One projection for run_phase(): out = in · W_e^T per segment. */
struct proj {
	const void *W;
	size_t estride;                 /* elements between experts */
	uint32_t M, K;                  /* W_e is [M][K] */
	const float *in;                /* [rows][K] fp32 */
	const uint16_t *in16;           /* the same in bf16 (tensor GEMMs), or NULL */
	float *out;                     /* [rows][M] */
	const int32_t *offs;            /* host: nseg + 1 segment offsets */
	uint32_t nseg;
};

static const struct moed_host *host;

static int cuda_errno(cudaError_t e)
{
	switch (e) {
	case cudaSuccess:
		return 0;
	case cudaErrorMemoryAllocation:
		return -ENOMEM;
	case cudaErrorNoDevice:
	case cudaErrorInvalidDevice:
	case cudaErrorDevicesUnavailable:
		return -ENODEV;
	case cudaErrorInsufficientDriver:
	case cudaErrorSystemDriverMismatch:
	case cudaErrorCompatNotSupportedOnDevice:
		return -EPROTO;
	case cudaErrorNoKernelImageForDevice:
	case cudaErrorUnsupportedPtxVersion:
	case cudaErrorInvalidKernelImage:
		return -ENOEXEC;
	default:
		return -EIO;
	}
}

static int blas_errno(cublasStatus_t s)
{
	switch (s) {
	case CUBLAS_STATUS_SUCCESS:
		return 0;
	case CUBLAS_STATUS_ALLOC_FAILED:
		return -ENOMEM;
	case CUBLAS_STATUS_NOT_INITIALIZED:
		return -ENODEV;
	case CUBLAS_STATUS_ARCH_MISMATCH:
	case CUBLAS_STATUS_NOT_SUPPORTED:
		return -ENOTSUP;
	default:
		return -EIO;
	}
}

static const char *const bf16_gemm_choices[] = { "fp32", "tensor", NULL };

static const struct moed_param_decl decls[] = {
	{ .name = "device", .type = MOED_PARAM_INT, .min = 0, .max = 1023, .def = "0",
	  .help = "CUDA device index" },
	{ .name = "memory_limit_mb", .type = MOED_PARAM_INT, .min = 0, .max = 1e9, .def = "0",
	  .help = "most weight memory this generation may hold on the GPU; 0: no limit" },
	{ .name = "gemm_min_tokens", .type = MOED_PARAM_INT, .min = 1,
	  .max = MOE_SMALL_MAX_ROWS + 1, .def = "16",
	  .help = "segments of fewer rows take the row-reading kernel" },
	{ .name = "bf16_gemm", .type = MOED_PARAM_ENUM, .def = "tensor",
	  .choices = bf16_gemm_choices,
	  .help = "bf16 tensor-core GEMMs, or widen the weights to fp32 first" },
	{ .name = "tf32", .type = MOED_PARAM_BOOL, .def = "0",
	  .help = "let cuBLAS use TF32 tensor cores for fp32 GEMMs" },
};

static int parse_conf(struct cuda_conf *c, const struct moed_param *params, size_t n_params)
{
	uint32_t tensor = (uint32_t)c->bf16_tensor;
	const struct param_slot slots[] = {
		{ "device", &c->device },
		{ "memory_limit_mb", &c->memory_limit_mb },
		{ "gemm_min_tokens", &c->gemm_min },
		{ "bf16_gemm", &tensor },
		{ "tf32", &c->tf32 },
	};

	if (params_parse(host, PLUGIN, decls, PARAMS_COUNT(decls), slots, PARAMS_COUNT(slots),
			 params, n_params) < 0)
		return -EINVAL;
	c->bf16_tensor = tensor != 0;
	return 0;
}

/*
 * Keep the CUDA runtime and cuBLAS loaded for the life of the process: every
 * hot swap dlcloses a generation, and unloading the runtime under a live
 * driver context is not supported.  Marks the already-loaded objects
 * RTLD_NODELETE; failure only costs that safety, so it is not an error.
 */
static void pin_libraries(void)
{
	const void *syms[] = { (const void *)cudaGetDeviceCount, (const void *)cublasCreate };
	Dl_info info;

	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++)
		if (dladdr(syms[i], &info) && info.dli_fname)
			dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

/* Is the device there, and can this build run on it?  Logs why not. */
static int device_check(uint32_t device, int verbose)
{
	struct cudaDeviceProp p;
	int drv = 0, rt = 0, count = 0;
	cudaError_t e;

	cudaRuntimeGetVersion(&rt);
	cudaDriverGetVersion(&drv);
	if (!drv) {
		host->log(MOED_LOG_ERR, PLUGIN, "no NVIDIA driver (libcuda.so.1 cannot be loaded): "
			  "no usable GPU on this host; keeping the current expert backend");
		return -ENODEV;
	}
	e = cudaGetDeviceCount(&count);
	if (e == cudaErrorInsufficientDriver || e == cudaErrorSystemDriverMismatch ||
	    e == cudaErrorCompatNotSupportedOnDevice) {
		host->log(MOED_LOG_ERR, PLUGIN, "NVIDIA driver supports CUDA %d.%d, this plugin "
			  "was built with runtime %d.%d (%s); update the driver or rebuild "
			  "with a matching toolkit", drv / 1000, drv % 1000 / 10, rt / 1000,
			  rt % 1000 / 10, cudaGetErrorString(e));
		return -EPROTO;
	}
	if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0)) {
		host->log(MOED_LOG_ERR, PLUGIN, "no CUDA device visible: no usable GPU (check "
			  "CUDA_VISIBLE_DEVICES and access to /dev/nvidia*); keeping the current "
			  "expert backend");
		return -ENODEV;
	}
	if (e != cudaSuccess) {
		host->log(MOED_LOG_ERR, PLUGIN, "cannot list CUDA devices: %s",
			  cudaGetErrorString(e));
		return cuda_errno(e);
	}
	if (device >= (uint32_t)count) {
		host->log(MOED_LOG_ERR, PLUGIN, "parameter 'device' = %u, but %d CUDA device%s "
			  "present", device, count, count == 1 ? " is" : "s are");
		return -ENODEV;
	}
	e = cudaSetDevice((int)device);
	if (e == cudaSuccess)
		e = cudaGetDeviceProperties(&p, (int)device);
	if (e == cudaSuccess) {
		e = (cudaError_t)moe_probe(0);
		if (e == cudaSuccess)
			e = cudaDeviceSynchronize();
	}
	if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorUnsupportedPtxVersion ||
	    e == cudaErrorInvalidKernelImage) {
		host->log(MOED_LOG_ERR, PLUGIN, "device %u (%s, sm_%d%d): no kernel code for it in "
			  "this build (%s); rebuild with NVCC_GENCODE covering sm_%d%d", device,
			  p.name, p.major, p.minor, cudaGetErrorString(e), p.major, p.minor);
		return -ENOEXEC;
	}
	if (e != cudaSuccess) {
		host->log(MOED_LOG_ERR, PLUGIN, "device %u: %s", device, cudaGetErrorString(e));
		return cuda_errno(e);
	}
	if (verbose)
		host->log(MOED_LOG_INFO, PLUGIN, "device %u: %s, sm_%d%d, %zu MiB, driver %d.%d, "
			  "runtime %d.%d", device, p.name, p.major, p.minor, p.totalGlobalMem / MIB,
			  drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
	return 0;
}

static int cuda_init(const struct moed_host *h, const struct moed_param *params, size_t n_params,
		     void **ret_state)
{
	struct cuda_state *st;
	int r;

	host = h;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->conf = (struct cuda_conf){ .gemm_min = 16, .bf16_tensor = 1 };
	r = parse_conf(&st->conf, params, n_params);
	if (r < 0)
		goto fail;
	r = device_check(st->conf.device, 1);
	if (r < 0)
		goto fail;
	r = -pthread_mutex_init(&st->lock, NULL);
	if (r < 0)
		goto fail;
	pin_libraries();
	*ret_state = st;
	return 0;
fail:
	free(st);
	return r;
}

static void cuda_fini(void *state)
{
	struct cuda_state *st = state;

	if (!st)
		return;
	pthread_mutex_destroy(&st->lock);
	free(st);
}

static int check_spec(const struct moed_expert_spec *s)
{
	return expert_spec_check(host, PLUGIN, s);
}

/* Copy [gate; up] of each expert into its [2I][H] block, down as is. */
static cudaError_t upload(struct cuda_layer *l, const struct moed_expert_spec *s)
{
	size_t ih = (size_t)l->I * l->H * l->es, sh = (size_t)l->Is * l->H * l->es;
	cudaError_t e = cudaSuccess;

	for (uint32_t x = 0; x < l->E && e == cudaSuccess; x++) {
		char *w1 = (char *)l->w1 + 2 * ih * x;

		e = cudaMemcpy(w1, s->gate[x], ih, cudaMemcpyHostToDevice);
		if (e == cudaSuccess)
			e = cudaMemcpy(w1 + ih, s->up[x], ih, cudaMemcpyHostToDevice);
		if (e == cudaSuccess)
			e = cudaMemcpy((char *)l->w2 + ih * x, s->down[x], ih,
				       cudaMemcpyHostToDevice);
	}
	if (l->Is && e == cudaSuccess) {
		e = cudaMemcpy(l->sw1, s->shared_gate, sh, cudaMemcpyHostToDevice);
		if (e == cudaSuccess)
			e = cudaMemcpy((char *)l->sw1 + sh, s->shared_up, sh, cudaMemcpyHostToDevice);
		if (e == cudaSuccess)
			e = cudaMemcpy(l->sw2, s->shared_down, sh, cudaMemcpyHostToDevice);
	}
	return e;
}

static void ws_free(struct ws *w);

static void cuda_layer_free(void *layer)
{
	struct cuda_layer *l = layer;

	if (!l)
		return;
	cudaSetDevice((int)l->conf.device);
	while (l->pool) {
		struct ws *w = l->pool;

		l->pool = w->next;
		ws_free(w);
	}
	cudaFree(l->w1);
	cudaFree(l->w2);
	cudaFree(l->sw1);
	cudaFree(l->sw2);
	if (l->bytes) {
		pthread_mutex_lock(&l->st->lock);
		l->st->used -= l->bytes;
		pthread_mutex_unlock(&l->st->lock);
	}
	pthread_mutex_destroy(&l->lock);
	free(l);
}

/* Count the layer's weights against memory_limit_mb; 0 or -ENOMEM, logged. */
static int reserve(struct cuda_layer *l, size_t bytes)
{
	struct cuda_state *st = l->st;
	size_t limit = (size_t)l->conf.memory_limit_mb * MIB;
	int r = 0;

	pthread_mutex_lock(&st->lock);
	if (limit && (bytes > limit || st->used > limit - bytes)) {
		host->log(MOED_LOG_ERR, PLUGIN, "layer %u: weights need %zu MiB, memory_limit_mb "
			  "%u leaves %zu MiB (%zu MiB held by other layers); not loading",
			  l->layer, (bytes + MIB - 1) / MIB, l->conf.memory_limit_mb,
			  st->used < limit ? (limit - st->used) / MIB : 0, st->used / MIB);
		r = -ENOMEM;
	} else {
		st->used += bytes;
		l->bytes = bytes;
	}
	pthread_mutex_unlock(&st->lock);
	return r;
}

static int cuda_layer_new(void *state, const struct moed_expert_spec *spec,
			  const struct moed_param *params, size_t n_params, void **ret_layer)
{
	struct cuda_state *st = state;
	struct cuda_layer *l;
	size_t ih, sh, free_b = 0, total_b = 0;
	cudaError_t e;
	int r;

	r = check_spec(spec);
	if (r < 0)
		return r;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->st = st;
	l->conf = st->conf;
	l->layer = spec->layer;
	l->H = spec->hidden_size;
	l->I = spec->intermediate_size;
	l->E = spec->n_experts;
	l->Is = spec->shared_intermediate_size;
	l->bf16 = spec->dtype == MOED_DTYPE_BF16;
	l->es = l->bf16 ? 2 : 4;
	r = -pthread_mutex_init(&l->lock, NULL);
	if (r < 0) {
		free(l);
		return r;
	}
	r = parse_conf(&l->conf, params, n_params);
	if (r < 0)
		goto fail;
	if (l->conf.device != st->conf.device) {
		r = device_check(l->conf.device, 0);
		if (r < 0)
			goto fail;
	}
	ih = (size_t)l->I * l->H * l->es;
	sh = (size_t)l->Is * l->H * l->es;
	r = reserve(l, 3 * ih * l->E + 3 * sh);
	if (r < 0)
		goto fail;
	e = cudaSetDevice((int)l->conf.device);
	if (e == cudaSuccess)
		e = cudaMemGetInfo(&free_b, &total_b);
	if (e != cudaSuccess) {
		host->log(MOED_LOG_ERR, PLUGIN, "layer %u: device %u: %s", l->layer,
			  l->conf.device, cudaGetErrorString(e));
		r = cuda_errno(e);
		goto fail;
	}
	if (l->bytes + HEADROOM > free_b) {
		host->log(MOED_LOG_ERR, PLUGIN, "layer %u: weights need %zu MiB (+%zu MiB scratch), "
			  "device %u has %zu MiB free of %zu; not loading", l->layer,
			  l->bytes / MIB, HEADROOM / MIB, l->conf.device, free_b / MIB,
			  total_b / MIB);
		r = -ENOMEM;
		goto fail;
	}
	e = cudaMalloc(&l->w1, 2 * ih * l->E);
	if (e == cudaSuccess)
		e = cudaMalloc(&l->w2, ih * l->E);
	if (e == cudaSuccess && l->Is)
		e = cudaMalloc(&l->sw1, 2 * sh);
	if (e == cudaSuccess && l->Is)
		e = cudaMalloc(&l->sw2, sh);
	if (e == cudaSuccess)
		e = upload(l, spec);
	if (e != cudaSuccess) {
		host->log(MOED_LOG_ERR, PLUGIN, "layer %u: cannot place %zu MiB of weights on "
			  "device %u: %s", l->layer, l->bytes / MIB, l->conf.device,
			  cudaGetErrorString(e));
		r = cuda_errno(e);
		goto fail;
	}
	host->log(MOED_LOG_DEBUG, PLUGIN, "layer %u: %zu MiB of %s weights on device %u",
		  l->layer, l->bytes / MIB, l->bf16 ? "bf16" : "fp32", l->conf.device);
	*ret_layer = l;
	return 0;
fail:
	cuda_layer_free(l);
	return r;
}

/* ---- workspaces ---- */

static void ws_free(struct ws *w)
{
	if (!w)
		return;
	if (w->main)
		cudaStreamSynchronize(w->main);
	for (int s = 0; s < NAUX; s++) {
		if (w->aux[s])
			cudaStreamSynchronize(w->aux[s]);
		if (w->blas[s])
			cublasDestroy(w->blas[s]);
		if (w->done[s])
			cudaEventDestroy(w->done[s]);
		if (w->aux[s])
			cudaStreamDestroy(w->aux[s]);
		cudaFree(w->wide[s]);
	}
	if (w->ready)
		cudaEventDestroy(w->ready);
	if (w->main)
		cudaStreamDestroy(w->main);
	cudaFree(w->dbuf);
	cudaFreeHost(w->hbuf);
	free(w);
}

static int ws_new(const struct cuda_layer *l, struct ws **ret)
{
	struct ws *w = calloc(1, sizeof(*w));
	cudaError_t e;
	int r = 0;

	if (!w)
		return -ENOMEM;
	e = cudaStreamCreateWithFlags(&w->main, cudaStreamNonBlocking);
	if (e == cudaSuccess)
		e = cudaEventCreateWithFlags(&w->ready, cudaEventDisableTiming);
	for (int s = 0; s < NAUX && e == cudaSuccess; s++) {
		e = cudaStreamCreateWithFlags(&w->aux[s], cudaStreamNonBlocking);
		if (e == cudaSuccess)
			e = cudaEventCreateWithFlags(&w->done[s], cudaEventDisableTiming);
	}
	if (e != cudaSuccess) {
		r = cuda_errno(e);
		goto fail;
	}
	for (int s = 0; s < NAUX && !r; s++) {
		r = blas_errno(cublasCreate(&w->blas[s]));
		if (!r)
			r = blas_errno(cublasSetStream(w->blas[s], w->aux[s]));
		if (!r)
			r = blas_errno(cublasSetMathMode(w->blas[s], l->conf.tf32 ?
				       CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
	}
	if (r < 0)
		goto fail;
	*ret = w;
	return 0;
fail:
	ws_free(w);
	return r;
}

static size_t take(size_t *at, size_t bytes)
{
	size_t o = *at;

	*at += (bytes + 255) & ~(size_t)255;
	return o;
}

#define TAKE(base, at, field, count) \
	((field) = (void *)((base) ? (char *)(base) + take(at, (count) * sizeof(*(field))) \
			    : (take(at, (count) * sizeof(*(field))), NULL)))

/* Carve the device scratch for T tokens and n choices; returns its size. */
static size_t layout(const struct cuda_layer *l, size_t T, size_t n, int tensor16, void *base,
		     struct bufs *b)
{
	size_t at = 0, H = l->H, I = l->I, Is = l->Is, big = n * H > n * I ? n * H : n * I;

	memset(b, 0, sizeof(*b));
	TAKE(base, &at, b->x, T * H);
	TAKE(base, &at, b->y, T * H);
	TAKE(base, &at, b->ex, n);
	TAKE(base, &at, b->wts, n);
	TAKE(base, &at, b->sort, moe_sort_scratch(n, l->E));
	TAKE(base, &at, b->offs, (size_t)l->E + 1);
	TAKE(base, &at, b->tok, n);
	TAKE(base, &at, b->pos, n);
	TAKE(base, &at, b->xs, n * H);          /* also the down projection's output */
	TAKE(base, &at, b->h1, n * 2 * I);
	TAKE(base, &at, b->act, n * I);
	if (tensor16) {
		TAKE(base, &at, b->xsb, big);   /* xs, then act, in bf16 */
		b->actb = b->xsb;
	}
	if (Is) {
		TAKE(base, &at, b->h1s, T * 2 * Is);
		TAKE(base, &at, b->acts, T * Is);
		TAKE(base, &at, b->ysh, T * H);
		if (tensor16) {
			TAKE(base, &at, b->xb, T * (H > Is ? H : Is));
			b->actsb = b->xb;
		}
	}
	return at;
}

/* Make w's scratch fit T tokens, n choices; 0 or -errno (logged). */
static int ws_reserve(struct cuda_layer *l, struct ws *w, size_t T, size_t n, struct bufs *b,
		      int32_t **ret_ex, float **ret_wts, int32_t **ret_offs)
{
	int tensor16 = l->bf16 && l->conf.bf16_tensor;
	size_t need = layout(l, T, n, tensor16, NULL, b);
	size_t hneed = 2 * n * 4 + ((size_t)l->E + 1) * 4 + 64;
	size_t wide = 2 * (size_t)l->H * (l->I > l->Is ? l->I : l->Is) * sizeof(float);
	cudaError_t e = cudaSuccess;

	if (need > w->dcap) {
		cudaFree(w->dbuf);
		w->dbuf = NULL;
		w->dcap = 0;
		e = cudaMalloc(&w->dbuf, need);
		if (e == cudaSuccess)
			w->dcap = need;
	}
	if (e == cudaSuccess && hneed > w->hcap) {
		cudaFreeHost(w->hbuf);
		w->hbuf = NULL;
		w->hcap = 0;
		e = cudaMallocHost(&w->hbuf, hneed);
		if (e == cudaSuccess)
			w->hcap = hneed;
	}
	for (int s = 0; s < NAUX && e == cudaSuccess && l->bf16 && !tensor16; s++)
		if (!w->wide[s])
			e = cudaMalloc((void **)&w->wide[s], wide);
	if (e != cudaSuccess) {
		host->log(MOED_LOG_ERR, PLUGIN, "layer %u: cannot allocate %zu MiB of scratch for "
			  "%zu tokens: %s", l->layer, need / MIB + 1, T, cudaGetErrorString(e));
		return cuda_errno(e);
	}
	layout(l, T, n, tensor16, w->dbuf, b);
	*ret_ex = w->hbuf;
	*ret_wts = (float *)(*ret_ex + n);
	*ret_offs = (int32_t *)(*ret_wts + n);
	return 0;
}

static int ws_get(struct cuda_layer *l, struct ws **ret)
{
	struct ws *w = NULL;

	pthread_mutex_lock(&l->lock);
	w = l->pool;
	if (w)
		l->pool = w->next;
	pthread_mutex_unlock(&l->lock);
	if (w) {
		*ret = w;
		return 0;
	}
	return ws_new(l, ret);
}

static void ws_put(struct cuda_layer *l, struct ws *w)
{
	pthread_mutex_lock(&l->lock);
	w->next = l->pool;
	l->pool = w;
	pthread_mutex_unlock(&l->lock);
}

/* ---- forward ---- */

static int is_large(const struct cuda_layer *l, size_t rows)
{
	return rows >= l->conf.gemm_min || rows > MOE_SMALL_MAX_ROWS;
}

/* C[rows][M] = in[rows][K] · W[M][K]^T on aux stream s. */
static int gemm(struct cuda_layer *l, struct ws *w, int s, const struct proj *p, uint32_t x,
		uint32_t off, uint32_t rows)
{
	const float one = 1.0f, zero = 0.0f;
	const char *W = (const char *)p->W + (size_t)x * p->estride * l->es;
	float *out = p->out + (size_t)off * p->M;
	cublasHandle_t h = w->blas[s];
	int r;

	if (!l->bf16)
		return blas_errno(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, p->M, rows, p->K, &one,
					      (const float *)W, p->K, p->in + (size_t)off * p->K,
					      p->K, &zero, out, p->M));
	if (p->in16)
		return blas_errno(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, p->M, rows, p->K, &one,
					       W, CUDA_R_16BF, p->K,
					       p->in16 + (size_t)off * p->K, CUDA_R_16BF, p->K,
					       &zero, out, CUDA_R_32F, p->M, CUBLAS_COMPUTE_32F,
					       CUBLAS_GEMM_DEFAULT));
	r = moe_from_bf16((const uint16_t *)W, (size_t)p->M * p->K, w->wide[s], w->aux[s]);
	if (r)
		return cuda_errno((cudaError_t)r);
	return blas_errno(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, p->M, rows, p->K, &one,
				      w->wide[s], p->K, p->in + (size_t)off * p->K, p->K, &zero,
				      out, p->M));
}

static int row_class(uint32_t rows)
{
	return rows <= 1 ? 0 : rows <= 2 ? 1 : rows <= 4 ? 2 : rows <= 8 ? 3 : 4;
}

static int flush_items(struct cuda_layer *l, struct ws *w, const struct proj *p,
		       struct moe_items *it)
{
	int r = moe_small_nt(it, p->W, p->estride, l->bf16, p->M, p->K, p->in, p->out, p->M,
			     w->main);

	it->n = 0;
	it->max_rows = 0;
	return r ? cuda_errno((cudaError_t)r) : 0;
}

/* Every segment of every projection: small ones batched into kernel launches
 * on the main stream, large ones one GEMM each on the aux streams, which
 * start after the main stream's work so far and are joined back into it. */
static int run_phase(struct cuda_layer *l, struct ws *w, const struct proj *p, size_t np)
{
	int used[NAUX] = { 0 }, r = 0, job = 0;
	cudaError_t e;

	e = cudaEventRecord(w->ready, w->main);
	if (e != cudaSuccess)
		return cuda_errno(e);
	for (size_t q = 0; q < np && !r; q++) {
		for (int c = 0; c < N_CLASSES; c++)
			w->items[c].n = w->items[c].max_rows = 0;
		for (uint32_t x = 0; x < p[q].nseg && !r; x++) {
			uint32_t off = (uint32_t)p[q].offs[x], rows = p[q].offs[x + 1] - off;
			struct moe_items *it;
			int s = job % NAUX;

			if (!rows)
				continue;
			if (is_large(l, rows)) {
				if (!used[s]) {
					e = cudaStreamWaitEvent(w->aux[s], w->ready, 0);
					if (e != cudaSuccess)
						return cuda_errno(e);
					used[s] = 1;
				}
				r = gemm(l, w, s, &p[q], x, off, rows);
				job++;
				continue;
			}
			it = &w->items[row_class(rows)];
			it->it[it->n++] = (struct moe_item){ .expert = x, .rows = (uint16_t)rows,
							     .off = off };
			if (rows > it->max_rows)
				it->max_rows = rows;
			if (it->n == MOE_ITEMS_MAX)
				r = flush_items(l, w, &p[q], it);
		}
		for (int c = 0; c < N_CLASSES && !r; c++)
			if (w->items[c].n)
				r = flush_items(l, w, &p[q], &w->items[c]);
	}
	for (int s = 0; s < NAUX; s++) {
		if (!used[s])
			continue;
		e = cudaEventRecord(w->done[s], w->aux[s]);
		if (e == cudaSuccess)
			e = cudaStreamWaitEvent(w->main, w->done[s], 0);
		if (e != cudaSuccess && !r)
			r = cuda_errno(e);
	}
	return r;
}

static int any_large(const struct cuda_layer *l, const int32_t *offs, uint32_t nseg)
{
	for (uint32_t x = 0; x < nseg; x++)
		if (is_large(l, (size_t)(offs[x + 1] - offs[x])))
			return 1;
	return 0;
}

#define CK(expr) \
	do { \
		int ck_r = (int)(expr); \
		if (ck_r) { \
			r = cuda_errno((cudaError_t)ck_r); \
			what = #expr; \
			goto fail; \
		} \
	} while (0)

static int cuda_forward(void *layer, const float *x, size_t T, size_t k, const int32_t *experts,
			const float *weights, float *y)
{
	struct cuda_layer *l = layer;
	uint32_t E = l->E, H = l->H, I = l->I, Is = l->Is;
	int tensor16 = l->bf16 && l->conf.bf16_tensor, big16 = 0, sbig16 = 0, r = 0;
	int32_t *hex = NULL, *hoffs = NULL, soffs[2] = { 0, 0 };
	const char *what = "";
	struct proj p[2];
	struct bufs b;
	struct ws *w = NULL;
	float *hw = NULL;
	size_t n;

	if (!T)
		return 0;
	if (!x || !y || (k && (!experts || !weights)) || T > MAX_CHOICES ||
	    (k && T > MAX_CHOICES / k))
		return -EINVAL;
	n = T * k;
	for (size_t i = 0; i < n; i++)
		if (experts[i] < 0 || (uint32_t)experts[i] >= E)
			return -EINVAL;

	if (cudaSetDevice((int)l->conf.device) != cudaSuccess)
		return -ENODEV;
	r = ws_get(l, &w);
	if (r < 0) {
		host->log(MOED_LOG_ERR, PLUGIN, "layer %u: cannot set up CUDA streams and cuBLAS: "
			  "%s", l->layer, strerror(-r));
		return r;
	}
	r = ws_reserve(l, w, T, n, &b, &hex, &hw, &hoffs);
	if (r < 0)
		goto out;

	CK(cudaMemcpyAsync(b.x, x, T * H * sizeof(float), cudaMemcpyHostToDevice, w->main));
	if (n) {
		memcpy(hex, experts, n * sizeof(*hex));
		memcpy(hw, weights, n * sizeof(*hw));
		CK(cudaMemcpyAsync(b.ex, hex, n * sizeof(*hex), cudaMemcpyHostToDevice, w->main));
		CK(cudaMemcpyAsync(b.wts, hw, n * sizeof(*hw), cudaMemcpyHostToDevice, w->main));
		CK(moe_sort(b.ex, (uint32_t)n, (uint32_t)k, E, b.sort, b.offs, b.tok, b.pos,
			    w->main));
		CK(cudaMemcpyAsync(hoffs, b.offs, ((size_t)E + 1) * sizeof(*hoffs),
				   cudaMemcpyDeviceToHost, w->main));
		CK(cudaStreamSynchronize(w->main));
		if ((size_t)hoffs[E] != n) {
			r = -EIO;
			what = "segment offsets";
			goto fail;
		}
		CK(moe_gather(b.x, b.tok, (uint32_t)n, H, b.xs, w->main));
		big16 = tensor16 && any_large(l, hoffs, E);
		if (big16)
			CK(moe_to_bf16(b.xs, n * H, b.xsb, w->main));
	}
	soffs[1] = (int32_t)T;
	sbig16 = Is && tensor16 && is_large(l, T);
	if (sbig16)
		CK(moe_to_bf16(b.x, T * H, b.xb, w->main));

	/* gate and up, stacked: [n][2I] and [T][2Is] */
	p[0] = (struct proj){ l->w1, (size_t)2 * I * H, 2 * I, H, b.xs, big16 ? b.xsb : NULL,
			      b.h1, hoffs, n ? E : 0 };
	p[1] = (struct proj){ l->sw1, 0, 2 * Is, H, b.x, sbig16 ? b.xb : NULL, b.h1s, soffs, 1 };
	r = run_phase(l, w, p, Is ? 2 : 1);
	if (r < 0) {
		what = "gate/up projection";
		goto fail;
	}
	CK(moe_swiglu(b.h1, (uint32_t)n, I, b.act, w->main));
	if (Is)
		CK(moe_swiglu(b.h1s, (uint32_t)T, Is, b.acts, w->main));
	if (big16)
		CK(moe_to_bf16(b.act, n * I, b.actb, w->main));
	if (sbig16)
		CK(moe_to_bf16(b.acts, T * Is, b.actsb, w->main));

	/* down: into xs (free again) and ysh */
	p[0] = (struct proj){ l->w2, (size_t)H * I, H, I, b.act, big16 ? b.actb : NULL, b.xs,
			      hoffs, n ? E : 0 };
	p[1] = (struct proj){ l->sw2, 0, H, Is, b.acts, sbig16 ? b.actsb : NULL, b.ysh, soffs,
			      1 };
	r = run_phase(l, w, p, Is ? 2 : 1);
	if (r < 0) {
		what = "down projection";
		goto fail;
	}
	CK(moe_combine(b.xs, b.pos, b.wts, Is ? b.ysh : NULL, (uint32_t)T, (uint32_t)k, H, b.y,
		       w->main));
	CK(cudaMemcpyAsync(y, b.y, T * H * sizeof(float), cudaMemcpyDeviceToHost, w->main));
	CK(cudaStreamSynchronize(w->main));
out:
	if (r < 0) {
		ws_free(w);
		return r;
	}
	ws_put(l, w);
	return 0;
fail:
	if (atomic_fetch_add(&l->errors, 1) < MAX_LOGGED_ERRORS)
		host->log(MOED_LOG_ERR, PLUGIN, "layer %u: forward of %zu tokens failed at %s: %s "
			  "(%s)", l->layer, T, what, strerror(-r),
			  cudaGetErrorString(cudaGetLastError()));
	goto out;
}

static const struct moed_expert_ops ops = {
	.struct_size = sizeof(struct moed_expert_ops),
	.layer_new = cuda_layer_new,
	.layer_free = cuda_layer_free,
	.forward = cuda_forward,
};

MOED_PLUGIN_DECLARE(.name = PLUGIN,
		    .description = "SwiGLU experts on an NVIDIA GPU (CUDA, cuBLAS): weights "
				   "resident on the device, tokens sorted by expert there; F32 "
				   "and BF16 weights",
		    .kind = MOED_PLUGIN_EXPERT, .init = cuda_init, .fini = cuda_fini,
		    .expert = &ops, .params = decls, .n_params = PARAMS_COUNT(decls));
