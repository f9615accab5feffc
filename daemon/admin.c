/*
 * Admin and statistics handlers, all on the loop thread.  A router swap is
 * engine_set_plugin(): it builds the new generation's layer objects first and
 * swaps only when all succeeded, so a failing plugin changes nothing and the
 * error goes back to the client.  Reply memory is gathered in one arena that is
 * freed after the reply is packed.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/admin.h"
#include "daemon/engine.h"
#include "daemon/log.h"
#include "daemon/server.h"
#include "daemon/session.h"
#include "daemon/state.h"

struct arena {
	void **ptrs;
	size_t n, cap;
};

static void *arena_alloc(struct arena *a, size_t n, size_t size)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 32;
		void **p = realloc(a->ptrs, cap * sizeof(*p));
		if (!p)
			return NULL;
		a->ptrs = p;
		a->cap = cap;
	}
	void *q = calloc(n ? n : 1, size);
	if (q)
		a->ptrs[a->n++] = q;
	return q;
}

static void arena_release(struct arena *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->ptrs[i]);
	free(a->ptrs);
}

int admin_peer_is_admin(const struct session *s)
{
	const char *group = s->srv->cfg->admin_group;
	struct passwd *pw;
	struct group *gr;
	gid_t groups[256];
	int n = 256;

	if (s->admin_socket || s->uid == 0 || s->uid == geteuid())
		return 1;
	if (!group || !(gr = getgrnam(group)) || !(pw = getpwuid(s->uid)))
		return 0;
	if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0)
		return 0;
	for (int i = 0; i < n; i++)
		if (groups[i] == gr->gr_gid)
			return 1;
	return 0;
}

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

static int bindings_reply(struct session *s, uint64_t id, struct arena *a)
{
	struct engine *e = s->srv->engine;
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__RouterShowResponse show = MOED__ROUTER_SHOW_RESPONSE__INIT;
	Moed__LayerBinding *items = arena_alloc(a, e->n_layers, sizeof(*items));
	Moed__LayerBinding **list = arena_alloc(a, e->n_layers, sizeof(*list));

	if (!items || !list)
		return -ENOMEM;
	for (uint32_t i = 0; i < e->n_layers; i++) {
		const struct engine_layer *l = &e->layers[i];
		Moed__LayerBinding *b = &items[i];
		moed__layer_binding__init(b);
		b->layer = l->w->index;
		b->router = l->router->gen->name;
		b->router_generation = l->router->gen->generation;
		b->router_params = params_out(a, l->router->gen, &b->n_router_params);
		b->expert = l->expert->gen->name;
		b->expert_generation = l->expert->gen->generation;
		b->expert_params = params_out(a, l->expert->gen, &b->n_expert_params);
		list[i] = b;
	}
	show.n_layers = e->n_layers;
	show.layers = list;
	resp.id = id;
	resp.body_case = MOED__RESPONSE__BODY_BINDINGS;
	resp.bindings = &show;
	session_send(s, &resp);
	return 0;
}

static void save_state(struct server *srv)
{
	char err[512];

	if (state_save(srv->engine, srv->cfg->state_dir, err, sizeof(err)) < 0)
		log_warn("%s", err);
}

static int do_plugin_set(struct session *s, const Moed__Request *req, struct arena *a)
{
	int router = req->body_case == MOED__REQUEST__BODY_ROUTER_SET;
	const Moed__PluginSetRequest *ps = router ? req->router_set : req->expert_set;
	struct moed_param *params = arena_alloc(a, ps->n_params, sizeof(*params));
	char err[512];
	int r;

	if (!params)
		return -ENOMEM;
	for (size_t i = 0; i < ps->n_params; i++) {
		params[i].key = ps->params[i]->key;
		params[i].value = ps->params[i]->value;
	}
	r = engine_set_plugin(s->srv->engine, router ? MOED_PLUGIN_ROUTER : MOED_PLUGIN_EXPERT,
			      ps->name, params, ps->n_params, ps->has_layer ? (int64_t)ps->layer : -1, err,
			      sizeof(err));
	if (r < 0) {
		log_warn("admin: %s set '%s' by uid %u pid %d refused: %s; keeping the current one",
			 router ? "router" : "expert", ps->name, (unsigned)s->uid, (int)s->pid, err);
		session_send_error(s, req->id,
				   r == -ENOENT ? MOED__STATUS__NOT_FOUND
						: MOED__STATUS__FAILED_PRECONDITION, "%s", err);
		return 0;
	}
	log_notice("admin: %s '%s' now serves %s (generation %llu), set by uid %u pid %d",
		   router ? "router" : "expert backend", ps->name,
		   ps->has_layer ? "one layer" : "all MoE layers",
		   (unsigned long long)s->srv->engine->last_generation, (unsigned)s->uid, (int)s->pid);
	if (router)
		save_state(s->srv);
	return bindings_reply(s, req->id, a);
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

static int do_stats(struct session *s, const Moed__Request *req, struct arena *a)
{
	struct server *srv = s->srv;
	struct engine *e = srv->engine;
	const Moed__StatsRequest *sr = req->stats;
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__StatsResponse st = MOED__STATS_RESPONSE__INIT;
	Moed__LayerStats **list = arena_alloc(a, e->n_layers, sizeof(*list));
	uint64_t now = uv_now(srv->loop);
	uint32_t E = e->model->n_experts;
	size_t n = 0;

	if (!list)
		return -ENOMEM;
	if (sr->has_layer && !engine_layer(e, sr->layer)) {
		session_send_error(s, req->id, MOED__STATUS__NOT_FOUND,
				   "layer %u is not a MoE layer of this model", sr->layer);
		return 0;
	}
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
		list[n++] = ls;
	}
	st.n_layers = n;
	st.layers = list;
	st.uptime_ms = now - srv->start_ms;
	resp.id = req->id;
	resp.body_case = MOED__RESPONSE__BODY_STATS;
	resp.stats = &st;
	session_send(s, &resp);
	return 0;
}

static int do_bias(struct session *s, const Moed__Request *req, struct arena *a)
{
	struct engine *e = s->srv->engine;
	const Moed__BiasRequest *br = req->bias;
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__BiasResponse bias = MOED__BIAS_RESPONSE__INIT;
	Moed__LayerBias **list = arena_alloc(a, e->n_layers, sizeof(*list));
	static const int ops[] = { [MOED__BIAS_OP__BIAS_RESET] = MOED_BIAS_RESET,
				   [MOED__BIAS_OP__BIAS_FREEZE] = MOED_BIAS_FREEZE,
				   [MOED__BIAS_OP__BIAS_THAW] = MOED_BIAS_THAW };
	char err[512];
	size_t n = 0;
	int r;

	if (!list)
		return -ENOMEM;
	if (br->has_layer && !engine_layer(e, br->layer)) {
		session_send_error(s, req->id, MOED__STATUS__NOT_FOUND,
				   "layer %u is not a MoE layer of this model", br->layer);
		return 0;
	}
	if (br->op != MOED__BIAS_OP__BIAS_SHOW) {
		if ((unsigned)br->op >= sizeof(ops) / sizeof(ops[0])) {
			session_send_error(s, req->id, MOED__STATUS__INVALID_ARGUMENT,
					   "unknown bias operation %d", (int)br->op);
			return 0;
		}
		r = engine_bias_op(e, br->has_layer ? (int64_t)br->layer : -1, ops[br->op], err, sizeof(err));
		if (r < 0) {
			session_send_error(s, req->id, MOED__STATUS__FAILED_PRECONDITION, "%s", err);
			return 0;
		}
		log_notice("admin: bias %s on %s by uid %u pid %d",
			   br->op == MOED__BIAS_OP__BIAS_RESET ? "reset"
			   : br->op == MOED__BIAS_OP__BIAS_FREEZE ? "freeze" : "thaw",
			   br->has_layer ? "one layer" : "all layers", (unsigned)s->uid, (int)s->pid);
		save_state(s->srv);
	}
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
	resp.id = req->id;
	resp.body_case = MOED__RESPONSE__BODY_BIAS;
	resp.bias = &bias;
	session_send(s, &resp);
	return 0;
}

static int do_reload(struct session *s, const Moed__Request *req, struct arena *a)
{
	struct server *srv = s->srv;
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__ReloadResponse rr = MOED__RELOAD_RESPONSE__INIT;
	struct reload_result res = { 0 };
	char err[512] = "";

	if (!srv->reload) {
		session_send_error(s, req->id, MOED__STATUS__UNIMPLEMENTED, "reload is not available");
		return 0;
	}
	if (srv->reload(srv, &res, err, sizeof(err)) < 0) {
		session_send_error(s, req->id, MOED__STATUS__FAILED_PRECONDITION,
				   "reload failed, the previous configuration stays: %s", err);
		return 0;
	}
	rr.n_applied = res.n_applied;
	rr.applied = (char **)res.applied;
	rr.n_needs_restart = res.n_restart;
	rr.needs_restart = (char **)res.restart;
	resp.id = req->id;
	resp.body_case = MOED__RESPONSE__BODY_RELOAD;
	resp.reload = &rr;
	session_send(s, &resp);
	return 0;
}

static int needs_admin(const Moed__Request *req)
{
	switch (req->body_case) {
	case MOED__REQUEST__BODY_ROUTER_SET:
	case MOED__REQUEST__BODY_EXPERT_SET:
	case MOED__REQUEST__BODY_RELOAD:
		return 1;
	case MOED__REQUEST__BODY_BIAS:
		return req->bias->op != MOED__BIAS_OP__BIAS_SHOW;
	default:
		return 0;
	}
}

void admin_handle(struct session *s, const Moed__Request *req)
{
	struct arena a = { 0 };
	int r;

	if (needs_admin(req) && !admin_peer_is_admin(s)) {
		log_warn("admin: request %d from uid %u pid %d denied: not an admin peer",
			 (int)req->body_case, (unsigned)s->uid, (int)s->pid);
		session_send_error(s, req->id, MOED__STATUS__PERMISSION_DENIED,
				   "this operation needs uid 0 or membership of admin_group");
		return;
	}
	switch (req->body_case) {
	case MOED__REQUEST__BODY_ROUTER_SET:
	case MOED__REQUEST__BODY_EXPERT_SET:
		r = do_plugin_set(s, req, &a);
		break;
	case MOED__REQUEST__BODY_ROUTER_SHOW:
		r = bindings_reply(s, req->id, &a);
		break;
	case MOED__REQUEST__BODY_STATS:
		r = do_stats(s, req, &a);
		break;
	case MOED__REQUEST__BODY_BIAS:
		r = do_bias(s, req, &a);
		break;
	default:
		r = do_reload(s, req, &a);
		break;
	}
	if (r < 0)
		session_send_error(s, req->id, MOED__STATUS__INTERNAL, "out of memory");
	arena_release(&a);
}
