/*
 * Parameter declarations: parsing, range checks and messages.  Values must
 * parse completely (no trailing text); numbers must be finite and within the
 * declared inclusive range; INT values must be whole.  Booleans accept
 * 0/1/true/false/yes/no/on/off.  Every message names the key and says what
 * would have been accepted, because it reaches the operator unchanged.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "plugins/common/params.h"

const char *param_type_name(uint32_t type)
{
	switch (type) {
	case MOED_PARAM_INT: return "int";
	case MOED_PARAM_FLOAT: return "float";
	case MOED_PARAM_BOOL: return "bool";
	case MOED_PARAM_STRING: return "string";
	case MOED_PARAM_ENUM: return "enum";
	default: return "unknown";
	}
}

void param_decl_describe(const struct moed_param_decl *d, char *buf, size_t len)
{
	size_t n = 0;

	switch (d->type) {
	case MOED_PARAM_INT:
	case MOED_PARAM_FLOAT:
		snprintf(buf, len, "%s in [%g, %g]",
			 d->type == MOED_PARAM_INT ? "an integer" : "a number", d->min, d->max);
		return;
	case MOED_PARAM_BOOL:
		snprintf(buf, len, "0 or 1 (true/false, yes/no, on/off)");
		return;
	case MOED_PARAM_ENUM:
		n = (size_t)snprintf(buf, len, "one of ");
		for (size_t i = 0; d->choices && d->choices[i] && n < len; i++)
			n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "", d->choices[i]);
		return;
	default:
		snprintf(buf, len, "text");
	}
}

static int parse_bool(const char *t, double *ret)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };

	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(t, yes[i]) || !strcasecmp(t, no[i])) {
			*ret = !strcasecmp(t, yes[i]);
			return 0;
		}
	}
	return -EINVAL;
}

int param_value_parse(const struct moed_param_decl *d, const char *text, double *ret_num,
		      char *err, size_t errlen)
{
	char want[160];
	double v = 0;
	char *end;
	int r = 0;

	switch (d->type) {
	case MOED_PARAM_INT:
	case MOED_PARAM_FLOAT:
		errno = 0;
		v = strtod(text, &end);
		if (errno || end == text || *end != '\0' || !isfinite(v) || v < d->min ||
		    v > d->max || (d->type == MOED_PARAM_INT && v != floor(v)))
			r = -EINVAL;
		break;
	case MOED_PARAM_BOOL:
		r = parse_bool(text, &v);
		break;
	case MOED_PARAM_ENUM:
		r = -EINVAL;
		for (size_t i = 0; d->choices && d->choices[i]; i++)
			if (!strcmp(text, d->choices[i])) {
				v = (double)i;
				r = 0;
				break;
			}
		break;
	case MOED_PARAM_STRING:
		break;
	default:
		snprintf(err, errlen, "parameter '%s' has an unknown type %u in the plugin's declaration",
			 d->name, d->type);
		return -EINVAL;
	}
	if (r < 0) {
		param_decl_describe(d, want, sizeof(want));
		snprintf(err, errlen, "parameter '%s' = '%s': want %s", d->name, text, want);
		return r;
	}
	*ret_num = v;
	return 0;
}

const struct moed_param_decl *param_decl_at(const struct moed_param_decl *decls,
					    size_t decl_size, size_t i,
					    struct moed_param_decl *tmp)
{
	const char *p = (const char *)decls + i * decl_size;

	if (decl_size == sizeof(*tmp))
		return (const struct moed_param_decl *)p;
	memset(tmp, 0, sizeof(*tmp));
	memcpy(tmp, p, decl_size < sizeof(*tmp) ? decl_size : sizeof(*tmp));
	return tmp;
}

static const struct moed_param_decl *find(const struct moed_param_decl *decls, size_t n,
					  size_t decl_size, const char *key,
					  struct moed_param_decl *tmp)
{
	for (size_t j = 0; j < n; j++) {
		const struct moed_param_decl *d = param_decl_at(decls, decl_size, j, tmp);
		if (d->name && !strcmp(d->name, key))
			return d;
	}
	return NULL;
}

int params_check(const char *who, const struct moed_param_decl *decls, size_t n_decls,
		 size_t decl_size, const struct moed_param *params, size_t n_params, char *err,
		 size_t errlen)
{
	struct moed_param_decl tmp;
	char why[320];
	double v;

	for (size_t i = 0; i < n_params; i++) {
		const struct moed_param_decl *d = find(decls, n_decls, decl_size, params[i].key, &tmp);
		if (!d) {
			size_t n = (size_t)snprintf(err, errlen, "%s: unknown parameter '%s' (known: ",
						    who, params[i].key);
			for (size_t j = 0; j < n_decls && n < errlen; j++)
				n += (size_t)snprintf(err + n, errlen - n, "%s%s", j ? ", " : "",
						      param_decl_at(decls, decl_size, j, &tmp)->name);
			if (n < errlen)
				snprintf(err + n, errlen - n, "%s)", n_decls ? "" : "none");
			return -EINVAL;
		}
		if (param_value_parse(d, params[i].value, &v, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s: %s", who, why);
			return -EINVAL;
		}
	}
	return 0;
}

int params_parse(const struct moed_host *host, const char *plugin,
		 const struct moed_param_decl *decls, size_t n_decls,
		 const struct param_slot *slots, size_t n_slots,
		 const struct moed_param *params, size_t n_params)
{
	struct moed_param_decl tmp;
	char err[512];
	double v;

	if (params_check(plugin, decls, n_decls, sizeof(*decls), params, n_params, err,
			 sizeof(err)) < 0) {
		/* the host prefixes the plugin's name itself */
		host->log(MOED_LOG_ERR, plugin, "%s", err + strlen(plugin) + 2);
		return -EINVAL;
	}
	for (size_t i = 0; i < n_params; i++) {
		const struct moed_param_decl *d = find(decls, n_decls, sizeof(*decls), params[i].key,
						       &tmp);
		for (size_t s = 0; s < n_slots; s++) {
			if (strcmp(slots[s].key, params[i].key))
				continue;
			param_value_parse(d, params[i].value, &v, err, sizeof(err));
			if (d->type == MOED_PARAM_FLOAT)
				*(float *)slots[s].slot = (float)v;
			else if (d->type == MOED_PARAM_STRING)
				*(const char **)slots[s].slot = params[i].value;
			else
				*(uint32_t *)slots[s].slot = (uint32_t)v;
		}
	}
	return 0;
}
