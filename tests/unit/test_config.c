/*
 * Config parsing unit tests: every row's default (written down here, not read
 * from the table), the table's own consistency and dump, every section and
 * value type, plugin parameters, and the errors a user makes (unknown key or
 * section, bad or out-of-range number, bad bool, enum or log level, missing
 * file), each reported with file, line and key.
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

/* Every row's default, written down independently of the table. */
static void test_defaults(void **state)
{
	struct moed_config c;

	assert_int_equal(config_init(&c), 0);
	assert_string_equal(c.socket_path, "/run/moed.sock");
	assert_string_equal(c.plugin_dir, MOED_PLUGIN_DIR);
	assert_string_equal(c.state_dir, "/var/lib/moed");
	assert_int_equal(c.log_level, MOED_LOG_INFO);
	assert_int_equal(c.workers, 0);
	assert_null(c.admin_group);
	assert_null(c.admin_socket);
	assert_int_equal(c.allow_group_writable_plugins, 0);
	assert_int_equal(c.socket_mode, 0660);
	assert_null(c.socket_group);
	assert_int_equal(c.state_save_interval_s, 60);
	assert_int_equal(c.stats_window_s, 60);
	assert_null(c.model_path);
	assert_null(c.router);
	assert_int_equal(c.router_params.n, 0);
	assert_string_equal(c.expert, "cpu");
	assert_null(c.expert_weights);
	assert_int_equal(c.expert_params.n, 0);
	assert_int_equal(c.max_frame_bytes, 64u << 20);
	assert_int_equal(c.max_connections, 256);
	assert_int_equal(c.max_inflight_per_conn, 64);
	assert_int_equal(c.queue_depth, 1024);
	assert_int_equal(c.max_tokens_per_request, 65536);
	assert_int_equal(c.shutdown_timeout_ms, 10000);
	assert_int_equal(c.idle_timeout_ms, 600000);
	assert_int_equal(c.frame_timeout_ms, 30000);
	assert_int_equal(c.write_high_water, 64u << 20);
	assert_int_equal(c.write_hard_cap, 512u << 20);
	assert_int_equal(c.max_batch_tokens, 1024);
	assert_int_equal(c.max_queued_tokens, 1u << 20);
	assert_int_equal(c.coalesce_window_us, 0);
	assert_int_equal(c.coalesce_regroup_us, 2000);
	assert_int_equal(c.max_running_batches, 1);
	assert_int_equal(c.compute_timeout_ms, 60000);
	assert_true(c.max_buffered_bytes == 0);
	assert_int_equal(c.write_timeout_ms, 30000);
	assert_null(c.metrics_listen);
	assert_int_equal(c.metrics_allow_remote, 0);
	assert_string_equal(c.cluster_placement, "contiguous");
	assert_int_equal(c.cluster_replicas, 0);
	assert_int_equal(c.cluster_front_computes, 1);
	assert_int_equal(c.cluster_timeout_ms, 10000);
	{
		char err[256];
		assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	}
	config_release(&c);
	assert_null(c.model_layers);
	assert_int_equal(config_key_count(), 41);       /* a new row needs a line above */
}

/* The rows themselves: findable, named "section.name", unique, printable. */
static void test_table(void **state)
{
	char *dump = NULL;
	size_t len = 0, lines = 0;
	FILE *f = open_memstream(&dump, &len);

	for (size_t i = 0; i < config_key_count(); i++) {
		const struct config_key *k = config_key_at(i);
		char full[128];

		assert_ptr_equal(config_key_find(k->section, k->name), k);
		snprintf(full, sizeof(full), "%s.%s", k->section, k->name);
		assert_string_equal(k->full, full);
		assert_non_null(k->doc);
		assert_true(k->policy == CONFIG_LIVE || k->policy == CONFIG_RESTART);
	}
	assert_null(config_key_at(config_key_count()));
	assert_null(config_key_find("router", "gamma"));
	assert_non_null(f);
	config_keys_print(f);
	fclose(f);
	for (size_t i = 0; i < len; i++)
		lines += dump[i] == '\n';
	assert_int_equal(lines, config_key_count());
	assert_non_null(strstr(dump, "\nlimits max_buffered_bytes u64[0|1048576..1099511627776] 0 live "));
	assert_non_null(strstr(dump, "\nlimits queue_depth u32[1..1048576] 1024 restart "));
	assert_non_null(strstr(dump, "\nexpert weights enum[bf16|fp32|fp8] - restart "));
	assert_non_null(strstr(dump, "\ndaemon log_level loglevel info live "));
	assert_non_null(strstr(dump, "\ndaemon allow_group_writable_plugins bool 0 live "));
	assert_non_null(strstr(dump, "\ndaemon plugin_dir string lib/moed/plugins restart "));
	free(dump);
}

