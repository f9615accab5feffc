/*
 * Checkpoint loading.  The safetensors files are mapped (read-only, private);
 * each tensor a MoE layer needs is looked up by its family's name and checked
 * (present, a dtype moed can compute with, the expected shape).  Router
 * weights and biases are converted to fp32 into memory the model owns.
 * Expert matrices are served in one dtype (asked for, or as the first expert
 * is stored: BF16 stays BF16, F32 and F16 become F32): a matrix already in it
 * is used in place in the mapping — no second copy, the page cache holds it —
 * and the rest is converted while loading.  The model keeps the files mapped
 * until model_free().  With an index, the weight_map decides which shard
 * holds a tensor, and the shard must agree.
 */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/checkpoint.h"
#include "daemon/dtype.h"
#include "daemon/hfconfig.h"
#include "daemon/log.h"
#include "daemon/safetensors.h"

#define CKPT_MAX_INDEX (256u << 20)

struct ckpt {
	const char *dir;
	struct hf_config cfg;
	struct st_file **files;
	size_t n_files;
	json_object *index;             /* weight_map object, or NULL */
	json_object *index_root;
	char *err;
	size_t errlen;
	uint32_t want;                  /* expert dtype to serve; 0 until the first */
	const uint32_t *only;           /* layer subset (sorted), or NULL */
	uint32_t n_only;
	const struct model_want *wanted;        /* which experts; NULL = all */
	struct moed_model *m;           /* once made, owns the mapped files */
};

static void ckpt_close(struct ckpt *c)
{
	if (!c->m) {
		for (size_t i = 0; i < c->n_files; i++)
			st_close(c->files[i]);
		free(c->files);
	}
	json_object_put(c->index_root);
}

