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
 *
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
#include "daemon/log.h"
#include "daemon/synthetic.h"

#define SYNTH_SEED 0x6d6f6564ULL

struct shape {
	const char *name;
	uint32_t H, I, E, k, shared, groups, keep, moe_layers;
};

static const struct shape shapes[] = {
	{ "S0", 256, 128, 16, 4, 1, 4, 2, 3 },
	{ "S1", 2048, 1408, 64, 6, 2, 8, 4, 2 },
	{ "S2", 2048, 768, 128, 8, 0, 8, 4, 2 },
	{ "S3", 1792, 512, 256, 8, 1, 8, 4, 2 },
	{ "S4", 1024, 3584, 8, 2, 0, 1, 1, 2 },
};

/* n floats uniform in [-a, a), from the stream named by (layer, tensor, expert). */
static float *fill(size_t n, float a, uint32_t layer, uint32_t tensor, uint32_t expert)
{
	float *v = malloc(n * sizeof(float));
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

static int make_layer(struct moed_model *m, struct moed_layer *l, uint32_t index)
{
	uint32_t H = m->hidden_size, I = m->intermediate_size, E = m->n_experts;
	uint32_t Is = m->shared_intermediate_size;
	float ah = 1.0f / sqrtf((float)H), ai = 1.0f / sqrtf((float)I);

	l->index = index;
	l->gate = fill((size_t)E * H, ah, index, 1, 0);
	l->bias = fill(E, 0.05f, index, 2, 0);
	l->expert_gate = calloc(E, sizeof(void *));
	l->expert_up = calloc(E, sizeof(void *));
	l->expert_down = calloc(E, sizeof(void *));
	if (!l->gate || !l->bias || !l->expert_gate || !l->expert_up || !l->expert_down)
		return -ENOMEM;
	for (uint32_t e = 0; e < E; e++) {
		l->expert_gate[e] = fill((size_t)I * H, ah, index, 3, e);
		l->expert_up[e] = fill((size_t)I * H, ah, index, 4, e);
		l->expert_down[e] = fill((size_t)H * I, ai, index, 5, e);
		if (!l->expert_gate[e] || !l->expert_up[e] || !l->expert_down[e])
			return -ENOMEM;
	}
	if (Is) {
		float as = 1.0f / sqrtf((float)Is);
		l->shared_gate = fill((size_t)Is * H, ah, index, 6, 0);
		l->shared_up = fill((size_t)Is * H, ah, index, 7, 0);
		l->shared_down = fill((size_t)H * Is, as, index, 8, 0);
		if (!l->shared_gate || !l->shared_up || !l->shared_down)
			return -ENOMEM;
	}
	return 0;
}

int synthetic_load(const char *name, struct moed_model **ret_model, char *err, size_t errlen)
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
		snprintf(err, errlen, "unknown synthetic model '%s'; choose synthetic:S0, S1, S2, S3 or S4",
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
	m->dtype = MOED_DTYPE_F32;
	r = model_set_string(&m->topk_method, "noaux_tc");
	if (r < 0 || (r = model_alloc_layers(m, sh->moe_layers)) < 0)
		goto nomem;
	for (uint32_t i = 0; i < sh->moe_layers; i++) {
		r = make_layer(m, &m->layers[i], i + 1);
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
