/*
 * Config file parsing, driven by one table.  Each key of moed.conf is a row of
 * config_keys[] (section, name, type, range, default, reload policy, doc) that
 * names a typed slot in struct moed_config by offset.  inih calls
 * config_handler() once per line; the row found there parses the value
 * strictly (the whole value, within the row's range) and stores it.
 * config_init() parses every row's default with the same code, so a default
 * lives in one place and is checked like a file value.  Reload planning compares
 * and moves values through config_key_equal()/config_key_move(), and
 * config_keys_print() dumps the rows for the man-page test.  The handler records
 * the first error and stops the parse; inih supplies the line number.
 */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "daemon/conf.h"
#include "daemon/listen_addr.h"
#include "daemon/log.h"
#include "daemon/params.h"

#define ROW(sec, key, ty, pol, field, lo, hi, fl, dflt, shw, ch, text) \
	{ .section = sec, .name = key, .full = sec "." key, .type = ty, .policy = pol, \
	  .offset = offsetof(struct moed_config, field), .min = lo, .max = hi, .flags = fl, \
	  .def = dflt, .shown = shw, .choices = ch, .doc = text }
#define STR(sec, key, pol, field, dflt, shw, text) \
	ROW(sec, key, CONFIG_STRING, pol, field, 0, 0, 0, dflt, shw, NULL, text)
#define U32(sec, key, pol, field, lo, hi, dflt, text) \
	ROW(sec, key, CONFIG_U32, pol, field, lo, hi, 0, dflt, NULL, NULL, text)
#define LIVE CONFIG_LIVE
#define RESTART CONFIG_RESTART

static const char *const weights_choices[] = { "bf16", "fp32", "fp8", NULL };
static const char *const placement_choices[] = { "contiguous", "balanced", NULL };

