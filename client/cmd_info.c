/*
 * Descriptive commands: status, plugins, model.  Each sends one request and
 * prints the reply for people, or as one JSON object with --json (model uses
 * the HuggingFace config.json names).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "client/moectl.h"
#include "proto/tensor.h"
#include "client/output.h"

static int no_args(const char *cmd, int argc, char **argv)
{
	return argc > 1 ? usage_error(cmd, "unexpected argument '%s'", argv[1]) : EXIT_OK;
}

static json_object *model_json(const Moed__ModelInfo *m)
{
	json_object *o = json_object_new_object(), *layers = json_object_new_array();
	json_object *served = json_object_new_array();

	for (size_t i = 0; i < m->n_moe_layers; i++)
		json_object_array_add(layers, json_object_new_int64(m->moe_layers[i]));
	/* an older daemon does not say: it serves every MoE layer */
	for (size_t i = 0; i < (m->n_served_layers ? m->n_served_layers : m->n_moe_layers); i++)
		json_object_array_add(served, json_object_new_int64(
			m->n_served_layers ? m->served_layers[i] : m->moe_layers[i]));
	json_object_object_add(o, "source", json_object_new_string(m->source));
	json_object_object_add(o, "model_type", json_object_new_string(m->model_type));
	json_object_object_add(o, "num_hidden_layers", json_object_new_int64(m->num_hidden_layers));
	json_object_object_add(o, "moe_layers", layers);
	json_object_object_add(o, "hidden_size", json_object_new_int64(m->hidden_size));
	json_object_object_add(o, "moe_intermediate_size",
			       json_object_new_int64(m->moe_intermediate_size));
	json_object_object_add(o, "n_routed_experts", json_object_new_int64(m->n_routed_experts));
	json_object_object_add(o, "num_experts_per_tok",
			       json_object_new_int64(m->num_experts_per_tok));
	json_object_object_add(o, "n_group", json_object_new_int64(m->n_group));
	json_object_object_add(o, "topk_group", json_object_new_int64(m->topk_group));
	json_object_object_add(o, "n_shared_experts", json_object_new_int64(m->n_shared_experts));
	json_object_object_add(o, "scoring_func", json_object_new_string(m->scoring_func));
	json_object_object_add(o, "topk_method", json_object_new_string(m->topk_method));
	json_object_object_add(o, "routed_scaling_factor",
			       json_object_new_double(m->routed_scaling_factor));
	json_object_object_add(o, "norm_topk_prob", json_object_new_boolean(m->norm_topk_prob));
	json_object_object_add(o, "e_score_correction_bias", json_object_new_boolean(m->has_bias));
	json_object_object_add(o, "dtype", json_object_new_string(tensor_dtype_name(m->dtype)));
	json_object_object_add(o, "weight_bytes", json_object_new_uint64(m->weight_bytes));
	json_object_object_add(o, "served_layers", served);
	return o;
}

static void model_print(const Moed__ModelInfo *m)
{
	char bytes[32];

	printf("model:     %s (%s)\n", m->source, m->model_type);
	printf("layers:    %u, MoE:", m->num_hidden_layers);
	for (size_t i = 0; i < m->n_moe_layers; i++)
		printf(" %u", m->moe_layers[i]);
	if (m->n_served_layers && m->n_served_layers != m->n_moe_layers) {
		printf(", served:");
		for (size_t i = 0; i < m->n_served_layers; i++)
			printf(" %u", m->served_layers[i]);
	}
	printf("\nshape:     H %u, I %u, %u experts, top-%u", m->hidden_size,
	       m->moe_intermediate_size, m->n_routed_experts, m->num_experts_per_tok);
	if (m->n_group > 1)
		printf(", %u of %u groups", m->topk_group, m->n_group);
	printf(", %u shared\n", m->n_shared_experts);
	printf("routing:   %s, %s%s, scale %g%s\n", m->scoring_func, m->topk_method,
	       m->norm_topk_prob ? ", normalised" : "", m->routed_scaling_factor,
	       m->has_bias ? ", selection bias" : "");
	printf("weights:   %s, %s\n", tensor_dtype_name(m->dtype),
	       human_bytes(m->weight_bytes, bytes, sizeof(bytes)));
}

