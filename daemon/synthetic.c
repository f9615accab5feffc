/*
 * Synthetic models.  Every shape is DeepSeek-V3 form: sigmoid scoring, an
 * e_score_correction_bias, group-limited top-k where E allows, normalised
 * weights scaled by 2.5, shared experts as the shape says, topk_method
 * noaux_tc.  Layer 0 is dense (first_k_dense_replace = 1); S0 has MoE layers
 * 1..3, the large shapes (2-3 GB per layer in fp32) have layers 1..2 only:
 *
 *	name  H     I     E    k  shared  n_group/topk_group  MoE layers  fp32 total
 *	S0    256   128   16   4  1       4/2                 1-3         ~19 MB
 *	S1    2048  1408  64   6  2       8/4                 1-2         ~4.6 GB
 *	S2    2048  768   128  8  0       8/4                 1-2         ~4.8 GB
 *	S3    1792  512   256  8  1       8/4                 1-2         ~5.7 GB
 *	S4    1024  3584  8    2  0       1/1                 1-2         ~0.7 GB
 *	V3    7168  2048  256  8  1       8/4                 1           ~11.3 GB fp8
 *
 * V3 has DeepSeek-V3's dimensions and its release format: FP8 E4M3 experts
 * with fp32 scales of 128x128 blocks, generated straight into one byte per
 * weight (in fp32 it would be 45 GB).  Its codes are the bytes of the same
 * splitmix64 stream (eight per draw; the NaN codes 0x7F/0xFF become 0x7E/0xFE),
 * so values spread over e4m3's exponents rather than uniformly; block (i, j)
 * of a matrix with fan-in n has scale 1/(448 sqrt(n)) / 2^((i + j) % 3), so
 * |w| <= 1/sqrt(n) and neighbouring blocks differ by powers of two.
 * Values: splitmix64 seeded by (0x6d6f6564 "moed", layer, tensor, expert) gives
 * uniform floats; a weight with fan-in n is uniform in [-1/sqrt(n), 1/sqrt(n)),
 * the bias uniform in [-0.05, 0.05).  Same name, same bits, on every machine.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mix.h"
#include "daemon/dtype.h"
#include "daemon/log.h"
#include "daemon/synthetic.h"

#define SYNTH_SEED 0x6d6f6564ULL

struct shape {
	const char *name;
	uint32_t H, I, E, k, shared, groups, keep, moe_layers;
	int fp8;
};

#define FP8_BLOCK 128u

static const struct shape shapes[] = {
	{ "S0", 256, 128, 16, 4, 1, 4, 2, 3, 0 },
	{ "S1", 2048, 1408, 64, 6, 2, 8, 4, 2, 0 },
	{ "S2", 2048, 768, 128, 8, 0, 8, 4, 2, 0 },
	{ "S3", 1792, 512, 256, 8, 1, 8, 4, 2, 0 },
	{ "S4", 1024, 3584, 8, 2, 0, 1, 1, 2, 0 },
	{ "V3", 7168, 2048, 256, 8, 1, 8, 4, 1, 1 },
};

/* n floats uniform in [-a, a), from the stream named by (layer, tensor, expert). */
static float *fill(size_t n, float a, uint32_t layer, uint32_t tensor, uint32_t expert)
{
	float *v = model_weight_alloc(n * sizeof(float));
	uint64_t s = SYNTH_SEED ^ ((uint64_t)layer << 48) ^ ((uint64_t)tensor << 40) ^
		     ((uint64_t)expert << 8);

	if (!v)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		/* 24 random bits -> [0, 1) exactly representable */
		float u = mix_unit24(splitmix64_next(&s));
		v[i] = (2.0f * u - 1.0f) * a;
	}
	return v;
}

