/*
 * config.json reading.  The family comes from model_type alone, and a key
 * the file leaves out takes that family's default (the table below).  Each numeric field is read through
 * one helper that reports "config.json: 'field' ..." so every refusal names the
 * field; the cross-field checks at the end name both fields involved.
 */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/hfconfig.h"

struct reader {
	json_object *root;
	const char *name;
	char *err;
	size_t errlen;
};

/* Read a positive (or, with allow_zero, non-negative) integer; absent -> def or error. */
static int get_uint(struct reader *rd, const char *field, int required, uint32_t def,
		    int allow_zero, uint32_t *ret)
{
	json_object *o;
	int64_t v;

	if (!json_object_object_get_ex(rd->root, field, &o) || json_object_is_type(o, json_type_null)) {
		if (required) {
			snprintf(rd->err, rd->errlen, "%s: '%s' missing", rd->name, field);
			return -EINVAL;
		}
		*ret = def;
		return 0;
	}
	v = json_object_get_int64(o);
	if (!json_object_is_type(o, json_type_int) || v < (allow_zero ? 0 : 1) || v > (1 << 30)) {
		snprintf(rd->err, rd->errlen, "%s: '%s' must be a %s integer, got %s", rd->name, field,
			 allow_zero ? "non-negative" : "positive",
			 json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		return -EINVAL;
	}
	*ret = (uint32_t)v;
	return 0;
}

static int get_float(struct reader *rd, const char *field, float def, float *ret)
{
	json_object *o;
	double v;

	if (!json_object_object_get_ex(rd->root, field, &o) || json_object_is_type(o, json_type_null)) {
		*ret = def;
		return 0;
	}
	v = json_object_get_double(o);
	if ((!json_object_is_type(o, json_type_double) && !json_object_is_type(o, json_type_int)) ||
	    !isfinite(v) || v <= 0) {
		snprintf(rd->err, rd->errlen, "%s: '%s' must be a positive number", rd->name, field);
		return -EINVAL;
	}
	*ret = (float)v;
	return 0;
}

static int get_bool(struct reader *rd, const char *field, int def, int *ret)
{
	json_object *o;

	if (!json_object_object_get_ex(rd->root, field, &o) || json_object_is_type(o, json_type_null)) {
		*ret = def;
		return 0;
	}
	if (!json_object_is_type(o, json_type_boolean)) {
		snprintf(rd->err, rd->errlen, "%s: '%s' must be true or false", rd->name, field);
		return -EINVAL;
	}
	*ret = json_object_get_boolean(o);
	return 0;
}

static int get_string(struct reader *rd, const char *field, const char *def, char *ret, size_t n)
{
	json_object *o;

	if (!json_object_object_get_ex(rd->root, field, &o) || json_object_is_type(o, json_type_null)) {
		snprintf(ret, n, "%s", def);
		return 0;
	}
	if (!json_object_is_type(o, json_type_string) || json_object_get_string_len(o) >= (int)n) {
		snprintf(rd->err, rd->errlen, "%s: '%s' must be a short string", rd->name, field);
		return -EINVAL;
	}
	snprintf(ret, n, "%s", json_object_get_string(o));
	return 0;
}

/*
 * The families moed knows, one row each: tensor naming (family) and the
 * defaults HF's config class for that model_type gives a key config.json
 * leaves out.  A model_type not listed here is refused: guessing the family
 * from which keys exist served GLM-4.5 with softmax routing.
 */
struct family_row {
	const char *model_type;
	enum hf_family family;
	const char *scoring;            /* scoring_func default */
	const char *topk_method;        /* topk_method default */
	int norm;                       /* norm_topk_prob default; -1: always true */
	float scale;                    /* routed_scaling_factor default */
	uint32_t n_group, topk_group, n_shared, first_dense;
};

static const struct family_row families[] = {
	/* HF DeepseekV2Config */
	{ "deepseek_v2", HF_DEEPSEEK, "softmax", "greedy", 0, 1.0f, 1, 1, 0, 0 },
	/* HF DeepseekV3Config (no scoring_func key: the V3 router is sigmoid) */
	{ "deepseek_v3", HF_DEEPSEEK, "sigmoid", "noaux_tc", 1, 2.5f, 8, 4, 1, 3 },
	{ "kimi_k2", HF_DEEPSEEK, "sigmoid", "noaux_tc", 1, 2.5f, 8, 4, 1, 3 },
	/* HF Glm4MoeConfig: DeepSeek-V3's router, no scoring_func/topk_method keys */
	{ "glm4_moe", HF_GLM, "sigmoid", "noaux_tc", 1, 1.0f, 1, 1, 1, 1 },
	{ "qwen2_moe", HF_QWEN, "softmax", "greedy", 0, 1.0f, 1, 1, 0, 0 },
	{ "qwen3_moe", HF_QWEN, "softmax", "greedy", 0, 1.0f, 1, 1, 0, 0 },
	{ "olmoe", HF_OLMOE, "softmax", "greedy", 0, 1.0f, 1, 1, 0, 0 },
	{ "mixtral", HF_MIXTRAL, "softmax", "greedy", -1, 1.0f, 1, 1, 0, 0 },
};

#define N_FAMILIES (sizeof(families) / sizeof(families[0]))

static const struct family_row *family_of(const char *model_type)
{
	for (size_t i = 0; i < N_FAMILIES; i++)
		if (!strcmp(model_type, families[i].model_type))
			return &families[i];
	return NULL;
}

size_t hfconfig_known_families(char *buf, size_t n)
{
	size_t off = 0;

	if (n)
		buf[0] = '\0';
	for (size_t i = 0; i < N_FAMILIES && off < n; i++)
		off += (size_t)snprintf(buf + off, n - off, "%s%s", i ? ", " : "",
					families[i].model_type);
	return off;
}

/* DeepSeek-style routing keys, with the family's defaults. */
static int read_router_fields(struct reader *rd, const struct family_row *f, struct hf_config *c)
{
	char scoring[16];
	int r;

	r = get_uint(rd, "n_group", 0, f->n_group, 0, &c->n_group) ?:
	    get_uint(rd, "topk_group", 0, f->topk_group, 0, &c->topk_group) ?:
	    get_uint(rd, "n_shared_experts", 0, f->n_shared, 1, &c->n_shared_experts) ?:
	    get_uint(rd, "first_k_dense_replace", 0, f->first_dense, 1,
		     &c->first_k_dense_replace) ?:
	    get_float(rd, "routed_scaling_factor", f->scale, &c->routed_scaling_factor) ?:
	    get_bool(rd, "norm_topk_prob", f->norm, &c->norm_topk_prob) ?:
	    get_string(rd, "scoring_func", f->scoring, scoring, sizeof(scoring)) ?:
	    get_string(rd, "topk_method", f->topk_method, c->topk_method, sizeof(c->topk_method));
	if (r < 0)
		return r;
	if (strcmp(scoring, "softmax") && strcmp(scoring, "sigmoid")) {
		snprintf(rd->err, rd->errlen, "%s: 'scoring_func' must be softmax or sigmoid, got '%s'",
			 rd->name, scoring);
		return -EINVAL;
	}
	c->sigmoid = !strcmp(scoring, "sigmoid");
	return 0;
}

/* mlp_only_layers: a list of layer indices that stay dense. */
static int read_mlp_only(struct reader *rd, struct hf_config *c)
{
	json_object *o;
	size_t n;

	if (!json_object_object_get_ex(rd->root, "mlp_only_layers", &o) ||
	    json_object_is_type(o, json_type_null))
		return 0;
	if (!json_object_is_type(o, json_type_array) ||
	    (n = json_object_array_length(o)) > HF_MAX_MLP_ONLY)
		goto bad;
	for (size_t i = 0; i < n; i++) {
		json_object *v = json_object_array_get_idx(o, i);
		int64_t L = json_object_get_int64(v);

		if (!json_object_is_type(v, json_type_int) || L < 0 || L >= HF_MAX_LAYERS)
			goto bad;
		c->mlp_only[c->n_mlp_only++] = (uint32_t)L;
	}
	return 0;
bad:
	snprintf(rd->err, rd->errlen, "%s: 'mlp_only_layers' must be a list of at most %u layer indices",
		 rd->name, HF_MAX_MLP_ONLY);
	return -EINVAL;
}

static int read_family_fields(struct reader *rd, const struct family_row *f, struct hf_config *c)
{
	uint32_t shared_width = 0;
	int r = 0;

	switch (c->family) {
	case HF_DEEPSEEK:
	case HF_GLM:
		r = get_uint(rd, "moe_intermediate_size", 1, 0, 0, &c->moe_intermediate_size) ?:
		    get_uint(rd, "n_routed_experts", 1, 0, 0, &c->n_routed_experts) ?:
		    read_router_fields(rd, f, c);
		/* GLM's config class has no moe_layer_freq: every layer from the first */
		if (r == 0 && c->family == HF_DEEPSEEK)
			r = get_uint(rd, "moe_layer_freq", 0, 1, 0, &c->moe_layer_freq);
		c->shared_intermediate_size = c->n_shared_experts * c->moe_intermediate_size;
		return r;
	case HF_MIXTRAL:
		c->norm_topk_prob = 1;
		return get_uint(rd, "intermediate_size", 1, 0, 0, &c->moe_intermediate_size) ?:
		       get_uint(rd, "num_local_experts", 1, 0, 0, &c->n_routed_experts);
	case HF_QWEN:
		r = get_uint(rd, "moe_intermediate_size", 1, 0, 0, &c->moe_intermediate_size) ?:
		    get_uint(rd, "num_experts", 1, 0, 0, &c->n_routed_experts) ?:
		    get_uint(rd, "decoder_sparse_step", 0, 1, 0, &c->moe_layer_freq) ?:
		    get_bool(rd, "norm_topk_prob", f->norm, &c->norm_topk_prob) ?:
		    read_mlp_only(rd, c);
		/* Qwen3-MoE has no shared expert; Qwen2-MoE one, gated (HF default 5632) */
		if (r == 0 && !strcmp(c->model_type, "qwen2_moe"))
			r = get_uint(rd, "shared_expert_intermediate_size", 0, 5632, 1, &shared_width);
		if (r == 0 && shared_width) {
			c->shared_intermediate_size = shared_width;
			c->shared_expert_gate = 1;
			c->n_shared_experts = 1;
		}
		return r;
	case HF_OLMOE:
		return get_uint(rd, "intermediate_size", 1, 0, 0, &c->moe_intermediate_size) ?:
		       get_uint(rd, "num_experts", 1, 0, 0, &c->n_routed_experts) ?:
		       get_bool(rd, "norm_topk_prob", f->norm, &c->norm_topk_prob);
	}
	return -EINVAL;
}

/* quantization_config: only its FP8 block size matters (which tensors are FP8
 * is read from the files); another fmt than e4m3 is refused. */
static int read_quantization(struct reader *rd, struct hf_config *c)
{
	json_object *q, *o;
	const char *fmt;

	c->block_rows = c->block_cols = 128;
	if (!json_object_object_get_ex(rd->root, "quantization_config", &q) ||
	    !json_object_is_type(q, json_type_object))
		return 0;
	if (json_object_object_get_ex(q, "fmt", &o) && (fmt = json_object_get_string(o)) &&
	    strcmp(fmt, "e4m3")) {
		snprintf(rd->err, rd->errlen, "%s: 'quantization_config.fmt' '%s': only e4m3 FP8 is supported",
			 rd->name, fmt);
		return -ENOTSUP;
	}
	if (!json_object_object_get_ex(q, "weight_block_size", &o) ||
	    json_object_is_type(o, json_type_null))
		return 0;
	if (json_object_is_type(o, json_type_array) && json_object_array_length(o) == 2) {
		json_object *a = json_object_array_get_idx(o, 0), *b = json_object_array_get_idx(o, 1);
		int64_t r = json_object_get_int64(a), k = json_object_get_int64(b);

		if (json_object_is_type(a, json_type_int) && json_object_is_type(b, json_type_int) &&
		    r > 0 && k > 0 && r <= HF_MAX_WIDTH && k <= HF_MAX_WIDTH) {
			c->block_rows = (uint32_t)r;
			c->block_cols = (uint32_t)k;
			return 0;
		}
	}
	snprintf(rd->err, rd->errlen, "%s: 'quantization_config.weight_block_size' must be [rows, cols], two positive integers",
		 rd->name);
	return -EINVAL;
}

static int check_limit(struct reader *rd, const char *field, uint64_t v, uint64_t max)
{
	if (v <= max)
		return 0;
	snprintf(rd->err, rd->errlen, "%s: '%s' %llu exceeds moed's limit of %llu", rd->name, field,
		 (unsigned long long)v, (unsigned long long)max);
	return -EINVAL;
}

static int check_topk_method(struct reader *rd, struct hf_config *c)
{
	static const char *known[] = { "greedy", "group_limited_greedy", "noaux_tc" };

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(c->topk_method, known[i]))
			goto found;
	snprintf(rd->err, rd->errlen,
		 "%s: 'topk_method' '%s' is not one of greedy, group_limited_greedy, noaux_tc",
		 rd->name, c->topk_method);
	return -EINVAL;
found:
	/* HF DeepSeek-V2 routes "greedy" over all experts whatever n_group says
	 * (V3 code ignores topk_method and always limits by group) */
	if (!strcmp(c->model_type, "deepseek_v2") && !strcmp(c->topk_method, "greedy"))
		c->n_group = c->topk_group = 1;
	return 0;
}

