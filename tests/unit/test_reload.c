/*
 * Reload planning unit tests.  A plan is a pure function of two configs parsed
 * from strings: nothing changed gives an empty plan; a LIVE change is listed and
 * committed, a RESTART change is listed and not committed; plugin parameters
 * (compared as sets) rebind their plugin.  The RESTART keys are written down
 * here, from the issue, not read from the table; and every row of the table is
 * changed to another valid value in turn and must show up under its policy.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "daemon/conf.h"
#include "daemon/log.h"
#include "daemon/reload.h"

static const char base_text[] =
	"[daemon]\nadmin_group = wheel\nstate_save_interval_s = 60\n"
	"[router]\nplugin = bias-balanced\ngamma = 0.05\nepsilon = 1e-20\n"
	"[expert]\nplugin = cpu\ngemm_min_tokens = 40\n"
	"[limits]\nmax_connections = 10\n";

static void parse(struct moed_config *c, const char *text)
{
	char err[256] = "";

	assert_int_equal(config_init(c), 0);
	if (config_load_string(c, text, "t.conf", err, sizeof(err)) < 0)
		fail_msg("parse: %s", err);
}

/* base_text with `extra` appended: later lines override earlier ones. */
static void parse_with(struct moed_config *c, const char *extra)
{
	char text[1024];

	snprintf(text, sizeof(text), "%s%s", base_text, extra);
	parse(c, text);
}

static int listed(const char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return 1;
	return 0;
}

static void test_nothing_changed(void **state)
{
	struct moed_config cur, next, before;
	struct reload_plan p;

	parse(&cur, base_text);
	/* the same parameters in another order are the same parameters */
	parse(&next, "[daemon]\nadmin_group = wheel\n[router]\nplugin = bias-balanced\n"
		     "epsilon = 1e-20\ngamma = 0.05\n[expert]\ngemm_min_tokens = 40\n"
		     "[limits]\nmax_connections = 10\n");
	memcpy(&before, &cur, sizeof(cur));
	assert_int_equal(reload_plan(&cur, &next, &p), 0);
	assert_int_equal(p.n_live, 0);
	assert_int_equal(p.n_restart, 0);
	assert_true(p.live_rows == 0 && p.restart_rows == 0);
	assert_false(p.rebind_router);
	assert_false(p.rebind_expert);
	assert_false(reload_plan_changed(&p, "router", "gamma"));
	reload_commit(&cur, &next, &p);
	assert_memory_equal(&before, &cur, sizeof(cur));       /* commit of nothing is nothing */
	config_release(&cur);
	config_release(&next);
}

static void test_live_change(void **state)
{
	struct moed_config cur, next, cur_copy, next_copy;
	struct reload_plan p, again;

	parse(&cur, base_text);
	parse_with(&next, "[limits]\nmax_connections = 20\ncompute_timeout_ms = 5000\n"
			  "[daemon]\nadmin_group = staff\n");
	memcpy(&cur_copy, &cur, sizeof(cur));
	memcpy(&next_copy, &next, sizeof(next));
	assert_int_equal(reload_plan(&cur, &next, &p), 0);
	/* pure: neither input touched, the same answer twice */
	assert_memory_equal(&cur_copy, &cur, sizeof(cur));
	assert_memory_equal(&next_copy, &next, sizeof(next));
	assert_int_equal(reload_plan(&cur, &next, &again), 0);
	assert_memory_equal(&p, &again, sizeof(p));

	assert_int_equal(p.n_live, 3);
	assert_true(listed(p.live, p.n_live, "limits.max_connections"));
	assert_true(listed(p.live, p.n_live, "limits.compute_timeout_ms"));
	assert_true(listed(p.live, p.n_live, "daemon.admin_group"));
	assert_int_equal(p.n_restart, 0);
	assert_false(p.rebind_router || p.rebind_expert);
	assert_true(reload_plan_changed(&p, "limits", "max_connections"));
	assert_false(reload_plan_changed(&p, "limits", "max_frame_bytes"));
	assert_false(reload_plan_changed(&p, "nosuch", "key"));

	reload_commit(&cur, &next, &p);
	assert_int_equal(cur.max_connections, 20);
	assert_int_equal(cur.compute_timeout_ms, 5000);
	assert_string_equal(cur.admin_group, "staff");
	assert_string_equal(next.admin_group, "wheel");        /* swapped: next frees the old */
	config_release(&cur);
	config_release(&next);
}