/* Bool spellings, the enum's choices, the u64 range with its 0 = auto. */
static void test_types(void **state)
{
	static const struct { const char *text; uint32_t want; } bools[] = {
		{ "1", 1 }, { "yes", 1 }, { "true", 1 }, { "YES", 1 },
		{ "0", 0 }, { "no", 0 }, { "false", 0 }, { "False", 0 },
	};
	struct moed_config c;
	char text[128], err[256] = "";

	for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
		config_init(&c);
		c.allow_group_writable_plugins = !bools[i].want;
		snprintf(text, sizeof(text), "[daemon]\nallow_group_writable_plugins = %s\n",
			 bools[i].text);
		assert_int_equal(config_load_string(&c, text, "t.conf", err, sizeof(err)), 0);
		assert_int_equal(c.allow_group_writable_plugins, bools[i].want);
		config_release(&c);
	}
	config_init(&c);
	assert_int_equal(config_load_string(&c, "[expert]\nweights = fp32\n", "t.conf", err,
					    sizeof(err)), 0);
	assert_string_equal(c.expert_weights, "fp32");
	assert_int_equal(c.expert_params.n, 0);
	assert_int_equal(config_load_string(&c, "[limits]\nmax_buffered_bytes = 0x10000000000\n",
					    "t.conf", err, sizeof(err)), 0);
	assert_true(c.max_buffered_bytes == 1ull << 40);
	assert_int_equal(config_load_string(&c, "[limits]\nmax_buffered_bytes = 1048576\n",
					    "t.conf", err, sizeof(err)), 0);
	assert_true(c.max_buffered_bytes == 1048576);
	assert_int_equal(config_load_string(&c, "[limits]\nmax_buffered_bytes = 0\n", "t.conf",
					    err, sizeof(err)), 0);
	assert_true(c.max_buffered_bytes == 0);
	assert_int_equal(config_load_string(&c, "[limits]\ncompute_timeout_ms = 100\n"
					    "write_timeout_ms = 0\n", "t.conf", err, sizeof(err)), 0);
	assert_int_equal(c.compute_timeout_ms, 100);
	assert_int_equal(c.write_timeout_ms, 0);
	config_release(&c);
}

/* The auto budget: a quarter of MemTotal (read from /proc, not sysconf), at most 1 GiB. */
static void test_buffered_budget(void **state)
{
	struct moed_config c;
	unsigned long long kb = 0, want;
	char line[256];
	FILE *f = fopen("/proc/meminfo", "re");

	config_init(&c);
	c.max_buffered_bytes = 5ull << 30;
	assert_true(config_buffered_budget(&c) == 5ull << 30);
	c.max_buffered_bytes = 0;
	if (!f)
		skip();
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
			break;
	fclose(f);
	assert_true(kb > 0);
	want = kb * 1024 / 4;
	if (want > 1ull << 30)
		want = 1ull << 30;
	assert_true(config_buffered_budget(&c) == want);
	config_release(&c);
}

static void test_full_file(void **state)
{
	const char *text =
		"; comment\n"
		"[daemon]\nsocket = /tmp/x.sock\nplugin_dir = /opt/p\nlog_level = debug\nworkers = 3\n"
		"[model]\npath = synthetic:S1\n"
		"[router]\nplugin = bias-balanced\ngamma = 0.01\nupdate_every = 256\n"
		"[expert]\nplugin = cpu\nweights = bf16\ngemm_min_tokens = 8\n"
		"[limits]\nmax_frame_bytes = 0x1000\nmax_connections = 7\nmax_running_batches = 0\n";
	struct moed_config c;
	char err[256] = "";

	config_init(&c);
	assert_int_equal(config_load_string(&c, text, "t.conf", err, sizeof(err)), 0);
	assert_string_equal(c.socket_path, "/tmp/x.sock");
	assert_string_equal(c.plugin_dir, "/opt/p");
	assert_int_equal(c.log_level, MOED_LOG_DEBUG);
	assert_int_equal(c.workers, 3);
	assert_string_equal(c.model_path, "synthetic:S1");
	assert_string_equal(c.router, "bias-balanced");
	assert_int_equal(c.router_params.n, 2);
	assert_string_equal(c.router_params.p[0].key, "gamma");
	assert_string_equal(c.router_params.p[0].value, "0.01");
	assert_string_equal(c.router_params.p[1].key, "update_every");
	assert_string_equal(c.expert, "cpu");
	assert_string_equal(c.expert_weights, "bf16");        /* a daemon key, not a param */
	assert_int_equal(c.expert_params.n, 1);
	assert_string_equal(c.expert_params.p[0].key, "gemm_min_tokens");
	assert_string_equal(c.expert_params.p[0].value, "8");
	assert_int_equal(c.max_frame_bytes, 4096);
	assert_int_equal(c.max_connections, 7);
	assert_int_equal(c.max_running_batches, 0);
	assert_int_equal(c.queue_depth, 1024);   /* untouched default */
	config_release(&c);
}

