/*
 * moed.conf: the daemon's settings, read from an INI file (inih) and then
 * overridden by command-line flags.  Every key is one row of a table
 * (section, name, type, range, default, reload policy, one line of doc): the
 * parser, the defaults of config_init(), reload planning (daemon/reload.h), the
 * key dump behind the man-page test and `moed --list-config-keys` all read it.
 * Unknown sections or keys are errors (naming file and line), so a typo never
 * silently falls back to a default.  In [router] and [expert], every key that
 * is not a row (`plugin`, `[expert] weights`) is passed to the plugin as a
 * parameter; the plugin's declared parameters are checked elsewhere.
 */
#ifndef MOED_CONFIG_H
#define MOED_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "include/moed/plugin.h"
#include "proto/version.h"

#define MOED_DEFAULT_STATE_DIR "/var/lib/moed"
#define CONFIG_MAX_PARAMS 32
#define CONFIG_MAX_KEYS 64              /* rows; a reload plan keeps one bit per row */

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
	char *model_layers;             /* [model] layers "1-3,7", NULL = all */
	/* [router] */
	char *router;                   /* NULL = what the model's config names */
	struct config_params router_params;
	/* [expert] */
	char *expert;
	char *expert_weights;           /* "bf16", "fp32", "fp8", NULL = as stored */
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
	uint32_t coalesce_regroup_us;   /* after a batch, wait this long for its clients; 0 = no */
	uint32_t max_running_batches;   /* jobs on the pool before infers wait; 0 = workers */
	uint32_t compute_timeout_ms;    /* a route()/forward() call past this is abandoned */
	uint64_t max_buffered_bytes;    /* unsent replies + partial frames, all clients; 0 = auto */
	uint32_t write_timeout_ms;      /* drop a client with unsent replies reading nothing; 0 = never */
	/* [metrics] */
	char *metrics_listen;           /* HOST:PORT of the HTTP listener; NULL = none */
	uint32_t metrics_allow_remote;  /* may listen bind a non-loopback address */
	/* [cluster] (under mpirun; see daemon/cluster.h) */
	char *cluster_placement;        /* "contiguous" or "balanced" */
	uint32_t cluster_replicas;      /* extra copies of the hottest experts (balanced) */
	uint32_t cluster_front_computes; /* rank 0 holds routed experts too */
	uint32_t cluster_timeout_ms;    /* a rank silent or a dispatch unanswered this long */
};

/* How a row's value is stored at `offset` in struct moed_config. */
enum config_type {
	CONFIG_STRING,          /* char *, NULL = unset */
	CONFIG_U32,             /* uint32_t (or unsigned) within min..max */
	CONFIG_U64,             /* uint64_t within min..max */
	CONFIG_BOOL,            /* uint32_t 0/1; written 0/1, yes/no, true/false */
	CONFIG_LOGLEVEL,        /* int MOED_LOG_* ; written err .. debug */
	CONFIG_ENUM,            /* char * holding one of `choices`, NULL = unset */
};

/* LIVE: a reload applies a changed value; RESTART: it is reported, not applied. */
enum config_policy { CONFIG_LIVE, CONFIG_RESTART };

#define CONFIG_ZERO_OK 1u       /* 0 is valid besides min..max (e.g. 0 = auto) */

struct config_key {
	const char *section;
	const char *name;
	const char *full;       /* "section.name": the name reload reports */
	enum config_type type;
	enum config_policy policy;
	size_t offset;
	uint64_t min, max;      /* numbers */
	unsigned flags;         /* CONFIG_ZERO_OK */
	const char *def;        /* default, parsed like a file value; NULL = unset */
	const char *shown;      /* default as documented when it depends on the build, or NULL */
	const char *const *choices;     /* CONFIG_ENUM: NULL-terminated */
	const char *doc;        /* one line */
};

/* The table: rows 0..config_key_count()-1, in file order.  Static storage. */
size_t config_key_count(void);
const struct config_key *config_key_at(size_t i);
/* The row of (section, name), or NULL (plugin parameters have none). */
const struct config_key *config_key_find(const char *section, const char *name);
/* One line per row: `section name type default policy doc`, type as
 * `u32[lo..hi]`, `u64[0|lo..hi]`, `enum[a|b]`, default `-` when unset. */
void config_keys_print(FILE *f);

/* Whether two configs hold the same value for row k, and moving it from src
 * to dst (strings are swapped, so src keeps dst's old value to free). */
int config_key_equal(const struct config_key *k, const struct moed_config *a,
		     const struct moed_config *b);
void config_key_move(const struct config_key *k, struct moed_config *dst,
		     struct moed_config *src);

/* Every row's default; 0 or -ENOMEM (cfg is then still safe to release). */
int config_init(struct moed_config *cfg);
void config_release(struct moed_config *cfg);
/* Parse `path` over the values already in cfg.  -errno with a reason in err. */
int config_load(struct moed_config *cfg, const char *path, char *err, size_t errlen);
/* Parse an in-memory INI text (tests, fuzzing); `name` is used in messages. */
int config_load_string(struct moed_config *cfg, const char *text, const char *name, char *err,
		       size_t errlen);
/* Cross-field checks after flags were applied. */
int config_validate(const struct moed_config *cfg, char *err, size_t errlen);

/* [limits] max_buffered_bytes resolved: the value, or for 0 a quarter of the
 * physical memory capped at 1 GiB (1 GiB when the memory size is unknown). */
uint64_t config_buffered_budget(const struct moed_config *cfg);

int config_params_set(struct config_params *ps, const char *key, const char *value);
void config_params_clear(struct config_params *ps);
int config_params_equal(const struct config_params *a, const struct config_params *b);

/* The line of `key = ...` in [section] of the file at path, for messages about
 * values checked after parsing (plugin parameters); 0 when not found. */
int config_find_line(const char *path, const char *section, const char *key);

/* Replace *slot by a copy of value (NULL clears).  -ENOMEM. */
int config_set_string(char **slot, const char *value);

#endif
