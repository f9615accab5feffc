/*
 * The descriptive handlers: status, model, plugins.  Loaded plugins are the
 * distinct generations bound to any layer (a swap of one layer makes two
 * generations of a router live at once).  Available plugins come from
 * scanning the plugin directory, which reads files and may dlopen the ones
 * that pass the loader's ownership and permission checks (never the others):
 * that runs on libuv's thread pool, never on the loop, and the loader caches
 * what it learnt per file identity, so a client looping `moectl plugins`
 * cannot stall other clients.  Reply arrays live in an arena.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/arena.h"
#include "daemon/batch.h"
#include "daemon/conf.h"
#include "daemon/dtype.h"
#include "daemon/engine.h"
#include "daemon/loader.h"
#include "daemon/pool.h"
#include "daemon/service.h"

static int model_info(const struct engine *e, Moed__ModelInfo *ret, struct arena *a)
{
	const struct moed_model *m = e->model;
	uint32_t *layers = arena_alloc(a, m->n_layers, sizeof(uint32_t));

	if (!layers)
		return -ENOMEM;
	moed__model_info__init(ret);
	for (uint32_t i = 0; i < m->n_layers; i++)
		layers[i] = m->layers[i].index;
	/* the layers held; moe_layers: all the model has when that is a subset */
	ret->n_served_layers = m->n_layers;
	ret->served_layers = layers;
	ret->source = m->source;
	ret->model_type = m->model_type ? m->model_type : (char *)"";
	ret->num_hidden_layers = m->num_hidden_layers;
	ret->n_moe_layers = m->moe_all ? m->n_moe_all : m->n_layers;
	ret->moe_layers = m->moe_all ? m->moe_all : layers;
	ret->hidden_size = m->hidden_size;
	ret->moe_intermediate_size = m->intermediate_size;
	ret->n_routed_experts = m->n_experts;
	ret->num_experts_per_tok = m->top_k;
	ret->n_group = m->n_group;
	ret->topk_group = m->topk_group;
	ret->scoring_func = m->scoring == MOED_SCORING_SIGMOID ? "sigmoid" : "softmax";
	ret->topk_method = m->topk_method ? m->topk_method : (char *)"greedy";
	ret->n_shared_experts = m->n_shared_experts;
	ret->routed_scaling_factor = m->routed_scaling_factor;
	ret->norm_topk_prob = m->norm_topk_prob != 0;
	ret->has_bias = m->n_layers > 0 && m->layers[0].bias != NULL;
	ret->dtype = dtype_wire(m->dtype);
	ret->weight_bytes = m->weight_bytes;
	return 0;
}

/* One declared parameter as a ParamDecl; its strings copied into the arena
 * (the declaration may be gone by the time the reply is packed). */
static Moed__ParamDecl *param_decl(struct arena *a, const struct plugin_param_info *p)
{
	Moed__ParamDecl *d = arena_alloc(a, 1, sizeof(*d));
	char range[300];

	if (!d)
		return NULL;
	moed__param_decl__init(d);
	d->name = arena_strdup(a, p->name);
	d->type = arena_strdup(a, p->type);
	d->min = p->min[0] ? arena_strdup(a, p->min) : NULL;
	d->max = p->max[0] ? arena_strdup(a, p->max) : NULL;
	d->default_ = p->def && p->def[0] ? arena_strdup(a, p->def) : NULL;
	if (p->choices[0]) {
		snprintf(range, sizeof(range), "%s%sone of %s", p->help ? p->help : "",
			 p->help && p->help[0] ? "; " : "", p->choices);
		d->help = arena_strdup(a, range);
	} else {
		d->help = p->help && p->help[0] ? arena_strdup(a, p->help) : NULL;
	}
	return d->name && d->type ? d : NULL;
}

static int fill_params(struct arena *a, Moed__PluginInfo *pi, const struct plugin_param_info *v,
		       size_t n)
{
	pi->params = arena_alloc(a, n, sizeof(*pi->params));
	if (!pi->params)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (!(pi->params[i] = param_decl(a, &v[i])))
			return -ENOMEM;
	pi->n_params = n;
	return 0;
}

