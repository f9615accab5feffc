/*
 * Config file parsing.  inih calls config_handler() once per key; a table maps
 * (section, key) to a typed slot, so adding a key is one table row.  Numbers are
 * parsed strictly (the whole value, within the field's range).  The handler
 * records the first error with its line number and stops the parse.
 */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/conf.h"
#include "daemon/log.h"

enum slot_type { SLOT_STRING, SLOT_U32, SLOT_LOGLEVEL };

struct config_key {
	const char *section;
	const char *key;
	enum slot_type type;
	size_t offset;
	uint32_t min, max;
};

#define KEY(sec, name, type, field, lo, hi) \
	{ sec, name, type, offsetof(struct moed_config, field), lo, hi }

static const struct config_key config_keys[] = {
	KEY("daemon", "socket", SLOT_STRING, socket_path, 0, 0),
	KEY("daemon", "plugin_dir", SLOT_STRING, plugin_dir, 0, 0),
	KEY("daemon", "state_dir", SLOT_STRING, state_dir, 0, 0),
	KEY("daemon", "log_level", SLOT_LOGLEVEL, log_level, 0, 0),
	KEY("daemon", "workers", SLOT_U32, workers, 0, 1024),
	KEY("daemon", "admin_group", SLOT_STRING, admin_group, 0, 0),
	KEY("daemon", "admin_socket", SLOT_STRING, admin_socket, 0, 0),
	KEY("daemon", "allow_group_writable_plugins", SLOT_U32, allow_group_writable_plugins, 0, 1),
	KEY("daemon", "socket_mode", SLOT_U32, socket_mode, 0, 0777),
	KEY("daemon", "socket_group", SLOT_STRING, socket_group, 0, 0),
	KEY("daemon", "state_save_interval_s", SLOT_U32, state_save_interval_s, 0, 86400),
	KEY("daemon", "stats_window_s", SLOT_U32, stats_window_s, 1, 86400),
	KEY("model", "path", SLOT_STRING, model_path, 0, 0),
	KEY("router", "plugin", SLOT_STRING, router, 0, 0),
	KEY("expert", "plugin", SLOT_STRING, expert, 0, 0),
	KEY("expert", "weights", SLOT_STRING, expert_weights, 0, 0),
	KEY("limits", "max_frame_bytes", SLOT_U32, max_frame_bytes, 64, 1u << 31),
	KEY("limits", "max_connections", SLOT_U32, max_connections, 1, 1u << 20),
	KEY("limits", "max_inflight_per_conn", SLOT_U32, max_inflight_per_conn, 1, 1u << 16),
	KEY("limits", "queue_depth", SLOT_U32, queue_depth, 1, 1u << 20),
	KEY("limits", "max_tokens_per_request", SLOT_U32, max_tokens_per_request, 1, 1u << 24),
	KEY("limits", "shutdown_timeout_ms", SLOT_U32, shutdown_timeout_ms, 0, 3600000),
	KEY("limits", "idle_timeout_ms", SLOT_U32, idle_timeout_ms, 0, 86400000),
	KEY("limits", "frame_timeout_ms", SLOT_U32, frame_timeout_ms, 100, 3600000),
	KEY("limits", "write_high_water", SLOT_U32, write_high_water, 4096, 1u << 31),
	KEY("limits", "write_hard_cap", SLOT_U32, write_hard_cap, 4096, 1u << 31),
	KEY("limits", "max_batch_tokens", SLOT_U32, max_batch_tokens, 1, 1u << 24),
	KEY("limits", "max_queued_tokens", SLOT_U32, max_queued_tokens, 1, 1u << 30),
	KEY("limits", "coalesce_window_us", SLOT_U32, coalesce_window_us, 0, 1000000),
	KEY("limits", "max_running_batches", SLOT_U32, max_running_batches, 0, 1u << 16),
};

struct parse_ctx {
	struct moed_config *cfg;
	const char *name;
	char *err;
	size_t errlen;
	int rc;
};

int config_set_string(char **slot, const char *value)
{
	char *copy = NULL;

	if (value && !(copy = strdup(value)))
		return -ENOMEM;
	free(*slot);
	*slot = copy;
	return 0;
}

