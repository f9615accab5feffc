/*
 * moed: entry point.  Reads the config file, applies command-line overrides,
 * loads the model and the router/expert plugins, starts the worker pool and the
 * listener, tells the service manager READY=1, and runs the libuv loop until
 * SIGTERM/SIGINT.  Shutdown stops accepting, lets in-flight requests finish
 * within [limits] shutdown_timeout_ms, then closes what is left and exits 0.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "daemon/batch.h"
#include "daemon/cluster.h"
#include "daemon/conf.h"
#include "daemon/service.h"
#include "daemon/engine.h"
#include "daemon/host.h"
#include "daemon/http.h"
#include "daemon/loader.h"
#include "daemon/log.h"
#include "daemon/model.h"
#include "daemon/model_load.h"
#include "daemon/notify.h"
#include "daemon/pool.h"
#include "daemon/reload.h"
#include "daemon/server.h"
#include "daemon/state.h"

#define DEFAULT_CONFIG MOED_SYSCONFDIR "/moed/moed.conf"
#define LOAD_TIMEOUT_USEC (30ull * 60 * 1000000)

struct cli {
	const char *config;
	const char *socket, *model, *router, *expert, *plugin_dir, *state_dir, *workers;
	const char *log_level, *layers;
	int verbose, check_config, list_keys;
};

struct daemon_ctx {
	uv_loop_t *loop;
	struct cli cli;
	struct moed_config cfg;
	struct engine *engine;
	struct pool *pool;
	struct service svc;
	struct server srv;
	uv_signal_t sig_term, sig_int, sig_hup, sig_usr2;
	uv_timer_t watchdog, deadline, last_word, save, expiry;
	int have_watchdog;
	int exit_code;
	struct http *http;              /* [metrics] listen */
	struct cluster *cluster;        /* under mpirun (this is the front) */
};

/* Signals that arrive before the loop handles them (while the model loads):
 * remembered here and acted on once it does, instead of killing moed. */
static volatile sig_atomic_t early_stop, early_hup;

static void on_early_signal(int signum)
{
	if (signum == SIGHUP)
		early_hup = signum;
	else
		early_stop = signum;
}

static void catch_early_signals(void)
{
	struct sigaction sa = { .sa_handler = on_early_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: moed [OPTION]...\n"
		"Serve Mixture-of-Experts layer inference on a Unix socket.\n\n"
		"  -c, --config FILE      read FILE (default " DEFAULT_CONFIG " if present)\n"
		"  -s, --socket PATH      listen on PATH (default " MOED_DEFAULT_SOCKET ")\n"
		"  -m, --model PATH       HuggingFace checkpoint directory, synthetic:S0..S4 or :V3\n"
		"      --layers LIST      serve only these MoE layers (e.g. 1-3,7)\n"
		"  -r, --router NAME      router plugin (default: the model's)\n"
		"  -e, --expert NAME      expert backend plugin (default: cpu)\n"
		"  -P, --plugin-dir DIR   plugin directory (default " MOED_PLUGIN_DIR ")\n"
		"  -S, --state-dir DIR    state directory (default " MOED_DEFAULT_STATE_DIR ")\n"
		"  -w, --workers N        worker threads (default: online CPUs)\n"
		"  -l, --log-level LEVEL  err, warning, notice, info, debug\n"
		"  -v, --verbose          log at debug level\n"
		"      --check-config     validate the configuration (plugin parameters too) and exit\n"
		"      --list-config-keys print every moed.conf key: section, name, type, default,\n"
		"                         reload policy, meaning; and exit\n"
		"  -h, --help             show this help\n"
		"  -V, --version          show the version\n");
}

