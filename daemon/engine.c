/*
 * Engine: layer specs derived once from the model, bindings created per plugin
 * generation, and the compute step.  A swap is prepared (the new generation's
 * layer objects for every target layer are created first) and then committed,
 * so a plugin that fails in layer_new() leaves every layer on its old binding,
 * and a reload can prepare several swaps before committing any.  Reference
 * counts are plain integers because they are only touched on the loop thread.
 * Router state moves between generations as an opaque blob per layer
 * (struct engine_saved): captured from the serving router before a commit,
 * handed to the new router at the commit when it is the same plugin.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "daemon/engine.h"
#include "daemon/hash.h"
#include "daemon/host.h"
#include "daemon/log.h"
#include "daemon/params.h"

static void fill_specs(const struct moed_model *m, const struct moed_layer *w,
		       struct engine_layer *l)
{
	l->w = w;
	l->rspec = (struct moed_router_spec){
		.struct_size = sizeof(struct moed_router_spec),
		.layer = w->index,
		.hidden_size = m->hidden_size,
		.n_experts = m->n_experts,
		.top_k = m->top_k,
		.n_group = m->n_group ? m->n_group : 1,
		.topk_group = m->topk_group ? m->topk_group : 1,
		.scoring = m->scoring,
		.norm_topk_prob = m->norm_topk_prob,
		.routed_scaling_factor = m->routed_scaling_factor,
		.gate = w->gate,
		.bias = w->bias,
	};
	l->espec = (struct moed_expert_spec){
		.struct_size = sizeof(struct moed_expert_spec),
		.layer = w->index,
		.hidden_size = m->hidden_size,
		.intermediate_size = m->intermediate_size,
		.n_experts = m->n_experts,
		.shared_intermediate_size = w->shared_gate ? m->shared_intermediate_size : 0,
		.dtype = m->dtype,
		.gate = (const void *const *)w->expert_gate,
		.up = (const void *const *)w->expert_up,
		.down = (const void *const *)w->expert_down,
		.shared_gate = w->shared_gate,
		.shared_up = w->shared_up,
		.shared_down = w->shared_down,
	};
	model_fill_expert_spec(m, w, &l->espec);
}

int engine_new(struct moed_model *model, const char *plugin_dir, struct engine **ret_engine)
{
	struct engine *e = calloc(1, sizeof(*e));

	if (!e || !(e->plugin_dir = strdup(plugin_dir)) ||
	    !(e->layers = calloc(model->n_layers, sizeof(*e->layers)))) {
		if (e)
			free(e->plugin_dir);
		free(e);
		model_free(model);
		return -ENOMEM;
	}
	e->model = model;
	e->n_layers = model->n_layers;
	for (uint32_t i = 0; i < model->n_layers; i++) {
		struct engine_layer *l = &e->layers[i];
		fill_specs(model, &model->layers[i], l);
		if (stats_init(&l->stats, model->n_experts, 60000, 0) < 0) {
			engine_free(e);
			return -ENOMEM;
		}
	}
	*ret_engine = e;
	return 0;
}

int engine_stats_window(struct engine *e, uint64_t window_ms)
{
	for (uint32_t i = 0; i < e->n_layers; i++) {
		stats_release(&e->layers[i].stats);
		if (stats_init(&e->layers[i].stats, e->model->n_experts, window_ms, 0) < 0)
			return -ENOMEM;
	}
	return 0;
}

int binding_bias_live(const struct binding *b)
{
	const struct moed_router_ops *o = b && b->gen->desc->kind == MOED_PLUGIN_ROUTER
						  ? b->gen->desc->router : NULL;

	return o && o->get_bias && o->bias_ctl;
}

size_t engine_router_bias(const struct engine_layer *l, float *ret, uint32_t *ret_frozen)
{
	const struct moed_router_ops *o = l->router ? l->router->gen->desc->router : NULL;

	*ret_frozen = 0;
	if (o && o->get_bias && o->get_bias(l->router->obj, ret, ret_frozen) == 0)
		return l->rspec.n_experts;
	return 0;
}

void engine_params_free(struct moed_param *p, size_t n)
{
	for (size_t i = 0; p && i < n; i++) {
		free((char *)p[i].key);
		free((char *)p[i].value);
	}
	free(p);
}

int engine_params_dup(const struct moed_param *p, size_t n, struct moed_param **ret)
{
	struct moed_param *c = calloc(n ? n : 1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		c[i].key = strdup(p[i].key);
		c[i].value = strdup(p[i].value);
		if (!c[i].key || !c[i].value) {
			engine_params_free(c, i + 1);
			return -ENOMEM;
		}
	}
	*ret = c;
	return 0;
}

int engine_params_equal(const struct moed_param *a, size_t na, const struct moed_param *b,
			size_t nb)
{
	return moed_params_equal(a, na, b, nb);
}

void engine_saved_clear(struct engine_saved *s)
{
	free(s->plugin);
	free(s->blob);
	free(s->router);
	engine_params_free(s->params, s->n_params);
	memset(s, 0, sizeof(*s));
}

int engine_config_router(struct engine *e, const char *name, const struct moed_param *params,
			 size_t n_params)
{
	struct moed_param *p;
	char *n = strdup(name ? name : "");

	if (!n || engine_params_dup(params, n_params, &p) < 0) {
		free(n);
		return -ENOMEM;
	}
	free(e->cfg_router);
	engine_params_free(e->cfg_params, e->n_cfg_params);
	e->cfg_router = n;
	e->cfg_params = p;
	e->n_cfg_params = n_params;
	return 0;
}

void *engine_bias_blob(uint32_t n_experts, uint32_t frozen, const float *bias, size_t *ret_len)
{
	size_t len = 8 + (size_t)n_experts * sizeof(float);
	uint8_t *b = malloc(len);

	if (!b)
		return NULL;
	memcpy(b, &frozen, 4);
	memcpy(b + 4, &n_experts, 4);
	if (bias)
		memcpy(b + 8, bias, (size_t)n_experts * sizeof(float));
	*ret_len = len;
	return b;
}

static void saved_set(struct engine_layer *l, char *plugin, void *blob, size_t len,
		      uint32_t version)
{
	free(l->saved.plugin);
	free(l->saved.blob);
	l->saved.plugin = plugin;
	l->saved.blob = blob;
	l->saved.len = len;
	l->saved.version = version;
}

/* An ABI-1 router with a live bias (get_bias, set_bias, bias_ctl) but no state
 * ops: its bias is kept as the bias blob. */