static int check_consistency(struct reader *rd, struct hf_config *c)
{
	int r;

	r = check_limit(rd, "num_hidden_layers", c->num_hidden_layers, HF_MAX_LAYERS) ?:
	    check_limit(rd, "hidden_size", c->hidden_size, HF_MAX_WIDTH) ?:
	    check_limit(rd, "moe_intermediate_size", c->moe_intermediate_size, HF_MAX_WIDTH) ?:
	    check_limit(rd, "n_routed_experts", c->n_routed_experts, HF_MAX_EXPERTS) ?:
	    check_limit(rd, c->shared_expert_gate ? "shared_expert_intermediate_size"
				  : "n_shared_experts x moe_intermediate_size",
			c->family == HF_QWEN ? c->shared_intermediate_size
			: (uint64_t)c->n_shared_experts * c->moe_intermediate_size, HF_MAX_WIDTH) ?:
	    check_topk_method(rd, c);
	if (r < 0)
		return r;
	if (c->num_experts_per_tok > c->n_routed_experts) {
		snprintf(rd->err, rd->errlen, "%s: 'num_experts_per_tok' %u exceeds the %u experts",
			 rd->name, c->num_experts_per_tok, c->n_routed_experts);
		return -EINVAL;
	}
	if (c->n_routed_experts % c->n_group) {
		snprintf(rd->err, rd->errlen, "%s: 'n_routed_experts' %u is not divisible by 'n_group' %u",
			 rd->name, c->n_routed_experts, c->n_group);
		return -EINVAL;
	}
	if (c->topk_group > c->n_group) {
		snprintf(rd->err, rd->errlen, "%s: 'topk_group' %u exceeds 'n_group' %u", rd->name,
			 c->topk_group, c->n_group);
		return -EINVAL;
	}
	if ((uint64_t)c->topk_group * (c->n_routed_experts / c->n_group) < c->num_experts_per_tok) {
		snprintf(rd->err, rd->errlen,
			 "%s: 'topk_group' %u of 'n_group' %u leaves fewer than 'num_experts_per_tok' %u experts",
			 rd->name, c->topk_group, c->n_group, c->num_experts_per_tok);
		return -EINVAL;
	}
	/* noaux_tc scores a group by the sum of its two best experts */
	if (c->n_group > 1 && c->n_routed_experts / c->n_group < 2 &&
	    !strcmp(c->topk_method, "noaux_tc")) {
		snprintf(rd->err, rd->errlen,
			 "%s: 'n_group' %u leaves one expert per group; noaux_tc needs at least two",
			 rd->name, c->n_group);
		return -EINVAL;
	}
	return 0;
}

