/*
 * Reload.  Differences are found field by field; the router is re-bound when its
 * name or any parameter changed (a new generation, as with `moectl router set`),
 * likewise the expert backend.  Keys that only take effect at start are reported,
 * not applied, so the running daemon keeps a consistent set.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine.h"
#include "daemon/log.h"
#include "daemon/reload.h"

static int str_differs(const char *a, const char *b)
{
	if (!a || !b)
		return a != b;
	return strcmp(a, b) != 0;
}

static int params_differ(const struct config_params *a, const struct config_params *b)
{
	if (a->n != b->n)
		return 1;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->p[i].key, b->p[i].key) || strcmp(a->p[i].value, b->p[i].value))
			return 1;
	return 0;
}

static void note(const char **list, size_t *n, const char *what)
{
	if (*n < 16)
		list[(*n)++] = what;
}

static void swap_ptr(char **a, char **b)
{
	char *t = *a;
	*a = *b;
	*b = t;
}

int reload_apply(struct moed_config *cur, struct moed_config *next, struct engine *e,
		 struct reload_result *res, char *err, size_t errlen)
{
	int router = str_differs(cur->router, next->router) ||
		     params_differ(&cur->router_params, &next->router_params);
	int expert = str_differs(cur->expert, next->expert) ||
		     params_differ(&cur->expert_params, &next->expert_params);
	int r;

	memset(res, 0, sizeof(*res));
	if (router) {
		const char *name = next->router ? next->router : model_default_router(e->model);
		r = engine_set_plugin(e, MOED_PLUGIN_ROUTER, name, next->router_params.p,
				      next->router_params.n, -1, err, errlen);
		if (r < 0)
			return r;
		note(res->applied, &res->n_applied, "router");
	}
	if (expert) {
		r = engine_set_plugin(e, MOED_PLUGIN_EXPERT, next->expert, next->expert_params.p,
				      next->expert_params.n, -1, err, errlen);
		if (r < 0)
			return r;       /* the router change (if any) stays: it succeeded */
		note(res->applied, &res->n_applied, "expert");
	}
	if (router) {
		swap_ptr(&cur->router, &next->router);
		struct config_params t = cur->router_params;
		cur->router_params = next->router_params;
		next->router_params = t;
	}
	if (expert) {
		swap_ptr(&cur->expert, &next->expert);
		struct config_params t = cur->expert_params;
		cur->expert_params = next->expert_params;
		next->expert_params = t;
	}
	if (cur->log_level != next->log_level) {
		cur->log_level = next->log_level;
		log_set_level(cur->log_level);
		note(res->applied, &res->n_applied, "log_level");
	}
	if (str_differs(cur->admin_group, next->admin_group)) {
		swap_ptr(&cur->admin_group, &next->admin_group);
		note(res->applied, &res->n_applied, "admin_group");
	}
	if (cur->max_frame_bytes != next->max_frame_bytes ||
	    cur->max_connections != next->max_connections ||
	    cur->max_inflight_per_conn != next->max_inflight_per_conn ||
	    cur->queue_depth != next->queue_depth ||
	    cur->max_tokens_per_request != next->max_tokens_per_request ||
	    cur->shutdown_timeout_ms != next->shutdown_timeout_ms ||
	    cur->state_save_interval_s != next->state_save_interval_s ||
	    cur->idle_timeout_ms != next->idle_timeout_ms ||
	    cur->frame_timeout_ms != next->frame_timeout_ms ||
	    cur->write_high_water != next->write_high_water ||
	    cur->write_hard_cap != next->write_hard_cap ||
	    cur->max_batch_tokens != next->max_batch_tokens ||
	    cur->max_queued_tokens != next->max_queued_tokens ||
	    cur->coalesce_window_us != next->coalesce_window_us ||
	    cur->max_running_batches != next->max_running_batches) {
		cur->max_frame_bytes = next->max_frame_bytes;
		cur->max_connections = next->max_connections;
		cur->max_inflight_per_conn = next->max_inflight_per_conn;
		cur->max_tokens_per_request = next->max_tokens_per_request;
		cur->shutdown_timeout_ms = next->shutdown_timeout_ms;
		cur->state_save_interval_s = next->state_save_interval_s;
		cur->idle_timeout_ms = next->idle_timeout_ms;
		cur->frame_timeout_ms = next->frame_timeout_ms;
		cur->write_high_water = next->write_high_water;
		cur->write_hard_cap = next->write_hard_cap;
		cur->max_batch_tokens = next->max_batch_tokens;
		cur->max_queued_tokens = next->max_queued_tokens;
		cur->coalesce_window_us = next->coalesce_window_us;
		cur->max_running_batches = next->max_running_batches;
		note(res->applied, &res->n_applied, "limits");
		if (cur->queue_depth != next->queue_depth)
			note(res->restart, &res->n_restart, "queue_depth");
	}
	if (str_differs(cur->socket_path, next->socket_path))
		note(res->restart, &res->n_restart, "socket");
	if (str_differs(cur->admin_socket, next->admin_socket))
		note(res->restart, &res->n_restart, "admin_socket");
	if (str_differs(cur->plugin_dir, next->plugin_dir))
		note(res->restart, &res->n_restart, "plugin_dir");
	if (str_differs(cur->state_dir, next->state_dir))
		note(res->restart, &res->n_restart, "state_dir");
	if (str_differs(cur->model_path, next->model_path))
		note(res->restart, &res->n_restart, "model");
	if (str_differs(cur->expert_weights, next->expert_weights))
		note(res->restart, &res->n_restart, "expert weights");
	if (cur->workers != next->workers)
		note(res->restart, &res->n_restart, "workers");
	if (cur->socket_mode != next->socket_mode || str_differs(cur->socket_group, next->socket_group))
		note(res->restart, &res->n_restart, "socket_mode/socket_group");
	if (cur->stats_window_s != next->stats_window_s)
		note(res->restart, &res->n_restart, "stats_window_s");
	return 0;
}
