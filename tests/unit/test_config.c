/*
 * Config parsing unit tests: defaults, every section, plugin parameters, and
 * the errors a user makes (unknown key or section, bad or out-of-range number,
 * bad log level, missing file), each reported with file, line and key.
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

static void test_defaults(void **state)
{
	struct moed_config c;

	config_init(&c);
	assert_int_equal(c.max_frame_bytes, 64u << 20);
	assert_int_equal(c.log_level, MOED_LOG_INFO);
	assert_null(c.socket_path);
	assert_int_equal(c.router_params.n, 0);
	assert_int_equal(c.max_running_batches, 1);
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
	config_release(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_validate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