static const struct config_key config_keys[] = {
	STR("daemon", "socket", RESTART, socket_path, MOED_DEFAULT_SOCKET, NULL,
	    "API socket path (at most 107 bytes); ignored under socket activation"),
	STR("daemon", "plugin_dir", RESTART, plugin_dir, MOED_PLUGIN_DIR, "lib/moed/plugins",
	    "directory searched for plugins by name"),
	STR("daemon", "state_dir", RESTART, state_dir, MOED_DEFAULT_STATE_DIR, NULL,
	    "directory of the saved router state"),
	ROW("daemon", "log_level", CONFIG_LOGLEVEL, LIVE, log_level, 0, 0, 0, "info", NULL, NULL,
	    "err, warning, notice, info or debug"),
	U32("daemon", "workers", RESTART, workers, 0, 1024, "0",
	    "worker threads; 0 = one per CPU moed may run on"),
	STR("daemon", "admin_group", LIVE, admin_group, NULL, NULL,
	    "members of this group may use admin operations"),
	STR("daemon", "admin_socket", RESTART, admin_socket, NULL, NULL,
	    "second socket, mode 0600, whose peers are admins"),
	ROW("daemon", "allow_group_writable_plugins", CONFIG_BOOL, LIVE,
	    allow_group_writable_plugins, 0, 1, 0, "0", NULL, NULL,
	    "accept root-owned plugin paths writable by their group"),
	U32("daemon", "socket_mode", RESTART, socket_mode, 0, 0777, "0660",
	    "permissions of a socket moed binds itself"),
	STR("daemon", "socket_group", RESTART, socket_group, NULL, NULL,
	    "group of a socket moed binds itself"),
	U32("daemon", "state_save_interval_s", LIVE, state_save_interval_s, 0, 86400, "60",
	    "save the router state this often; 0 = only on swap, reload and exit"),
	U32("daemon", "stats_window_s", RESTART, stats_window_s, 1, 86400, "60",
	    "length of the recent window of moectl stats"),
	STR("model", "path", RESTART, model_path, NULL, "synthetic:S0",
	    "checkpoint directory, synthetic:S0..S4 or synthetic:V3"),
	STR("model", "layers", RESTART, model_layers, NULL, NULL,
	    "serve only these MoE layers, e.g. 1-3,7 (the checkpoint needs only their tensors); unset = all"),
	STR("router", "plugin", LIVE, router, NULL, NULL,
	    "router plugin; unset = the one the model names"),
	STR("expert", "plugin", LIVE, expert, "cpu", NULL, "expert backend plugin"),
	ROW("expert", "weights", CONFIG_ENUM, RESTART, expert_weights, 0, 0, 0, NULL, NULL,
	    weights_choices, "expert weights in memory; unset = as stored"),
	U32("limits", "max_frame_bytes", LIVE, max_frame_bytes, 64, 1u << 31, "67108864",
	    "largest request frame"),
	U32("limits", "max_connections", LIVE, max_connections, 1, 1u << 20, "256",
	    "connections beyond this are refused"),
	U32("limits", "max_inflight_per_conn", LIVE, max_inflight_per_conn, 1, 1u << 16, "64",
	    "requests one connection may have running"),
	U32("limits", "queue_depth", RESTART, queue_depth, 1, 1u << 20, "1024",
	    "jobs waiting for or running on a worker"),
	U32("limits", "max_tokens_per_request", LIVE, max_tokens_per_request, 1, 1u << 24,
	    "65536", "tokens in one request"),
	U32("limits", "shutdown_timeout_ms", LIVE, shutdown_timeout_ms, 0, 3600000, "10000",
	    "how long a shutdown waits for requests in flight"),
	U32("limits", "idle_timeout_ms", LIVE, idle_timeout_ms, 0, 86400000, "600000",
	    "close connections silent this long; 0 = never"),
	U32("limits", "frame_timeout_ms", LIVE, frame_timeout_ms, 100, 3600000, "30000",
	    "a started frame must be complete within this"),
	U32("limits", "write_high_water", LIVE, write_high_water, 4096, 1u << 31, "67108864",
	    "stop reading a client with this many unsent reply bytes"),
	U32("limits", "write_hard_cap", LIVE, write_hard_cap, 4096, 1u << 31, "536870912",
	    "drop a client with this many unsent reply bytes"),
	U32("limits", "max_batch_tokens", LIVE, max_batch_tokens, 1, 1u << 24, "1024",
	    "largest coalesced infer batch"),
	U32("limits", "max_queued_tokens", LIVE, max_queued_tokens, 1, 1u << 30, "1048576",
	    "tokens accepted from all clients and not yet answered"),
	U32("limits", "coalesce_window_us", LIVE, coalesce_window_us, 0, 1000000, "0",
	    "hold infer requests this long to coalesce them; 0 = only while busy"),
	U32("limits", "coalesce_regroup_us", LIVE, coalesce_regroup_us, 0, 1000000, "2000",
	    "after a batch of several infers, wait this long for as many new ones; 0 = no"),
	U32("limits", "max_running_batches", LIVE, max_running_batches, 0, 1u << 16, "1",
	    "jobs on the pool before infers wait and coalesce; 0 = one per worker"),
	U32("limits", "compute_timeout_ms", LIVE, compute_timeout_ms, 100, 86400000, "60000",
	    "a route or forward call running longer is abandoned"),
	ROW("limits", "max_buffered_bytes", CONFIG_U64, LIVE, max_buffered_bytes, 1ull << 20,
	    1ull << 40, CONFIG_ZERO_OK, "0", NULL, NULL,
	    "unsent reply and partial frame bytes over all clients; 0 = auto"),
	U32("limits", "write_timeout_ms", LIVE, write_timeout_ms, 0, 86400000, "30000",
	    "drop a client with unsent replies that reads nothing this long; 0 = never"),
	STR("metrics", "listen", RESTART, metrics_listen, NULL, NULL,
	    "HOST:PORT of the HTTP listener for /metrics, /api/stats and the live page; unset = none"),
	ROW("metrics", "allow_remote", CONFIG_BOOL, RESTART, metrics_allow_remote, 0, 1, 0, "0",
	    NULL, NULL, "let [metrics] listen bind an address other than loopback"),
	ROW("cluster", "placement", CONFIG_ENUM, RESTART, cluster_placement, 0, 0, 0, "contiguous",
	    NULL, placement_choices, "under mpirun: experts in equal id runs per rank, or packed by load"),
	U32("cluster", "replicas", RESTART, cluster_replicas, 0, 1u << 16, "0",
	    "under mpirun: extra copies of the hottest experts (balanced placement)"),
	ROW("cluster", "front_computes", CONFIG_BOOL, RESTART, cluster_front_computes, 0, 1, 0, "1",
	    NULL, NULL, "under mpirun: rank 0 holds routed experts too"),
	U32("cluster", "timeout_ms", RESTART, cluster_timeout_ms, 100, 3600000, "10000",
	    "under mpirun: a rank silent this long is lost, a dispatch unanswered this long fails"),
};