static int legacy_bias(const struct moed_router_ops *o)
{
	return !o->state_save && o->get_bias && o->set_bias && o->bias_ctl;
}

static void capture_legacy(struct engine_layer *l)
{
	const struct moed_router_ops *o = l->router->gen->desc->router;
	uint32_t E = l->rspec.n_experts, frozen = 0;
	char *plugin = strdup(l->router->gen->name);
	size_t len;
	uint8_t *blob = engine_bias_blob(E, 0, NULL, &len);

	if (!plugin || !blob || o->get_bias(l->router->obj, (float *)(blob + 8), &frozen) < 0) {
		free(plugin);
		free(blob);
		return;
	}
	frozen = frozen != 0;
	memcpy(blob, &frozen, 4);
	saved_set(l, plugin, blob, len, ENGINE_BIAS_BLOB_VERSION);
}

static int give_legacy(const struct engine_layer *l, const struct binding *b)
{
	const struct moed_router_ops *o = b->gen->desc->router;
	const uint8_t *p = l->saved.blob;
	uint32_t E = l->rspec.n_experts, e_saved, frozen;
	float *bias;
	int r;

	if (l->saved.version != ENGINE_BIAS_BLOB_VERSION || l->saved.len != 8 + (size_t)E * 4)
		return -EINVAL;
	memcpy(&frozen, p, 4);
	memcpy(&e_saved, p + 4, 4);
	if (e_saved != E || !(bias = malloc((size_t)E * sizeof(float))))
		return e_saved != E ? -EINVAL : -ENOMEM;
	memcpy(bias, p + 8, (size_t)E * sizeof(float));
	for (uint32_t e = 0; e < E; e++)
		if (!isfinite(bias[e])) {
			free(bias);
			return -EINVAL;
		}
	r = o->set_bias(b->obj, bias);
	if (r == 0 && frozen)
		r = o->bias_ctl(b->obj, MOED_BIAS_FREEZE);
	free(bias);
	return r;
}

/* Capture one layer's router state into its saved blob (kept as it was when
 * the router has none or fails). */
