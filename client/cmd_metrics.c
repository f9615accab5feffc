/*
 * moectl metrics: print the daemon's Prometheus exposition as the daemon built
 * it (text format 0.0.4, or OpenMetrics 1.0 with --openmetrics), for a
 * scraper's textfile collector or a quick look; --json wraps it with its
 * content type.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "client/moectl.h"
#include "client/output.h"

int cmd_metrics(const struct global *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "openmetrics", no_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__MetricsRequest mr = MOED__METRICS_REQUEST__INIT;
	Moed__Response *resp;
	int c, r;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'o')
			return usage_error("metrics", "unknown option");
		mr.has_openmetrics = 1;
		mr.openmetrics = 1;
	}
	if (optind < argc)
		return usage_error("metrics", "unexpected argument '%s'", argv[optind]);
	req.body_case = MOED__REQUEST__BODY_METRICS;
	req.metrics = &mr;
	r = moectl_call_once(g, &req, &resp);
	if (r != EXIT_OK)
		return r;
	if (g->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "content_type",
				       json_object_new_string(resp->metrics->content_type));
		json_object_object_add(o, "text", json_object_new_string(resp->metrics->text));
		json_print(o);
	} else {
		fputs(resp->metrics->text, stdout);
	}
	moed__response__free_unpacked(resp, NULL);
	return EXIT_OK;
}