static int parse_cli(int argc, char **argv, struct cli *cli)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "model", required_argument, NULL, 'm' },
		{ "router", required_argument, NULL, 'r' },
		{ "expert", required_argument, NULL, 'e' },
		{ "plugin-dir", required_argument, NULL, 'P' },
		{ "state-dir", required_argument, NULL, 'S' },
		{ "workers", required_argument, NULL, 'w' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "list-config-keys", no_argument, NULL, 'K' },
		{ "layers", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "c:s:m:r:e:P:S:w:l:vhV", opts, NULL)) != -1) {
		switch (c) {
		case 'c': cli->config = optarg; break;
		case 's': cli->socket = optarg; break;
		case 'm': cli->model = optarg; break;
		case 'r': cli->router = optarg; break;
		case 'e': cli->expert = optarg; break;
		case 'P': cli->plugin_dir = optarg; break;
		case 'S': cli->state_dir = optarg; break;
		case 'w': cli->workers = optarg; break;
		case 'l': cli->log_level = optarg; break;
		case 'v': cli->verbose = 1; break;
		case 'C': cli->check_config = 1; break;
		case 'K': cli->list_keys = 1; break;
		case 'L': cli->layers = optarg; break;
		case 'h': usage(stdout); exit(0);
		case 'V': printf("moed %s\n", PACKAGE_VERSION); exit(0);
		default: usage(stderr); return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "moed: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

/* Config file first, then flags on top; everything validated. */
static int build_config(const struct cli *cli, struct moed_config *cfg, char *err, size_t errlen)
{
	const char *path = cli->config;
	int r = 0;

	if (config_init(cfg) < 0)       /* every default comes from the key table */
		return -ENOMEM;
	if (!path && access(DEFAULT_CONFIG, F_OK) == 0)
		path = DEFAULT_CONFIG;
	if (path && (r = config_load(cfg, path, err, errlen)) < 0)
		return r;
	if ((cli->socket && config_set_string(&cfg->socket_path, cli->socket) < 0) ||
	    (cli->model && config_set_string(&cfg->model_path, cli->model) < 0) ||
	    (cli->layers && config_set_string(&cfg->model_layers, cli->layers) < 0) ||
	    (cli->router && config_set_string(&cfg->router, cli->router) < 0) ||
	    (cli->expert && config_set_string(&cfg->expert, cli->expert) < 0) ||
	    (cli->plugin_dir && config_set_string(&cfg->plugin_dir, cli->plugin_dir) < 0) ||
	    (cli->state_dir && config_set_string(&cfg->state_dir, cli->state_dir) < 0))
		return -ENOMEM;
	if (cli->workers) {
		char *end;
		long w = strtol(cli->workers, &end, 10);
		if (*end || w < 0 || w > 1024) {
			snprintf(err, errlen, "--workers must be 0..1024, got '%s'", cli->workers);
			return -EINVAL;
		}
		cfg->workers = (unsigned)w;
	}
	if (cli->log_level) {
		int l = log_level_parse(cli->log_level);
		if (l < 0) {
			snprintf(err, errlen, "--log-level must be err, warning, notice, info or debug");
			return -EINVAL;
		}
		cfg->log_level = l;
	}
	if (cli->verbose)
		cfg->log_level = MOED_LOG_DEBUG;
	if (cfg->router && !loader_name_valid(cfg->router)) {
		snprintf(err, errlen, "router plugin name '%s' is not valid", cfg->router);
		return -EINVAL;
	}
	if (!loader_name_valid(cfg->expert)) {
		snprintf(err, errlen, "expert plugin name '%s' is not valid", cfg->expert);
		return -EINVAL;
	}
	if (cfg->model_layers) {
		uint32_t *layers, n;

		if ((r = model_parse_layers(cfg->model_layers, &layers, &n, err, errlen)) < 0)
			return r;
		free(layers);
	}
	return config_validate(cfg, err, errlen);
}

/* --check-config: each [router] and [expert] parameter against what the
 * plugin declares (the router the model would pick when none is named), one
 * at a time so the message can name the file and line of the bad one. */
static int check_section_params(const char *file, const char *dir, const char *section,
				const char *plugin, uint32_t kind, const struct config_params *ps,
				char *err, size_t errlen)
{
	char why[384];
	int r;

	for (size_t i = 0; i < ps->n; i++) {
		r = loader_check_params(dir, plugin, kind, &ps->p[i], 1, why, sizeof(why));
		if (r < 0) {
			snprintf(err, errlen, "%s:%d: [%s] %s", file ? file : "(command line)",
				 config_find_line(file, section, ps->p[i].key), section, why);
			return r;
		}
	}
	return 0;
}

static int check_plugin_params(const struct cli *cli, const struct moed_config *cfg, char *err,
			       size_t errlen)
{
	const char *file = cli->config ? cli->config
			   : access(DEFAULT_CONFIG, F_OK) == 0 ? DEFAULT_CONFIG : NULL;
	const char *router = cfg->router;
	int r = 0;

	if (!router && cfg->router_params.n)
		r = model_default_router_of(cfg->model_path, &router, err, errlen);
	if (r == 0 && router)
		r = check_section_params(file, cfg->plugin_dir, "router", router, MOED_PLUGIN_ROUTER,
					 &cfg->router_params, err, errlen);
	if (r == 0)
		r = check_section_params(file, cfg->plugin_dir, "expert", cfg->expert,
					 MOED_PLUGIN_EXPERT, &cfg->expert_params, err, errlen);
	return r;
}

static void on_pool_closed(void *arg)
{
	struct daemon_ctx *d = arg;

	uv_close((uv_handle_t *)&d->sig_term, NULL);
	uv_close((uv_handle_t *)&d->sig_int, NULL);
	uv_close((uv_handle_t *)&d->sig_hup, NULL);
	uv_close((uv_handle_t *)&d->sig_usr2, NULL);
	cluster_close_loop(d->cluster);
	uv_close((uv_handle_t *)&d->deadline, NULL);
	uv_close((uv_handle_t *)&d->last_word, NULL);
	uv_close((uv_handle_t *)&d->save, NULL);
	uv_close((uv_handle_t *)&d->expiry, NULL);
	if (d->have_watchdog)
		uv_close((uv_handle_t *)&d->watchdog, NULL);
}

static int svc_save_state(struct service *svc, char *err, size_t errlen)
{
	struct daemon_ctx *d = svc->loop->data;

	return state_save(d->engine, d->cfg.state_dir, err, errlen);
}

static void save_state(struct daemon_ctx *d)
{
	char err[512];

	if (svc_save_state(&d->svc, err, sizeof(err)) < 0)
		log_warn("%s; the router state was not saved", err);
}

static void on_save_timer(uv_timer_t *t)
{
	save_state(t->data);
}

static void arm_save_timer(struct daemon_ctx *d)
{
	uint64_t ms = d->cfg.state_save_interval_s * 1000ull;

	uv_timer_stop(&d->save);
	if (ms)
		uv_timer_start(&d->save, on_save_timer, ms, ms);
}

static void on_drained(struct server *srv)
{
	struct daemon_ctx *d = srv->svc->loop->data;

	log_info("moed: all requests finished");
	http_stop(d->http);
	d->http = NULL;
	batcher_free(d->svc.batcher);
	d->svc.batcher = NULL;
	host_set_pool(NULL);
	save_state(d);
	uv_timer_stop(&d->deadline);
	uv_timer_stop(&d->last_word);
	if (pool_abandoned(d->pool) > 0) {
		log_err("moed: %u compute calls never returned; exiting with an error (their threads are left behind)",
			pool_abandoned(d->pool));
		d->exit_code = 1;
	}
	pool_shutdown(d->pool, on_pool_closed, d);
}

/* Stuck compute calls: answered DEADLINE_EXCEEDED and written off; when a
 * worker cannot be replaced, stop pinging the watchdog so systemd restarts us. */
static void on_expiry(uv_timer_t *t)
{
	struct daemon_ctx *d = t->data;

	if (!d->svc.batcher)
		return;
	batch_expire(d->svc.batcher, d->srv.stopping && !uv_is_active((uv_handle_t *)&d->deadline)
					     ? 0 : d->cfg.compute_timeout_ms);
	if (pool_degraded(d->pool) && !d->svc.health) {
		d->svc.health = "degraded: a worker stuck in a compute call could not be replaced; "
				"the watchdog is no longer pinged, so the service manager restarts moed";
		log_err("moed: %s", d->svc.health);
		notify_sendf("STATUS=%s", d->svc.health);
	}
}

/* The shutdown deadline passed 500 ms ago and work is still held: give up. */
static void on_last_word(uv_timer_t *t)
{
	struct daemon_ctx *d = t->data;

	log_err("moed: shutdown did not finish within shutdown_timeout_ms %u ms; exiting with work abandoned",
		d->cfg.shutdown_timeout_ms);
	save_state(d);
	notify_send("STATUS=Stopped with work abandoned");
	_exit(1);
}

static void on_deadline(uv_timer_t *t)
{
	struct daemon_ctx *d = t->data;

	log_warn("moed: shutdown deadline of %u ms passed; closing remaining connections and writing off running calls",
		 d->cfg.shutdown_timeout_ms);
	uv_timer_start(&d->last_word, on_last_word, 500, 0);
	server_close_all(&d->srv);
	if (d->svc.batcher)
		batch_expire(d->svc.batcher, 0);
}

static void start_stop(struct daemon_ctx *d, int signum)
{
	if (d->srv.stopping)
		return;
	log_notice("moed: %s received; stopping (in-flight requests finish first)",
		   strsignal(signum));
	notify_send("STOPPING=1\nSTATUS=Stopping");
	uv_timer_start(&d->deadline, on_deadline, d->cfg.shutdown_timeout_ms, 0);
	server_stop(&d->srv);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
	start_stop(h->data, signum);
}

/* A rank of the cluster is lost: MPI cannot go on without it. */
static void on_cluster_lost(void *arg)
{
	struct daemon_ctx *d = arg;

	d->exit_code = 1;
	notify_send("STATUS=A cluster rank was lost");
	start_stop(d, SIGTERM);
}

static uint64_t monotonic_usec(void)
{
	return uv_hrtime() / 1000u;
}

/* Apply a planned reload: prepare both plugin swaps, then commit everything
 * or nothing. */
static int apply_reload(struct daemon_ctx *d, struct moed_config *next,
			struct reload_result *res, char *err, size_t errlen)
{
	struct engine_swap *rs = NULL, *es = NULL;
	struct reload_plan plan;
	int r;

	r = reload_plan(&d->cfg, next, &plan);
	if (r < 0) {
		snprintf(err, errlen, "cannot compare the configurations: %s", strerror(-r));
		return r;
	}
	if (plan.rebind_router) {
		const char *name = next->router ? next->router : model_default_router(d->engine->model);
		r = engine_prepare(d->engine, MOED_PLUGIN_ROUTER, name, next->router_params.p,
				   next->router_params.n, -1, &rs, err, errlen);
		if (r < 0)
			return r;
	}
	if (plan.rebind_expert && d->cluster) {
		snprintf(err, errlen, "[expert] changed: with experts spread over the ranks of a "
			 "cluster the expert backend changes only with a restart of the job");
		engine_swap_free(rs);
		return -EOPNOTSUPP;
	}
	if (plan.rebind_expert) {
		r = engine_prepare(d->engine, MOED_PLUGIN_EXPERT, next->expert, next->expert_params.p,
				   next->expert_params.n, -1, &es, err, errlen);
		if (r < 0) {
			engine_swap_free(rs);
			return r;
		}
	}
	/* nothing can fail from here on */
	if (rs)
		engine_commit(d->engine, rs);
	if (es)
		engine_commit(d->engine, es);
	reload_commit(&d->cfg, next, &plan);       /* applies log_level itself */
	if (rs)
		engine_config_router(d->engine, d->cfg.router ? d->cfg.router
							      : model_default_router(d->engine->model),
				     d->cfg.router_params.p, d->cfg.router_params.n);
	loader_allow_group_writable = (int)d->cfg.allow_group_writable_plugins;
	if (reload_plan_changed(&plan, "daemon", "state_save_interval_s"))
		arm_save_timer(d);
	for (size_t i = 0; i < plan.n_live && res->n_applied < RELOAD_RESULT_MAX; i++)
		res->applied[res->n_applied++] = plan.live[i];
	for (size_t i = 0; i < plan.n_restart && res->n_restart < RELOAD_RESULT_MAX; i++)
		res->restart[res->n_restart++] = plan.restart[i];
	return 0;
}

/* Re-read the config file with the command-line flags on top and apply it. */
static int do_reload(struct service *svc, struct reload_result *res, char *err, size_t errlen)
{
	struct daemon_ctx *d = svc->loop->data;
	struct moed_config next;
	char serr[384];
	int r;

	memset(res, 0, sizeof(*res));
	notify_sendf("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=Reloading configuration",
		     (unsigned long long)monotonic_usec());
	r = build_config(&d->cli, &next, err, errlen);
	if (r == 0) {
		if (svc_save_state(svc, serr, sizeof(serr)) < 0)
			log_warn("%s; the router state was not saved", serr);
		r = apply_reload(d, &next, res, err, errlen);
	}
	config_release(&next);
	if (r < 0) {
		log_err("reload: %s; nothing changed", err);
	} else {
		log_notice("reload: done (%zu changes applied, %zu need a restart)", res->n_applied,
			   res->n_restart);
		for (size_t i = 0; i < res->n_restart; i++)
			log_warn("reload: '%s' changed; it takes effect at the next restart",
				 res->restart[i]);
		if (svc_save_state(svc, serr, sizeof(serr)) < 0) {
			log_warn("%s; the router state was not saved", serr);
			snprintf(res->warning, sizeof(res->warning),
				 "warning: the router state was not saved: %s", serr);
		}
	}
	notify_sendf("READY=1\nSTATUS=Serving on %s%s", d->cfg.socket_path,
		     r < 0 ? " (last reload failed)" : "");
	return r;
}

static void on_hup(uv_signal_t *h, int signum)
{
	struct daemon_ctx *d = h->data;
	struct reload_result res;
	char err[512];

	(void)signum;
	log_notice("moed: SIGHUP: reloading the configuration");
	do_reload(&d->svc, &res, err, sizeof(err));
}

static int socket_gid(const struct moed_config *cfg, gid_t *ret, char *err, size_t errlen)
{
	struct group *g;

	*ret = (gid_t)-1;
	if (!cfg->socket_group)
		return 0;
	g = getgrnam(cfg->socket_group);
	if (!g) {
		snprintf(err, errlen, "socket_group '%s' does not exist", cfg->socket_group);
		return -ENOENT;
	}
	*ret = g->gr_gid;
	return 0;
}

/* The API socket, and the admin socket when configured or handed over. */
static int start_listeners(struct daemon_ctx *d, char *err, size_t errlen)
{
	int api_fd = notify_listen_fd("api"), admin_fd = notify_listen_fd("admin");
	gid_t gid;
	int r;

	r = socket_gid(&d->cfg, &gid, err, errlen);
	if (r < 0)
		return r;
	r = server_listen(&d->srv, LISTEN_API, api_fd, d->cfg.socket_path, d->cfg.socket_mode,
			  gid, err, errlen);
	if (r < 0)
		return r;
	if (admin_fd >= 0 || d->cfg.admin_socket)
		r = server_listen(&d->srv, LISTEN_ADMIN, admin_fd, d->cfg.admin_socket, 0600,
				  (gid_t)-1, err, errlen);
	return r;
}

static void on_watchdog(uv_timer_t *t)
{
	struct daemon_ctx *d = t->data;

	if (!d->svc.health)
		notify_send("WATCHDOG=1");
}

static int start_plugins(struct daemon_ctx *d, char *err, size_t errlen)
{
	const char *router = d->cfg.router ? d->cfg.router : model_default_router(d->engine->model);
	int r;

	r = engine_set_plugin(d->engine, MOED_PLUGIN_ROUTER, router, d->cfg.router_params.p,
			      d->cfg.router_params.n, -1, err, errlen);
	if (r < 0)
		return r;
	r = engine_set_plugin(d->engine, MOED_PLUGIN_EXPERT, d->cfg.expert,
			      d->cfg.expert_params.p, d->cfg.expert_params.n, -1, err, errlen);
	if (r < 0)
		return r;
	/* the routers bound at run time before the last stop, if the file has them */
	if (state_restore_routers(d->engine, router, d->cfg.router_params.p,
				  d->cfg.router_params.n, err, errlen) < 0)
		log_warn("%s; serving the configured router", err);
	return 0;
}

static int load_model(struct daemon_ctx *d, const char *source, char *err, size_t errlen)
{
	struct moed_model *model;
	struct rusage ru;
	int r;

	/* loading big weights can outlast TimeoutStartSec: ask for more time */
	notify_sendf("EXTEND_TIMEOUT_USEC=%llu\nSTATUS=Loading model %s",
		     (unsigned long long)LOAD_TIMEOUT_USEC, source);
	/* [expert] weights: as stored (bf16 checkpoints stay bf16) unless told */
	r = model_load_config(&d->cfg, d->cluster ? cluster_model_want(d->cluster) : NULL, &model,
			      err, errlen);
	if (r < 0)
		return r;
	getrusage(RUSAGE_SELF, &ru);
	log_info("model: '%s' loaded: %u MoE layers, H %u, I %u, %u experts, top-%u, %s experts, "
		 "%llu bytes (%llu served from the mapped files), peak RSS while loading %ld MiB",
		 source, model->n_layers, model->hidden_size, model->intermediate_size,
		 model->n_experts, model->top_k, model->dtype == MOED_DTYPE_BF16 ? "bf16"
		 : model->dtype == MOED_DTYPE_F8_E4M3 ? "fp8" : "fp32",
		 (unsigned long long)model->weight_bytes, (unsigned long long)model->mapped_bytes,
		 ru.ru_maxrss / 1024);
	r = engine_new(model, d->cfg.plugin_dir, &d->engine);
	if (r < 0 || (r = engine_stats_window(d->engine, d->cfg.stats_window_s * 1000ull)) < 0) {
		snprintf(err, errlen, "engine: %s", strerror(-r));
		return r;
	}
	/* the front holds its share of the experts: the backend is bound to it */
	return d->cluster ? cluster_front_prepare(d->cluster, d->engine, err, errlen) : 0;
}

static void start_timers(struct daemon_ctx *d)
{
	uint64_t wd = notify_watchdog_usec();
	uv_timer_t *timers[] = { &d->deadline, &d->last_word, &d->save, &d->expiry };

	for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
		uv_timer_init(d->loop, timers[i]);
		timers[i]->data = d;
	}
	uv_signal_init(d->loop, &d->sig_term);
	uv_signal_init(d->loop, &d->sig_int);
	uv_signal_init(d->loop, &d->sig_hup);
	uv_signal_init(d->loop, &d->sig_usr2);
	d->sig_term.data = d->sig_int.data = d->sig_hup.data = d->sig_usr2.data = d;
	arm_save_timer(d);
	uv_timer_start(&d->expiry, on_expiry, 100, 100);
	if (wd > 0) {
		d->have_watchdog = 1;
		uv_timer_init(d->loop, &d->watchdog);
		d->watchdog.data = d;
		uv_timer_start(&d->watchdog, on_watchdog, wd / 2000, wd / 2000);
	}
}

static void start_signals(struct daemon_ctx *d)
{
	uv_signal_start(&d->sig_term, on_stop_signal, SIGTERM);
	uv_signal_start(&d->sig_int, on_stop_signal, SIGINT);
	uv_signal_start(&d->sig_hup, on_hup, SIGHUP);
	/* under mpirun: SIGTERM to mpirun kills every rank a second later, so
	 * the job is stopped in order with SIGUSR2, which mpirun forwards (the
	 * front drains, then tells the ranks to leave) */
	if (d->cluster)
		uv_signal_start(&d->sig_usr2, on_stop_signal, SIGUSR2);
	if (early_hup) {
		log_notice("moed: SIGHUP during start-up: reloading the configuration now");
		on_hup(&d->sig_hup, SIGHUP);
	}
	if (early_stop)
		start_stop(d, early_stop);
}

static int run(struct daemon_ctx *d)
{
	char err[512];
	unsigned workers = d->cfg.workers ? d->cfg.workers : pool_default_threads();
	const char *source = d->cfg.model_path ? d->cfg.model_path : "synthetic:S0";
	int r;

	loader_allow_group_writable = (int)d->cfg.allow_group_writable_plugins;
	r = load_model(d, source, err, sizeof(err));
	if (r < 0) {
		log_err("model: %s", err);
		return r;
	}
	r = state_cleanup(d->cfg.state_dir);
	if (r > 0)
		log_info("state: removed %d stale temporary files from '%s'", r, d->cfg.state_dir);
	r = state_load(d->engine, d->cfg.state_dir, err, sizeof(err));
	if (r < 0 && r != -ENOENT)
		log_warn("%s", err);
	r = start_plugins(d, err, sizeof(err));
	if (r < 0) {
		log_err("%s", err);
		return r;
	}
	r = pool_new(d->loop, workers, d->cfg.queue_depth, &d->pool);
	if (r < 0) {
		log_err("pool: cannot start %u workers: %s", workers, strerror(-r));
		return r;
	}
	host_set_pool(d->pool);
	d->svc = (struct service){ .loop = d->loop, .cfg = &d->cfg, .engine = d->engine,
				   .pool = d->pool, .start_ms = uv_now(d->loop),
				   .reload = do_reload, .save_state = svc_save_state };
	d->svc.answers = calloc(SERVICE_ANSWER_KINDS * REPLY_STATUSES, sizeof(uint64_t));
	if (!d->svc.answers) {
		log_err("moed: out of memory");
		return -ENOMEM;
	}
	r = batcher_new(&d->svc, &d->svc.batcher);
	if (r < 0) {
		log_err("batch: %s", strerror(-r));
		return r;
	}
	if (d->cluster) {
		d->svc.cluster = d->cluster;
		r = cluster_front_start(d->cluster, d->loop, d->engine, d->cfg.expert_params.p,
					d->cfg.expert_params.n, on_cluster_lost, d, err, sizeof(err));
		if (r < 0) {
			log_err("%s", err);
			return r;
		}
	}
	server_init(&d->srv, &d->svc);
	d->srv.on_drained = on_drained;
	start_timers(d);
	r = start_listeners(d, err, sizeof(err));
	if (r == 0 && d->cfg.metrics_listen) {
		r = http_start(&d->svc, d->cfg.metrics_listen, (int)d->cfg.metrics_allow_remote,
			       &d->http, err, sizeof(err));
		if (r == 0)
			log_notice("metrics: serving /metrics, /api/stats and / on '%s' (port %u)",
				   d->cfg.metrics_listen, http_port(d->http));
	}
	if (r < 0) {
		log_err("%s", err);
		d->exit_code = 1;
		server_stop(&d->srv);   /* drains at once: on_drained shuts the rest */
		uv_run(d->loop, UV_RUN_DEFAULT);
		return r;
	}
	start_signals(d);
	log_notice("moed: serving on '%s' with %u workers", d->cfg.socket_path, workers);
	notify_sendf("READY=1\nSTATUS=Serving %s on %s", source, d->cfg.socket_path);
	uv_run(d->loop, UV_RUN_DEFAULT);
	log_notice("moed: stopped");
	return 0;
}

int main(int argc, char **argv)
{
	struct daemon_ctx d = { .exit_code = 0 };
	char err[512];
	int r;

	catch_early_signals();
	if (parse_cli(argc, argv, &d.cli) < 0)
		return 2;
	if (d.cli.list_keys) {
		config_keys_print(stdout);
		return 0;
	}
	r = build_config(&d.cli, &d.cfg, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "moed: %s\n", r == -ENOMEM ? "out of memory" : err);
		config_release(&d.cfg);
		return 1;
	}
	log_set_level(d.cfg.log_level);
	if (d.cli.check_config) {
		r = check_plugin_params(&d.cli, &d.cfg, err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "moed: %s\n", err);
			config_release(&d.cfg);
			return 1;
		}
		printf("moed: configuration OK\n");
		config_release(&d.cfg);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	host_init();
	r = cluster_join(&d.cfg, &d.cluster, err, sizeof(err));
	if (r < 0) {
		log_err("%s", err);
		config_release(&d.cfg);
		return 1;
	}
	if (d.cluster && cluster_rank(d.cluster) != 0) {
		r = cluster_rank_serve(d.cluster, &d.cfg);
		config_release(&d.cfg);
		return r;
	}
	d.loop = uv_default_loop();
	d.loop->data = &d;
	r = run(&d);
	cluster_finish(d.cluster, r < 0 || d.exit_code);
	if (d.exit_code == 0) {
		/* after abandoned calls, plugin threads may still be inside the
		 * engine's bindings: leave them mapped and just exit */
		engine_free(d.engine);
		uv_loop_close(d.loop);
	}
	free(d.svc.answers);
	config_release(&d.cfg);
	return r < 0 || d.exit_code ? 1 : 0;
}