static void capture_layer(struct engine_layer *l)
{
	const struct moed_router_ops *o = l->router ? l->router->gen->desc->router : NULL;
	size_t size = 0, len = 0;
	uint32_t version = 0;
	char *plugin;
	void *blob;
	int r;

	if (o && legacy_bias(o))
		capture_legacy(l);
	if (!o || !o->state_save)
		return;
	r = o->state_size(l->router->obj, &size);
	if (r < 0 || size > (64u << 20)) {
		log_warn("engine: layer %u: router '%s' state size: %s", l->w->index,
			 l->router->gen->name, r < 0 ? strerror(-r) : "over 64 MiB");
		return;
	}
	blob = malloc(size ? size : 1);
	plugin = strdup(l->router->gen->name);
	if (!blob || !plugin) {
		free(blob);
		free(plugin);
		return;
	}
	r = o->state_save(l->router->obj, blob, size, &len, &version);
	if (r < 0 || len > size) {
		log_warn("engine: layer %u: router '%s' could not save its state: %s", l->w->index,
			 l->router->gen->name, r < 0 ? strerror(-r) : "too long");
		free(blob);
		free(plugin);
		return;
	}
	saved_set(l, plugin, blob, len, version);
}

void engine_state_capture(struct engine *e)
{
	for (uint32_t i = 0; i < e->n_layers; i++)
		capture_layer(&e->layers[i]);
}

void engine_bias_capture(struct engine *e)
{
	engine_state_capture(e);
}

/* Give a freshly bound router its layer's saved state, when it is its own. */
static void state_give(struct engine_layer *l, struct binding *b)
{
	const struct moed_router_ops *o = b->gen->desc->router;
	int r;

	if ((!o->state_restore && !legacy_bias(o)) || !l->saved.plugin ||
	    strcmp(l->saved.plugin, b->gen->name))
		return;
	host_clear_error();
	r = o->state_restore ? o->state_restore(b->obj, l->saved.blob, l->saved.len,
						  l->saved.version)
			     : give_legacy(l, b);
	if (r < 0)
		log_warn("engine: layer %u: router '%s' refused its saved state (version %u, %zu "
			 "bytes): %s%s%s; it starts afresh", l->w->index, b->gen->name,
			 l->saved.version, l->saved.len, strerror(-r), *host_last_error() ? "; " : "",
			 host_last_error());
}

int engine_bias_op(struct engine *e, int64_t layer, int op, char *err, size_t errlen)
{
	int done = 0;

	for (uint32_t i = 0; i < e->n_layers; i++) {
		struct engine_layer *l = &e->layers[i];
		int r;

		if (layer >= 0 && l->w->index != layer)
			continue;
		if (!binding_bias_live(l->router)) {
			if (layer < 0)
				continue;
			snprintf(err, errlen, "layer %u: router '%s' keeps no live bias (use bias-balanced)",
				 l->w->index, l->router->gen->name);
			return -ENOTSUP;
		}
		r = l->router->gen->desc->router->bias_ctl(l->router->obj, op);
		if (r < 0) {
			snprintf(err, errlen, "layer %u: router '%s': %s", l->w->index,
				 l->router->gen->name, strerror(-r));
			return r;
		}
		done++;
	}
	if (done == 0) {
		snprintf(err, errlen, layer >= 0 ? "layer %lld is not a MoE layer of this model"
						 : "no layer's router keeps a live bias (use bias-balanced)",
			 (long long)layer);
		return layer >= 0 ? -ENOENT : -ENOTSUP;
	}
	engine_state_capture(e);
	return 0;
}

uint64_t engine_model_fingerprint(const struct engine *e)
{
	const struct moed_model *m = e->model;
	uint32_t dims[6] = { m->hidden_size, m->intermediate_size, m->n_experts, m->top_k,
			     m->n_group, m->n_layers };
	uint64_t h = moed_fnv1a(MOED_FNV1A_INIT, dims, sizeof(dims));

	for (uint32_t i = 0; i < m->n_layers; i++) {
		const struct moed_layer *w = &m->layers[i];
		size_t n = (size_t)m->n_experts * m->hidden_size;
		h = moed_fnv1a(h, &w->index, sizeof(w->index));
		h = moed_fnv1a(h, w->gate, (n < 4096 ? n : 4096) * sizeof(float));
		if (w->bias)
			h = moed_fnv1a(h, w->bias, m->n_experts * sizeof(float));
	}
	return h;
}

