/*
 * cpu: the CPU expert backend.  forward() checks every expert id, groups the
 * T*k (token, expert) choices by expert with a stable counting sort, runs each
 * non-empty expert on its group — the row-reading small kernel below
 * `gemm_min_tokens` tokens, OpenBLAS sgemm from there on — then the shared
 * experts on all tokens with weight 1.  A token's outputs are added in a fixed
 * order (experts by id, then shared), so its result does not depend on the
 * rest of the batch beyond the small/sgemm choice (fp rounding).
 *
 * Concurrency: forward() may run on many threads at once.  Each call takes a
 * scratch buffer from the layer's pool (a mutex-guarded free list, grown on
 * demand, freed in layer_free), so calls share nothing mutable and steady
 * state allocates nothing.
 *
 * Parameters: gemm_min_tokens (default 40 for F32 weights, 96 for BF16);
 * kernel = auto|small|gemm (force one path, for tests and benchmarks);
 * isa = auto|avx512|avx2|generic (the small kernel's instruction set; auto
 * takes the best the CPU has).
 * Weights: F32 or BF16 (BF16 widened on the fly); F16 is refused.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "include/moed/plugin.h"
#include "plugins/common/expert_spec.h"
#include "plugins/common/params.h"
#include "plugins/cpu/kernels.h"

#define PLUGIN "cpu"
/* Group sizes from which sgemm beats the small kernel: S1 on AVX-512 Zen 5,
 * one thread (bench/expert_bench); bf16 pays for widening the weights. */
#define GEMM_MIN_F32 40u
#define GEMM_MIN_BF16 96u
/* Largest H or I accepted: keeps every sgemm dimension and index in range. */

enum path_mode { PATH_AUTO, PATH_SMALL, PATH_GEMM };

struct scratch {
	struct scratch *next;
	size_t cap;             /* bytes */
	void *buf;
};

struct cpu_layer {
	struct moed_expert_spec spec;
	const struct cpu_isa *isa;
	uint32_t gemm_min;
	enum path_mode mode;
	pthread_mutex_t lock;   /* guards pool */
	struct scratch *pool;
};

static const struct moed_host *host;

/* The daemon hands init() the same parameters as every layer_new(), which
 * checks them. */
static int cpu_init(const struct moed_host *h, const struct moed_param *params, size_t n_params,
		    void **ret_state)
{
	host = h;
	*ret_state = NULL;
	return 0;
}

static void cpu_fini(void *state)
{
}

static int parse_mode(const char *s, enum path_mode *ret)
{
	if (!strcmp(s, "auto"))
		*ret = PATH_AUTO;
	else if (!strcmp(s, "small"))
		*ret = PATH_SMALL;
	else if (!strcmp(s, "gemm"))
		*ret = PATH_GEMM;
	else
		return -EINVAL;
	return 0;
}

static int parse_params(struct cpu_layer *l, const struct moed_param *params, size_t n_params)
{
	const struct param_spec ps[] = {
		{ "gemm_min_tokens", PARAM_U32, &l->gemm_min, 1, 1e9 },
	};
	const char *isa = "auto";

	for (size_t i = 0; i < n_params; i++) {
		if (!strcmp(params[i].key, "kernel")) {
			if (parse_mode(params[i].value, &l->mode) < 0) {
				host->log(MOED_LOG_ERR, PLUGIN,
					  "parameter 'kernel' = '%s': want auto, small or gemm",
					  params[i].value);
				return -EINVAL;
			}
		} else if (!strcmp(params[i].key, "isa")) {
			isa = params[i].value;
		} else if (params_parse(host, PLUGIN, ps, 1, &params[i], 1) < 0) {
			return -EINVAL;
		}
	}
	l->isa = cpu_isa_pick(isa);
	if (!l->isa) {
		host->log(MOED_LOG_ERR, PLUGIN,
			  "parameter 'isa' = '%s': unknown or not supported by this CPU", isa);
		return -ENOTSUP;
	}
	return 0;
}

static int check_spec(const struct moed_expert_spec *s)
{
	return expert_spec_check(host, PLUGIN, s);
}

static int cpu_layer_new(void *state, const struct moed_expert_spec *spec,
			 const struct moed_param *params, size_t n_params, void **ret_layer)
{
	struct cpu_layer *l;
	int r;

	r = check_spec(spec);
	if (r < 0)
		return r;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->spec = *spec;
	l->mode = PATH_AUTO;
	r = parse_params(l, params, n_params);
	if (r < 0)
		goto fail;
	if (!l->gemm_min)
		l->gemm_min = spec->dtype == MOED_DTYPE_BF16 ? GEMM_MIN_BF16 : GEMM_MIN_F32;
	r = -pthread_mutex_init(&l->lock, NULL);
	if (r < 0)
		goto fail;
	*ret_layer = l;
	return 0;
fail:
	free(l);
	return r;
}

static void cpu_layer_free(void *layer)
{
	struct cpu_layer *l = layer;

	if (!l)
		return;
	while (l->pool) {
		struct scratch *s = l->pool;

		l->pool = s->next;
		free(s->buf);
		free(s);
	}
	pthread_mutex_destroy(&l->lock);
	free(l);
}

/* A scratch buffer of at least `bytes`, 64-byte aligned, owned by the caller
 * until scratch_put(). */
static struct scratch *scratch_get(struct cpu_layer *l, size_t bytes)
{
	struct scratch *s;