static void test_restart_change(void **state)
{
	struct moed_config cur, next;
	struct reload_plan p;

	parse(&cur, base_text);
	parse_with(&next, "[daemon]\nsocket = /tmp/other.sock\nworkers = 3\n"
			  "[limits]\nqueue_depth = 77\nmax_tokens_per_request = 99\n");
	assert_int_equal(reload_plan(&cur, &next, &p), 0);
	assert_int_equal(p.n_restart, 3);
	assert_true(listed(p.restart, p.n_restart, "daemon.socket"));
	assert_true(listed(p.restart, p.n_restart, "daemon.workers"));
	assert_true(listed(p.restart, p.n_restart, "limits.queue_depth"));
	assert_int_equal(p.n_live, 1);
	assert_string_equal(p.live[0], "limits.max_tokens_per_request");
	assert_true(reload_plan_changed(&p, "daemon", "workers"));
	reload_commit(&cur, &next, &p);
	assert_string_equal(cur.socket_path, "/run/moed.sock");
	assert_int_equal(cur.workers, 0);
	assert_int_equal(cur.queue_depth, 1024);
	assert_int_equal(cur.max_tokens_per_request, 99);
	config_release(&cur);
	config_release(&next);
}

static void test_rebind(void **state)
{
	struct moed_config cur, next;
	struct reload_plan p;

	/* a router parameter: rebind the router, keep its name, move the parameters */
	parse(&cur, base_text);
	parse_with(&next, "[router]\ngamma = 0.02\n");
	assert_int_equal(reload_plan(&cur, &next, &p), 0);
	assert_true(p.rebind_router);
	assert_true(p.router_params);
	assert_false(p.rebind_expert);
	assert_int_equal(p.n_live, 1);
	assert_string_equal(p.live[0], "router.params");
	assert_true(reload_plan_changed(&p, "router", "gamma"));
	assert_false(reload_plan_changed(&p, "router", "plugin"));
	assert_false(reload_plan_changed(&p, "expert", "gemm_min_tokens"));
	reload_commit(&cur, &next, &p);
	assert_string_equal(cur.router, "bias-balanced");
	assert_int_equal(cur.router_params.n, 2);
	assert_string_equal(cur.router_params.p[0].key, "gamma");
	assert_string_equal(cur.router_params.p[0].value, "0.02");
	config_release(&cur);
	config_release(&next);

	/* a removed parameter counts too */
	parse(&cur, base_text);
	parse(&next, "[daemon]\nadmin_group = wheel\n[router]\nplugin = bias-balanced\n"
		     "gamma = 0.05\n[expert]\nplugin = cpu\ngemm_min_tokens = 40\n"
		     "[limits]\nmax_connections = 10\n");
	assert_int_equal(reload_plan(&cur, &next, &p), 0);
	assert_true(p.rebind_router);
	config_release(&cur);
	config_release(&next);

	/* the router's name, and an expert parameter */
	parse(&cur, base_text);
	parse_with(&next, "[router]\nplugin = softmax-topk\n[expert]\ngemm_min_tokens = 8\n");
	assert_int_equal(reload_plan(&cur, &next, &p), 0);
	assert_true(p.rebind_router);
	assert_false(p.router_params);
	assert_true(p.rebind_expert);
	assert_true(p.expert_params);
	assert_true(listed(p.live, p.n_live, "router.plugin"));
	assert_true(listed(p.live, p.n_live, "expert.params"));
	reload_commit(&cur, &next, &p);
	assert_string_equal(cur.router, "softmax-topk");
	assert_string_equal(cur.expert_params.p[0].value, "8");
	config_release(&cur);
	config_release(&next);

	/* the expert's weights need a restart and no new generation */
	parse(&cur, base_text);
	parse_with(&next, "[expert]\nweights = bf16\n");
	assert_int_equal(reload_plan(&cur, &next, &p), 0);
	assert_false(p.rebind_expert);
	assert_int_equal(p.n_restart, 1);
	assert_string_equal(p.restart[0], "expert.weights");
	config_release(&cur);
	config_release(&next);
}

/* The two keys that escaped in the old hand-written reload, and the log level. */
static void test_escaped_keys(void **state)
{
	struct moed_config cur, next;
	struct reload_plan p;
	int level = log_get_level();

	parse(&cur, base_text);
	parse_with(&next, "[daemon]\nstate_save_interval_s = 5\nallow_group_writable_plugins = yes\n"
			  "log_level = debug\n");
	assert_int_equal(reload_plan(&cur, &next, &p), 0);
	assert_int_equal(p.n_live, 3);
	assert_int_equal(p.n_restart, 0);
	assert_true(reload_plan_changed(&p, "daemon", "state_save_interval_s"));
	assert_true(reload_plan_changed(&p, "daemon", "allow_group_writable_plugins"));
	assert_true(reload_plan_changed(&p, "daemon", "log_level"));
	reload_commit(&cur, &next, &p);
	assert_int_equal(cur.state_save_interval_s, 5);
	assert_int_equal(cur.allow_group_writable_plugins, 1);
	assert_int_equal(cur.log_level, MOED_LOG_DEBUG);
	assert_int_equal(log_get_level(), MOED_LOG_DEBUG);
	log_set_level(level);
	config_release(&cur);
	config_release(&next);
}