void binding_unref(struct binding *b)
{
	if (!b || --b->refs > 0)
		return;
	if (b->gen->desc->kind == MOED_PLUGIN_ROUTER)
		b->gen->desc->router->layer_free(b->obj);
	else
		b->gen->desc->expert->layer_free(b->obj);
	plugin_gen_unref(b->gen);
	free(b);
}

void engine_free(struct engine *e)
{
	if (!e)
		return;
	for (uint32_t i = 0; i < e->n_layers; i++) {
		binding_unref(e->layers[i].router);
		binding_unref(e->layers[i].expert);
		binding_unref(e->layers[i].shadow);
		if (e->layers[i].shadow_stats)
			shadow_stats_release(e->layers[i].shadow_stats);
		free(e->layers[i].shadow_stats);
		stats_release(&e->layers[i].stats);
		engine_saved_clear(&e->layers[i].saved);
	}
	free(e->layers);
	free(e->cfg_router);
	engine_params_free(e->cfg_params, e->n_cfg_params);
	free(e->file_cfg_router);
	engine_params_free(e->file_cfg_params, e->n_file_cfg_params);
	free(e->plugin_dir);
	model_free(e->model);
	free(e);
}

struct engine_layer *engine_layer(struct engine *e, uint32_t index)
{
	for (uint32_t i = 0; i < e->n_layers; i++)
		if (e->layers[i].w->index == index)
			return &e->layers[i];
	return NULL;
}

/* espec: the expert spec to give (kept in the binding, which outlives the
 * plugin's layer object); NULL = the layer's own. */
static int bind_spec(struct plugin_gen *g, struct engine_layer *l,
		     const struct moed_expert_spec *espec, const struct moed_param *params,
		     size_t n_params, struct binding **ret)
{
	struct binding *b = calloc(1, sizeof(*b));
	int r;

	if (!b)
		return -ENOMEM;
	if (espec)
		b->espec = *espec;
	if (g->desc->kind == MOED_PLUGIN_ROUTER)
		r = g->desc->router->layer_new(g->state, &l->rspec, params, n_params, &b->obj);
	else
		r = g->desc->expert->layer_new(g->state, espec ? &b->espec : &l->espec, params,
					       n_params, &b->obj);
	if (r < 0) {
		free(b);
		return r;
	}
	b->refs = 1;
	b->gen = g;
	plugin_gen_ref(g);
	*ret = b;
	return 0;
}

static int bind_layer(struct plugin_gen *g, struct engine_layer *l,
		      const struct moed_param *params, size_t n_params, struct binding **ret)
{
	return bind_spec(g, l, NULL, params, n_params, ret);
}

int engine_bind_expert(struct plugin_gen *g, struct engine_layer *l,
		       const struct moed_param *params, size_t n_params, const uint8_t *local,
		       struct binding **ret)
{
	struct moed_expert_spec spec = l->espec;

	spec.local = local;
	return bind_spec(g, l, &spec, params, n_params, ret);
}

struct engine_swap {
	uint32_t kind;
	struct plugin_gen *gen;
	uint32_t first, end;
	struct binding **fresh;         /* [n_layers], set in [first, end) */
};

void engine_swap_free(struct engine_swap *s)
{
	if (!s)
		return;
	for (uint32_t i = s->first; s->fresh && i < s->end; i++)
		binding_unref(s->fresh[i]);
	plugin_gen_unref(s->gen);
	free(s->fresh);
	free(s);
}

uint64_t engine_swap_generation(const struct engine_swap *s)
{
	return s->gen->generation;
}

/* Features of the expert spec that a plugin of ABI 1 cannot know about. */
static const char *abi2_feature(const struct moed_expert_spec *s)
{
	if (s->dtype == MOED_DTYPE_F8_E4M3)
		return "FP8 weights";
	if (s->gate_scale || s->up_scale || s->down_scale || s->shared_gate_scale)
		return "per-block weight scales";
	if (s->shared_expert_gate)
		return "a shared-expert gate";
	if (s->local)
		return "a local subset of the experts";
	return NULL;
}

