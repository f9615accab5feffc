/*
 * Loading a HuggingFace-layout checkpoint directory into a struct moed_model:
 * config.json (hfconfig.c) plus model.safetensors or the shards named by
 * model.safetensors.index.json (safetensors.c).  Three tensor naming families
 * are understood: DeepSeek-V2/V3/Moonlight, Mixtral and Qwen2-MoE/OLMoE.
 * Every refusal names the file and the field or tensor, with expected and found
 * shapes where they disagree; the daemon then does not start.
 *
 * A layer is MoE when its router weight exists (or the config's layout says it
 * must).  With topk_method noaux_tc the e_score_correction_bias is required.
 * Expert weights are converted to fp32 at load (model->dtype = MOED_DTYPE_F32);
 * load_f32() in checkpoint.c is the one place that converts, so keeping bf16
 * later means a raw-copy variant used for expert tensors only (router weights and
 * biases stay fp32 per model.h) and setting model->dtype accordingly.
 */
#ifndef MOED_CHECKPOINT_H
#define MOED_CHECKPOINT_H

#include <stddef.h>

#include "daemon/model.h"

int checkpoint_load(const char *dir, struct moed_model **ret_model, char *err, size_t errlen);

#endif
