/*
 * HuggingFace config.json for the MoE families moed serves, normalised to one
 * set of fields.  Field names differ by family (n_routed_experts /
 * num_local_experts / num_experts, moe_intermediate_size / intermediate_size);
 * an absent field takes the default of HF's config class for the model_type:
 *   deepseek_v3, kimi_k2: sigmoid, noaux_tc, norm_topk_prob true, scale 2.5,
 *     n_group 8, topk_group 4, n_shared_experts 1, first_k_dense_replace 3;
 *   glm4_moe: sigmoid, noaux_tc, norm true, scale 1.0, groups 1/1, 1 shared,
 *     first_k_dense_replace 1 (no moe_layer_freq);
 *   deepseek_v2: softmax, greedy, norm false, scale 1.0, groups 1/1, no shared;
 *   qwen2_moe: softmax, norm false, one gated shared expert of
 *     shared_expert_intermediate_size (5632); qwen3_moe, olmoe: softmax, norm
 *     false, no shared expert; mixtral: softmax, always renormalised.
 * Any other model_type is refused with the list of known ones.
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
	HF_GLM = 5,             /* glm4_moe: DeepSeek naming and router, no moe_layer_freq */
};

/* Sanity limits: far above any released model, low enough that sizes derived
 * from them cannot overflow or ask for absurd allocations. */
#define HF_MAX_LAYERS 65536u
#define HF_MAX_EXPERTS 65536u
#define HF_MAX_WIDTH (1u << 20)         /* hidden, intermediate and shared widths */
#define HF_MAX_MLP_ONLY 256u

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
	uint32_t shared_intermediate_size; /* n_shared_experts * I, or Qwen2's own width */
	int shared_expert_gate;         /* Qwen2-MoE: shared expert scaled by sigmoid(g . x) */
	uint32_t block_rows, block_cols; /* quantization_config.weight_block_size, 128 x 128 */
	uint32_t n_mlp_only;            /* Qwen: mlp_only_layers */
	uint32_t mlp_only[HF_MAX_MLP_ONLY];
};

/* Parse config.json text; `name` is used in messages.  -EINVAL + err naming the field. */
int hfconfig_parse(const char *text, size_t len, const char *name, struct hf_config *ret,
		   char *err, size_t errlen);
int hfconfig_load(const char *path, struct hf_config *ret, char *err, size_t errlen);
/* The known model_types, comma separated, into buf; returns the length. */
size_t hfconfig_known_families(char *buf, size_t n);
/* Is layer L expected to be an MoE layer by the config's layout fields? */
int hfconfig_layer_is_moe(const struct hf_config *c, uint32_t layer);

#endif
