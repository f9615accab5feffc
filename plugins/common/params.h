/*
 * Declared plugin parameters (struct moed_param_decl, ABI 2), one parser for
 * both sides of the boundary: the daemon checks key=value lists against a
 * plugin's declarations before init()/layer_new() (and for --check-config and
 * reload), and plugins fill their typed settings from the same declarations.
 * This file is compiled into the daemon's core library and into the plugins'
 * common library; it uses nothing but libc.
 */
#ifndef MOED_PLUGIN_PARAMS_H
#define MOED_PLUGIN_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "include/moed/plugin.h"

/* "int", "float", "bool", "string", "enum" or "unknown". */
const char *param_type_name(uint32_t type);

/* What d accepts, for messages: "an integer in [1, 1e+09]", "one of a, b". */
void param_decl_describe(const struct moed_param_decl *d, char *buf, size_t len);

/* Parse text as d says: INT, FLOAT, BOOL (0/1) into *ret_num; ENUM: the
 * choice's index into *ret_num.  0, or -EINVAL with the reason in err. */
int param_value_parse(const struct moed_param_decl *d, const char *text, double *ret_num,
		      char *err, size_t errlen);

/* Declaration i of an array whose elements are decl_size bytes (the plugin's
 * sizeof): copied into *tmp, members the plugin's struct lacks zeroed. */
const struct moed_param_decl *param_decl_at(const struct moed_param_decl *decls,
					    size_t decl_size, size_t i,
					    struct moed_param_decl *tmp);

/* Check every key=value against the declarations.  An unknown key: err names it
 * and lists the known ones; a bad value: err gives the key and the range.
 * 0 or -EINVAL.  `who` prefixes the message (the plugin's name). */
int params_check(const char *who, const struct moed_param_decl *decls, size_t n_decls,
		 size_t decl_size, const struct moed_param *params, size_t n_params, char *err,
		 size_t errlen);

/* A plugin's typed setting: slot is uint32_t * for INT (declare min >= 0),
 * BOOL and ENUM (the choice's index), float * for FLOAT, const char ** for
 * STRING (the value text, valid as long as the params list). */
struct param_slot {
	const char *key;
	void *slot;
};

/* Check params against decls (logging the reason through the host) and store
 * each given value in the slot of its key; slots of keys not given keep their
 * defaults.  0, or -EINVAL after logging. */
int params_parse(const struct moed_host *host, const char *plugin,
		 const struct moed_param_decl *decls, size_t n_decls,
		 const struct param_slot *slots, size_t n_slots,
		 const struct moed_param *params, size_t n_params);

#define PARAMS_COUNT(a) (sizeof(a) / sizeof((a)[0]))

#endif
