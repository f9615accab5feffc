/*
 * moectl cluster show | rebalance: where every layer's routed experts live in
 * an expert-parallel job (mpirun -np N moed), and a rebalance from the stats
 * window's load.  One request each (rebalance needs admin rights, checked by
 * the daemon); the reply is printed by cluster_fmt.c.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "client/cluster_fmt.h"
#include "client/moectl.h"
#include "client/output.h"

int cmd_cluster(const struct global *g, int argc, char **argv)
{
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__ClusterRequest cr = MOED__CLUSTER_REQUEST__INIT;
	Moed__Response *resp;
	int rebalance, r;

	if (argc < 2 || (strcmp(argv[1], "show") && strcmp(argv[1], "rebalance")))
		return usage_error("cluster", "want 'show' or 'rebalance'");
	if (argc > 2)
		return usage_error("cluster", "unexpected argument '%s'", argv[2]);
	rebalance = !strcmp(argv[1], "rebalance");
	if (rebalance) {
		req.body_case = MOED__REQUEST__BODY_CLUSTER_REBALANCE;
		req.cluster_rebalance = &cr;
	} else {
		req.body_case = MOED__REQUEST__BODY_CLUSTER_SHOW;
		req.cluster_show = &cr;
	}
	r = moectl_call_once(g, &req, &resp);
	if (r != EXIT_OK)
		return r;
	if (g->json)
		json_print(cluster_json(resp->cluster, rebalance));
	else
		cluster_print(stdout, resp->cluster, rebalance);
	moed__response__free_unpacked(resp, NULL);
	return EXIT_OK;
}