/* An FP8 matrix [R][C] with fan-in C: codes from the stream, block scales. */
static void *fill_fp8(uint32_t R, uint32_t C, uint32_t layer, uint32_t tensor, uint32_t expert,
		      float **ret_scale)
{
	uint32_t sr = (R + FP8_BLOCK - 1) / FP8_BLOCK, sc = (C + FP8_BLOCK - 1) / FP8_BLOCK;
	size_t n = (size_t)R * C;
	uint8_t *q = model_weight_alloc(n);
	float *s = malloc((size_t)sr * sc * sizeof(float));
	uint64_t st = SYNTH_SEED ^ ((uint64_t)layer << 48) ^ ((uint64_t)tensor << 40) ^
		      ((uint64_t)expert << 8);
	float base = 1.0f / (448.0f * sqrtf((float)C));

	if (!q || !s) {
		free(q);
		free(s);
		return NULL;
	}
	for (size_t i = 0; i < n; i += 8) {
		uint64_t z = splitmix64_next(&st);

		for (size_t b = 0; b < 8 && i + b < n; b++, z >>= 8) {
			uint8_t c = (uint8_t)z;

			q[i + b] = (c & 0x7f) == 0x7f ? c ^ 1 : c;
		}
	}
	for (uint32_t i = 0; i < sr; i++)
		for (uint32_t j = 0; j < sc; j++)
			s[(size_t)i * sc + j] = ldexpf(base, -(int)((i + j) % 3));
	*ret_scale = s;
	return q;
}

static int make_fp8_expert(const struct moed_model *m, struct moed_layer *l, uint32_t e)
{
	uint32_t H = m->hidden_size, I = m->intermediate_size, index = l->index;

	l->expert_gate[e] = fill_fp8(I, H, index, 3, e, &l->gate_scale[e]);
	l->expert_up[e] = fill_fp8(I, H, index, 4, e, &l->up_scale[e]);
	l->expert_down[e] = fill_fp8(H, I, index, 5, e, &l->down_scale[e]);
	return l->expert_gate[e] && l->expert_up[e] && l->expert_down[e] ? 0 : -ENOMEM;
}

/* Expert e of layer l in fp32, as generated. */
static int make_expert(const struct moed_model *m, struct moed_layer *l, uint32_t e)
{
	uint32_t H = m->hidden_size, I = m->intermediate_size, index = l->index;
	float ah = 1.0f / sqrtf((float)H), ai = 1.0f / sqrtf((float)I);

	l->expert_gate[e] = fill((size_t)I * H, ah, index, 3, e);
	l->expert_up[e] = fill((size_t)I * H, ah, index, 4, e);
	l->expert_down[e] = fill((size_t)H * I, ai, index, 5, e);
	return l->expert_gate[e] && l->expert_up[e] && l->expert_down[e] ? 0 : -ENOMEM;
}

static int make_fp8_layer(struct moed_model *m, struct moed_layer *l, uint32_t index,
			  const struct model_want *want)
{
	uint32_t H = m->hidden_size, E = m->n_experts;
	uint32_t Is = m->shared_intermediate_size;

	l->index = index;
	l->gate = fill((size_t)E * H, 1.0f / sqrtf((float)H), index, 1, 0);
	l->bias = fill(E, 0.05f, index, 2, 0);
	if (!l->gate || !l->bias || model_alloc_experts(l, E, 1) < 0)
		return -ENOMEM;
	for (uint32_t e = 0; e < E; e++)
		if (model_wants(want, E, index, e) && make_fp8_expert(m, l, e) < 0)
			return -ENOMEM;
	if (Is && (!want || want->shared)) {
		l->shared_gate = fill_fp8(Is, H, index, 6, 0, &l->shared_gate_scale);
		l->shared_up = fill_fp8(Is, H, index, 7, 0, &l->shared_up_scale);
		l->shared_down = fill_fp8(H, Is, index, 8, 0, &l->shared_down_scale);
		if (!l->shared_gate || !l->shared_up || !l->shared_down)
			return -ENOMEM;
	}
	return 0;
}

static int make_layer(struct moed_model *m, struct moed_layer *l, uint32_t index,
		      const struct model_want *want)
{
	uint32_t H = m->hidden_size, E = m->n_experts;
	uint32_t Is = m->shared_intermediate_size;
	float ah = 1.0f / sqrtf((float)H);

	l->index = index;
	l->gate = fill((size_t)E * H, ah, index, 1, 0);
	l->bias = fill(E, 0.05f, index, 2, 0);
	if (!l->gate || !l->bias || model_alloc_experts(l, E, 0) < 0)
		return -ENOMEM;
	for (uint32_t e = 0; e < E; e++)
		if (model_wants(want, E, index, e) && make_expert(m, l, e) < 0)
			return -ENOMEM;
	if (Is && (!want || want->shared)) {
		float as = 1.0f / sqrtf((float)Is);
		l->shared_gate = fill((size_t)Is * H, ah, index, 6, 0);
		l->shared_up = fill((size_t)Is * H, ah, index, 7, 0);
		l->shared_down = fill((size_t)H * Is, as, index, 8, 0);
		if (!l->shared_gate || !l->shared_up || !l->shared_down)
			return -ENOMEM;
	}
	return 0;
}