#define N_KEYS (sizeof(config_keys) / sizeof(config_keys[0]))
_Static_assert(N_KEYS <= CONFIG_MAX_KEYS, "a reload plan has one bit per row");

struct parse_ctx {
	struct moed_config *cfg;
	const char *name;
	char *err;
	size_t errlen;
	int rc;
};

size_t config_key_count(void)
{
	return N_KEYS;
}

const struct config_key *config_key_at(size_t i)
{
	return i < N_KEYS ? &config_keys[i] : NULL;
}

const struct config_key *config_key_find(const char *section, const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(config_keys[i].section, section) == 0 &&
		    strcmp(config_keys[i].name, name) == 0)
			return &config_keys[i];
	return NULL;
}

static int section_known(const char *section)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(config_keys[i].section, section) == 0)
			return 1;
	return 0;
}

/* [router] and [expert] take plugin parameters besides their rows. */
static struct config_params *params_of(struct moed_config *cfg, const char *section)
{
	if (strcmp(section, "router") == 0)
		return &cfg->router_params;
	if (strcmp(section, "expert") == 0)
		return &cfg->expert_params;
	return NULL;
}

int config_set_string(char **slot, const char *value)
{
	char *copy = NULL;

	if (value && !(copy = strdup(value)))
		return -ENOMEM;
	free(*slot);
	*slot = copy;
	return 0;
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

/* Same keys with the same values; the order of the lines does not matter. */
int config_params_equal(const struct config_params *a, const struct config_params *b)
{
	return moed_params_equal(a->p, a->n, b->p, b->n);
}

static int slot_is_string(const struct config_key *k)
{
	return k->type == CONFIG_STRING || k->type == CONFIG_ENUM;
}

int config_key_equal(const struct config_key *k, const struct moed_config *a,
		     const struct moed_config *b)
{
	const void *x = (const char *)a + k->offset, *y = (const char *)b + k->offset;

	if (slot_is_string(k)) {
		const char *s = *(char *const *)x, *t = *(char *const *)y;
		return s && t ? strcmp(s, t) == 0 : s == t;
	}
	switch (k->type) {
	case CONFIG_U64:
		return *(const uint64_t *)x == *(const uint64_t *)y;
	case CONFIG_LOGLEVEL:
		return *(const int *)x == *(const int *)y;
	default:
		return *(const uint32_t *)x == *(const uint32_t *)y;
	}
}

void config_key_move(const struct config_key *k, struct moed_config *dst, struct moed_config *src)
{
	void *x = (char *)dst + k->offset, *y = (char *)src + k->offset;

	if (slot_is_string(k)) {
		char *t = *(char **)x;
		*(char **)x = *(char **)y;
		*(char **)y = t;
		return;
	}
	switch (k->type) {
	case CONFIG_U64:
		*(uint64_t *)x = *(uint64_t *)y;
		break;
	case CONFIG_LOGLEVEL:
		*(int *)x = *(int *)y;
		break;
	default:
		*(uint32_t *)x = *(uint32_t *)y;
		break;
	}
}

static int parse_u64(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	if (*s == '-' || *s == '+' || *s == '\0')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end != '\0')
		return -ERANGE;
	*ret = v;
	return 0;
}