void config_init(struct moed_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->log_level = MOED_LOG_INFO;
	cfg->socket_mode = 0660;
	cfg->state_save_interval_s = 60;
	cfg->stats_window_s = 60;
	cfg->max_frame_bytes = 64u << 20;
	cfg->max_connections = 256;
	cfg->max_inflight_per_conn = 64;
	cfg->queue_depth = 1024;
	cfg->max_tokens_per_request = 65536;
	cfg->shutdown_timeout_ms = 10000;
	cfg->idle_timeout_ms = 600000;
	cfg->frame_timeout_ms = 30000;
	cfg->write_high_water = 64u << 20;
	cfg->write_hard_cap = 512u << 20;
	cfg->max_batch_tokens = 1024;
	cfg->max_queued_tokens = 1u << 20;
	cfg->coalesce_window_us = 0;
	cfg->max_running_batches = 1;
}

void config_params_clear(struct config_params *ps)
{
	for (size_t i = 0; i < ps->n; i++) {
		free((char *)ps->p[i].key);
		free((char *)ps->p[i].value);
	}
	ps->n = 0;
}

int config_params_set(struct config_params *ps, const char *key, const char *value)
{
	for (size_t i = 0; i < ps->n; i++) {
		if (strcmp(ps->p[i].key, key) == 0) {
			char *v = strdup(value);
			if (!v)
				return -ENOMEM;
			free((char *)ps->p[i].value);
			ps->p[i].value = v;
			return 0;
		}
	}
	if (ps->n == CONFIG_MAX_PARAMS)
		return -E2BIG;
	char *k = strdup(key), *v = strdup(value);
	if (!k || !v) {
		free(k);
		free(v);
		return -ENOMEM;
	}
	ps->p[ps->n].key = k;
	ps->p[ps->n].value = v;
	ps->n++;
	return 0;
}

void config_release(struct moed_config *cfg)
{
	free(cfg->socket_path);
	free(cfg->plugin_dir);
	free(cfg->state_dir);
	free(cfg->admin_group);
	free(cfg->admin_socket);
	free(cfg->socket_group);
	free(cfg->model_path);
	free(cfg->router);
	free(cfg->expert);
	free(cfg->expert_weights);
	config_params_clear(&cfg->router_params);
	config_params_clear(&cfg->expert_params);
	memset(cfg, 0, sizeof(*cfg));
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *ret)
{
	char *end;
	unsigned long long v;

	if (*s == '-' || *s == '\0')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end != '\0' || v < lo || v > hi)
		return -ERANGE;
	*ret = (uint32_t)v;
	return 0;
}

static int set_key(struct parse_ctx *c, const struct config_key *k, const char *value)
{
	void *slot = (char *)c->cfg + k->offset;
	uint32_t u;
	int lvl;

	switch (k->type) {
	case SLOT_STRING:
		if (*value == '\0') {
			snprintf(c->err, c->errlen, "'%s' must not be empty", k->key);
			return -EINVAL;
		}
		return config_set_string(slot, value);
	case SLOT_U32:
		if (parse_u32(value, k->min, k->max, &u) < 0) {
			snprintf(c->err, c->errlen, "'%s' must be an integer in %u..%u, got '%s'",
				 k->key, k->min, k->max, value);
			return -EINVAL;
		}
		*(uint32_t *)slot = u;
		return 0;
	case SLOT_LOGLEVEL:
		lvl = log_level_parse(value);
		if (lvl < 0) {
			snprintf(c->err, c->errlen,
				 "'%s' must be one of err, warning, notice, info, debug; got '%s'",
				 k->key, value);
			return -EINVAL;
		}
		*(int *)slot = lvl;
		return 0;
	}
	return -EINVAL;
}

