/*
 * model_load(): pick the loader by the path's form ("synthetic:NAME" or a
 * checkpoint directory), then hold the expert weights in the asked dtype.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/checkpoint.h"
#include "daemon/dtype.h"
#include "daemon/hfconfig.h"
#include "daemon/model_load.h"
#include "daemon/synthetic.h"

int model_load_as(const char *path, uint32_t dtype, struct moed_model **ret_model, char *err,
		  size_t errlen)
{
	int r;

	if (dtype && dtype != MOED_DTYPE_F32 && dtype != MOED_DTYPE_BF16 &&
	    dtype != MOED_DTYPE_F8_E4M3)
		return -EINVAL;
	if (strcmp(path, "synthetic") == 0)
		r = synthetic_load("", ret_model, err, errlen);
	else if (strncmp(path, "synthetic:", 10) == 0)
		r = synthetic_load(path + 10, ret_model, err, errlen);
	else
		return checkpoint_load(path, dtype, ret_model, err, errlen);
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
