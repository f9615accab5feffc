/*
 * Parameter parsing for plugins.  Values must parse completely (no trailing
 * text), be finite, and lie within the key's range.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/common/params.h"

static int parse_one(const struct param_spec *s, const char *value)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(value, &end);
	if (errno || end == value || *end != '\0' || !isfinite(v) || v < s->min || v > s->max)
		return -EINVAL;
	if (s->type == PARAM_U32) {
		if (v != floor(v))
			return -EINVAL;
		*(uint32_t *)s->slot = (uint32_t)v;
	} else {
		*(float *)s->slot = (float)v;
	}
	return 0;
}

int params_parse(const struct moed_host *host, const char *plugin, const struct param_spec *spec,
		 size_t n_spec, const struct moed_param *params, size_t n_params)
{
	for (size_t i = 0; i < n_params; i++) {
		size_t j;

		for (j = 0; j < n_spec && strcmp(spec[j].key, params[i].key); j++)
			;
		if (j == n_spec) {
			host->log(MOED_LOG_ERR, plugin, "unknown parameter '%s'", params[i].key);
			return -EINVAL;
		}
		if (parse_one(&spec[j], params[i].value) < 0) {
			host->log(MOED_LOG_ERR, plugin, "parameter '%s' = '%s': want %s in [%g, %g]",
				  params[i].key, params[i].value,
				  spec[j].type == PARAM_U32 ? "an integer" : "a number", spec[j].min,
				  spec[j].max);
			return -EINVAL;
		}
	}
	return 0;
}
