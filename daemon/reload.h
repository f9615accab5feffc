/*
 * Live reload: compare a freshly read configuration with the running one, apply
 * what can change while serving (router and its parameters, expert backend and
 * its parameters, [limits], log level, admin group, statistics-free keys) and
 * list what needs a restart (socket, plugin and state directories, model,
 * workers).  The plugin swaps go first; if one fails nothing is changed.
 */
#ifndef MOED_RELOAD_H
#define MOED_RELOAD_H

#include <stddef.h>

#include "daemon/conf.h"
#include "daemon/server.h"

struct engine;

/* On success `cur` holds the applied values of `next`; next is left to the caller. */
int reload_apply(struct moed_config *cur, struct moed_config *next, struct engine *e,
		 struct reload_result *res, char *err, size_t errlen);

#endif
