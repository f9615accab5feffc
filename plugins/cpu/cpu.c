/*
 * cpu: the CPU expert backend.  forward() groups the T*k (token, expert)
 * choices by expert with a counting sort, then runs every non-empty expert on
 * its group — the row-reading small kernel for groups below `gemm_min_tokens`
 * tokens, OpenBLAS sgemm above — and the shared experts on all tokens with
 * weight 1.  Accumulation is fp32 throughout.  Scratch is allocated per call,
 * so concurrent calls on one layer share nothing mutable.
 *
 * Parameters: gemm_min_tokens (default 16), kernel = auto|small|gemm (force one
 * path, for tests; also MOED_CPU_KERNEL in the environment).
 * Weights: F32 or BF16 (BF16 widened on the fly); F16 is refused.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/common/params.h"
#include "plugins/cpu/kernels.h"

enum kernel_mode { KERNEL_AUTO = 0, KERNEL_SMALL = 1, KERNEL_GEMM = 2 };

struct cpu_layer {
	struct moed_expert_spec spec;
	uint32_t gemm_min;
	int mode;
};

static const struct moed_host *host;

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

static int parse_mode(const char *s)
{
	if (!s || !strcmp(s, "auto"))
		return KERNEL_AUTO;
	if (!strcmp(s, "small"))
		return KERNEL_SMALL;
	if (!strcmp(s, "gemm"))
		return KERNEL_GEMM;
	return -EINVAL;
}

static int cpu_layer_new(void *state, const struct moed_expert_spec *spec,
			 const struct moed_param *params, size_t n_params, void **ret_layer)
{
	struct moed_param rest[64];
	const char *mode = getenv("MOED_CPU_KERNEL");
	uint32_t gemm_min = 16;
	size_t n_rest = 0;
	struct cpu_layer *l;
	const struct param_spec ps[] = {
		{ "gemm_min_tokens", PARAM_U32, &gemm_min, 1, 1e9 },
	};

	if (spec->dtype != MOED_DTYPE_F32 && spec->dtype != MOED_DTYPE_BF16) {
		host->log(MOED_LOG_ERR, "cpu", "layer %u: weight dtype %u not supported (F32, BF16)",
			  spec->layer, spec->dtype);
		return -ENOTSUP;
	}
	for (size_t i = 0; i < n_params && n_rest < 64; i++) {
		if (!strcmp(params[i].key, "kernel"))
			mode = params[i].value;
		else
			rest[n_rest++] = params[i];
	}
	if (parse_mode(mode) < 0) {
		host->log(MOED_LOG_ERR, "cpu", "kernel '%s': want auto, small or gemm", mode);
		return -EINVAL;
	}
	if (params_parse(host, "cpu", ps, 1, rest, n_rest) < 0)
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->spec = *spec;
	l->gemm_min = gemm_min;
	l->mode = parse_mode(mode);
	*ret_layer = l;
	return 0;
}

static void cpu_layer_free(void *layer)
{
	free(layer);
}

static void run_group(const struct cpu_layer *l, const struct expert_w *w, const float *x,
		      const struct group *g, float *y, float *scratch, float *wscratch)
{
	int gemm = l->mode == KERNEL_GEMM || (l->mode == KERNEL_AUTO && g->n >= l->gemm_min);

	if (gemm)
		expert_gemm(w, x, g, y, scratch, wscratch);
	else
		expert_small(w, x, g, y, scratch);
}

static int cpu_forward(void *layer, const float *x, size_t T, size_t k, const int32_t *experts,
		       const float *weights, float *y)
{
	const struct cpu_layer *l = layer;
	const struct moed_expert_spec *s = &l->spec;
	uint32_t E = s->n_experts, H = s->hidden_size, I = s->intermediate_size;
	uint32_t Is = s->shared_intermediate_size, Imax = Is > I ? Is : I;
	size_t n = T * k, *start = calloc((size_t)E + 1, sizeof(size_t));
	int32_t *tok = malloc((n > T ? n : T) * sizeof(int32_t));
	float *wt = malloc((n > T ? n : T) * sizeof(float));
	float *scratch = malloc((n > T ? n : T) * ((size_t)H + 3 * Imax) * sizeof(float));
	float *wscratch = s->dtype == MOED_DTYPE_BF16 ? malloc(3 * (size_t)Imax * H * sizeof(float))
						      : NULL;
	int r = -ENOMEM;

	if (!start || !tok || !wt || !scratch || (s->dtype == MOED_DTYPE_BF16 && !wscratch))
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (experts[i] < 0 || (uint32_t)experts[i] >= E) {
			r = -EINVAL;
			goto out;
		}
		start[experts[i] + 1]++;
	}
	for (uint32_t e = 0; e < E; e++)
		start[e + 1] += start[e];
	{
		size_t *fill = calloc(E, sizeof(size_t));
		if (!fill)
			goto out;
		for (size_t i = 0; i < n; i++) {
			uint32_t e = (uint32_t)experts[i];
			size_t at = start[e] + fill[e]++;
			tok[at] = (int32_t)(i / k);
			wt[at] = weights[i];
		}
		free(fill);
	}
	memset(y, 0, T * H * sizeof(float));
	for (uint32_t e = 0; e < E; e++) {
		struct expert_w w = { s->gate[e], s->up[e], s->down[e], H, I,
				      s->dtype == MOED_DTYPE_BF16 };
		struct group g = { start[e + 1] - start[e], tok + start[e], wt + start[e] };
		if (g.n)
			run_group(l, &w, x, &g, y, scratch, wscratch);
	}
	if (Is) {
		struct expert_w w = { s->shared_gate, s->shared_up, s->shared_down, H, Is,
				      s->dtype == MOED_DTYPE_BF16 };
		struct group g = { T, tok, wt };
		for (size_t t = 0; t < T; t++) {
			tok[t] = (int32_t)t;
			wt[t] = 1.0f;
		}
		run_group(l, &w, x, &g, y, scratch, wscratch);
	}
	r = 0;
out:
	free(start);
	free(tok);
	free(wt);
	free(scratch);
	free(wscratch);
	return r;
}

static const struct moed_expert_ops ops = {
	.struct_size = sizeof(struct moed_expert_ops),
	.layer_new = cpu_layer_new,
	.layer_free = cpu_layer_free,
	.forward = cpu_forward,
};

MOED_PLUGIN_DECLARE(.name = "cpu",
		    .description = "SwiGLU experts on the CPU: row-reading kernel for small groups, sgemm for large",
		    .kind = MOED_PLUGIN_EXPERT, .init = cpu_init, .fini = cpu_fini, .expert = &ops);
