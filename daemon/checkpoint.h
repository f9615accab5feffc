/*
 * Loading a HuggingFace-layout checkpoint directory into a struct moed_model
 * (the families and the tensors read for each: moed-models(7)):
 * config.json (hfconfig.c) plus model.safetensors or the shards named by
 * model.safetensors.index.json (safetensors.c).  Three tensor naming families
 * are understood: DeepSeek-V2/V3/Moonlight, Mixtral and Qwen2-MoE/OLMoE.
 * Every refusal names the file and the field or tensor, with expected and found
 * shapes where they disagree; the daemon then does not start.
 *
 * A layer is MoE when its router weight exists (or the config's layout says it
 * must).  With topk_method noaux_tc the e_score_correction_bias is required.
 * Expert weights are held in `dtype` (MOED_DTYPE_F32 or BF16; 0: BF16 if the
 * checkpoint stores BF16, else F32): those stored that way stay in the mapped
 * files (model->maps, model->mapped_bytes), the others are converted.  Router
 * weights and biases are always converted to fp32.
 */
#ifndef MOED_CHECKPOINT_H
#define MOED_CHECKPOINT_H

#include <stddef.h>

#include "daemon/model.h"

/* layers (sorted, n_layers of them; NULL = all): load only those MoE layers,
 * reading no other layer's tensors; each must be a MoE layer of the model. */
int checkpoint_load(const char *dir, uint32_t dtype, const uint32_t *layers, uint32_t n_layers,
		    const struct model_want *want, struct moed_model **ret_model, char *err,
		    size_t errlen);
/* Map the experts `want` asks for that m (from checkpoint_load) lacks. */
int checkpoint_add_experts(struct moed_model *m, const struct model_want *want, char *err,
			   size_t errlen);

#endif