int engine_prepare(struct engine *e, uint32_t kind, const char *name,
		   const struct moed_param *params, size_t n_params, int64_t layer,
		   struct engine_swap **ret, char *err, size_t errlen)
{
	struct engine_layer *only = NULL;
	struct engine_swap *s;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s || !(s->fresh = calloc(e->n_layers ? e->n_layers : 1, sizeof(*s->fresh)))) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->kind = kind;
	s->end = e->n_layers;
	if (layer >= 0) {
		only = layer <= UINT32_MAX ? engine_layer(e, (uint32_t)layer) : NULL;
		if (!only) {
			snprintf(err, errlen, "layer %lld is not a MoE layer of this model",
				 (long long)layer);
			s->end = 0;
			r = -ENOENT;
			goto fail;
		}
		s->first = (uint32_t)(only - e->layers);
		s->end = s->first + 1;
	}
	r = loader_open(e->plugin_dir, name, kind, params, n_params, e->last_generation + 1,
			&s->gen, err, errlen);
	if (r < 0)
		goto fail;
	e->last_generation++;
	for (uint32_t i = s->first; i < s->end; i++) {
		const char *what = kind == MOED_PLUGIN_EXPERT && s->gen->desc->abi_version < 2
					   ? abi2_feature(&e->layers[i].espec) : NULL;
		if (what) {
			snprintf(err, errlen, "plugin '%s' is built for ABI %u, which cannot describe "
				 "%s (layer %u); rebuild it against this moed's <moed/plugin.h>",
				 name, s->gen->desc->abi_version, what, e->layers[i].w->index);
			r = -ENOTSUP;
			goto fail;
		}
		host_clear_error();
		r = bind_layer(s->gen, &e->layers[i], params, n_params, &s->fresh[i]);
		if (r < 0) {
			snprintf(err, errlen, "plugin '%s': layer %u: setup failed: %s%s%s", name,
				 e->layers[i].w->index, strerror(-r), *host_last_error() ? "; " : "",
				 host_last_error());
			goto fail;
		}
	}
	*ret = s;
	return 0;
fail:
	engine_swap_free(s);
	return r;
}

void engine_commit(struct engine *e, struct engine_swap *s)
{
	for (uint32_t i = s->first; i < s->end; i++) {
		struct engine_layer *l = &e->layers[i];
		struct binding **slot = s->kind == MOED_PLUGIN_ROUTER ? &l->router : &l->expert;

		if (s->kind == MOED_PLUGIN_ROUTER) {
			capture_layer(l);
			state_give(l, s->fresh[i]);
		}
		binding_unref(*slot);
		*slot = s->fresh[i];
		s->fresh[i] = NULL;
	}
	engine_swap_free(s);    /* the bindings hold the generation now */
}

int engine_set_plugin(struct engine *e, uint32_t kind, const char *name,
		      const struct moed_param *params, size_t n_params, int64_t layer,
		      char *err, size_t errlen)
{
	struct engine_swap *s;
	int r = engine_prepare(e, kind, name, params, n_params, layer, &s, err, errlen);

	if (r == 0)
		engine_commit(e, s);
	return r;
}

static void shadow_clear(struct engine_layer *l)
{
	binding_unref(l->shadow);
	l->shadow = NULL;
	if (l->shadow_stats)
		shadow_stats_release(l->shadow_stats);
	free(l->shadow_stats);
	l->shadow_stats = NULL;
}

int engine_set_shadow(struct engine *e, const char *name, const struct moed_param *params,
		      size_t n_params, int64_t layer, float sample, uint64_t now_ms, char *err,
		      size_t errlen)
{
	struct shadow_stats **st = calloc(e->n_layers ? e->n_layers : 1, sizeof(*st));
	struct engine_swap *s = NULL;
	int r = -ENOMEM;

	if (!st) {
		snprintf(err, errlen, "out of memory");
		return r;
	}
	r = engine_prepare(e, MOED_PLUGIN_ROUTER, name, params, n_params, layer, &s, err, errlen);
	if (r < 0)
		goto out;
	for (uint32_t i = s->first; i < s->end; i++) {
		struct engine_layer *l = &e->layers[i];
		st[i] = malloc(sizeof(*st[i]));
		if (!st[i] || shadow_stats_init(st[i], l->rspec.n_experts,
						l->stats.slot_ms * STATS_SLOTS, now_ms) < 0) {
			free(st[i]);
			st[i] = NULL;
			snprintf(err, errlen, "out of memory");
			r = -ENOMEM;
			goto out;
		}
	}
	for (uint32_t i = s->first; i < s->end; i++) {
		struct engine_layer *l = &e->layers[i];
		shadow_clear(l);
		l->shadow = s->fresh[i];
		s->fresh[i] = NULL;
		l->shadow_stats = st[i];
		st[i] = NULL;
		l->shadow_sample = sample;
		l->shadow_seq = 0;
	}
out:
	for (uint32_t i = 0; i < e->n_layers; i++)
		if (st[i]) {
			shadow_stats_release(st[i]);
			free(st[i]);
		}
	free(st);
	engine_swap_free(s);
	return r;
}

