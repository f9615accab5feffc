/*
 * How moectl shows a cluster: a ClusterResponse as one JSON object (json-c)
 * or as text for people.  Pure formatting over the decoded reply; the request
 * itself is in cmd_cluster.c.  Per-layer values become objects keyed by the
 * layer number as a string, the shape `moectl cluster show --json` promises
 * (issue 16); a field the daemon left out is null, not a made-up zero.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>

#include "client/cluster_fmt.h"
#include "client/output.h"

static json_object *opt_u64(int has, uint64_t v)
{
	return has ? json_object_new_uint64(v) : NULL;
}

static json_object *opt_bool(int has, int v)
{
	return has ? json_object_new_boolean(v) : NULL;
}

static void layer_key(char *buf, size_t len, uint32_t layer)
{
	snprintf(buf, len, "%" PRIu32, layer);
}

static json_object *balance_json(Moed__ClusterBalance **b, size_t n)
{
	json_object *o = json_object_new_object();
	char key[16];

	for (size_t i = 0; i < n; i++) {
		layer_key(key, sizeof(key), b[i]->layer);
		json_object_object_add(o, key, json_object_new_double(b[i]->balancedness));
	}
	return o;
}

static json_object *rank_json(const Moed__ClusterRank *r)
{
	json_object *o = json_object_new_object(), *ex = json_object_new_object(),
		    *comp = json_object_new_object();
	char key[16];

	for (size_t i = 0; i < r->n_experts; i++) {
		const Moed__ClusterExperts *e = r->experts[i];
		json_object *ids = json_object_new_array_ext((int)e->n_ids);
		for (size_t j = 0; j < e->n_ids; j++)
			json_object_array_add(ids, json_object_new_uint64(e->ids[j]));
		layer_key(key, sizeof(key), e->layer);
		json_object_object_add(ex, key, ids);
		json_object_object_add(comp, key, json_u64_array(e->computed, e->n_computed));
	}
	json_object_object_add(o, "rank", json_object_new_uint64(r->rank));
	json_object_object_add(o, "host", r->host ? json_object_new_string(r->host) : NULL);
	json_object_object_add(o, "pid", opt_u64(r->has_pid, r->pid));
	json_object_object_add(o, "front", json_object_new_boolean(r->has_front && r->front));
	json_object_object_add(o, "experts", ex);
	json_object_object_add(o, "computed", comp);
	json_object_object_add(o, "bytes", opt_u64(r->has_bytes, r->bytes));
	json_object_object_add(o, "window_tokens", opt_u64(r->has_window_tokens, r->window_tokens));
	json_object_object_add(o, "dispatches", opt_u64(r->has_dispatches, r->dispatches));
	json_object_object_add(o, "bytes_out", opt_u64(r->has_bytes_out, r->bytes_out));
	json_object_object_add(o, "bytes_in", opt_u64(r->has_bytes_in, r->bytes_in));
	json_object_object_add(o, "compute_us", opt_u64(r->has_compute_us, r->compute_us));
	return o;
}

json_object *cluster_json(const Moed__ClusterResponse *cl, int rebalance)
{
	json_object *o = json_object_new_object(), *ranks = json_object_new_array();

	for (size_t i = 0; cl->enabled && i < cl->n_ranks; i++)
		json_object_array_add(ranks, rank_json(cl->ranks[i]));
	json_object_object_add(o, "enabled", json_object_new_boolean(cl->enabled));
	json_object_object_add(o, "placement",
			       cl->placement ? json_object_new_string(cl->placement) : NULL);
	json_object_object_add(o, "replicas", opt_u64(cl->has_replicas, cl->replicas));
	json_object_object_add(o, "epoch", opt_u64(cl->has_epoch, cl->epoch));
	json_object_object_add(o, "front_computes",
			       opt_bool(cl->has_front_computes, cl->front_computes));
	json_object_object_add(o, "timeout_ms", opt_u64(cl->has_timeout_ms, cl->timeout_ms));
	json_object_object_add(o, "calls", opt_u64(cl->has_calls, cl->calls));
	json_object_object_add(o, "split_us", opt_u64(cl->has_split_us, cl->split_us));
	json_object_object_add(o, "local_us", opt_u64(cl->has_local_us, cl->local_us));
	json_object_object_add(o, "wait_us", opt_u64(cl->has_wait_us, cl->wait_us));
	json_object_object_add(o, "combine_us", opt_u64(cl->has_combine_us, cl->combine_us));
	json_object_object_add(o, "ranks", ranks);
	json_object_object_add(o, "balancedness", balance_json(cl->balancedness, cl->n_balancedness));
	if (rebalance)
		json_object_object_add(o, "previous", balance_json(cl->previous, cl->n_previous));
	return o;
}

static void print_opt(FILE *f, const char *name, int has, uint64_t v)
{
	if (has)
		fprintf(f, "  %s %" PRIu64, name, v);
	else
		fprintf(f, "  %s -", name);
}

static const Moed__ClusterBalance *find_layer(Moed__ClusterBalance **b, size_t n, uint32_t layer)
{
	for (size_t i = 0; i < n; i++)
		if (b[i]->layer == layer)
			return b[i];
	return NULL;
}

void cluster_print(FILE *f, const Moed__ClusterResponse *cl, int rebalance)
{
	char bytes[32];

	if (!cl->enabled) {
		fputs("cluster: not enabled (single process)\n", f);
		return;
	}
	fprintf(f, "placement %s", cl->placement ? cl->placement : "-");
	print_opt(f, "replicas", cl->has_replicas, cl->replicas);
	print_opt(f, "epoch", cl->has_epoch, cl->epoch);
	fprintf(f, "  front_computes %s",
		!cl->has_front_computes ? "-" : cl->front_computes ? "yes" : "no");
	print_opt(f, "timeout_ms", cl->has_timeout_ms, cl->timeout_ms);
	fprintf(f, "\n\n%-5s %-20s %-8s %-8s %-10s %-14s %s\n", "rank", "host", "pid", "experts",
		"bytes", "window tokens", "dispatches");
	for (size_t i = 0; i < cl->n_ranks; i++) {
		const Moed__ClusterRank *r = cl->ranks[i];
		uint64_t copies = 0;
		char rank[16], pid[16];

		for (size_t j = 0; j < r->n_experts; j++)
			copies += r->experts[j]->n_ids;
		snprintf(rank, sizeof(rank), "%" PRIu32 "%s", r->rank, r->has_front && r->front ? "*" : "");
		if (r->has_pid)
			snprintf(pid, sizeof(pid), "%" PRIu32, r->pid);
		else
			snprintf(pid, sizeof(pid), "-");
		fprintf(f, "%-5s %-20s %-8s %-8" PRIu64 " %-10s ", rank, r->host ? r->host : "-", pid,
			copies, r->has_bytes ? human_bytes(r->bytes, bytes, sizeof(bytes)) : "-");
		if (r->has_window_tokens)
			fprintf(f, "%-14" PRIu64, r->window_tokens);
		else
			fprintf(f, "%-14s", "-");
		if (r->has_dispatches)
			fprintf(f, " %" PRIu64 "\n", r->dispatches);
		else
			fputs(" -\n", f);
	}
	fputs("(* the front)\n", f);
	if (cl->has_calls && cl->calls)
		fprintf(f, "per batch (%" PRIu64 "): split %.1f us, own share %.1f us, waiting %.1f us, "
			"combine %.1f us\n", cl->calls, (double)cl->split_us / (double)cl->calls,
			(double)cl->local_us / (double)cl->calls, (double)cl->wait_us / (double)cl->calls,
			(double)cl->combine_us / (double)cl->calls);
	fputc('\n', f);
	fprintf(f, rebalance ? "%-6s %-12s %s\n" : "%-6s %s\n", "layer", "balancedness", "before");
	for (size_t i = 0; i < cl->n_balancedness; i++) {
		const Moed__ClusterBalance *b = cl->balancedness[i];
		const Moed__ClusterBalance *p = find_layer(cl->previous, cl->n_previous, b->layer);

		if (!rebalance)
			fprintf(f, "%-6" PRIu32 " %.4f\n", b->layer, b->balancedness);
		else if (p)
			fprintf(f, "%-6" PRIu32 " %-12.4f %.4f\n", b->layer, b->balancedness,
				p->balancedness);
		else
			fprintf(f, "%-6" PRIu32 " %-12.4f -\n", b->layer, b->balancedness);
	}
}