static int parse_bool(const char *s)
{
	if (!strcmp(s, "1") || !strcasecmp(s, "yes") || !strcasecmp(s, "true"))
		return 1;
	if (!strcmp(s, "0") || !strcasecmp(s, "no") || !strcasecmp(s, "false"))
		return 0;
	return -EINVAL;
}

static int set_number(const struct config_key *k, void *slot, const char *value, char *err,
		      size_t errlen)
{
	uint64_t v;

	if (parse_u64(value, &v) < 0 ||
	    ((v < k->min || v > k->max) && !(v == 0 && (k->flags & CONFIG_ZERO_OK)))) {
		snprintf(err, errlen, "'%s' must be %san integer in %llu..%llu, got '%s'", k->name,
			 k->flags & CONFIG_ZERO_OK ? "0 or " : "", (unsigned long long)k->min,
			 (unsigned long long)k->max, value);
		return -EINVAL;
	}
	if (k->type == CONFIG_U64)
		*(uint64_t *)slot = v;
	else
		*(uint32_t *)slot = (uint32_t)v;
	return 0;
}

/* "a, b or c" for messages (sep NULL) and "a|b|c" for the key dump. */
static const char *choices_list(const struct config_key *k, const char *sep, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (const char *const *c = k->choices; *c && n < len; c++) {
		const char *s = c == k->choices ? "" : sep ? sep : c[1] ? ", " : " or ";
		n += (size_t)snprintf(buf + n, len - n, "%s%s", s, *c);
	}
	return buf;
}

static int set_key(const struct config_key *k, struct moed_config *cfg, const char *value,
		   char *err, size_t errlen)
{
	void *slot = (char *)cfg + k->offset;
	char list[128];
	int v;

	switch (k->type) {
	case CONFIG_STRING:
		if (*value == '\0') {
			snprintf(err, errlen, "'%s' must not be empty", k->name);
			return -EINVAL;
		}
		return config_set_string(slot, value);
	case CONFIG_U32:
	case CONFIG_U64:
		return set_number(k, slot, value, err, errlen);
	case CONFIG_BOOL:
		if ((v = parse_bool(value)) < 0) {
			snprintf(err, errlen, "'%s' must be 0, 1, yes, no, true or false; got '%s'",
				 k->name, value);
			return -EINVAL;
		}
		*(uint32_t *)slot = (uint32_t)v;
		return 0;
	case CONFIG_LOGLEVEL:
		if ((v = log_level_parse(value)) < 0) {
			snprintf(err, errlen,
				 "'%s' must be one of err, warning, notice, info, debug; got '%s'",
				 k->name, value);
			return -EINVAL;
		}
		*(int *)slot = v;
		return 0;
	case CONFIG_ENUM:
		for (const char *const *c = k->choices; *c; c++)
			if (strcmp(*c, value) == 0)
				return config_set_string(slot, *c);
		snprintf(err, errlen, "[%s] %s must be %s, got '%s'", k->section, k->name,
			 choices_list(k, NULL, list, sizeof(list)), value);
		return -EINVAL;
	}
	return -EINVAL;
}

int config_init(struct moed_config *cfg)
{
	char err[256];
	int r = 0;

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < N_KEYS; i++) {
		/* a default that does not parse is a bug of the table: test_config finds it */
		int s = config_keys[i].def ? set_key(&config_keys[i], cfg, config_keys[i].def, err,
						     sizeof(err)) : 0;
		if (s < 0 && r == 0)
			r = s;
	}
	return r;
}

void config_release(struct moed_config *cfg)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (slot_is_string(&config_keys[i]))
			free(*(char **)((char *)cfg + config_keys[i].offset));
	config_params_clear(&cfg->router_params);
	config_params_clear(&cfg->expert_params);
	memset(cfg, 0, sizeof(*cfg));
}

