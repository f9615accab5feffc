/*
 * The cuda plugin's refusal path, on any host.  Every GPU is hidden
 * (CUDA_VISIBLE_DEVICES set empty before the CUDA runtime starts), so init()
 * must fail with -ENODEV — "no device" where a driver is installed, "no
 * driver" where none is — after logging one error that says so, without
 * crashing, and a second attempt must fail the same way (the daemon retries
 * on every `moectl expert set cuda`).  Also: the descriptor is what the
 * loader wants, and bad parameters are refused with -EINVAL before CUDA is
 * asked anything.  Prints TAP-style lines; exit 0 pass, 1 fail.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/loader.h"
#include "include/moed/plugin.h"
#include "tests/common/fake_host.h"

static int failures, checks;

static void check(int ok, const char *what)
{
	checks++;
	printf("%s %d - %s\n", ok ? "ok" : "not ok", checks, what);
	if (!ok)
		failures++;
}

static int try_init(const struct moed_plugin *p, const struct moed_param *params, size_t n)
{
	void *state = NULL;
	int r;

	fake_host_reset_log();
	r = p->init(fake_host(), params, n, &state);
	if (r == 0)
		p->fini(state);
	return r;
}

int main(void)
{
	const struct moed_param bad[][1] = {
		{ { "device", "first" } }, { { "memory_limit_mb", "-1" } },
		{ { "gemm_min_tokens", "99" } }, { { "bf16_gemm", "fp8" } }, { { "nope", "1" } },
	};
	const struct moed_param good[] = { { "device", "0" }, { "memory_limit_mb", "1024" } };
	const char *dir = getenv("MOED_TEST_PLUGIN_DIR");
	const struct moed_plugin *p;
	char path[512];
	void *dl;
	int r;

	if (!dir) {
		printf("SKIP: needs MOED_TEST_PLUGIN_DIR (run through make check)\n");
		return 77;
	}
	/* before anything loads the CUDA runtime */
	setenv("CUDA_VISIBLE_DEVICES", "", 1);
	snprintf(path, sizeof(path), "%s/cuda.so", dir);
	dl = dlopen(path, LOADER_DLOPEN_FLAGS);   /* see daemon/loader.h */
	if (!dl) {
		printf("not ok 1 - dlopen %s: %s\n", path, dlerror());
		return 1;
	}
	p = dlsym(dl, MOED_PLUGIN_SYMBOL);
	check(p != NULL, "exports moed_plugin");
	if (!p)
		return 1;
	check(p->abi_version == MOED_PLUGIN_ABI_VERSION &&
	      p->struct_size == sizeof(struct moed_plugin), "ABI and descriptor size");
	check(!strcmp(p->name, "cuda") && p->kind == MOED_PLUGIN_EXPERT && p->expert &&
	      !p->router && p->init && p->fini, "name cuda, kind expert, ops set");
	check(p->expert->struct_size == sizeof(struct moed_expert_ops) && p->expert->layer_new &&
	      p->expert->layer_free && p->expert->forward, "expert ops complete");
	check(dlsym(dl, "moe_sort") == NULL && dlsym(dl, "parse_conf") == NULL,
	      "internal symbols hidden");

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char what[128];

		r = try_init(p, bad[i], 1);
		snprintf(what, sizeof(what), "init refuses %s=%s with -EINVAL, logged", bad[i][0].key,
			 bad[i][0].value);
		check(r == -EINVAL && fake_host_errors() == 1 &&
			      strstr(fake_host_last_log(), bad[i][0].key),
		      what);
	}
	for (int round = 0; round < 2; round++) {
		r = try_init(p, good, 2);
		printf("# init with no visible GPU: %d (%s): %s\n", r, r ? strerror(-r) : "ok",
		       fake_host_last_log());
		check(r == -ENODEV, "init fails with -ENODEV when no GPU is visible");
		check(fake_host_errors() == 1 && strstr(fake_host_last_log(), "no usable GPU"),
		      "one logged error that says there is no usable GPU");
	}
	p->expert->layer_free(NULL);
	dlclose(dl);
	printf("1..%d\n", checks);
	return failures ? 1 : 0;
}
