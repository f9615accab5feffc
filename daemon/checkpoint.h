/*
 * Loading a HuggingFace-layout checkpoint directory into a struct moed_model:
 * config.json (hfconfig.c) plus model.safetensors or the shards named by
 * model.safetensors.index.json (safetensors.c).  Three tensor naming families
 * are understood: DeepSeek-V2/V3/Moonlight, Mixtral and Qwen2-MoE/OLMoE.
 * Every refusal names the file and the field or tensor, with expected and found
 * shapes where they disagree; the daemon then does not start.
 */
#ifndef MOED_CHECKPOINT_H
#define MOED_CHECKPOINT_H

#include <stddef.h>

#include "daemon/model.h"

int checkpoint_load(const char *dir, struct moed_model **ret_model, char *err, size_t errlen);

#endif