static int config_handler(void *user, const char *section, const char *key, const char *value)
{
	struct parse_ctx *c = user;
	const struct config_key *k;
	struct config_params *ps;
	char reason[384] = "";
	int r = -EINVAL;

	if (c->rc < 0)
		return 1;
	if ((k = config_key_find(section, key))) {
		r = set_key(k, c->cfg, value, reason, sizeof(reason));
	} else if ((ps = params_of(c->cfg, section))) {
		r = config_params_set(ps, key, value);
		if (r == -E2BIG)
			snprintf(reason, sizeof(reason), "more than %d parameters", CONFIG_MAX_PARAMS);
	} else if (!section_known(section)) {
		snprintf(reason, sizeof(reason), "unknown section [%s]", section);
	} else {
		snprintf(reason, sizeof(reason), "unknown key '%s' in [%s]", key, section);
	}
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
	/* a frame that cannot fit in the budget could never be received */
	if (cfg->max_buffered_bytes && cfg->max_buffered_bytes < cfg->max_frame_bytes) {
		snprintf(err, errlen,
			 "[limits] max_buffered_bytes (%llu) is below max_frame_bytes (%u)",
			 (unsigned long long)cfg->max_buffered_bytes, cfg->max_frame_bytes);
		return -EINVAL;
	}
	if (cfg->metrics_listen)
		return listen_addr_check(cfg->metrics_listen, (int)cfg->metrics_allow_remote, err,
					 errlen);
	return 0;
}

uint64_t config_buffered_budget(const struct moed_config *cfg)
{
	const uint64_t cap = 1ull << 30;
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
	uint64_t quarter;

	if (cfg->max_buffered_bytes)
		return cfg->max_buffered_bytes;
	if (pages <= 0 || size <= 0)
		return cap;
	quarter = (uint64_t)pages * (uint64_t)size / 4;
	return quarter < cap ? quarter : cap;
}

static const char *type_name(const struct config_key *k, char *buf, size_t len)
{
	static const char *const names[] = {
		[CONFIG_STRING] = "string", [CONFIG_U32] = "u32", [CONFIG_U64] = "u64",
		[CONFIG_BOOL] = "bool", [CONFIG_LOGLEVEL] = "loglevel", [CONFIG_ENUM] = "enum",
	};
	char list[96];

	if (k->type == CONFIG_U32 || k->type == CONFIG_U64) {
		snprintf(buf, len, "%s[%s%llu..%llu]", names[k->type],
			 k->flags & CONFIG_ZERO_OK ? "0|" : "", (unsigned long long)k->min,
			 (unsigned long long)k->max);
		return buf;
	}
	if (k->type != CONFIG_ENUM)
		return names[k->type];
	snprintf(buf, len, "enum[%s]", choices_list(k, "|", list, sizeof(list)));
	return buf;
}

void config_keys_print(FILE *f)
{
	char type[128];

	for (size_t i = 0; i < N_KEYS; i++) {
		const struct config_key *k = &config_keys[i];
		const char *def = k->shown ? k->shown : k->def ? k->def : "-";

		fprintf(f, "%s %s %s %s %s %s\n", k->section, k->name,
			type_name(k, type, sizeof(type)), def,
			k->policy == CONFIG_LIVE ? "live" : "restart", k->doc);
	}
}

int config_find_line(const char *path, const char *section, const char *key)
{
	FILE *f = path ? fopen(path, "re") : NULL;
	char line[1024], cur[64] = "";
	int n = 0, found = 0;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		char *p = line, *end;
		size_t klen = strlen(key);
		n++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '[' && (end = strchr(p, ']'))) {
			snprintf(cur, sizeof(cur), "%.*s", (int)(end - p - 1), p + 1);
			continue;
		}
		if (strcmp(cur, section) == 0 && strncmp(p, key, klen) == 0 &&
		    (p[klen] == ' ' || p[klen] == '\t' || p[klen] == '=' || p[klen] == ':'))
			found = n;
	}
	fclose(f);
	return found;
}
