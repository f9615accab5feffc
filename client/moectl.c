/*
 * moectl: command-line client of moed.  Global options come before the
 * command; --json is also accepted anywhere after it.  Each command parses its
 * own options with getopt_long and returns an exit code: 0 ok, 1 the daemon
 * answered with an error, 2 usage, 3 daemon unreachable or protocol failure.
 */
#include "config.h"

#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/moectl.h"
#include "proto/protocol.h"

const struct command moectl_commands[] = {
	{ "status", "status", "version, uptime, model summary, loaded plugins, requests served",
	  cmd_status },
	{ "plugins", "plugins", "loaded and available plugins", cmd_plugins },
	{ "model", "model", "the served model: layers, sizes, routing", cmd_model },
	{ "infer", "infer --layer L (--input X.npy | --random T [--seed N]) [--output Y.npy] [--dtype bf16]",
	  "run MoE layer L on hidden states", cmd_infer },
	{ "route", "route --layer L (--input X.npy | --random T [--seed N]) [--dtype bf16]",
	  "show the experts and weights chosen per token", cmd_route },
	{ "router", "router (set NAME [--param KEY=VALUE]... [--layer L] | show |\n"
		    "             shadow (NAME [--param KEY=VALUE]... [--layer L] [--sample F] | --off [--layer L]))",
	  "replace the router while serving, show routers per layer, or run a candidate beside it",
	  cmd_router },
	{ "expert", "expert set NAME [--param KEY=VALUE]... [--layer L]",
	  "replace the expert backend while serving", cmd_expert },
	{ "stats", "stats [--layer L] [--watch SECONDS]",
	  "expert load, imbalance (MaxVio), bias and latency per layer", cmd_stats },
	{ "bias", "bias (show | reset | freeze | thaw) [--layer L]",
	  "show or change the live router bias", cmd_bias },
	{ "reload", "reload [--wait]", "re-read the daemon's configuration", cmd_reload },
	{ "metrics", "metrics [--openmetrics]",
	  "the Prometheus exposition: requests, latency, tokens per expert, MaxVio, bias", cmd_metrics },
	{ "cluster", "cluster (show | rebalance)",
	  "expert parallelism: experts, bytes and load per rank; rebalance from the recent load",
	  cmd_cluster },
	{ "bench", "bench --clients N --tokens T --duration S [--layer L] [--compare] [--dtype bf16] [--output FILE]",
	  "end-to-end load: tokens/s and latency of N concurrent clients", cmd_bench },
	{ NULL, NULL, NULL, NULL },
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: moectl [-s|--socket PATH] [--json] [-t|--timeout SECONDS] [-h|--help]\n"
		   "              [--version] COMMAND [ARGS]\n\n"
		   "Commands:\n");
	for (const struct command *c = moectl_commands; c->name; c++)
		fprintf(f, "  moectl %s\n      %s\n", c->synopsis, c->help);
	fprintf(f, "\nThe socket defaults to $MOED_SOCKET, else " MOED_DEFAULT_SOCKET ".  The timeout\n"
		   "(default 60 s, 0 for none) applies to each request.\n"
		   "Exit status: 0 ok, 1 server error, 2 usage error, 3 daemon unreachable.\n");
}

int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "moectl%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	for (const struct command *c = moectl_commands; cmd && c->name; c++)
		if (!strcmp(c->name, cmd))
			fprintf(stderr, "usage: moectl %s\n", c->synopsis);
	return EXIT_USAGE;
}

int parse_uint(const char *cmd, const char *opt, const char *s, uint64_t max, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	if (!s || *s == '-' || !*s)
		return usage_error(cmd, "%s needs a non-negative integer", opt);
	v = strtoull(s, &end, 10);
	if (*end || v > max)
		return usage_error(cmd, "%s '%s' is not an integer in 0..%llu", opt, s,
				   (unsigned long long)max);
	*ret = v;
	return EXIT_OK;
}

int moectl_connect(const struct global *g, struct conn *c)
{
	return conn_open(c, g->socket, g->timeout_ms);
}

int moectl_call_once(const struct global *g, Moed__Request *req, Moed__Response **ret)
{
	struct conn c;
	int r = moectl_connect(g, &c);

	if (r != EXIT_OK)
		return r;
	r = conn_call(&c, req, ret);
	conn_close(&c);
	return r;
}

/* Remove every --json from argv (it may follow the command); returns argc. */
static int strip_json(int argc, char **argv, int *json)
{
	int n = 0;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			*json = 1;
		else
			argv[n++] = argv[i];
	}
	argv[n] = NULL;
	return n;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct global g = { .socket = getenv("MOED_SOCKET"), .timeout_ms = 60000 };
	uint64_t secs;
	int c;

	if (!g.socket || !*g.socket)
		g.socket = MOED_DEFAULT_SOCKET;
	/* a daemon that hangs up mid-request is an error to report, not a signal */
	signal(SIGPIPE, SIG_IGN);
	while ((c = getopt_long(argc, argv, "+s:t:hV", opts, NULL)) != -1) {
		switch (c) {
		case 's': g.socket = optarg; break;
		case 'j': g.json = 1; break;
		case 't':
			if (parse_uint(NULL, "--timeout", optarg, 86400, &secs) != EXIT_OK)
				return EXIT_USAGE;
			g.timeout_ms = (int)secs * 1000;
			break;
		case 'h': usage(stdout); return EXIT_OK;
		case 'V': printf("moectl %s\n", PACKAGE_VERSION); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	argc -= optind;
	argv += optind;
	argc = strip_json(argc, argv, &g.json);
	for (const struct command *cmd = moectl_commands; cmd->name; cmd++) {
		if (strcmp(cmd->name, argv[0]))
			continue;
		for (int i = 1; i < argc; i++)
			if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
				printf("usage: moectl %s\n  %s\n", cmd->synopsis, cmd->help);
				return EXIT_OK;
			}
		optind = 0;     /* GNU getopt: 0 re-initialises it for the command's argv */
		return cmd->run(&g, argc, argv);
	}
	return usage_error(NULL, "unknown command '%s' (see moectl --help)", argv[0]);
}