static void expect_error(const char *text, const char *needle1, const char *needle2)
{
	struct moed_config c;
	char err[256] = "";

	config_init(&c);
	assert_true(config_load_string(&c, text, "bad.conf", err, sizeof(err)) < 0);
	if (!strstr(err, needle1) || (needle2 && !strstr(err, needle2)))
		fail_msg("error '%s' lacks '%s' / '%s'", err, needle1, needle2 ? needle2 : "");
	config_release(&c);
}

static void test_errors(void **state)
{
	expect_error("[daemon]\nsokcet = /x\n", "bad.conf:2:", "unknown key 'sokcet'");
	expect_error("[daemon]\n\n[bogus]\nx = 1\n", "bad.conf:4:", "unknown section [bogus]");
	expect_error("[limits]\nmax_connections = ten\n", "bad.conf:2:", "max_connections");
	expect_error("[limits]\nmax_connections = 0\n", "max_connections", "1..");
	expect_error("[limits]\nmax_frame_bytes = -5\n", "max_frame_bytes", NULL);
	expect_error("[limits]\nqueue_depth = 99999999999999\n", "queue_depth", NULL);
	expect_error("[daemon]\nlog_level = loud\n", "log_level", "loud");
	expect_error("[daemon]\nsocket =\n", "socket", "empty");
	expect_error("[daemon\nsocket = /x\n", "bad.conf:1:", NULL);
	expect_error("[daemon]\nallow_group_writable_plugins = maybe\n", "bad.conf:2:", "yes, no");
	expect_error("[expert]\nplugin = cpu\nweights = fp16\n", "bad.conf:3:", "[expert] weights must be bf16, fp32 or fp8");
	expect_error("[limits]\nmax_buffered_bytes = 1048575\n", "max_buffered_bytes",
		     "0 or an integer in 1048576..1099511627776");
	expect_error("[limits]\nmax_buffered_bytes = 1099511627777\n", "max_buffered_bytes", NULL);
	expect_error("[limits]\ncompute_timeout_ms = 99\n", "compute_timeout_ms", "100..86400000");
	expect_error("[limits]\nwrite_timeout_ms = 86400001\n", "write_timeout_ms", NULL);
	expect_error("[model]\ngamma = 1\n", "bad.conf:2:", "unknown key 'gamma' in [model]");
}

static void test_missing_file(void **state)
{
	struct moed_config c;
	char err[256] = "";

	config_init(&c);
	assert_int_equal(config_load(&c, "/nonexistent/moed.conf", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/moed.conf"));
	config_release(&c);
}

static void test_validate(void **state)
{
	struct moed_config c;
	char err[256] = "", longpath[200];

	config_init(&c);
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(config_set_string(&c.socket_path, longpath), 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), -ENAMETOOLONG);
	assert_non_null(strstr(err, "107"));
	assert_int_equal(config_set_string(&c.socket_path, "/tmp/ok.sock"), 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	c.max_inflight_per_conn = c.queue_depth + 1;
	assert_true(config_validate(&c, err, sizeof(err)) < 0);
	c.max_inflight_per_conn = 1;
	c.max_buffered_bytes = c.max_frame_bytes - 1;
	assert_true(config_validate(&c, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "max_buffered_bytes"));
	c.max_buffered_bytes = c.max_frame_bytes;
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	config_release(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_types),
		cmocka_unit_test(test_buffered_budget),
		cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_validate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