static void fill_loaded(Moed__PluginInfo *pi, const struct plugin_gen *g)
{
	moed__plugin_info__init(pi);
	pi->name = g->name;
	pi->kind = (char *)loader_kind_name(g->desc->kind);
	pi->abi_version = g->desc->abi_version;
	pi->has_generation = 1;
	pi->generation = g->generation;
	pi->description = (char *)g->desc->description;
	pi->path = g->path;
}

static int loaded_plugins(const struct engine *e, Moed__PluginInfo ***ret_list, size_t *ret_n,
			  struct arena *a)
{
	size_t max = 3 * (size_t)e->n_layers + 1, n_gens, n = 0;
	const struct plugin_gen **gens = arena_alloc(a, max, sizeof(*gens));
	int *roles = arena_alloc(a, max, sizeof(*roles));
	Moed__PluginInfo *items = arena_alloc(a, max, sizeof(*items));
	Moed__PluginInfo **list = arena_alloc(a, max, sizeof(*list));

	if (!gens || !roles || !items || !list)
		return -ENOMEM;
	n_gens = engine_bound_gens(e, gens, roles, max);
	for (size_t i = 0; i < n_gens; i++) {
		size_t np = loader_gen_params(gens[i], 0, NULL);
		struct plugin_param_info *pv = arena_alloc(a, np, sizeof(*pv));

		if (roles[i] == 2)
			continue;       /* shadows are shown with the bindings and stats */
		if (!pv)
			return -ENOMEM;
		fill_loaded(&items[n], gens[i]);
		for (size_t q = 0; q < np; q++)
			loader_gen_params(gens[i], q, &pv[q]);
		if (fill_params(a, &items[n], pv, np) < 0)
			return -ENOMEM;
		list[n] = &items[n];
		n++;
	}
	*ret_list = list;
	*ret_n = n;
	return 0;
}

int handle_model(struct service *svc, struct caller *c, const struct reply_to *to,
		 Moed__Request *req)
{
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__ModelInfo model;
	struct arena a = { 0 };

	(void)c;
	(void)req;
	if (model_info(svc->engine, &model, &a) < 0) {
		reply_error(to, MOED__STATUS__INTERNAL, "out of memory");
	} else {
		resp.body_case = MOED__RESPONSE__BODY_MODEL;
		resp.model = &model;
		reply_ok(to, &resp);
	}
	arena_release(&a);
	return 0;
}

int handle_status(struct service *svc, struct caller *c, const struct reply_to *to,
		  Moed__Request *req)
{
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__StatusResponse st = MOED__STATUS_RESPONSE__INIT;
	const struct batch_counters *bc = batcher_counters(svc->batcher);
	Moed__ModelInfo model;
	struct arena a = { 0 };

	(void)c;
	(void)req;
	if (model_info(svc->engine, &model, &a) < 0 ||
	    loaded_plugins(svc->engine, &st.plugins, &st.n_plugins, &a) < 0) {
		reply_error(to, MOED__STATUS__INTERNAL, "out of memory");
		goto out;
	}
	st.version = PACKAGE_VERSION;
	st.uptime_ms = uv_now(svc->loop) - svc->start_ms;
	st.model = &model;
	st.requests_served = bc->requests_served;
	st.tokens_served = bc->tokens_served;
	st.connections = svc->connections;
	st.workers = pool_threads(svc->pool);
	st.pid = (uint32_t)getpid();
	st.health = (char *)svc->health;
	st.has_timed_out = 1;
	st.timed_out = bc->timed_out;
	st.has_abandoned_calls = 1;
	st.abandoned_calls = pool_abandoned(svc->pool);
	st.has_backend_bytes = 1;
	st.backend_bytes = engine_backend_bytes(svc->engine);
	resp.body_case = MOED__RESPONSE__BODY_STATUS_INFO;
	resp.status_info = &st;
	reply_ok(to, &resp);
out:
	arena_release(&a);
	return 0;
}

/* ---- plugins: the directory scan runs on libuv's thread pool ---- */

#define SCAN_MAX 256

struct scan {
	uv_work_t work;
	struct service *svc;
	struct reply_to to;
	char *dir;
	int rc;
	size_t n;
	struct plugin_probe probes[SCAN_MAX];   /* params: copies in `mem` */
	char paths[SCAN_MAX][512];
	struct arena mem;               /* filled on the scanning thread, freed on the loop */
};