	pthread_mutex_lock(&l->lock);
	s = l->pool;
	if (s)
		l->pool = s->next;
	pthread_mutex_unlock(&l->lock);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
	}
	if (s->cap < bytes) {
		free(s->buf);
		s->cap = 0;
		if (posix_memalign(&s->buf, 64, bytes)) {
			s->buf = NULL;
			free(s);
			return NULL;
		}
		s->cap = bytes;
	}
	return s;
}

static void scratch_put(struct cpu_layer *l, struct scratch *s)
{
	pthread_mutex_lock(&l->lock);
	s->next = l->pool;
	l->pool = s;
	pthread_mutex_unlock(&l->lock);
}

static size_t align64(size_t bytes)
{
	return (bytes + 63) & ~(size_t)63;
}

static int use_gemm(const struct cpu_layer *l, size_t n)
{
	return l->mode == PATH_GEMM || (l->mode == PATH_AUTO && n >= l->gemm_min);
}

/* Floats of kernel scratch for a group of n tokens of an expert of width inter. */
static size_t kernel_scratch(const struct cpu_layer *l, size_t n, uint32_t inter)
{
	const struct moed_expert_spec *s = &l->spec;

	if (!n)
		return 0;
	if (use_gemm(l, n))
		return expert_gemm_scratch(s->hidden_size, inter, s->dtype == MOED_DTYPE_BF16);
	return expert_small_scratch(s->hidden_size, inter);
}

static void run_group(const struct cpu_layer *l, const struct expert_w *w, const float *x,
		      const struct group *g, float *y, float *scratch)
{
	if (use_gemm(l, g->n))
		expert_gemm(w, x, g, y, scratch);
	else
		expert_small_run(l->isa, w, x, g, y, scratch);
}

static int cpu_forward(void *layer, const float *x, size_t T, size_t k, const int32_t *experts,
		       const float *weights, float *y)
{
	struct cpu_layer *l = layer;
	const struct moed_expert_spec *s = &l->spec;
	uint32_t E = s->n_experts, H = s->hidden_size;
	int bf16 = s->dtype == MOED_DTYPE_BF16;
	size_t n, *start, kbytes, sbytes;
	struct scratch *sc;
	uint32_t *tok;
	float *wt, *kscratch;

	if (!T)
		return 0;
	if (T > UINT32_MAX || (k && T > SIZE_MAX / sizeof(size_t) / k) || !x || !y ||
	    (k && (!experts || !weights)))
		return -EINVAL;
	n = T * k;
	for (size_t i = 0; i < n; i++)
		if (experts[i] < 0 || (uint32_t)experts[i] >= E)
			return -EINVAL;

	/* One buffer: counts/starts [E+1], sorted tokens and weights [n], kernel
	 * scratch for the largest group possible (pooled, so sized once). */
	sbytes = align64(((size_t)E + 1) * sizeof(size_t)) + align64(n * sizeof(uint32_t)) +
		 align64(n * sizeof(float));
	kbytes = kernel_scratch(l, n, s->intermediate_size);
	if (s->shared_intermediate_size) {
		size_t ks = kernel_scratch(l, T, s->shared_intermediate_size);

		kbytes = ks > kbytes ? ks : kbytes;
	}
	sc = scratch_get(l, sbytes + kbytes * sizeof(float));
	if (!sc)
		return -ENOMEM;
	start = sc->buf;
	tok = (uint32_t *)((char *)sc->buf + align64(((size_t)E + 1) * sizeof(size_t)));
	wt = (float *)((char *)tok + align64(n * sizeof(uint32_t)));
	kscratch = (float *)((char *)sc->buf + sbytes);

	memset(start, 0, ((size_t)E + 1) * sizeof(size_t));
	for (size_t i = 0; i < n; i++)
		start[experts[i] + 1]++;
	for (uint32_t e = 0; e < E; e++)
		start[e + 1] += start[e];

	/* Stable scatter: start[e] walks forward, ending at the next expert's start. */
	for (size_t i = 0; i < n; i++) {
		size_t at = start[experts[i]]++;

		tok[at] = (uint32_t)(i / k);
		wt[at] = weights[i];
	}
	memset(y, 0, T * H * sizeof(float));
	for (size_t e = 0, begin = 0; e < E; e++) {
		struct expert_w w = { s->gate[e], s->up[e], s->down[e], H, s->intermediate_size,
				      bf16 };
		struct group g = { .n = start[e] - begin, .tok = tok + begin, .w = wt + begin };

		if (g.n)
			run_group(l, &w, x, &g, y, kscratch);
		begin = start[e];
	}
	if (s->shared_intermediate_size) {
		struct expert_w w = { s->shared_gate, s->shared_up, s->shared_down, H,
				      s->shared_intermediate_size, bf16 };
		struct group g = { .n = T, .tok = NULL, .first = 0, .w = NULL };

		run_group(l, &w, x, &g, y, kscratch);
	}
	scratch_put(l, sc);
	return 0;
}

static const struct moed_expert_ops ops = {
	.struct_size = sizeof(struct moed_expert_ops),
	.layer_new = cpu_layer_new,
	.layer_free = cpu_layer_free,
	.forward = cpu_forward,
};

MOED_PLUGIN_DECLARE(.name = PLUGIN,
		    .description = "SwiGLU experts on the CPU: row-reading kernel for small groups, "
				   "sgemm for large; F32 and BF16 weights",
		    .kind = MOED_PLUGIN_EXPERT, .init = cpu_init, .fini = cpu_fini, .expert = &ops);