static int config_handler(void *user, const char *section, const char *key, const char *value)
{
	struct parse_ctx *c = user;
	char reason[384] = "";
	int r = -EINVAL;

	if (c->rc < 0)
		return 1;
	for (size_t i = 0; i < sizeof(config_keys) / sizeof(config_keys[0]); i++) {
		if (strcmp(config_keys[i].section, section) == 0 &&
		    strcmp(config_keys[i].key, key) == 0) {
			struct parse_ctx sub = *c;
			sub.err = reason;
			sub.errlen = sizeof(reason);
			r = set_key(&sub, &config_keys[i], value);
			goto out;
		}
	}
	if (strcmp(section, "router") == 0 || strcmp(section, "expert") == 0) {
		struct config_params *ps = section[0] == 'r' ? &c->cfg->router_params
							     : &c->cfg->expert_params;
		r = config_params_set(ps, key, value);
		if (r == -E2BIG)
			snprintf(reason, sizeof(reason), "more than %d parameters", CONFIG_MAX_PARAMS);
		goto out;
	}
	if (strcmp(section, "daemon") && strcmp(section, "model") && strcmp(section, "limits"))
		snprintf(reason, sizeof(reason), "unknown section [%s]", section);
	else
		snprintf(reason, sizeof(reason), "unknown key '%s' in [%s]", key, section);
out:
	if (r < 0) {
		if (!reason[0])
			snprintf(reason, sizeof(reason), "%s", strerror(-r));
		/* the line number comes back from ini_parse_*() itself */
		snprintf(c->err, c->errlen, "%s", reason);
		c->rc = r;
		return 0;
	}
	return 1;
}

static int finish(struct parse_ctx *c, int ini_rc)
{
	if (c->rc < 0) {
		char reason[384];
		snprintf(reason, sizeof(reason), "%s", c->err);
		snprintf(c->err, c->errlen, "%s:%d: %s", c->name, ini_rc, reason);
		return c->rc;
	}
	if (ini_rc > 0) {
		snprintf(c->err, c->errlen, "%s:%d: syntax error", c->name, ini_rc);
		return -EINVAL;
	}
	if (ini_rc < 0) {
		snprintf(c->err, c->errlen, "%s: cannot read: %s", c->name,
			 ini_rc == -1 ? strerror(errno) : "out of memory");
		return ini_rc == -1 ? -errno ? -errno : -EIO : -ENOMEM;
	}
	return 0;
}

int config_load(struct moed_config *cfg, const char *path, char *err, size_t errlen)
{
	struct parse_ctx c = { cfg, path, err, errlen, 0 };
	FILE *f = fopen(path, "re");

	if (!f) {
		int e = errno;
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
		return -e;
	}
	int r = finish(&c, ini_parse_file(f, config_handler, &c));
	fclose(f);
	return r;
}

int config_load_string(struct moed_config *cfg, const char *text, const char *name, char *err,
		       size_t errlen)
{
	struct parse_ctx c = { cfg, name, err, errlen, 0 };

	return finish(&c, ini_parse_string(text, config_handler, &c));
}

int config_validate(const struct moed_config *cfg, char *err, size_t errlen)
{
	if (cfg->socket_path && strlen(cfg->socket_path) > 107) {
		snprintf(err, errlen, "socket path '%s' is %zu bytes; Unix sockets allow 107",
			 cfg->socket_path, strlen(cfg->socket_path));
		return -ENAMETOOLONG;
	}
	if (cfg->admin_socket && strlen(cfg->admin_socket) > 107) {
		snprintf(err, errlen, "admin socket path '%s' is longer than 107 bytes",
			 cfg->admin_socket);
		return -ENAMETOOLONG;
	}
	if (cfg->expert_weights && strcmp(cfg->expert_weights, "bf16") &&
	    strcmp(cfg->expert_weights, "fp32")) {
		snprintf(err, errlen, "[expert] weights must be bf16 or fp32, got '%s'",
			 cfg->expert_weights);
		return -EINVAL;
	}
	if (cfg->write_high_water > cfg->write_hard_cap) {
		snprintf(err, errlen, "[limits] write_high_water (%u) exceeds write_hard_cap (%u)",
			 cfg->write_high_water, cfg->write_hard_cap);
		return -EINVAL;
	}
	if (cfg->max_inflight_per_conn > cfg->queue_depth) {
		snprintf(err, errlen, "[limits] max_inflight_per_conn (%u) exceeds queue_depth (%u)",
			 cfg->max_inflight_per_conn, cfg->queue_depth);
		return -EINVAL;
	}
	return 0;
}