int hfconfig_parse(const char *text, size_t len, const char *name, struct hf_config *ret,
		   char *err, size_t errlen)
{
	struct json_tokener *tok = json_tokener_new_ex(32);
	struct reader rd = { NULL, name, err, errlen };
	const struct family_row *fam;
	struct hf_config c;
	int r = -EINVAL;

	memset(&c, 0, sizeof(c));
	c.n_group = c.topk_group = c.moe_layer_freq = 1;
	c.routed_scaling_factor = 1.0f;
	snprintf(c.topk_method, sizeof(c.topk_method), "greedy");
	if (!tok)
		return -ENOMEM;
	if (len > INT32_MAX)
		len = INT32_MAX;
	rd.root = json_tokener_parse_ex(tok, text, (int)len);
	if (!rd.root || json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(rd.root, json_type_object)) {
		snprintf(err, errlen, "%s: not a JSON object (%s)", name,
			 rd.root ? "wrong type" : json_tokener_error_desc(json_tokener_get_error(tok)));
		goto out;
	}
	r = get_string(&rd, "model_type", "", c.model_type, sizeof(c.model_type));
	if (r < 0)
		goto out;
	fam = family_of(c.model_type);
	if (!fam) {
		char known[256];

		hfconfig_known_families(known, sizeof(known));
		snprintf(err, errlen, "%s: 'model_type' '%s' is not a MoE family moed knows (%s)",
			 name, c.model_type, known);
		r = -ENOTSUP;
		goto out;
	}
	c.family = fam->family;
	r = get_uint(&rd, "num_hidden_layers", 1, 0, 0, &c.num_hidden_layers) ?:
	    get_uint(&rd, "hidden_size", 1, 0, 0, &c.hidden_size) ?:
	    get_uint(&rd, "num_experts_per_tok", 1, 0, 0, &c.num_experts_per_tok) ?:
	    read_family_fields(&rd, fam, &c) ?: read_quantization(&rd, &c) ?:
	    check_consistency(&rd, &c);
	if (r == 0)
		*ret = c;
out:
	json_object_put(rd.root);
	json_tokener_free(tok);
	return r;
}

