/*
 * Formatting of a ClusterResponse (moectl cluster show / rebalance), apart
 * from the request so tests can feed hand-built replies.  Layers are JSON
 * object keys, so they appear as strings ("3"); optional fields the daemon did
 * not send are null.
 */
#ifndef MOECTL_CLUSTER_FMT_H
#define MOECTL_CLUSTER_FMT_H

#include <json-c/json.h>
#include <stdio.h>

#include "proto/moed.pb-c.h"

/* The --json object: {"enabled", "placement", "replicas", "epoch",
 * "front_computes", "timeout_ms", "ranks": [{"rank", "host", "pid", "front",
 * "experts": {layer: [ids]}, "computed": {layer: [counts]}, "bytes",
 * "window_tokens", "dispatches"}], "balancedness": {layer: x}} and, with
 * rebalance set, "previous": {layer: x}.  The caller owns the result. */
json_object *cluster_json(const Moed__ClusterResponse *cl, int rebalance);
/* The text form onto f: a header line, one row per rank, balancedness per
 * layer (with the value before, for rebalance). */
void cluster_print(FILE *f, const Moed__ClusterResponse *cl, int rebalance);

#endif
