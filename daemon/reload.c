/*
 * Reload planning and commit, driven by the config table: reload_plan() walks
 * the rows, compares each slot of the two configs and sorts the differences by
 * the row's policy into two bit sets and two name lists; plugin parameters are
 * compared as sets and mark their binding for a new generation.
 * reload_commit() follows the plan and nothing else, so whatever was planned is
 * exactly what is applied.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/reload.h"

int reload_plan(const struct moed_config *cur, const struct moed_config *next,
		struct reload_plan *ret)
{
	struct reload_plan p;
	const struct config_key *router = config_key_find("router", "plugin");
	const struct config_key *expert = config_key_find("expert", "plugin");

	memset(&p, 0, sizeof(p));
	for (size_t i = 0; i < config_key_count(); i++) {
		const struct config_key *k = config_key_at(i);

		if (config_key_equal(k, cur, next))
			continue;
		if (k->policy == CONFIG_LIVE) {
			p.live_rows |= 1ull << i;
			p.live[p.n_live++] = k->full;
		} else {
			p.restart_rows |= 1ull << i;
			p.restart[p.n_restart++] = k->full;
		}
	}
	p.router_params = !config_params_equal(&cur->router_params, &next->router_params);
	p.expert_params = !config_params_equal(&cur->expert_params, &next->expert_params);
	if (p.router_params)
		p.live[p.n_live++] = "router.params";
	if (p.expert_params)
		p.live[p.n_live++] = "expert.params";
	p.rebind_router = p.router_params || !config_key_equal(router, cur, next);
	p.rebind_expert = p.expert_params || !config_key_equal(expert, cur, next);
	*ret = p;
	return 0;
}

int reload_plan_changed(const struct reload_plan *p, const char *section, const char *key)
{
	const struct config_key *k = config_key_find(section, key);

	if (k) {
		size_t i = (size_t)(k - config_key_at(0));
		return !!((p->live_rows | p->restart_rows) & (1ull << i));
	}
	if (strcmp(section, "router") == 0)
		return p->router_params;
	if (strcmp(section, "expert") == 0)
		return p->expert_params;
	return 0;
}

static void swap_params(struct config_params *a, struct config_params *b)
{
	struct config_params t = *a;

	*a = *b;
	*b = t;
}

void reload_commit(struct moed_config *cur, struct moed_config *next,
		   const struct reload_plan *plan)
{
	for (size_t i = 0; i < config_key_count(); i++)
		if (plan->live_rows & (1ull << i))
			config_key_move(config_key_at(i), cur, next);
	if (plan->rebind_router)
		swap_params(&cur->router_params, &next->router_params);
	if (plan->rebind_expert)
		swap_params(&cur->expert_params, &next->expert_params);
	if (reload_plan_changed(plan, "daemon", "log_level"))
		log_set_level(cur->log_level);
}

