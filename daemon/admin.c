/*
 * Admin and statistics handlers (router/expert set and show, stats, bias,
 * reload), all on the loop thread; who may call which is the request table's
 * business (dispatch checks it).  A router swap is engine_set_plugin(): it
 * builds the new generation's layer objects first and swaps only when all
 * succeeded, so a failing plugin changes nothing and the error goes back to
 * the client.  A change that succeeded but whose state could not be saved is
 * answered OK with a warning in the message (moectl prints it).  Reply memory
 * is gathered in an arena freed after the reply is packed.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/arena.h"
#include "daemon/engine.h"
#include "daemon/log.h"
#include "daemon/service.h"

static Moed__Param **params_out(struct arena *a, const struct plugin_gen *g, size_t *ret_n)
{
	Moed__Param *items = arena_alloc(a, g->n_params, sizeof(*items));
	Moed__Param **list = arena_alloc(a, g->n_params, sizeof(*list));

	*ret_n = 0;
	if (!items || !list)
		return NULL;
	for (size_t i = 0; i < g->n_params; i++) {
		moed__param__init(&items[i]);
		items[i].key = (char *)g->params[i].key;
		items[i].value = (char *)g->params[i].value;
		list[i] = &items[i];
	}
	*ret_n = g->n_params;
	return list;
}

/* Save the router state; on failure, the warning to send with an OK answer. */
static const char *save_warning(struct service *svc, char *buf, size_t len)
{
	char err[384];

	if (!svc->save_state || svc->save_state(svc, err, sizeof(err)) == 0)
		return NULL;
	log_warn("%s; the change is live but not saved", err);
	snprintf(buf, len, "warning: the router state was not saved: %s", err);
	return buf;
}

static int bindings_reply(struct service *svc, const struct reply_to *to, const char *warning)
{
	struct engine *e = svc->engine;
	struct arena a = { 0 };
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__RouterShowResponse show = MOED__ROUTER_SHOW_RESPONSE__INIT;
	Moed__LayerBinding *items = arena_alloc(&a, e->n_layers, sizeof(*items));
	Moed__LayerBinding **list = arena_alloc(&a, e->n_layers, sizeof(*list));

	if (!items || !list)
		goto oom;
	for (uint32_t i = 0; i < e->n_layers; i++) {
		const struct engine_layer *l = &e->layers[i];
		Moed__LayerBinding *b = &items[i];
		moed__layer_binding__init(b);
		b->layer = l->w->index;
		b->router = l->router->gen->name;
		b->router_generation = l->router->gen->generation;
		b->router_params = params_out(&a, l->router->gen, &b->n_router_params);
		b->expert = l->expert->gen->name;
		b->expert_generation = l->expert->gen->generation;
		b->expert_params = params_out(&a, l->expert->gen, &b->n_expert_params);
		if (l->shadow) {
			b->shadow = l->shadow->gen->name;
			b->has_shadow_generation = b->has_shadow_sample = 1;
			b->shadow_generation = l->shadow->gen->generation;
			b->shadow_sample = l->shadow_sample;
		}
		if ((l->router->gen->n_params && !b->router_params) ||
		    (l->expert->gen->n_params && !b->expert_params))
			goto oom;
		list[i] = b;
	}
	show.n_layers = e->n_layers;
	show.layers = list;
	resp.body_case = MOED__RESPONSE__BODY_BINDINGS;
	resp.bindings = &show;
	resp.message = (char *)warning;
	reply_ok(to, &resp);
	arena_release(&a);
	return 0;
oom:
	reply_error(to, MOED__STATUS__INTERNAL, "out of memory");
	arena_release(&a);
	return 0;
}

static int plugin_set(struct service *svc, struct caller *c, const struct reply_to *to,
		      const Moed__PluginSetRequest *ps, int router)
{
	struct moed_param *params = calloc(ps->n_params ? ps->n_params : 1, sizeof(*params));
	char err[512], warn[512];
	const char *warning = NULL;
	int r;

	if (!params) {
		reply_error(to, MOED__STATUS__INTERNAL, "out of memory");
		return 0;
	}
	for (size_t i = 0; i < ps->n_params; i++) {
		params[i].key = ps->params[i]->key;
		params[i].value = ps->params[i]->value;
	}
	r = engine_set_plugin(svc->engine, router ? MOED_PLUGIN_ROUTER : MOED_PLUGIN_EXPERT,
			      ps->name, params, ps->n_params, ps->has_layer ? (int64_t)ps->layer : -1,
			      err, sizeof(err));
	free(params);
	if (r < 0) {
		log_warn("admin: %s set '%s' by uid %u pid %d refused: %s; keeping the current one",
			 router ? "router" : "expert", ps->name, (unsigned)c->uid, (int)c->pid, err);
		reply_error(to, r == -ENOENT ? MOED__STATUS__NOT_FOUND
					     : MOED__STATUS__FAILED_PRECONDITION, "%s", err);
		return 0;
	}
	log_notice("admin: %s '%s' now serves %s (generation %llu), set by uid %u pid %d",
		   router ? "router" : "expert backend", ps->name,
		   ps->has_layer ? "one layer" : "all MoE layers",
		   (unsigned long long)svc->engine->last_generation, (unsigned)c->uid, (int)c->pid);
	if (router)
		warning = save_warning(svc, warn, sizeof(warn));
	return bindings_reply(svc, to, warning);
}

