/*
 * Builders for the descriptive replies (status, plugins, model).  Each fills a
 * protobuf message whose strings point into daemon-owned memory and whose arrays
 * are heap storage recorded in `struct info_mem`; info_mem_release() frees them
 * after the reply has been packed.
 */
#ifndef MOED_INFO_H
#define MOED_INFO_H

#include "proto/moed.pb-c.h"

struct engine;
struct server;

struct info_mem {
	void *ptrs[16];
	unsigned n;
};

void info_mem_release(struct info_mem *mem);

int info_model(const struct engine *e, Moed__ModelInfo *ret, struct info_mem *mem);
int info_loaded_plugins(const struct engine *e, Moed__PluginInfo ***ret_list, size_t *ret_n,
			struct info_mem *mem);
int info_status(const struct server *srv, Moed__StatusResponse *ret, Moed__ModelInfo *model,
		struct info_mem *mem);
int info_plugins(const struct server *srv, Moed__PluginsResponse *ret, struct info_mem *mem);

#endif
