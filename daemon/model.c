/*
 * Model lifetime and lookup.  Loaders (checkpoint.c, synthetic.c; picked by
 * model_load.c) build the model with the helpers here, and model_free()
 * releases every tensor a loader may have set: each is its own allocation.
 * This file knows no loader, so the dependencies run one way:
 * model_load -> loaders -> model.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/dtype.h"
#include "daemon/hugepages.h"
#include "daemon/model.h"
#include "daemon/safetensors.h"

int model_set_string(char **slot, const char *value)
{
	char *copy = strdup(value);

	if (!copy)
		return -ENOMEM;
	free(*slot);
	*slot = copy;
	return 0;
}

int model_new(const char *source, const char *model_type, struct moed_model **ret_model)
{
	struct moed_model *m = calloc(1, sizeof(*m));

	if (!m || model_set_string(&m->source, source) < 0 ||
	    model_set_string(&m->model_type, model_type) < 0) {
		model_free(m);
		return -ENOMEM;
	}
	m->n_group = m->topk_group = 1;
	m->stored_dtype = MOED_DTYPE_F32;
	m->routed_scaling_factor = 1.0f;
	*ret_model = m;
	return 0;
}

int model_alloc_layers(struct moed_model *m, uint32_t n)
{
	m->layers = calloc(n ? n : 1, sizeof(*m->layers));
	if (!m->layers)
		return -ENOMEM;
	m->n_layers = n;
	return 0;
}

int model_alloc_experts(struct moed_layer *l, uint32_t E, int scales)
{
	l->expert_gate = calloc(E, sizeof(void *));
	l->expert_up = calloc(E, sizeof(void *));
	l->expert_down = calloc(E, sizeof(void *));
	if (scales) {
		l->gate_scale = calloc(E, sizeof(float *));
		l->up_scale = calloc(E, sizeof(float *));
		l->down_scale = calloc(E, sizeof(float *));
	}
	if (!l->expert_gate || !l->expert_up || !l->expert_down ||
	    (scales && (!l->gate_scale || !l->up_scale || !l->down_scale)))
		return -ENOMEM;         /* model_free releases what was allocated */
	return 0;
}

/* Bytes of the fp32 block scales of a rows x cols FP8 matrix. */
static uint64_t scale_bytes(const struct moed_model *m, uint64_t rows, uint64_t cols)
{
	if (m->dtype != MOED_DTYPE_F8_E4M3 || !m->scale_block_rows)
		return 0;
	return 4 * ((rows + m->scale_block_rows - 1) / m->scale_block_rows) *
	       ((cols + m->scale_block_cols - 1) / m->scale_block_cols);
}

void model_count_bytes(struct moed_model *m)
{
	uint64_t es = dtype_size(m->dtype), H = m->hidden_size, I = m->intermediate_size;
	uint64_t Is = m->shared_intermediate_size;
	uint64_t per_expert = 3 * H * I * es + 2 * scale_bytes(m, I, H) + scale_bytes(m, H, I);
	uint64_t total = 0;

	for (uint32_t i = 0; i < m->n_layers; i++) {
		const struct moed_layer *l = &m->layers[i];
		total += (uint64_t)m->n_experts * H * 4 + (l->bias ? m->n_experts * 4 : 0);
		for (uint32_t e = 0; e < m->n_experts; e++)
			total += l->expert_gate && l->expert_gate[e] ? per_expert : 0;
		if (l->shared_gate)
			total += 3 * H * Is * es + 2 * scale_bytes(m, Is, H) + scale_bytes(m, H, Is);
		if (l->shared_expert_gate)
			total += H * 4;
	}
	m->weight_bytes = total;
}

int model_is_mapped(const struct moed_model *m, const void *p)
{
	for (size_t i = 0; i < m->n_maps; i++)
		if ((const uint8_t *)p >= m->maps[i]->base &&
		    (const uint8_t *)p < m->maps[i]->base + m->maps[i]->size)
			return 1;
	return 0;
}

/* Free an expert matrix unless it lives in a mapped file. */
static void free_weight(const struct moed_model *m, void *p)
{
	if (!model_is_mapped(m, p))
		free(p);
}

static void free_layer(const struct moed_model *m, struct moed_layer *l)
{
	free(l->gate);
	free(l->bias);
	for (uint32_t e = 0; e < m->n_experts; e++) {
		if (l->expert_gate)
			free_weight(m, l->expert_gate[e]);
		if (l->expert_up)
			free_weight(m, l->expert_up[e]);
		if (l->expert_down)
			free_weight(m, l->expert_down[e]);
	}
	for (uint32_t e = 0; e < m->n_experts; e++) {
		if (l->gate_scale)
			free(l->gate_scale[e]);
		if (l->up_scale)
			free(l->up_scale[e]);
		if (l->down_scale)
			free(l->down_scale[e]);
	}
	free(l->expert_gate);
	free(l->expert_up);
	free(l->expert_down);
	free(l->gate_scale);
	free(l->up_scale);
	free(l->down_scale);
	free(l->shared_gate_scale);
	free(l->shared_up_scale);
	free(l->shared_down_scale);
	free(l->shared_expert_gate);
	free_weight(m, l->shared_gate);
	free_weight(m, l->shared_up);
	free_weight(m, l->shared_down);
}

void model_drop_layers(struct moed_model *m, uint32_t n)
{
	for (uint32_t i = n; i < m->n_layers; i++)
		free_layer(m, &m->layers[i]);
	if (n < m->n_layers)
		m->n_layers = n;
	model_count_bytes(m);
}