int handle_router_set(struct service *svc, struct caller *c, const struct reply_to *to,
		      Moed__Request *req)
{
	return plugin_set(svc, c, to, req->router_set, 1);
}

int handle_expert_set(struct service *svc, struct caller *c, const struct reply_to *to,
		      Moed__Request *req)
{
	if (svc->cluster) {
		/* the ranks hold layer objects of the running backend per epoch */
		reply_error(to, MOED__STATUS__FAILED_PRECONDITION,
			    "the experts are spread over the ranks of a cluster: the expert backend "
			    "changes only with a restart of the job");
		return 0;
	}
	return plugin_set(svc, c, to, req->expert_set, 0);
}

int handle_router_shadow(struct service *svc, struct caller *c, const struct reply_to *to,
			 Moed__Request *req)
{
	const Moed__RouterShadowRequest *rs = req->router_shadow;
	int64_t layer = rs->has_layer ? (int64_t)rs->layer : -1;
	float sample = rs->has_sample ? rs->sample : 0.02f;
	struct moed_param *params;
	char err[512];
	int r;

	if (rs->has_off && rs->off) {
		if (engine_shadow_off(svc->engine, layer) < 0) {
			reply_error(to, MOED__STATUS__NOT_FOUND, "layer %lld is not a MoE layer of this model",
				    (long long)layer);
			return 0;
		}
		log_notice("admin: shadow router off on %s, by uid %u pid %d",
			   layer < 0 ? "all MoE layers" : "one layer", (unsigned)c->uid, (int)c->pid);
		return bindings_reply(svc, to, NULL);
	}
	if (!rs->name || !*rs->name) {
		reply_error(to, MOED__STATUS__INVALID_ARGUMENT, "router shadow needs a router name or off");
		return 0;
	}
	if (!(sample >= 0.0f && sample <= 1.0f)) {
		reply_error(to, MOED__STATUS__INVALID_ARGUMENT, "sample %g is not in [0, 1]",
			    (double)sample);
		return 0;
	}
	params = calloc(rs->n_params ? rs->n_params : 1, sizeof(*params));
	if (!params) {
		reply_error(to, MOED__STATUS__INTERNAL, "out of memory");
		return 0;
	}
	for (size_t i = 0; i < rs->n_params; i++) {
		params[i].key = rs->params[i]->key;
		params[i].value = rs->params[i]->value;
	}
	r = engine_set_shadow(svc->engine, rs->name, params, rs->n_params, layer, sample,
			      uv_now(svc->loop), err, sizeof(err));
	free(params);
	if (r < 0) {
		log_warn("admin: shadow router '%s' by uid %u pid %d refused: %s", rs->name,
			 (unsigned)c->uid, (int)c->pid, err);
		reply_error(to, r == -ENOENT ? MOED__STATUS__NOT_FOUND
					     : MOED__STATUS__FAILED_PRECONDITION, "%s", err);
		return 0;
	}
	log_notice("admin: router '%s' (generation %llu) shadows %s, sampling %g of the tokens, set by uid %u pid %d",
		   rs->name, (unsigned long long)svc->engine->last_generation,
		   layer < 0 ? "all MoE layers" : "one layer", (double)sample, (unsigned)c->uid,
		   (int)c->pid);
	return bindings_reply(svc, to, NULL);
}

int handle_router_show(struct service *svc, struct caller *c, const struct reply_to *to,
		       Moed__Request *req)
{
	(void)c;
	(void)req;
	return bindings_reply(svc, to, NULL);
}

static void fill_latency(Moed__Latency *l, const struct hist *h)
{
	moed__latency__init(l);
	l->count = h->count;
	l->p50_us = hist_percentile(h, 0.50);
	l->p90_us = hist_percentile(h, 0.90);
	l->p99_us = hist_percentile(h, 0.99);
}