int hfconfig_load(const char *path, struct hf_config *ret, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *text;
	long n;
	int r;

	if (!f) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return r;
	}
	if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || n > (16 << 20) ||
	    fseek(f, 0, SEEK_SET) < 0) {
		fclose(f);
		snprintf(err, errlen, "%s: unreadable or larger than 16 MiB", path);
		return -EFBIG;
	}
	text = malloc((size_t)n + 1);
	if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) {
		free(text);
		fclose(f);
		snprintf(err, errlen, "%s: cannot read", path);
		return -EIO;
	}
	fclose(f);
	text[n] = '\0';
	r = hfconfig_parse(text, (size_t)n, path, ret, err, errlen);
	free(text);
	return r;
}

int hfconfig_layer_is_moe(const struct hf_config *c, uint32_t layer)
{
	if (c->family == HF_DEEPSEEK)
		return layer >= c->first_k_dense_replace && layer % c->moe_layer_freq == 0;
	if (c->family == HF_GLM)
		return layer >= c->first_k_dense_replace;
	if (c->family == HF_QWEN) {
		for (uint32_t i = 0; i < c->n_mlp_only; i++)
			if (c->mlp_only[i] == layer)
				return 0;
		return (layer + 1) % c->moe_layer_freq == 0;
	}
	return 1;
}