static int add_file(struct ckpt *c, const char *name)
{
	char path[PATH_MAX];
	struct st_file **v;
	int r;

	if (!*name || strchr(name, '/') || !strcmp(name, "..") || !strcmp(name, ".")) {
		snprintf(c->err, c->errlen, "%s/model.safetensors.index.json: shard name '%s' is not a file name in the directory",
			 c->dir, name);
		return -EINVAL;
	}
	for (size_t i = 0; i < c->n_files; i++)
		if (!strcmp(strrchr(c->files[i]->path, '/') + 1, name))
			return 0;
	v = realloc(c->files, (c->n_files + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	c->files = v;
	snprintf(path, sizeof(path), "%s/%s", c->dir, name);
	r = st_open(path, &c->files[c->n_files], c->err, c->errlen);
	if (r < 0)
		return r;
	c->n_files++;
	return 0;
}

static int open_index(struct ckpt *c, const char *path)
{
	json_object *map;
	struct stat st;

	if (stat(path, &st) < 0 || st.st_size > CKPT_MAX_INDEX) {
		snprintf(c->err, c->errlen, "%s: unreadable or larger than %u MiB", path,
			 CKPT_MAX_INDEX >> 20);
		return -EFBIG;
	}
	c->index_root = json_object_from_file(path);
	if (!c->index_root || !json_object_object_get_ex(c->index_root, "weight_map", &map) ||
	    !json_object_is_type(map, json_type_object)) {
		snprintf(c->err, c->errlen, "%s: not JSON with a \"weight_map\" object", path);
		return -EBADMSG;
	}
	c->index = map;
	json_object_object_foreach(map, key, val) {
		if (!json_object_is_type(val, json_type_string)) {
			snprintf(c->err, c->errlen, "%s: weight_map entry '%s' is not a file name", path,
				 key);
			return -EBADMSG;
		}
		int r = add_file(c, json_object_get_string(val));
		if (r < 0)
			return r;
	}
	return 0;
}

static int open_files(struct ckpt *c)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", c->dir);
	if (access(path, F_OK) == 0)
		return open_index(c, path);
	snprintf(path, sizeof(path), "%s/model.safetensors", c->dir);
	if (access(path, F_OK) != 0) {
		snprintf(c->err, c->errlen, "%s: no model.safetensors or model.safetensors.index.json",
			 c->dir);
		return -ENOENT;
	}
	return add_file(c, "model.safetensors");
}

/* Find a tensor; NULL (no message) when the checkpoint does not have it. */
static const struct st_tensor *lookup(struct ckpt *c, const char *name, const struct st_file **ret)
{
	json_object *shard;

	if (c->index) {
		if (!json_object_object_get_ex(c->index, name, &shard))
			return NULL;
		const char *file = json_object_get_string(shard);
		for (size_t i = 0; i < c->n_files; i++)
			if (!strcmp(strrchr(c->files[i]->path, '/') + 1, file)) {
				*ret = c->files[i];
				return st_find(c->files[i], name);
			}
		return NULL;
	}
	*ret = c->files[0];
	return st_find(c->files[0], name);
}

/* Find `name` with shape [d0] (d1 == 0) or [d0, d1] and a dtype moed reads:
 * 1 and *ret_t, *ret_f; 0 when optional and absent; -errno with c->err. */
static int find_checked(struct ckpt *c, const char *name, uint64_t d0, uint64_t d1,
			int optional, const struct st_tensor **ret_t, const struct st_file **ret_f)
{
	const struct st_file *f = NULL;
	const struct st_tensor *t = lookup(c, name, &f);
	uint32_t ndim = d1 ? 2 : 1;

	if (!t) {
		if (optional && !(c->index && json_object_object_get_ex(c->index, name, NULL)))
			return 0;
		if (c->index && json_object_object_get_ex(c->index, name, NULL))
			snprintf(c->err, c->errlen, "%s: index.json puts tensor '%s' in %s, which does not have it",
				 c->dir, name, f ? f->path : "a missing shard");
		else
			snprintf(c->err, c->errlen, "%s: missing tensor '%s'", c->dir, name);
		return -ENOENT;
	}
	if (!strcmp(t->dtype_name, "F8_E5M2")) {
		snprintf(c->err, c->errlen, "%s: tensor '%s' has dtype F8_E5M2; of the FP8 formats only block-scaled F8_E4M3 is supported",
			 f->path, name);
		return -ENOTSUP;
	}
	if (!t->dtype) {
		snprintf(c->err, c->errlen, "%s: tensor '%s' has dtype %s; supported: F32, BF16, F16, F8_E4M3",
			 f->path, name, t->dtype_name);
		return -ENOTSUP;
	}
	if (t->ndim != ndim || t->shape[0] != d0 || (d1 && t->shape[1] != d1)) {
		char found[96] = "";
		size_t off = 0;
		for (uint32_t i = 0; i < t->ndim && off < sizeof(found); i++)
			off += (size_t)snprintf(found + off, sizeof(found) - off, "%s%llu", i ? ", " : "",
						(unsigned long long)t->shape[i]);
		if (d1)
			snprintf(c->err, c->errlen, "%s: tensor '%s' has shape [%s], expected [%llu, %llu]",
				 f->path, name, found, (unsigned long long)d0, (unsigned long long)d1);
		else
			snprintf(c->err, c->errlen, "%s: tensor '%s' has shape [%s], expected [%llu]",
				 f->path, name, found, (unsigned long long)d0);
		return -EINVAL;
	}
	*ret_t = t;
	*ret_f = f;
	return 1;
}

/* Load `name` with shape [d0] (d1 == 0) or [d0, d1] as fp32 into owned memory. */
static int load_f32(struct ckpt *c, const char *name, uint64_t d0, uint64_t d1, int optional,
		    float **ret)
{
	const struct st_tensor *t;
	const struct st_file *f;
	size_t n = (size_t)d0 * (d1 ? d1 : 1);
	int r = find_checked(c, name, d0, d1, optional, &t, &f);

	if (r <= 0)
		return r;
	if (t->dtype == MOED_DTYPE_F8_E4M3) {
		snprintf(c->err, c->errlen, "%s: tensor '%s' is FP8; moed reads router weights, biases and scales in F32, BF16 or F16",
			 f->path, name);
		return -ENOTSUP;
	}
	*ret = malloc(n * sizeof(float));
	if (!*ret)
		return -ENOMEM;
	dtype_to_f32(t->dtype, st_data(f, t), *ret, n);
	return 0;
}

/* The block scales of FP8 weight `name` [d0][d1]: "<name>_scale_inv", fp32
 * [ceil(d0 / br)][ceil(d1 / bc)], finite and positive, into owned memory. */
static int load_scale(struct ckpt *c, const char *name, uint64_t d0, uint64_t d1, float **ret)
{
	uint64_t br = c->cfg.block_rows, bc = c->cfg.block_cols;
	uint64_t s0 = (d0 + br - 1) / br, s1 = (d1 + bc - 1) / bc;
	char sname[300];
	float *s = NULL;
	int r;

	snprintf(sname, sizeof(sname), "%s_scale_inv", name);
	r = load_f32(c, sname, s0, s1, 0, &s);
	if (r == -ENOENT && !strstr(c->err, "index.json"))
		snprintf(c->err, c->errlen, "%s: FP8 tensor '%s' has no scale tensor '%s' ([%llu, %llu] fp32 for %llux%llu blocks)",
			 c->dir, name, sname, (unsigned long long)s0, (unsigned long long)s1,
			 (unsigned long long)br, (unsigned long long)bc);
	if (r == -EINVAL)
		snprintf(c->err + strlen(c->err), c->errlen - strlen(c->err),
			 " (the scales of %llux%llu blocks of [%llu, %llu], quantization_config.weight_block_size)",
			 (unsigned long long)br, (unsigned long long)bc, (unsigned long long)d0,
			 (unsigned long long)d1);
	if (r < 0)
		return r;
	for (uint64_t i = 0; i < s0 * s1; i++)
		if (!(s[i] > 0) || s[i] > 3.0e38f) {
			snprintf(c->err, c->errlen, "%s: scale tensor '%s' element %llu is %g, not a positive finite number",
				 c->dir, sname, (unsigned long long)i, (double)s[i]);
			free(s);
			return -EINVAL;
		}
	*ret = s;
	return 0;
}

/* The served dtype, decided by the first expert matrix unless asked for. */
static void decide_dtype(struct ckpt *c, uint32_t stored)
{
	if (c->want)
		return;
	c->want = stored == MOED_DTYPE_BF16 || stored == MOED_DTYPE_F8_E4M3 ? stored
									     : MOED_DTYPE_F32;
	c->m->stored_dtype = stored;
	c->m->dtype = c->want;
}

/* An FP8 matrix: checked for NaN codes, its scales loaded; held as FP8 in
 * place in the mapping (one byte per weight, scales in *ret_scale), or
 * dequantised into the served dtype. */
static int load_fp8(struct ckpt *c, const char *name, const struct st_tensor *t,
		    const struct st_file *f, uint64_t d0, uint64_t d1, void **ret, float **ret_scale)
{
	const uint8_t *q = st_data(f, t);
	size_t n = (size_t)d0 * d1, bad = dtype_f8e4m3_find_nan(q, n);
	float *scale = NULL;
	int r;

	if (bad < n) {
		snprintf(c->err, c->errlen, "%s: FP8 tensor '%s' element %zu is a NaN code (0x%02X)",
			 f->path, name, bad, q[bad]);
		return -EINVAL;
	}
	r = load_scale(c, name, d0, d1, &scale);
	if (r < 0)
		return r;
	if (c->want == MOED_DTYPE_F8_E4M3) {
		uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = (uintptr_t)q & ~(page - 1);

		madvise((void *)lo, (uintptr_t)q + n - lo, MADV_WILLNEED);
		*ret = (void *)q;
		*ret_scale = scale;
		c->m->mapped_bytes += n;
		return 0;
	}
	*ret = model_weight_alloc(n * dtype_size(c->want));
	if (*ret)
		dtype_f8_dequant(q, scale, d0, d1, c->cfg.block_rows, c->cfg.block_cols, c->want,
				 *ret);
	free(scale);
	return *ret ? 0 : -ENOMEM;
}

/* An expert matrix [d0][d1] in the served dtype: in place in the mapping when
 * it is stored that way (and aligned for it), else converted.  ret_scale gets
 * the block scales when the matrix is held as FP8. */
static int load_weight(struct ckpt *c, const char *name, uint64_t d0, uint64_t d1, void **ret,
		       float **ret_scale)
{
	const struct st_tensor *t;
	const struct st_file *f;
	size_t n = (size_t)d0 * d1, es;
	const void *src;
	int r = find_checked(c, name, d0, d1, 0, &t, &f);

	if (r < 0)
		return r;
	decide_dtype(c, t->dtype);
	if (t->dtype == MOED_DTYPE_F8_E4M3)
		return load_fp8(c, name, t, f, d0, d1, ret, ret_scale);
	if (c->want == MOED_DTYPE_F8_E4M3) {
		snprintf(c->err, c->errlen, "%s: tensor '%s' is stored as %s; FP8 weights (weights = fp8) need an FP8 checkpoint, moed does not quantise",
			 f->path, name, t->dtype_name);
		return -ENOTSUP;
	}
	es = dtype_size(c->want);
	src = st_data(f, t);
	if (t->dtype == c->want && (uintptr_t)src % es == 0) {
		uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = (uintptr_t)src & ~(page - 1);

		/* start reading it in now rather than at the first request */
		madvise((void *)lo, (uintptr_t)src + n * es - lo, MADV_WILLNEED);
		*ret = (void *)src;
		c->m->mapped_bytes += n * es;
		return 0;
	}
	*ret = model_weight_alloc(n * es);
	if (!*ret)
		return -ENOMEM;
	dtype_convert(t->dtype, src, c->want, *ret, n);
	return 0;
}

static const char *mlp(const struct ckpt *c)
{
	return c->cfg.family == HF_MIXTRAL ? "block_sparse_moe" : "mlp";
}

static int load_expert(struct ckpt *c, struct moed_model *m, uint32_t L, uint32_t e,
		       struct moed_layer *l)
{
	static const char *ds[3] = { "gate_proj", "up_proj", "down_proj" };
	static const char *mx[3] = { "w1", "w3", "w2" };
	const char **p = c->cfg.family == HF_MIXTRAL ? mx : ds;
	uint32_t H = m->hidden_size, I = m->intermediate_size;
	char name[256];
	int r;

	snprintf(name, sizeof(name), "model.layers.%u.%s.experts.%u.%s.weight", L, mlp(c), e, p[0]);
	r = load_weight(c, name, I, H, &l->expert_gate[e], &l->gate_scale[e]);
	if (r < 0)
		return r;
	snprintf(name, sizeof(name), "model.layers.%u.%s.experts.%u.%s.weight", L, mlp(c), e, p[1]);
	r = load_weight(c, name, I, H, &l->expert_up[e], &l->up_scale[e]);
	if (r < 0)
		return r;
	snprintf(name, sizeof(name), "model.layers.%u.%s.experts.%u.%s.weight", L, mlp(c), e, p[2]);
	return load_weight(c, name, H, I, &l->expert_down[e], &l->down_scale[e]);
}

static int load_layer(struct ckpt *c, struct moed_model *m, uint32_t L, struct moed_layer *l)
{
	uint32_t H = m->hidden_size, E = m->n_experts, Is = m->shared_intermediate_size;
	const char *shared;
	char name[256];
	int r;

	l->index = L;
	snprintf(name, sizeof(name), "model.layers.%u.%s.gate.weight", L, mlp(c));
	r = load_f32(c, name, E, H, 0, &l->gate);
	if (r < 0)
		return r;
	/* noaux_tc chooses with the bias: without it routing would silently differ */
	snprintf(name, sizeof(name), "model.layers.%u.mlp.gate.e_score_correction_bias", L);
	r = load_f32(c, name, E, 0, strcmp(c->cfg.topk_method, "noaux_tc") != 0, &l->bias);
	if (r < 0)
		return r;
	if (model_alloc_experts(l, E, 1) < 0)
		return -ENOMEM;
	for (uint32_t e = 0; e < E; e++) {
		if (!model_wants(c->wanted, E, L, e))
			continue;
		r = load_expert(c, m, L, e, l);
		if (r < 0)
			return r;
	}
	if (!Is || (c->wanted && !c->wanted->shared))
		return 0;
	/* Qwen2-MoE: one shared expert, scaled by sigmoid(shared_expert_gate . x) */
	shared = c->cfg.shared_expert_gate ? "shared_expert" : "shared_experts";
	if (c->cfg.shared_expert_gate) {
		snprintf(name, sizeof(name), "model.layers.%u.mlp.shared_expert_gate.weight", L);
		r = load_f32(c, name, 1, H, 0, &l->shared_expert_gate);
		if (r < 0)
			return r;
	}
	snprintf(name, sizeof(name), "model.layers.%u.mlp.%s.gate_proj.weight", L, shared);
	r = load_weight(c, name, Is, H, &l->shared_gate, &l->shared_gate_scale);
	if (r < 0)
		return r;
	snprintf(name, sizeof(name), "model.layers.%u.mlp.%s.up_proj.weight", L, shared);
	r = load_weight(c, name, Is, H, &l->shared_up, &l->shared_up_scale);
	if (r < 0)
		return r;
	snprintf(name, sizeof(name), "model.layers.%u.mlp.%s.down_proj.weight", L, shared);
	return load_weight(c, name, H, Is, &l->shared_down, &l->shared_down_scale);
}

static void fill_model(struct moed_model *m, const struct hf_config *h)
{
	m->num_hidden_layers = h->num_hidden_layers;
	m->hidden_size = h->hidden_size;
	m->intermediate_size = h->moe_intermediate_size;
	m->n_experts = h->n_routed_experts;
	m->top_k = h->num_experts_per_tok;
	m->n_group = h->n_group;
	m->topk_group = h->topk_group;
	m->n_shared_experts = h->n_shared_experts;
	m->shared_intermediate_size = h->shared_intermediate_size;
	m->scoring = h->sigmoid ? MOED_SCORING_SIGMOID : MOED_SCORING_SOFTMAX;
	m->norm_topk_prob = (uint32_t)h->norm_topk_prob;
	m->routed_scaling_factor = h->routed_scaling_factor;
	m->dtype = MOED_DTYPE_F32;      /* until the first expert matrix says */
	m->scale_block_rows = h->block_rows;
	m->scale_block_cols = h->block_cols;
}

static int listed(const struct ckpt *c, uint32_t L)
{
	for (uint32_t i = 0; i < c->n_only; i++)
		if (c->only[i] == L)
			return 1;
	return 0;
}

/* With a layer subset: each listed layer is a MoE layer of the model, and
 * the model records every MoE layer it has (by the config's layout). */
static int check_subset(struct ckpt *c, struct moed_model *m)
{
	uint32_t *all, n = 0;
	int r;

	for (uint32_t i = 0; i < c->n_only; i++) {
		uint32_t L = c->only[i];
		const struct st_file *f;
		char name[256];

		snprintf(name, sizeof(name), "model.layers.%u.%s.gate.weight", L, mlp(c));
		if (L >= c->cfg.num_hidden_layers || (!hfconfig_layer_is_moe(&c->cfg, L) &&
						     !lookup(c, name, &f))) {
			snprintf(c->err, c->errlen, "%s: layers: layer %u is %s", c->dir, L,
				 L >= c->cfg.num_hidden_layers ? "past the model's num_hidden_layers"
							       : "a dense layer");
			return -ENOENT;
		}
	}
	all = malloc(c->cfg.num_hidden_layers * sizeof(*all));
	if (!all)
		return -ENOMEM;
	for (uint32_t L = 0; L < c->cfg.num_hidden_layers; L++)
		if (hfconfig_layer_is_moe(&c->cfg, L) || listed(c, L))
			all[n++] = L;
	r = model_set_moe_layers(m, all, n) ?: model_set_served(m, c->only, c->n_only);
	free(all);
	return r;
}

static int load_layers(struct ckpt *c, struct moed_model *m)
{
	uint32_t n = 0;
	int r;

	r = model_alloc_layers(m, c->cfg.num_hidden_layers);
	if (r < 0)
		return r;
	m->n_layers = 0;
	if (c->only && (r = check_subset(c, m)) < 0)
		return r;
	for (uint32_t L = 0; L < c->cfg.num_hidden_layers; L++) {
		const struct st_file *f;
		char name[256];

		if (c->only && !listed(c, L))
			continue;       /* not served: its tensors are not needed */
		snprintf(name, sizeof(name), "model.layers.%u.%s.gate.weight", L, mlp(c));
		if (!lookup(c, name, &f) && !hfconfig_layer_is_moe(&c->cfg, L))
			continue;       /* a dense layer */
		m->n_layers = n + 1;    /* so model_free releases a partial layer */
		r = load_layer(c, m, L, &m->layers[n]);
		if (r < 0)
			return r;
		n++;
	}
	m->n_layers = n;
	if (n == 0) {
		snprintf(c->err, c->errlen, "%s: no MoE layer (no router weight '*.%s.gate.weight')",
			 c->dir, mlp(c));
		return -ENOENT;
	}
	return 0;
}

int checkpoint_load(const char *dir, uint32_t dtype, const uint32_t *layers, uint32_t n_layers,
		    const struct model_want *want, struct moed_model **ret_model, char *err,
		    size_t errlen)
{
	struct ckpt c = { .dir = dir, .err = err, .errlen = errlen, .want = dtype,
			  .only = layers, .n_only = n_layers, .wanted = want };
	struct moed_model *m = NULL;
	char path[PATH_MAX];
	int r;

	snprintf(path, sizeof(path), "%s/config.json", dir);
	r = hfconfig_load(path, &c.cfg, err, errlen);
	if (r < 0)
		return r;
	r = open_files(&c);
	if (r < 0)
		goto out;
	r = model_new(dir, c.cfg.model_type, &m);
	if (r < 0 || (r = model_set_string(&m->topk_method, c.cfg.topk_method)) < 0)
		goto out;
	fill_model(m, &c.cfg);
	if (dtype)
		m->dtype = dtype;
	m->maps = c.files;      /* from here the model owns the mappings */
	m->n_maps = c.n_files;
	c.m = m;
	m->n_layers = 0;
	r = load_layers(&c, m);
	if (r < 0)
		goto out;
	model_count_bytes(m);
	*ret_model = m;
	m = NULL;
out:
	if (r == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", dir);
	model_free(m);
	ckpt_close(&c);
	return r;
}

int checkpoint_add_experts(struct moed_model *m, const struct model_want *want, char *err,
			   size_t errlen)
{
	struct ckpt c = { .dir = m->source, .err = err, .errlen = errlen, .want = m->dtype };
	struct st_file **maps;
	char path[PATH_MAX];
	int r;

	snprintf(path, sizeof(path), "%s/config.json", m->source);
	r = hfconfig_load(path, &c.cfg, err, errlen);
	if (r < 0)
		return r;
	r = open_files(&c);
	if (r < 0)
		goto out;
	maps = realloc(m->maps, (m->n_maps + c.n_files) * sizeof(*maps));
	if (!maps) {
		r = -ENOMEM;
		goto out;
	}
	/* the new mappings join the model's (its experts may point into them) */
	memcpy(maps + m->n_maps, c.files, c.n_files * sizeof(*maps));
	m->maps = maps;
	m->n_maps += c.n_files;
	c.m = m;        /* the files are the model's now; c.files still finds tensors */
	for (uint32_t i = 0; i < m->n_layers && r == 0; i++) {
		struct moed_layer *l = &m->layers[i];

		for (uint32_t e = 0; e < m->n_experts && r == 0; e++)
			if (!l->expert_gate[e] && model_wants(want, m->n_experts, l->index, e))
				r = load_expert(&c, m, l->index, e, l);
	}
	free(c.files);
	c.files = NULL;
	c.n_files = 0;
	model_count_bytes(m);
out:
	if (r == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", m->source);
	ckpt_close(&c);
	return r;
}
