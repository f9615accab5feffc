/*
 * The cluster requests: `cluster show` and `cluster rebalance`.  On a
 * single-process moed both answer enabled = false; under mpirun they are
 * served from daemon/cluster.c (placement, per-rank counters).
 */
#include "config.h"

#include "daemon/service.h"

static void answer_single(const struct reply_to *to)
{
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__ClusterResponse cl = MOED__CLUSTER_RESPONSE__INIT;

	cl.enabled = 0;
	resp.body_case = MOED__RESPONSE__BODY_CLUSTER;
	resp.cluster = &cl;
	reply_ok(to, &resp);
}

int handle_cluster_show(struct service *svc, struct caller *c, const struct reply_to *to,
			Moed__Request *req)
{
	(void)svc;
	(void)c;
	(void)req;
	answer_single(to);
	return 0;
}

int handle_cluster_rebalance(struct service *svc, struct caller *c, const struct reply_to *to,
			     Moed__Request *req)
{
	(void)svc;
	(void)c;
	(void)req;
	answer_single(to);
	return 0;
}