int engine_shadow_off(struct engine *e, int64_t layer)
{
	struct engine_layer *only = NULL;

	if (layer >= 0 && !(only = layer <= UINT32_MAX ? engine_layer(e, (uint32_t)layer) : NULL))
		return -ENOENT;
	for (uint32_t i = 0; i < e->n_layers; i++)
		if (!only || only == &e->layers[i])
			shadow_clear(&e->layers[i]);
	return 0;
}

void engine_call_begin(struct engine_call *c, struct engine_layer *layer)
{
	c->layer = layer;
	c->shadow = layer->shadow;
	/* the drift needs every expert here: not with experts spread over ranks */
	c->shadow_expert = layer->shadow && !layer->remote ? layer->expert : NULL;
	c->shadow_out = NULL;
	if (c->shadow) {
		c->shadow->refs++;
		if (c->shadow_expert)
			c->shadow_expert->refs++;
		c->shadow_sample = layer->shadow_sample;
		c->shadow_seq = layer->shadow_seq;
		layer->shadow_seq += c->n_tokens;
	}
	c->router = layer->router;
	c->router->refs++;
	c->expert = c->y ? layer->expert : NULL;
	if (c->expert)
		c->expert->refs++;
	c->rc = 0;
	c->err[0] = '\0';
}

void engine_call_run(struct engine_call *c)
{
	const struct engine_layer *l = c->layer;
	uint64_t t0 = uv_hrtime();
	int r;

	r = c->router->gen->desc->router->route(c->router->obj, c->x, c->n_tokens, c->experts,
						  c->weights);
	if (r < 0) {
		snprintf(c->err, sizeof(c->err), "router '%s' failed: %s", c->router->gen->name,
			 strerror(-r));
		goto out;
	}
	for (size_t i = 0; i < c->n_tokens * l->rspec.top_k; i++) {
		if (c->experts[i] < 0 || (uint32_t)c->experts[i] >= l->rspec.n_experts) {
			snprintf(c->err, sizeof(c->err), "router '%s' chose expert %d of %u",
				 c->router->gen->name, c->experts[i], l->rspec.n_experts);
			r = -EPROTO;
			goto out;
		}
	}
	if (c->expert && l->remote) {
		r = l->remote(l->remote_ctx, c);        /* fills c->err itself */
	} else if (c->expert) {
		r = c->expert->gen->desc->expert->forward(c->expert->obj, c->x, c->n_tokens,
							  l->rspec.top_k, c->experts, c->weights,
							  c->y);
		if (r < 0)
			snprintf(c->err, sizeof(c->err), "expert backend '%s' failed: %s",
				 c->expert->gen->name, strerror(-r));
	}
out:
	c->rc = r;
	c->compute_ns = uv_hrtime() - t0;
	if (r == 0 && c->shadow)
		engine_shadow_run(c);   /* after the serving timing: its cost is its own */
}

void engine_call_end(struct engine_call *c)
{
	binding_unref(c->router);
	binding_unref(c->expert);
	binding_unref(c->shadow);
	binding_unref(c->shadow_expert);
	engine_shadow_out_free(c->shadow_out);
	c->router = c->expert = c->shadow = c->shadow_expert = NULL;
	c->shadow_out = NULL;
}

size_t engine_bound_gens(const struct engine *e, const struct plugin_gen **ret, int *ret_role,
			 size_t max)
{
	size_t n = 0;

	for (uint32_t i = 0; i < e->n_layers; i++) {
		const struct binding *b[3] = { e->layers[i].router, e->layers[i].expert,
					       e->layers[i].shadow };
		for (int j = 0; j < 3; j++) {
			size_t k;
			if (!b[j])
				continue;
			for (k = 0; k < n && ret[k] != b[j]->gen; k++)
				;
			if (k < n || n == max)
				continue;
			ret[n] = b[j]->gen;
			ret_role[n++] = j;
		}
	}
	return n;
}

uint64_t engine_backend_bytes(const struct engine *e)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < e->n_layers; i++) {
		const struct binding *b = e->layers[i].expert;

		if (b && b->gen->desc->expert->layer_bytes)
			n += b->gen->desc->expert->layer_bytes(b->obj);
	}
	return n;
}
