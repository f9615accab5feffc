/*
 * Engine: layer specs derived once from the model, bindings created per plugin
 * generation, and the compute step.  engine_set_plugin() is all-or-nothing: it
 * creates the new generation's layer objects for every target layer first and
 * only then swaps them in, so a plugin that fails in layer_new() leaves every
 * layer on its old binding.  Reference counts are plain integers because they
 * are only touched on the loop thread.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/engine.h"
#include "daemon/host.h"
#include "daemon/log.h"

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
		l->saved_bias = calloc(model->n_experts, sizeof(float));
		if (!l->saved_bias || stats_init(&l->stats, model->n_experts, 60000, 0) < 0) {
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

	return o && o->get_bias && o->set_bias && o->bias_ctl;
}

void engine_bias_capture(struct engine *e)
{
	for (uint32_t i = 0; i < e->n_layers; i++) {
		struct engine_layer *l = &e->layers[i];
		uint32_t frozen = 0;

		if (!binding_bias_live(l->router))
			continue;
		if (l->router->gen->desc->router->get_bias(l->router->obj, l->saved_bias,
							   &frozen) == 0) {
			l->has_saved_bias = 1;
			l->saved_frozen = frozen != 0;
		}
	}
}

/* Give a freshly bound live router the layer's saved bias and frozen state. */
static void bias_restore(struct engine_layer *l, struct binding *b)
{
	const struct moed_router_ops *o = b->gen->desc->router;

	if (!binding_bias_live(b) || !l->has_saved_bias)
		return;
	if (o->set_bias(b->obj, l->saved_bias) == 0 && l->saved_frozen)
		o->bias_ctl(b->obj, MOED_BIAS_FREEZE);
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
		if (op == MOED_BIAS_RESET)
			l->has_saved_bias = 0;
		done++;
	}
	if (done == 0) {
		snprintf(err, errlen, layer >= 0 ? "layer %lld is not a MoE layer of this model"
						 : "no layer's router keeps a live bias (use bias-balanced)",
			 (long long)layer);
		return layer >= 0 ? -ENOENT : -ENOTSUP;
	}
	engine_bias_capture(e);
	return 0;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

uint64_t engine_model_fingerprint(const struct engine *e)
{
	const struct moed_model *m = e->model;
	uint32_t dims[6] = { m->hidden_size, m->intermediate_size, m->n_experts, m->top_k,
			     m->n_group, m->n_layers };
	uint64_t h = fnv1a(0xcbf29ce484222325ULL, dims, sizeof(dims));

	for (uint32_t i = 0; i < m->n_layers; i++) {
		const struct moed_layer *w = &m->layers[i];
		size_t n = (size_t)m->n_experts * m->hidden_size;
		h = fnv1a(h, &w->index, sizeof(w->index));
		h = fnv1a(h, w->gate, (n < 4096 ? n : 4096) * sizeof(float));
		if (w->bias)
			h = fnv1a(h, w->bias, m->n_experts * sizeof(float));
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
		stats_release(&e->layers[i].stats);
		free(e->layers[i].saved_bias);
	}
	free(e->layers);
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

static int bind_layer(struct plugin_gen *g, struct engine_layer *l,
		      const struct moed_param *params, size_t n_params, struct binding **ret)
{
	struct binding *b = calloc(1, sizeof(*b));
	int r;

	if (!b)
		return -ENOMEM;
	if (g->desc->kind == MOED_PLUGIN_ROUTER)
		r = g->desc->router->layer_new(g->state, &l->rspec, params, n_params, &b->obj);
	else
		r = g->desc->expert->layer_new(g->state, &l->espec, params, n_params, &b->obj);
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

int engine_set_plugin(struct engine *e, uint32_t kind, const char *name,
		      const struct moed_param *params, size_t n_params, int64_t layer,
		      char *err, size_t errlen)
{
	struct engine_layer *only = NULL;
	struct binding **fresh;
	struct plugin_gen *g;
	uint32_t first = 0, end = e->n_layers;
	int r;

	if (layer >= 0) {
		only = layer <= UINT32_MAX ? engine_layer(e, (uint32_t)layer) : NULL;
		if (!only) {
			snprintf(err, errlen, "layer %lld is not a MoE layer of this model",
				 (long long)layer);
			return -ENOENT;
		}
		first = (uint32_t)(only - e->layers);
		end = first + 1;
	}
	fresh = calloc(e->n_layers, sizeof(*fresh));
	if (!fresh)
		return -ENOMEM;
	r = loader_open(e->plugin_dir, name, kind, params, n_params, e->last_generation + 1, &g,
			err, errlen);
	if (r < 0)
		goto out;
	e->last_generation++;
	for (uint32_t i = first; i < end; i++) {
		host_clear_error();
		r = bind_layer(g, &e->layers[i], params, n_params, &fresh[i]);
		if (r < 0) {
			snprintf(err, errlen, "plugin '%s': layer %u: setup failed: %s%s%s", name,
				 e->layers[i].w->index, strerror(-r), *host_last_error() ? "; " : "",
				 host_last_error());
			for (uint32_t j = first; j < i; j++)
				binding_unref(fresh[j]);
			plugin_gen_unref(g);
			goto out;
		}
	}
	if (kind == MOED_PLUGIN_ROUTER)
		engine_bias_capture(e);
	for (uint32_t i = first; i < end; i++) {
		struct binding **slot = kind == MOED_PLUGIN_ROUTER ? &e->layers[i].router
								   : &e->layers[i].expert;
		if (kind == MOED_PLUGIN_ROUTER)
			bias_restore(&e->layers[i], fresh[i]);
		binding_unref(*slot);
		*slot = fresh[i];
	}
	plugin_gen_unref(g);    /* the bindings hold it now */
	r = 0;
out:
	free(fresh);
	return r;
}

void engine_call_begin(struct engine_call *c, struct engine_layer *layer)
{
	c->layer = layer;
	c->router = layer->router;
	c->router->refs++;
	c->expert = c->y ? layer->expert : NULL;
	if (c->expert)
		c->expert->refs++;
	c->rc = 0;
	c->err[0] = '\0';
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void engine_call_run(struct engine_call *c)
{
	const struct engine_layer *l = c->layer;
	uint64_t t0 = now_ns();
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
	if (c->expert) {
		r = c->expert->gen->desc->expert->forward(c->expert->obj, c->x, c->n_tokens,
							  l->rspec.top_k, c->experts, c->weights,
							  c->y);
		if (r < 0)
			snprintf(c->err, sizeof(c->err), "expert backend '%s' failed: %s",
				 c->expert->gen->name, strerror(-r));
	}
out:
	c->rc = r;
	c->compute_ns = now_ns() - t0;
}

void engine_call_end(struct engine_call *c)
{
	binding_unref(c->router);
	binding_unref(c->expert);
	c->router = c->expert = NULL;
}