static json_object *plugin_json(const Moed__PluginInfo *p)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "name", json_object_new_string(p->name));
	json_object_object_add(o, "kind", json_object_new_string(p->kind));
	json_object_object_add(o, "abi_version", json_object_new_int64(p->abi_version));
	if (p->has_generation)
		json_object_object_add(o, "generation", json_object_new_uint64(p->generation));
	if (p->description)
		json_object_object_add(o, "description", json_object_new_string(p->description));
	if (p->path)
		json_object_object_add(o, "path", json_object_new_string(p->path));
	if (p->error)
		json_object_object_add(o, "error", json_object_new_string(p->error));
	if (p->n_params) {
		json_object *a = json_object_new_array();
		for (size_t i = 0; i < p->n_params; i++) {
			const Moed__ParamDecl *d = p->params[i];
			json_object *q = json_object_new_object();
			json_object_object_add(q, "name", json_object_new_string(d->name));
			json_object_object_add(q, "type", json_object_new_string(d->type));
			if (d->min)
				json_object_object_add(q, "min", json_object_new_string(d->min));
			if (d->max)
				json_object_object_add(q, "max", json_object_new_string(d->max));
			if (d->default_)
				json_object_object_add(q, "default", json_object_new_string(d->default_));
			if (d->help)
				json_object_object_add(q, "help", json_object_new_string(d->help));
			json_object_array_add(a, q);
		}
		json_object_object_add(o, "params", a);
	}
	return o;
}

static json_object *plugin_list_json(Moed__PluginInfo **v, size_t n)
{
	json_object *a = json_object_new_array();

	for (size_t i = 0; i < n; i++)
		json_object_array_add(a, plugin_json(v[i]));
	return a;
}

static void plugin_print(const Moed__PluginInfo *p)
{
	printf("  %-16s %-7s ABI %u", p->name, p->kind, p->abi_version);
	if (p->has_generation)
		printf("  generation %llu", (unsigned long long)p->generation);
	if (p->error)
		printf("  NOT LOADABLE: %s", p->error);
	else if (p->description && *p->description)
		printf("  %s", p->description);
	printf("\n");
	for (size_t i = 0; i < p->n_params; i++) {
		const Moed__ParamDecl *d = p->params[i];
		printf("      %s (%s", d->name, d->type);
		if (d->min || d->max)
			printf(", %s..%s", d->min ? d->min : "", d->max ? d->max : "");
		if (d->default_)
			printf(", default %s", d->default_);
		printf(")%s%s\n", d->help ? ": " : "", d->help ? d->help : "");
	}
}

static int call(const struct global *g, Moed__Request__BodyCase body, Moed__Response **ret)
{
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__StatusRequest status = MOED__STATUS_REQUEST__INIT;
	Moed__PluginsRequest plugins = MOED__PLUGINS_REQUEST__INIT;
	Moed__ModelRequest model = MOED__MODEL_REQUEST__INIT;

	req.body_case = body;
	if (body == MOED__REQUEST__BODY_STATUS)
		req.status = &status;
	else if (body == MOED__REQUEST__BODY_PLUGINS)
		req.plugins = &plugins;
	else
		req.model = &model;
	return moectl_call_once(g, &req, ret);
}