static void on_scanned(const char *path, const struct plugin_probe *p, void *arg)
{
	struct scan *s = arg;

	if (s->n == SCAN_MAX)
		return;
	struct plugin_param_info *v = arena_alloc(&s->mem, p->n_params, sizeof(*v));

	if (!v)
		return;
	for (size_t i = 0; i < p->n_params; i++) {
		v[i] = p->params[i];
		v[i].name = arena_strdup(&s->mem, p->params[i].name);
		v[i].type = arena_strdup(&s->mem, p->params[i].type);
		v[i].def = arena_strdup(&s->mem, p->params[i].def);
		v[i].help = arena_strdup(&s->mem, p->params[i].help);
		if (!v[i].name || !v[i].type)
			return;
	}
	s->probes[s->n] = *p;
	s->probes[s->n].params = v;
	snprintf(s->paths[s->n], sizeof(s->paths[0]), "%s", path);
	s->n++;
}

static void scan_work(uv_work_t *w)
{
	struct scan *s = w->data;

	s->rc = loader_scan(s->dir, on_scanned, s);
}

static int plugins_reply(struct scan *s, struct arena *a)
{
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__PluginsResponse pr = MOED__PLUGINS_RESPONSE__INIT;
	Moed__PluginInfo *items = arena_alloc(a, s->n, sizeof(*items));
	Moed__PluginInfo **list = arena_alloc(a, s->n, sizeof(*list));

	if (!items || !list || loaded_plugins(s->svc->engine, &pr.loaded, &pr.n_loaded, a) < 0)
		return -ENOMEM;
	pr.plugin_dir = s->dir;
	for (size_t i = 0; i < s->n; i++) {
		Moed__PluginInfo *pi = &items[i];
		moed__plugin_info__init(pi);
		pi->name = s->probes[i].name;
		pi->kind = (char *)loader_kind_name(s->probes[i].kind);
		pi->abi_version = s->probes[i].abi_version;
		pi->description = s->probes[i].description;
		pi->path = s->paths[i];
		if (s->probes[i].error[0])
			pi->error = s->probes[i].error;
		if (fill_params(a, pi, s->probes[i].params, s->probes[i].n_params) < 0)
			return -ENOMEM;
		list[i] = pi;
	}
	pr.available = list;
	pr.n_available = s->n;
	resp.body_case = MOED__RESPONSE__BODY_PLUGINS;
	resp.plugins = &pr;
	reply_ok(&s->to, &resp);
	return 0;
}

static void scan_done(uv_work_t *w, int status)
{
	struct scan *s = w->data;
	struct arena a = { 0 };

	if (status < 0 || s->rc < 0)
		reply_error(&s->to, MOED__STATUS__INTERNAL, "cannot list plugin directory '%s': %s",
			    s->dir, status < 0 ? uv_strerror(status) : strerror(-s->rc));
	else if (plugins_reply(s, &a) < 0)
		reply_error(&s->to, MOED__STATUS__INTERNAL, "out of memory");
	arena_release(&a);
	arena_release(&s->mem);
	reply_release(&s->to);
	free(s->dir);
	free(s);
}

int handle_plugins(struct service *svc, struct caller *c, const struct reply_to *to,
		   Moed__Request *req)
{
	struct scan *s;
	int r;

	(void)req;
	if (c->inflight >= svc->cfg->max_inflight_per_conn) {
		reply_error(to, MOED__STATUS__RESOURCE_EXHAUSTED,
			    "busy: %u requests in flight on this connection (max_inflight_per_conn)",
			    c->inflight);
		return 0;
	}
	s = calloc(1, sizeof(*s));
	if (!s || !(s->dir = strdup(svc->engine->plugin_dir))) {
		free(s);
		reply_error(to, MOED__STATUS__INTERNAL, "out of memory");
		return 0;
	}
	s->svc = svc;
	s->to = *to;
	s->work.data = s;
	reply_hold(&s->to);
	r = uv_queue_work(svc->loop, &s->work, scan_work, scan_done);
	if (r < 0) {
		reply_error(to, MOED__STATUS__INTERNAL, "cannot list plugins: %s", uv_strerror(r));
		reply_release(&s->to);
		free(s->dir);
		free(s);
	}
	return 0;
}
