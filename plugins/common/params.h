/*
 * Typed access to a plugin's key=value parameters.  A plugin declares the keys
 * it knows in a table; params_parse() fills the typed slots and rejects unknown
 * keys and malformed values, logging the key through the host.
 */
#ifndef MOED_PLUGIN_PARAMS_H
#define MOED_PLUGIN_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "include/moed/plugin.h"

enum param_type { PARAM_FLOAT, PARAM_U32 };

struct param_spec {
	const char *key;
	enum param_type type;
	void *slot;             /* float * or uint32_t * */
	double min, max;
};

/* 0, or -EINVAL after logging which key was wrong and why. */
int params_parse(const struct moed_host *host, const char *plugin, const struct param_spec *spec,
		 size_t n_spec, const struct moed_param *params, size_t n_params);

#endif