/* The keys that need a restart, as the issue lists them; all others are live. */
static void test_policies(void **state)
{
	static const char *const restart[] = {
		"daemon.socket", "daemon.admin_socket", "daemon.plugin_dir", "daemon.state_dir",
		"model.path", "expert.weights", "daemon.workers", "daemon.socket_mode",
		"daemon.socket_group", "daemon.stats_window_s", "limits.queue_depth",
		"model.layers", "metrics.listen", "metrics.allow_remote",
		"cluster.placement", "cluster.replicas", "cluster.front_computes", "cluster.timeout_ms",
	};
	size_t n_restart = 0;

	for (size_t i = 0; i < config_key_count(); i++) {
		const struct config_key *k = config_key_at(i);
		int want = listed(restart, sizeof(restart) / sizeof(restart[0]), k->full);

		if (want != (k->policy == CONFIG_RESTART))
			fail_msg("'%s' is %s", k->full, want ? "live, want restart" : "restart, want live");
		n_restart += want;
	}
	assert_int_equal(n_restart, sizeof(restart) / sizeof(restart[0]));
}

/* Whether giving row k `value` on top of base_text leaves it as in base. */
static int same_as_base(const struct config_key *k, const struct moed_config *base,
			const char *value)
{
	struct moed_config probe;
	char text[256];
	int same;

	snprintf(text, sizeof(text), "[%s]\n%s = %s\n", k->section, k->name, value);
	parse_with(&probe, text);
	same = config_key_equal(k, &probe, base);
	config_release(&probe);
	return same;
}

/* Another valid value for row k than the one base_text gives it. */
static void other_value(const struct config_key *k, const struct moed_config *base, char *buf,
			size_t len)
{
	switch (k->type) {
	case CONFIG_STRING:
		snprintf(buf, len, "/tmp/other-%s", k->name);
		break;
	case CONFIG_BOOL:
		snprintf(buf, len, "%s", same_as_base(k, base, "yes") ? "no" : "yes");
		break;
	case CONFIG_LOGLEVEL:
		snprintf(buf, len, "%s", same_as_base(k, base, "debug") ? "err" : "debug");
		break;
	case CONFIG_ENUM:
		snprintf(buf, len, "%s", k->choices[!!same_as_base(k, base, k->choices[0])]);
		break;
	case CONFIG_U32:
	case CONFIG_U64:
		snprintf(buf, len, "%llu", (unsigned long long)k->max);
		if (same_as_base(k, base, buf))
			snprintf(buf, len, "%llu", (unsigned long long)k->min);
		break;
	}
}

static void test_every_row(void **state)
{
	for (size_t i = 0; i < config_key_count(); i++) {
		const struct config_key *k = config_key_at(i);
		struct moed_config cur, next, want, fresh;
		struct reload_plan p;
		char value[128], extra[256];
		int router = strcmp(k->full, "router.plugin") == 0;
		int expert = strcmp(k->full, "expert.plugin") == 0;

		parse(&cur, base_text);
		other_value(k, &cur, value, sizeof(value));
		snprintf(extra, sizeof(extra), "[%s]\n%s = %s\n", k->section, k->name, value);
		parse_with(&next, extra);
		parse_with(&want, extra);
		parse(&fresh, base_text);
		assert_int_equal(reload_plan(&cur, &next, &p), 0);
		if (k->policy == CONFIG_LIVE) {
			if (p.n_live != 1 || strcmp(p.live[0], k->full) || p.n_restart)
				fail_msg("%s = %s: %zu live (%s), %zu restart", k->full, value, p.n_live,
					 p.n_live ? p.live[0] : "-", p.n_restart);
		} else {
			if (p.n_restart != 1 || strcmp(p.restart[0], k->full) || p.n_live)
				fail_msg("%s = %s: %zu restart (%s), %zu live", k->full, value,
					 p.n_restart, p.n_restart ? p.restart[0] : "-", p.n_live);
		}
		assert_int_equal(p.rebind_router, router);
		assert_int_equal(p.rebind_expert, expert);
		assert_true(reload_plan_changed(&p, k->section, k->name));
		reload_commit(&cur, &next, &p);
		/* LIVE: cur now holds the new value; RESTART: cur holds the old one */
		if (!config_key_equal(k, &cur, k->policy == CONFIG_LIVE ? &want : &fresh))
			fail_msg("%s: commit did not follow the %s policy", k->full,
				 k->policy == CONFIG_LIVE ? "live" : "restart");
		for (size_t j = 0; j < config_key_count(); j++)
			if (j != i && !config_key_equal(config_key_at(j), &cur, &fresh))
				fail_msg("%s: commit changed %s", k->full, config_key_at(j)->full);
		if (k->type == CONFIG_LOGLEVEL)
			log_set_level(MOED_LOG_INFO);
		config_release(&cur);
		config_release(&next);
		config_release(&want);
		config_release(&fresh);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nothing_changed),
		cmocka_unit_test(test_live_change),
		cmocka_unit_test(test_restart_change),
		cmocka_unit_test(test_rebind),
		cmocka_unit_test(test_escaped_keys),
		cmocka_unit_test(test_policies),
		cmocka_unit_test(test_every_row),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
