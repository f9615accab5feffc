/*
 * Reload planning.  reload_plan() compares the running configuration with a
 * freshly read one, row by row of the config table (daemon/conf.h), and says
 * what changed: LIVE keys a reload applies, RESTART keys it only reports, and
 * whether the router or the expert binding needs a new plugin generation (its
 * plugin name or any of its parameters changed).  It is a pure function of the
 * two configs.  The executor (daemon/main.c) prepares the new generations the
 * plan asks for and, only when everything succeeded, calls reload_commit() and
 * swaps the plugins; otherwise nothing changes and the plan is dropped.
 */
#ifndef MOED_RELOAD_H
#define MOED_RELOAD_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/conf.h"

#define RELOAD_MAX_CHANGES (CONFIG_MAX_KEYS + 2)

struct reload_plan {
	uint64_t live_rows;     /* bit i: row config_key_at(i) changed and is LIVE */
	uint64_t restart_rows;  /* bit i: row i changed and is RESTART */
	int router_params;      /* the [router] plugin parameters differ (as a set) */
	int expert_params;      /* the [expert] plugin parameters differ */
	int rebind_router;      /* router.plugin or router_params changed: new generation */
	int rebind_expert;      /* expert.plugin or expert_params changed */
	/* Names for the reply and the log, static strings ("limits.max_connections",
	 * "router.params", "expert.params"); valid for the life of the process. */
	const char *live[RELOAD_MAX_CHANGES];
	size_t n_live;
	const char *restart[RELOAD_MAX_CHANGES];
	size_t n_restart;
};

/* Fill *ret with what differs between cur and next; reads both, changes
 * neither.  Always 0 today (int so that a future check can fail with -errno). */
int reload_plan(const struct moed_config *cur, const struct moed_config *next,
		struct reload_plan *ret);

/* Whether [section] key changed (LIVE or RESTART).  A key of [router] or
 * [expert] that is not a row is a plugin parameter: true when any parameter of
 * that section changed. */
int reload_plan_changed(const struct reload_plan *p, const char *section, const char *key);

/* Move every changed LIVE value of the plan from next into cur (strings by
 * pointer swap, so config_release(next) frees the old ones), and the plugin
 * parameters of a rebound router/expert.  RESTART keys stay as they are in cur.
 * Applies a changed log level (log_set_level).  Call it only after every
 * generation the plan asks for was prepared. */
void reload_commit(struct moed_config *cur, struct moed_config *next,
		   const struct reload_plan *plan);

#endif
