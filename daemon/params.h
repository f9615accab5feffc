/*
 * Plugin parameter lists (key=value pairs, include/moed/plugin.h) compared as
 * sets: the order the file or the command line gave them in does not matter.
 */
#ifndef MOED_PARAMS_H
#define MOED_PARAMS_H

#include <stddef.h>
#include <string.h>

#include "include/moed/plugin.h"

static inline int moed_params_equal(const struct moed_param *a, size_t na,
				    const struct moed_param *b, size_t nb)
{
	if (na != nb)
		return 0;
	for (size_t i = 0; i < na; i++) {
		size_t j = 0;
		while (j < nb && strcmp(a[i].key, b[j].key))
			j++;
		if (j == nb || strcmp(a[i].value, b[j].value))
			return 0;
	}
	return 1;
}

#endif
