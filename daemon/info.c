/*
 * Descriptive replies.  Loaded plugins are the distinct generations bound to any
 * layer (a swap of one layer makes two generations of a router live at once);
 * available plugins come from scanning the plugin directory, reading each
 * descriptor without calling into the plugin.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/engine.h"
#include "daemon/info.h"
#include "daemon/loader.h"
#include "daemon/pool.h"
#include "daemon/server.h"

static void *mem_alloc(struct info_mem *mem, size_t n, size_t size)
{
	void *p;

	if (mem->n == sizeof(mem->ptrs) / sizeof(mem->ptrs[0]))
		return NULL;
	p = calloc(n ? n : 1, size);
	if (p)
		mem->ptrs[mem->n++] = p;
	return p;
}

void info_mem_release(struct info_mem *mem)
{
	for (unsigned i = 0; i < mem->n; i++)
		free(mem->ptrs[i]);
	mem->n = 0;
}

static Moed__DType wire_dtype(uint32_t dtype)
{
	switch (dtype) {
	case MOED_DTYPE_F32: return MOED__DTYPE__F32;
	case MOED_DTYPE_BF16: return MOED__DTYPE__BF16;
	case MOED_DTYPE_F16: return MOED__DTYPE__F16;
	default: return MOED__DTYPE__DTYPE_INVALID;
	}
}

int info_model(const struct engine *e, Moed__ModelInfo *ret, struct info_mem *mem)
{
	const struct moed_model *m = e->model;
	uint32_t *layers = mem_alloc(mem, m->n_layers, sizeof(uint32_t));

	if (!layers)
		return -ENOMEM;
	moed__model_info__init(ret);
	for (uint32_t i = 0; i < m->n_layers; i++)
		layers[i] = m->layers[i].index;
	ret->source = m->source;
	ret->model_type = m->model_type ? m->model_type : (char *)"";
	ret->num_hidden_layers = m->num_hidden_layers;
	ret->n_moe_layers = m->n_layers;
	ret->moe_layers = layers;
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
	ret->dtype = wire_dtype(m->dtype);
	ret->weight_bytes = m->weight_bytes;
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

int info_loaded_plugins(const struct engine *e, Moed__PluginInfo ***ret_list, size_t *ret_n,
			struct info_mem *mem)
{
	size_t max = 2 * (size_t)e->n_layers, n = 0;
	const struct plugin_gen **seen = mem_alloc(mem, max, sizeof(*seen));
	Moed__PluginInfo *items = mem_alloc(mem, max, sizeof(*items));
	Moed__PluginInfo **list = mem_alloc(mem, max, sizeof(*list));

	if (!seen || !items || !list)
		return -ENOMEM;
	for (uint32_t i = 0; i < e->n_layers; i++) {
		const struct binding *b[2] = { e->layers[i].router, e->layers[i].expert };
		for (int j = 0; j < 2; j++) {
			size_t k;
			if (!b[j])
				continue;
			for (k = 0; k < n && seen[k] != b[j]->gen; k++)
				;
			if (k < n)
				continue;
			seen[n] = b[j]->gen;
			fill_loaded(&items[n], b[j]->gen);
			list[n] = &items[n];
			n++;
		}
	}
	*ret_list = list;
	*ret_n = n;
	return 0;
}

int info_status(const struct server *srv, Moed__StatusResponse *ret, Moed__ModelInfo *model,
		struct info_mem *mem)
{
	int r;

	moed__status_response__init(ret);
	r = info_model(srv->engine, model, mem);
	if (r < 0)
		return r;
	r = info_loaded_plugins(srv->engine, &ret->plugins, &ret->n_plugins, mem);
	if (r < 0)
		return r;
	ret->version = PACKAGE_VERSION;
	ret->uptime_ms = uv_now(srv->loop) - srv->start_ms;
	ret->model = model;
	ret->requests_served = srv->requests_served;
	ret->tokens_served = srv->tokens_served;
	ret->connections = srv->n_sessions;
	ret->workers = pool_threads(srv->pool);
	ret->pid = (uint32_t)getpid();
	return 0;
}

struct scan_acc {
	struct info_mem *mem;
	size_t n, cap;
	Moed__PluginInfo *items;
	struct plugin_probe *probes;
	char (*paths)[512];
};

static void on_scanned(const char *path, const struct plugin_probe *p, void *arg)
{
	struct scan_acc *a = arg;

	if (a->n == a->cap)
		return;
	a->probes[a->n] = *p;
	snprintf(a->paths[a->n], sizeof(a->paths[0]), "%s", path);
	a->n++;
}

int info_plugins(const struct server *srv, Moed__PluginsResponse *ret, struct info_mem *mem)
{
	struct scan_acc a = { .mem = mem, .cap = 256 };
	Moed__PluginInfo **list;
	int r;

	moed__plugins_response__init(ret);
	r = info_loaded_plugins(srv->engine, &ret->loaded, &ret->n_loaded, mem);
	if (r < 0)
		return r;
	a.items = mem_alloc(mem, a.cap, sizeof(*a.items));
	a.probes = mem_alloc(mem, a.cap, sizeof(*a.probes));
	a.paths = mem_alloc(mem, a.cap, sizeof(*a.paths));
	list = mem_alloc(mem, a.cap, sizeof(*list));
	if (!a.items || !a.probes || !a.paths || !list)
		return -ENOMEM;
	ret->plugin_dir = srv->engine->plugin_dir;
	r = loader_scan(srv->engine->plugin_dir, on_scanned, &a);
	if (r < 0)
		return r;
	for (size_t i = 0; i < a.n; i++) {
		Moed__PluginInfo *pi = &a.items[i];
		moed__plugin_info__init(pi);
		pi->name = a.probes[i].name;
		pi->kind = (char *)loader_kind_name(a.probes[i].kind);
		pi->abi_version = a.probes[i].abi_version;
		pi->description = a.probes[i].description;
		pi->path = a.paths[i];
		if (a.probes[i].error[0])
			pi->error = a.probes[i].error;
		list[i] = pi;
	}
	ret->available = list;
	ret->n_available = a.n;
	return 0;
}
