/*
 * model_load(): pick the loader by the path's form ("synthetic:NAME" or a
 * checkpoint directory), then hold the expert weights in the asked dtype.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/checkpoint.h"
#include "daemon/dtype.h"
#include "daemon/hfconfig.h"
#include "daemon/conf.h"
#include "daemon/model_load.h"
#include "daemon/synthetic.h"

int model_parse_layers(const char *text, uint32_t **ret_layers, uint32_t *ret_n, char *err,
		       size_t errlen)
{
	uint8_t *seen = calloc(HF_MAX_LAYERS, 1);
	const char *p = text;
	uint32_t *out, n = 0;

	if (!seen)
		return -ENOMEM;
	while (*p) {
		char *end;
		unsigned long a, b;

		if (*p < '0' || *p > '9')
			goto bad;
		a = strtoul(p, &end, 10);
		b = a;
		if (*end == '-') {
			if (end[1] < '0' || end[1] > '9')
				goto bad;
			b = strtoul(end + 1, &end, 10);
		}
		if (a > b || b >= HF_MAX_LAYERS || (*end && *end != ','))
			goto bad;
		for (unsigned long L = a; L <= b; L++)
			n += !seen[L], seen[L] = 1;
		p = *end ? end + 1 : end;
		if (*end && !*p)
			goto bad;
	}
	if (!n)
		goto bad;
	out = malloc(n * sizeof(*out));
	if (!out) {
		free(seen);
		return -ENOMEM;
	}
	n = 0;
	for (uint32_t L = 0; L < HF_MAX_LAYERS; L++)
		if (seen[L])
			out[n++] = L;
	free(seen);
	*ret_layers = out;
	*ret_n = n;
	return 0;
bad:
	free(seen);
	snprintf(err, errlen, "layers '%s': want layer indices and ranges below %u, e.g. 1-3,7",
		 text, HF_MAX_LAYERS);
	return -EINVAL;
}

/* Keep only the listed layers of a generated model (synthetic.c makes them all). */
static int keep_layers(struct moed_model *m, const struct model_load_opts *o, const char *path,
		       char *err, size_t errlen)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < o->n_layers; i++)
		if (!model_layer(m, o->layers[i])) {
			snprintf(err, errlen, "%s: layer %u is not a MoE layer of the model", path,
				 o->layers[i]);
			return -ENOENT;
		}
	uint32_t *all = malloc((m->n_layers ? m->n_layers : 1) * sizeof(*all));

	if (!all)
		return -ENOMEM;
	for (uint32_t i = 0; i < m->n_layers; i++)
		all[i] = m->layers[i].index;
	if (model_set_moe_layers(m, all, m->n_layers) < 0) {
		free(all);
		return -ENOMEM;
	}
	free(all);
	for (uint32_t i = 0; i < m->n_layers; i++) {
		int keep = 0;

		for (uint32_t j = 0; j < o->n_layers; j++)
			keep |= o->layers[j] == m->layers[i].index;
		if (keep) {
			struct moed_layer t = m->layers[n];
			m->layers[n++] = m->layers[i];
			m->layers[i] = t;
		}
	}
	model_drop_layers(m, n);
	return model_set_served(m, o->layers, o->n_layers);
}

int model_load_with(const char *path, const struct model_load_opts *o,
		    struct moed_model **ret_model, char *err, size_t errlen)
{
	uint32_t dtype = o->dtype;
	int r;

	if (dtype && dtype != MOED_DTYPE_F32 && dtype != MOED_DTYPE_BF16 &&
	    dtype != MOED_DTYPE_F8_E4M3)
		return -EINVAL;
	if (strcmp(path, "synthetic") == 0)
		r = synthetic_load("", o->want, ret_model, err, errlen);
	else if (strncmp(path, "synthetic:", 10) == 0)
		r = synthetic_load(path + 10, o->want, ret_model, err, errlen);
	else
		return checkpoint_load(path, dtype, o->layers, o->n_layers, o->want, ret_model, err,
				       errlen);
	if (r == 0 && o->layers && (r = keep_layers(*ret_model, o, path, err, errlen)) < 0) {
		model_free(*ret_model);
		*ret_model = NULL;
		return r;
	}
	if (r < 0 || !dtype)
		return r;
	r = model_set_expert_dtype(*ret_model, dtype);
	if (r < 0) {
		if (r == -EINVAL)
			snprintf(err, errlen, "%s: expert weights cannot be held as %s (moed does not quantise to FP8, nor dequantise a generated model)",
				 path, dtype_name(dtype));
		else
			snprintf(err, errlen, "%s: out of memory converting the expert weights", path);
		model_free(*ret_model);
		*ret_model = NULL;
	}
	return r;
}

uint32_t model_weights_dtype(const char *weights)
{
	return !weights ? 0
	       : !strcmp(weights, "bf16") ? MOED_DTYPE_BF16
	       : !strcmp(weights, "fp8") ? MOED_DTYPE_F8_E4M3 : MOED_DTYPE_F32;
}

int model_load_config(const struct moed_config *cfg, const struct model_want *want,
		      struct moed_model **ret_model, char *err, size_t errlen)
{
	struct model_load_opts opts = { .dtype = model_weights_dtype(cfg->expert_weights),
					.want = want };
	int r;

	if (cfg->model_layers &&
	    (r = model_parse_layers(cfg->model_layers, &opts.layers, &opts.n_layers, err,
				    errlen)) < 0)
		return r;
	r = model_load_with(cfg->model_path ? cfg->model_path : "synthetic:S0", &opts, ret_model,
			    err, errlen);
	free(opts.layers);
	return r;
}

int model_load_experts(struct moed_model *m, const struct model_want *want, char *err,
		       size_t errlen)
{
	if (strncmp(m->source, "synthetic:", 10) == 0)
		return synthetic_add_experts(m, want, err, errlen);
	return checkpoint_add_experts(m, want, err, errlen);
}

int model_load_as(const char *path, uint32_t dtype, struct moed_model **ret_model, char *err,
		  size_t errlen)
{
	struct model_load_opts o = { .dtype = dtype };

	return model_load_with(path, &o, ret_model, err, errlen);
}

int model_load(const char *path, struct moed_model **ret_model, char *err, size_t errlen)
{
	return model_load_as(path, 0, ret_model, err, errlen);
}


int model_default_router_of(const char *path, const char **ret, char *err, size_t errlen)
{
	char file[4096];
	struct hf_config c;
	int r;

	if (!path || strncmp(path, "synthetic", 9) == 0) {
		*ret = "sigmoid-norm";          /* every synthetic model is DeepSeek-V3 shaped */
		return 0;
	}
	snprintf(file, sizeof(file), "%s/config.json", path);
	r = hfconfig_load(file, &c, err, errlen);
	if (r < 0)
		return r;
	*ret = c.sigmoid ? "sigmoid-norm" : "softmax-topk";
	return 0;
}
