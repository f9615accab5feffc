/*
 * Loading a model by name: a HuggingFace checkpoint directory or
 * "synthetic:NAME" (see daemon/synthetic.h).
 */
#ifndef MOED_MODEL_LOAD_H
#define MOED_MODEL_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/model.h"

/* Load `path`: a directory, or "synthetic:NAME".  On failure returns -errno and
 * writes a one-line reason naming the file and field/tensor into err. */
int model_load(const char *path, struct moed_model **ret_model, char *err, size_t errlen);
/* The same, expert weights held in `dtype` (MOED_DTYPE_F32, BF16 or F8_E4M3;
 * 0: as the checkpoint stores them, F16 as fp32), converted while loading;
 * FP8 stays FP8 with its block scales, or is dequantised to F32/BF16. */
int model_load_as(const char *path, uint32_t dtype, struct moed_model **ret_model, char *err,
		  size_t errlen);
/* Which of the model to load and how (zero: all MoE layers, as stored). */
struct model_load_opts {
	uint32_t dtype;                 /* as for model_load_as */
	uint32_t *layers;               /* sorted, distinct MoE layer indices; NULL = all */
	uint32_t n_layers;
	const struct model_want *want;  /* which experts; NULL = all */
};

/* model_load_as with a layer subset: only those layers are read (a
 * checkpoint need not hold the others' tensors); each must be a MoE layer.
 * The model records them (served, n_served). */
int model_load_with(const char *path, const struct model_load_opts *opts,
		    struct moed_model **ret_model, char *err, size_t errlen);

struct moed_config;

/* Load the model of a configuration: [model] path (default synthetic:S0) and
 * layers, [expert] weights; only the experts `want` asks for (NULL: all). */
int model_load_config(const struct moed_config *cfg, const struct model_want *want,
		      struct moed_model **ret_model, char *err, size_t errlen);

/* The dtype [expert] weights asks for ("bf16", "fp8", "fp32"; NULL = 0, as
 * stored). */
uint32_t model_weights_dtype(const char *weights);

/* Read the experts `want` asks for that `model` (loaded from its source with
 * the same options) does not hold yet, converted to its dtype; the others
 * stay as they are (a cluster's rebalance).  -errno + err. */
int model_load_experts(struct moed_model *model, const struct model_want *want, char *err,
		       size_t errlen);

/* Parse a layer list "1-3,7" (indices and inclusive ranges, any order) into a
 * sorted array without repeats, owned by the caller; -EINVAL + err. */
int model_parse_layers(const char *text, uint32_t **ret_layers, uint32_t *ret_n, char *err,
		       size_t errlen);

/* The router model_default_router() would pick for the model at `path`
 * (NULL: the embedded default), reading only its config.json. */
int model_default_router_of(const char *path, const char **ret, char *err, size_t errlen);

#endif
