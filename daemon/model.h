/*
 * The model: the MoE layers of one checkpoint held in memory, independent of which
 * router or expert backend serves them.  A model comes from a HuggingFace-layout
 * directory (config.json + safetensors, see checkpoint.c) or from the embedded
 * synthetic generator ("synthetic:S0".."synthetic:S4", see synthetic.c).
 *
 * FP8 E4M3 expert weights stay one byte per weight (mapped) with their fp32
 * block scales beside them, decoded by the expert backend.
 * Only MoE layers are kept (layers that have router weights); dense layers are
 * listed nowhere but counted in num_hidden_layers.  Router weights and biases are
 * always fp32.  Expert weights are held in `dtype`.  A checkpoint's expert
 * matrices already in that dtype are not copied: they point into the mapped
 * safetensors files, which the model keeps mapped (read-only, private) until
 * model_free(); the rest is converted into memory the model owns.
 */
#ifndef MOED_MODEL_H
#define MOED_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "include/moed/plugin.h"

struct st_file;

struct moed_layer {
	uint32_t index;                 /* layer index in the checkpoint */
	float *gate;                    /* [E][H] router weight, fp32 */
	float *bias;                    /* [E] e_score_correction_bias, or NULL */
	void **expert_gate;             /* E arrays [I][H] in model dtype */
	void **expert_up;               /* E arrays [I][H] */
	void **expert_down;             /* E arrays [H][I] */
	void *shared_gate;              /* [Is][H] or NULL */
	void *shared_up;                /* [Is][H] or NULL */
	void *shared_down;              /* [H][Is] or NULL */
	/* FP8 (dtype MOED_DTYPE_F8_E4M3) only: fp32 block scales of each matrix
	 * above, [ceil(rows / br)][ceil(cols / bc)], owned; NULL otherwise */
	float **gate_scale, **up_scale, **down_scale;   /* E pointers */
	float *shared_gate_scale, *shared_up_scale, *shared_down_scale;
	float *shared_expert_gate;      /* Qwen2-MoE: [H], owned, or NULL */
};

struct moed_model {
	char *source;                   /* directory path or "synthetic:S0" */
	char *model_type;               /* config.json "model_type", e.g. "deepseek_v3" */
	uint32_t num_hidden_layers;
	uint32_t hidden_size;           /* H */
	uint32_t intermediate_size;     /* I = moe_intermediate_size */
	uint32_t n_experts;             /* E */
	uint32_t top_k;
	uint32_t n_group;               /* >= 1 */
	uint32_t topk_group;
	uint32_t n_shared_experts;
	uint32_t shared_intermediate_size; /* n_shared_experts * I (or shared_expert_intermediate_size) */
	uint32_t scoring;               /* enum moed_scoring */
	char *topk_method;              /* "greedy", "group_limited_greedy", "noaux_tc" */
	uint32_t norm_topk_prob;
	float routed_scaling_factor;
	uint32_t dtype;                 /* enum moed_dtype of expert weights in memory */
	uint64_t weight_bytes;          /* bytes of all weights held */
	uint32_t n_layers;              /* number of MoE layers */
	struct moed_layer *layers;      /* sorted by index */
	uint32_t stored_dtype;          /* expert weights' dtype in the checkpoint */
	struct st_file **maps;          /* safetensors files expert weights point into */
	size_t n_maps;
	uint64_t mapped_bytes;          /* expert weight bytes served from the maps */
	uint32_t scale_block_rows;      /* FP8 block size (quantization_config.weight_block_size) */
	uint32_t scale_block_cols;
	uint32_t *served;               /* [model] layers / --layers (sorted), or NULL: all */
	uint32_t n_served;
	uint32_t *moe_all;              /* with a subset: every MoE layer of the model, else NULL */
	uint32_t n_moe_all;
};

/* Which experts a loader reads (expert parallelism, daemon/cluster.c): a
 * routed expert only when expert() says so, the shared expert when shared;
 * the others' pointers stay NULL and their tensors are never touched.
 * A NULL struct model_want = everything. */
struct model_want {
	int (*expert)(void *ctx, uint32_t n_experts, uint32_t layer, uint32_t expert);
	int shared;
	void *ctx;
};

static inline int model_wants(const struct model_want *w, uint32_t E, uint32_t layer,
			      uint32_t expert)
{
	return !w || w->expert(w->ctx, E, layer, expert);
}

/* Free the routed experts of every layer that w no longer wants (their
 * pointers become NULL; mapped ones are only forgotten). */
void model_drop_experts(struct moed_model *model, const struct model_want *w);

/* A buffer for expert weights the model owns (generated, converted or
 * dequantised): from 2 MiB up it is 2 MiB aligned and its whole 2 MiB pages
 * are advised as transparent huge pages (daemon/hugepages.h); the tail stays
 * in small pages, so nothing is spent beyond the matrix.  free() releases
 * it; NULL on failure. */
void *model_weight_alloc(size_t bytes);

/* Does p point into one of the model's mapped files (not to be freed)? */
int model_is_mapped(const struct moed_model *model, const void *p);
void model_free(struct moed_model *model);

/* The MoE layer with checkpoint index `index`, or NULL (dense or out of range). */
const struct moed_layer *model_layer(const struct moed_model *model, uint32_t index);

/* For loaders: an empty model with source and model_type set; -ENOMEM. */
int model_new(const char *source, const char *model_type, struct moed_model **ret_model);
int model_set_string(char **slot, const char *value);
/* Allocate a layer's E expert pointers (gate, up, down), and their block-scale
 * pointers when `scales`; -ENOMEM. */
int model_alloc_experts(struct moed_layer *layer, uint32_t E, int scales);
/* Allocate n zeroed MoE layers (sets n_layers). */
int model_alloc_layers(struct moed_model *model, uint32_t n);
/* Free layers n.. (they must hold no mapped pointers the kept ones share)
 * and keep the first n. */
void model_drop_layers(struct moed_model *model, uint32_t n);
/* Record the served layer subset (copied); -ENOMEM. */
int model_set_served(struct moed_model *model, const uint32_t *layers, uint32_t n);
/* Record every MoE layer of the model when only some are held (copied). */
int model_set_moe_layers(struct moed_model *model, const uint32_t *layers, uint32_t n);
/* Compute weight_bytes from the shapes, dtype and which tensors exist. */
void model_count_bytes(struct moed_model *model);

/* Hold every expert and shared-expert matrix in `dtype` (MOED_DTYPE_F32 or
 * BF16; fp32 -> bf16 rounds to nearest even).  Router weights stay fp32. */
int model_set_expert_dtype(struct moed_model *model, uint32_t dtype);

/* The ABI-2 fields of an expert spec (block scales, shared-expert gate) for
 * layer w; the engine's spec builder calls it after the ABI-1 fields. */
void model_fill_expert_spec(const struct moed_model *model, const struct moed_layer *w,
			    struct moed_expert_spec *spec);

/* Name of the router plugin the model's config asks for ("sigmoid-norm" or "softmax-topk"). */
const char *model_default_router(const struct moed_model *model);

#endif
