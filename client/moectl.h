/*
 * moectl: shared definitions of the client's commands.  Each command gets its
 * arguments (after the command name, with --json removed), the global options
 * and returns an exit code.
 */
#ifndef MOECTL_H
#define MOECTL_H

#include "client/conn.h"

#define EXIT_OK 0
#define EXIT_SERVER 1           /* the daemon answered with an error status */
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3      /* cannot connect, connection lost, protocol error */

struct global {
	const char *socket;
	int json;
	int timeout_ms;
};

struct command {
	const char *name;
	const char *synopsis;
	const char *help;
	int (*run)(const struct global *g, int argc, char **argv);
};

/* Connect + hello; prints the reason on failure. */
int moectl_connect(const struct global *g, struct conn *c);
/* Connect, send one request, get the OK reply (caller frees it). */
int moectl_call_once(const struct global *g, Moed__Request *req, Moed__Response **ret);
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parse "--layer N"-style unsigned values; prints a usage error. */
int parse_uint(const char *cmd, const char *opt, const char *s, uint64_t max, uint64_t *ret);

/* --random inputs (cmd_tensor.c): n floats in [-1, 1) from splitmix64(seed). */
void random_fill(float *x, uint64_t n, uint64_t seed);
/* Ask the daemon for H and the first MoE layer (ret_first_moe_layer may be NULL). */
int model_shape(struct conn *c, uint32_t *ret_hidden, uint32_t *ret_first_moe_layer);

/* Commands (cmd_info.c, cmd_tensor.c, cmd_admin.c, cmd_bench.c, cmd_metrics.c,
 * cmd_cluster.c). */
int cmd_status(const struct global *g, int argc, char **argv);
int cmd_plugins(const struct global *g, int argc, char **argv);
int cmd_model(const struct global *g, int argc, char **argv);
int cmd_infer(const struct global *g, int argc, char **argv);
int cmd_route(const struct global *g, int argc, char **argv);
int cmd_router(const struct global *g, int argc, char **argv);
int cmd_expert(const struct global *g, int argc, char **argv);
int cmd_stats(const struct global *g, int argc, char **argv);
int cmd_bias(const struct global *g, int argc, char **argv);
int cmd_reload(const struct global *g, int argc, char **argv);
int cmd_metrics(const struct global *g, int argc, char **argv);
int cmd_bench(const struct global *g, int argc, char **argv);
int cmd_cluster(const struct global *g, int argc, char **argv);

extern const struct command moectl_commands[];

#endif
