/*
 * moed.conf: the daemon's settings, read from an INI file (inih) and then
 * overridden by command-line flags.  Every key has a documented default set by
 * config_init(); unknown sections or keys are errors (naming file and line), so
 * a typo never silently falls back to a default.  In [router] and [expert],
 * every key other than `plugin` is passed to the plugin as a parameter.
 */
#ifndef MOED_CONFIG_H
#define MOED_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "include/moed/plugin.h"
#include "proto/version.h"

#define MOED_DEFAULT_STATE_DIR "/var/lib/moed"
#define CONFIG_MAX_PARAMS 32

struct config_params {
	size_t n;
	struct moed_param p[CONFIG_MAX_PARAMS];   /* strings owned by the list */
};

struct moed_config {
	/* [daemon] */
	char *socket_path;
	char *plugin_dir;
	char *state_dir;
	int log_level;                  /* MOED_LOG_* */
	unsigned workers;               /* 0 = number of online CPUs */
	char *admin_group;              /* members may use admin operations */
	char *admin_socket;             /* optional socket (mode 0600) for admin peers */
	uint32_t allow_group_writable_plugins; /* root-owned, group-writable plugin paths ok */
	uint32_t socket_mode;           /* permissions of the bound socket */
	char *socket_group;             /* group of the bound socket */
	uint32_t state_save_interval_s; /* 0 = only on swap, reload and exit */
	uint32_t stats_window_s;        /* the "recent" window of moectl stats */
	/* [model] */
	char *model_path;               /* NULL = embedded synthetic S0 */
	/* [router] */
	char *router;                   /* NULL = what the model's config names */
	struct config_params router_params;
	/* [expert] */
	char *expert;
	char *expert_weights;           /* "bf16", "fp32", NULL = as stored */
	struct config_params expert_params;
	/* [limits] */
	uint32_t max_frame_bytes;
	uint32_t max_connections;
	uint32_t max_inflight_per_conn;
	uint32_t queue_depth;           /* jobs waiting for a worker */
	uint32_t max_tokens_per_request;
	uint32_t shutdown_timeout_ms;
	uint32_t idle_timeout_ms;       /* close a connection silent this long; 0 = never */
	uint32_t frame_timeout_ms;      /* a started frame must complete within this */
	uint32_t write_high_water;      /* stop reading a client with this many unsent bytes */
	uint32_t write_hard_cap;        /* drop a client with this many unsent bytes */
	uint32_t max_batch_tokens;      /* coalesced infer batch size cap */
	uint32_t max_queued_tokens;     /* tokens accepted and not yet answered, all clients */
	uint32_t coalesce_window_us;    /* wait this long to coalesce even when idle; 0 = no */
	uint32_t max_running_batches;   /* jobs on the pool before infers wait; 0 = workers */
};

void config_init(struct moed_config *cfg);
void config_release(struct moed_config *cfg);
/* Parse `path` over the values already in cfg.  -errno with a reason in err. */
int config_load(struct moed_config *cfg, const char *path, char *err, size_t errlen);
/* Parse an in-memory INI text (tests, fuzzing); `name` is used in messages. */
int config_load_string(struct moed_config *cfg, const char *text, const char *name, char *err,
		       size_t errlen);
/* Cross-field checks after flags were applied. */
int config_validate(const struct moed_config *cfg, char *err, size_t errlen);

int config_params_set(struct config_params *ps, const char *key, const char *value);
void config_params_clear(struct config_params *ps);

/* Replace *slot by a copy of value (NULL clears).  -ENOMEM. */
int config_set_string(char **slot, const char *value);

#endif