int cmd_status(const struct global *g, int argc, char **argv)
{
	Moed__Response *resp;
	int r = no_args("status", argc, argv);

	if (r != EXIT_OK || (r = call(g, MOED__REQUEST__BODY_STATUS, &resp)) != EXIT_OK)
		return r;
	const Moed__StatusResponse *s = resp->status_info;
	if (g->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "version", json_object_new_string(s->version));
		json_object_object_add(o, "pid", json_object_new_int64(s->pid));
		json_object_object_add(o, "uptime_ms", json_object_new_uint64(s->uptime_ms));
		json_object_object_add(o, "requests_served", json_object_new_uint64(s->requests_served));
		json_object_object_add(o, "tokens_served", json_object_new_uint64(s->tokens_served));
		json_object_object_add(o, "connections", json_object_new_int64(s->connections));
		json_object_object_add(o, "workers", json_object_new_int64(s->workers));
		json_object_object_add(o, "health", s->health ? json_object_new_string(s->health)
							      : json_object_new_string("ok"));
		json_object_object_add(o, "timed_out", json_object_new_uint64(s->timed_out));
		json_object_object_add(o, "abandoned_calls", json_object_new_int64(s->abandoned_calls));
		json_object_object_add(o, "backend_bytes", json_object_new_uint64(s->backend_bytes));
		json_object_object_add(o, "model", model_json(s->model));
		json_object_object_add(o, "plugins", plugin_list_json(s->plugins, s->n_plugins));
		json_print(o);
	} else {
		uint64_t up = s->uptime_ms / 1000;
		printf("moed %s (pid %u), up %llud %02lluh%02llum%02llus, %u workers, %u connections\n",
		       s->version, s->pid, (unsigned long long)(up / 86400),
		       (unsigned long long)(up / 3600 % 24), (unsigned long long)(up / 60 % 60),
		       (unsigned long long)(up % 60), s->workers, s->connections);
		printf("served:    %llu requests, %llu tokens\n",
		       (unsigned long long)s->requests_served, (unsigned long long)s->tokens_served);
		if (s->health || s->timed_out || s->abandoned_calls)
			printf("health:    %s; %llu requests timed out, %u stuck calls written off\n",
			       s->health ? s->health : "ok", (unsigned long long)s->timed_out,
			       s->abandoned_calls);
		model_print(s->model);
		if (s->has_backend_bytes) {
			char bytes[32];

			printf("backend:   %s beyond the weights (packed copies, scratch)\n",
			       human_bytes(s->backend_bytes, bytes, sizeof(bytes)));
		}
		printf("plugins:\n");
		for (size_t i = 0; i < s->n_plugins; i++)
			plugin_print(s->plugins[i]);
	}
	moed__response__free_unpacked(resp, NULL);
	return EXIT_OK;
}

int cmd_plugins(const struct global *g, int argc, char **argv)
{
	Moed__Response *resp;
	int r = no_args("plugins", argc, argv);

	if (r != EXIT_OK || (r = call(g, MOED__REQUEST__BODY_PLUGINS, &resp)) != EXIT_OK)
		return r;
	const Moed__PluginsResponse *p = resp->plugins;
	if (g->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "plugin_dir", json_object_new_string(p->plugin_dir));
		json_object_object_add(o, "loaded", plugin_list_json(p->loaded, p->n_loaded));
		json_object_object_add(o, "available", plugin_list_json(p->available, p->n_available));
		json_print(o);
	} else {
		printf("loaded:\n");
		for (size_t i = 0; i < p->n_loaded; i++)
			plugin_print(p->loaded[i]);
		printf("available in %s:\n", p->plugin_dir);
		for (size_t i = 0; i < p->n_available; i++)
			plugin_print(p->available[i]);
	}
	moed__response__free_unpacked(resp, NULL);
	return EXIT_OK;
}

int cmd_model(const struct global *g, int argc, char **argv)
{
	Moed__Response *resp;
	int r = no_args("model", argc, argv);

	if (r != EXIT_OK || (r = call(g, MOED__REQUEST__BODY_MODEL, &resp)) != EXIT_OK)
		return r;
	if (g->json)
		json_print(model_json(resp->model));
	else
		model_print(resp->model);
	moed__response__free_unpacked(resp, NULL);
	return EXIT_OK;
}