/* The router's current selection bias into ret (E floats); 0 floats if none. */
static size_t router_bias(const struct engine_layer *l, float *ret, uint32_t *ret_frozen)
{
	const struct moed_router_ops *o = l->router->gen->desc->router;

	*ret_frozen = 0;
	if (o->get_bias && o->get_bias(l->router->obj, ret, ret_frozen) == 0)
		return l->rspec.n_experts;
	return 0;
}

static int shadow_reply(struct arena *a, struct engine_layer *l, uint64_t now,
			Moed__ShadowStats **ret)
{
	Moed__ShadowStats *ss = arena_alloc(a, 1, sizeof(*ss));
	struct shadow_summary sum;

	if (!ss || shadow_stats_summary(l->shadow_stats, now, l->rspec.top_k, &sum) < 0)
		return -ENOMEM;
	moed__shadow_stats__init(ss);
	ss->router = l->shadow->gen->name;
	ss->generation = l->shadow->gen->generation;
	ss->tokens = sum.tokens;
	ss->sampled = sum.sampled;
	ss->overlap = sum.overlap;
	ss->top1_agreement = sum.top1_agreement;
	ss->max_vio = sum.max_vio;
	ss->serving_max_vio = sum.serving_max_vio;
	ss->drift_p50 = sum.drift_p50;
	ss->drift_p99 = sum.drift_p99;
	ss->has_compute_us = 1;
	ss->compute_us = sum.compute_us;
	*ret = ss;
	return 0;
}

static int stats_reply(struct service *svc, const struct reply_to *to,
		       const Moed__StatsRequest *sr, struct arena *a)
{
	struct engine *e = svc->engine;
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__StatsResponse st = MOED__STATS_RESPONSE__INIT;
	Moed__LayerStats **list = arena_alloc(a, e->n_layers, sizeof(*list));
	uint64_t now = uv_now(svc->loop);
	uint32_t E = e->model->n_experts;
	size_t n = 0;

	if (!list)
		return -ENOMEM;
	for (uint32_t i = 0; i < e->n_layers; i++) {
		struct engine_layer *l = &e->layers[i];
		Moed__LayerStats *ls = arena_alloc(a, 1, sizeof(*ls));
		Moed__Latency *lat = arena_alloc(a, 2, sizeof(*lat));
		uint64_t *window = arena_alloc(a, E, sizeof(uint64_t));
		float *bias = arena_alloc(a, E, sizeof(float));
		uint32_t frozen;

		if (sr->has_layer && l->w->index != sr->layer)
			continue;
		if (!ls || !lat || !window || !bias)
			return -ENOMEM;
		moed__layer_stats__init(ls);
		ls->layer = l->w->index;
		ls->n_load = E;
		ls->load = l->stats.total;
		ls->window_tokens = stats_window(&l->stats, now, window);
		ls->n_window_load = E;
		ls->window_load = window;
		ls->max_vio = stats_max_vio(window, E);
		ls->max_vio_total = stats_max_vio(l->stats.total, E);
		ls->n_bias = router_bias(l, bias, &frozen);
		ls->bias = bias;
		ls->bias_frozen = frozen != 0;
		ls->requests = l->stats.requests;
		ls->has_batches = 1;
		ls->batches = l->stats.batches;
		ls->tokens = l->stats.tokens;
		fill_latency(&lat[0], &l->stats.compute);
		fill_latency(&lat[1], &l->stats.request);
		ls->compute = &lat[0];
		ls->request = &lat[1];
		ls->router = l->router->gen->name;
		ls->generation = l->router->gen->generation;
		if (l->shadow && shadow_reply(a, l, now, &ls->shadow) < 0)
			return -ENOMEM;
		list[n++] = ls;
	}
	st.n_layers = n;
	st.layers = list;
	st.uptime_ms = now - svc->start_ms;
	resp.body_case = MOED__RESPONSE__BODY_STATS;
	resp.stats = &st;
	reply_ok(to, &resp);
	return 0;
}

int handle_stats(struct service *svc, struct caller *c, const struct reply_to *to,
		 Moed__Request *req)
{
	struct arena a = { 0 };

	(void)c;
	if (req->stats->has_layer && !engine_layer(svc->engine, req->stats->layer))
		reply_error(to, MOED__STATUS__NOT_FOUND, "layer %u is not a MoE layer of this model",
			    req->stats->layer);
	else if (stats_reply(svc, to, req->stats, &a) < 0)
		reply_error(to, MOED__STATUS__INTERNAL, "out of memory");
	arena_release(&a);
	return 0;
}

static const char *bias_op_name(Moed__BiasOp op)
{
	switch (op) {
	case MOED__BIAS_OP__BIAS_RESET: return "reset";
	case MOED__BIAS_OP__BIAS_FREEZE: return "freeze";
	case MOED__BIAS_OP__BIAS_THAW: return "thaw";
	default: return "show";
	}
}