int synthetic_load(const char *name, const struct model_want *want, struct moed_model **ret_model,
		   char *err, size_t errlen)
{
	const struct shape *sh = NULL;
	struct moed_model *m;
	char source[32];
	int r;

	if (!*name)
		name = "S0";
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		if (strcmp(shapes[i].name, name) == 0)
			sh = &shapes[i];
	if (!sh) {
		snprintf(err, errlen, "unknown synthetic model '%s'; choose synthetic:S0, S1, S2, S3, S4 or V3",
			 name);
		return -EINVAL;
	}
	snprintf(source, sizeof(source), "synthetic:%s", sh->name);
	r = model_new(source, "deepseek_v3", &m);
	if (r < 0)
		goto nomem;
	m->num_hidden_layers = sh->moe_layers + 1;
	m->hidden_size = sh->H;
	m->intermediate_size = sh->I;
	m->n_experts = sh->E;
	m->top_k = sh->k;
	m->n_group = sh->groups;
	m->topk_group = sh->keep;
	m->n_shared_experts = sh->shared;
	m->shared_intermediate_size = sh->shared * sh->I;
	m->scoring = MOED_SCORING_SIGMOID;
	m->norm_topk_prob = 1;
	m->routed_scaling_factor = 2.5f;
	m->dtype = m->stored_dtype = sh->fp8 ? MOED_DTYPE_F8_E4M3 : MOED_DTYPE_F32;
	m->scale_block_rows = m->scale_block_cols = sh->fp8 ? FP8_BLOCK : 0;
	r = model_set_string(&m->topk_method, "noaux_tc");
	if (r < 0 || (r = model_alloc_layers(m, sh->moe_layers)) < 0)
		goto nomem;
	for (uint32_t i = 0; i < sh->moe_layers; i++) {
		r = sh->fp8 ? make_fp8_layer(m, &m->layers[i], i + 1, want)
			    : make_layer(m, &m->layers[i], i + 1, want);
		if (r < 0)
			goto nomem;
	}
	model_count_bytes(m);
	*ret_model = m;
	return 0;
nomem:
	snprintf(err, errlen, "synthetic model %s: out of memory", sh->name);
	model_free(m);
	return -ENOMEM;
}

int synthetic_add_experts(struct moed_model *m, const struct model_want *want, char *err,
			  size_t errlen)
{
	size_t n = (size_t)m->hidden_size * m->intermediate_size;
	int fp8 = m->dtype == MOED_DTYPE_F8_E4M3;

	for (uint32_t i = 0; i < m->n_layers; i++) {
		struct moed_layer *l = &m->layers[i];

		for (uint32_t e = 0; e < m->n_experts; e++) {
			void **w[3] = { &l->expert_gate[e], &l->expert_up[e], &l->expert_down[e] };

			if (l->expert_gate[e] || !model_wants(want, m->n_experts, l->index, e))
				continue;
			if ((fp8 ? make_fp8_expert(m, l, e) : make_expert(m, l, e)) < 0)
				goto nomem;
			/* generated in fp32: held as the rest of the model is */
			for (int j = 0; j < 3 && !fp8 && m->dtype != MOED_DTYPE_F32; j++) {
				void *dst = model_weight_alloc(n * dtype_size(m->dtype));

				if (!dst)
					goto nomem;
				dtype_convert(MOED_DTYPE_F32, *w[j], m->dtype, dst, n);
				free(*w[j]);
				*w[j] = dst;
			}
		}
	}
	model_count_bytes(m);
	return 0;
nomem:
	snprintf(err, errlen, "%s: out of memory", m->source);
	return -ENOMEM;
}
