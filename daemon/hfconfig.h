/*
 * HuggingFace config.json for the MoE families moed serves, normalised to one
 * set of fields.  Field names differ by family (n_routed_experts /
 * num_local_experts / num_experts, moe_intermediate_size / intermediate_size);
 * absent fields default to n_group = topk_group = 1, n_shared_experts = 0,
 * routed_scaling_factor = 1.0, scoring_func softmax, topk_method greedy,
 * first_k_dense_replace = 0, moe_layer_freq = 1, and norm_topk_prob true for
 * deepseek_v3 (always for Mixtral), false for the others.
 */
#ifndef MOED_HFCONFIG_H
#define MOED_HFCONFIG_H

#include <stddef.h>
#include <stdint.h>

enum hf_family {
	HF_DEEPSEEK = 1,        /* deepseek_v2, deepseek_v3 (and Moonlight) */
	HF_MIXTRAL = 2,
	HF_QWEN = 3,            /* qwen2_moe, qwen3_moe: mlp.experts.N.*_proj */
	HF_OLMOE = 4,
};

/* Sanity limits: far above any released model, low enough that sizes derived
 * from them cannot overflow or ask for absurd allocations. */
#define HF_MAX_LAYERS 65536u
#define HF_MAX_EXPERTS 65536u
#define HF_MAX_WIDTH (1u << 20)         /* hidden, intermediate and shared widths */

/* n_group/topk_group are the effective values: 1/1 for a deepseek_v2 config with
 * topk_method "greedy", whose HF code ignores the groups. */
struct hf_config {
	enum hf_family family;
	char model_type[48];
	uint32_t num_hidden_layers;
	uint32_t hidden_size;
	uint32_t moe_intermediate_size;
	uint32_t n_routed_experts;
	uint32_t num_experts_per_tok;
	uint32_t n_group, topk_group;
	uint32_t n_shared_experts;
	uint32_t first_k_dense_replace;
	uint32_t moe_layer_freq;
	float routed_scaling_factor;
	int norm_topk_prob;
	int sigmoid;                    /* scoring_func == "sigmoid" */
	char topk_method[32];
};

/* Parse config.json text; `name` is used in messages.  -EINVAL + err naming the field. */
int hfconfig_parse(const char *text, size_t len, const char *name, struct hf_config *ret,
		   char *err, size_t errlen);
int hfconfig_load(const char *path, struct hf_config *ret, char *err, size_t errlen);
/* Is layer L expected to be an MoE layer by the config's layout fields? */
int hfconfig_layer_is_moe(const struct hf_config *c, uint32_t layer);

#endif