static int bias_reply(struct service *svc, const struct reply_to *to, const Moed__BiasRequest *br,
		      const char *warning, struct arena *a)
{
	struct engine *e = svc->engine;
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__BiasResponse bias = MOED__BIAS_RESPONSE__INIT;
	Moed__LayerBias **list = arena_alloc(a, e->n_layers, sizeof(*list));
	size_t n = 0;

	if (!list)
		return -ENOMEM;
	for (uint32_t i = 0; i < e->n_layers; i++) {
		const struct engine_layer *l = &e->layers[i];
		Moed__LayerBias *lb = arena_alloc(a, 1, sizeof(*lb));
		float *values = arena_alloc(a, l->rspec.n_experts, sizeof(float));
		uint32_t frozen;

		if (br->has_layer && l->w->index != br->layer)
			continue;
		if (!lb || !values)
			return -ENOMEM;
		moed__layer_bias__init(lb);
		lb->layer = l->w->index;
		lb->router = l->router->gen->name;
		lb->live = binding_bias_live(l->router);
		lb->n_bias = router_bias(l, values, &frozen);
		lb->bias = values;
		lb->frozen = frozen != 0;
		list[n++] = lb;
	}
	bias.n_layers = n;
	bias.layers = list;
	resp.body_case = MOED__RESPONSE__BODY_BIAS;
	resp.bias = &bias;
	resp.message = (char *)warning;
	reply_ok(to, &resp);
	return 0;
}

int handle_bias(struct service *svc, struct caller *c, const struct reply_to *to,
		Moed__Request *req)
{
	const Moed__BiasRequest *br = req->bias;
	static const int ops[] = { [MOED__BIAS_OP__BIAS_RESET] = MOED_BIAS_RESET,
				   [MOED__BIAS_OP__BIAS_FREEZE] = MOED_BIAS_FREEZE,
				   [MOED__BIAS_OP__BIAS_THAW] = MOED_BIAS_THAW };
	char err[512], warn[512];
	const char *warning = NULL;
	struct arena a = { 0 };
	int r;

	if (br->has_layer && !engine_layer(svc->engine, br->layer)) {
		reply_error(to, MOED__STATUS__NOT_FOUND, "layer %u is not a MoE layer of this model",
			    br->layer);
		return 0;
	}
	if (br->op != MOED__BIAS_OP__BIAS_SHOW) {
		if ((unsigned)br->op >= sizeof(ops) / sizeof(ops[0]) || !ops[br->op]) {
			reply_error(to, MOED__STATUS__INVALID_ARGUMENT, "unknown bias operation %d",
				    (int)br->op);
			return 0;
		}
		r = engine_bias_op(svc->engine, br->has_layer ? (int64_t)br->layer : -1, ops[br->op],
				   err, sizeof(err));
		if (r < 0) {
			reply_error(to, MOED__STATUS__FAILED_PRECONDITION, "%s", err);
			return 0;
		}
		log_notice("admin: bias %s on %s by uid %u pid %d", bias_op_name(br->op),
			   br->has_layer ? "one layer" : "all layers", (unsigned)c->uid, (int)c->pid);
		warning = save_warning(svc, warn, sizeof(warn));
	}
	if (bias_reply(svc, to, br, warning, &a) < 0)
		reply_error(to, MOED__STATUS__INTERNAL, "out of memory");
	arena_release(&a);
	return 0;
}

int handle_reload(struct service *svc, struct caller *c, const struct reply_to *to,
		  Moed__Request *req)
{
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__ReloadResponse rr = MOED__RELOAD_RESPONSE__INIT;
	struct reload_result res = { 0 };
	char err[512] = "";

	(void)req;
	if (!svc->reload) {
		reply_error(to, MOED__STATUS__UNIMPLEMENTED, "reload is not available");
		return 0;
	}
	log_notice("admin: reload requested by uid %u pid %d", (unsigned)c->uid, (int)c->pid);
	if (svc->reload(svc, &res, err, sizeof(err)) < 0) {
		reply_error(to, MOED__STATUS__FAILED_PRECONDITION,
			    "reload failed, the previous configuration stays: %s", err);
		return 0;
	}
	rr.n_applied = res.n_applied;
	rr.applied = (char **)res.applied;
	rr.n_needs_restart = res.n_restart;
	rr.needs_restart = (char **)res.restart;
	resp.body_case = MOED__RESPONSE__BODY_RELOAD;
	resp.reload = &rr;
	resp.message = res.warning[0] ? res.warning : NULL;
	reply_ok(to, &resp);
	return 0;
}