static int copy_list(uint32_t **slot, uint32_t *ret_n, const uint32_t *v, uint32_t n)
{
	uint32_t *copy = malloc((n ? n : 1) * sizeof(*copy));

	if (!copy)
		return -ENOMEM;
	memcpy(copy, v, n * sizeof(*copy));
	free(*slot);
	*slot = copy;
	*ret_n = n;
	return 0;
}

int model_set_served(struct moed_model *m, const uint32_t *layers, uint32_t n)
{
	return copy_list(&m->served, &m->n_served, layers, n);
}

int model_set_moe_layers(struct moed_model *m, const uint32_t *layers, uint32_t n)
{
	return copy_list(&m->moe_all, &m->n_moe_all, layers, n);
}

void model_free(struct moed_model *m)
{
	if (!m)
		return;
	for (uint32_t i = 0; m->layers && i < m->n_layers; i++)
		free_layer(m, &m->layers[i]);
	for (size_t i = 0; i < m->n_maps; i++)
		st_close(m->maps[i]);
	free(m->maps);
	free(m->layers);
	free(m->served);
	free(m->moe_all);
	free(m->source);
	free(m->model_type);
	free(m->topk_method);
	free(m);
}

void model_drop_experts(struct moed_model *m, const struct model_want *w)
{
	for (uint32_t i = 0; i < m->n_layers; i++) {
		struct moed_layer *l = &m->layers[i];

		for (uint32_t e = 0; e < m->n_experts; e++) {
			if (!l->expert_gate[e] || model_wants(w, m->n_experts, l->index, e))
				continue;
			free_weight(m, l->expert_gate[e]);
			free_weight(m, l->expert_up[e]);
			free_weight(m, l->expert_down[e]);
			l->expert_gate[e] = l->expert_up[e] = l->expert_down[e] = NULL;
			if (l->gate_scale) {
				free(l->gate_scale[e]);
				free(l->up_scale[e]);
				free(l->down_scale[e]);
				l->gate_scale[e] = l->up_scale[e] = l->down_scale[e] = NULL;
			}
		}
	}
	model_count_bytes(m);
}

void *model_weight_alloc(size_t bytes)
{
	void *p;

	if (bytes < HUGE_PAGE_BYTES)
		return malloc(bytes ? bytes : 1);
	p = aligned_alloc(HUGE_PAGE_BYTES, bytes);
	if (p)
		huge_advise(p, bytes);
	return p;
}

/* Convert one matrix of n elements in place (reallocated) to dtype. */
static int convert_matrix(const struct moed_model *m, void **slot, size_t n, uint32_t from,
			  uint32_t to)
{
	void *dst;

	if (!*slot || from == to)
		return 0;
	dst = model_weight_alloc(n * dtype_size(to));
	if (!dst)
		return -ENOMEM;
	dtype_convert(from, *slot, to, dst, n);
	free_weight(m, *slot);
	*slot = dst;
	return 0;
}

int model_set_expert_dtype(struct moed_model *m, uint32_t dtype)
{
	size_t e_n = (size_t)m->hidden_size * m->intermediate_size;
	size_t s_n = (size_t)m->hidden_size * m->shared_intermediate_size;
	int r = 0;

	if (dtype == m->dtype)
		return 0;
	/* FP8 needs its block scales: the checkpoint loader dequantises it */
	if ((dtype != MOED_DTYPE_F32 && dtype != MOED_DTYPE_BF16) || m->dtype == MOED_DTYPE_F8_E4M3)
		return -EINVAL;
	for (uint32_t i = 0; i < m->n_layers && r == 0; i++) {
		struct moed_layer *l = &m->layers[i];
		for (uint32_t e = 0; e < m->n_experts && r == 0; e++)
			r = convert_matrix(m, &l->expert_gate[e], e_n, m->dtype, dtype) ?:
			    convert_matrix(m, &l->expert_up[e], e_n, m->dtype, dtype) ?:
			    convert_matrix(m, &l->expert_down[e], e_n, m->dtype, dtype);
		if (r == 0)
			r = convert_matrix(m, &l->shared_gate, s_n, m->dtype, dtype) ?:
			    convert_matrix(m, &l->shared_up, s_n, m->dtype, dtype) ?:
			    convert_matrix(m, &l->shared_down, s_n, m->dtype, dtype);
	}
	if (r < 0)
		return r;       /* a partly converted model is not used: the caller exits */
	m->dtype = dtype;
	model_count_bytes(m);
	return 0;
}

const struct moed_layer *model_layer(const struct moed_model *m, uint32_t index)
{
	for (uint32_t i = 0; i < m->n_layers; i++)
		if (m->layers[i].index == index)
			return &m->layers[i];
	return NULL;
}

void model_fill_expert_spec(const struct moed_model *m, const struct moed_layer *w,
			    struct moed_expert_spec *s)
{
	if (m->dtype == MOED_DTYPE_F8_E4M3) {
		s->scale_block_rows = m->scale_block_rows;
		s->scale_block_cols = m->scale_block_cols;
		s->gate_scale = (const float *const *)w->gate_scale;
		s->up_scale = (const float *const *)w->up_scale;
		s->down_scale = (const float *const *)w->down_scale;
		if (w->shared_gate) {
			s->shared_gate_scale = w->shared_gate_scale;
			s->shared_up_scale = w->shared_up_scale;
			s->shared_down_scale = w->shared_down_scale;
		}
	}
	s->shared_expert_gate = w->shared_expert_gate;
}

const char *model_default_router(const struct moed_model *m)
{
	return m->scoring == MOED_SCORING_SIGMOID ? "sigmoid-norm" : "softmax-topk";
}
