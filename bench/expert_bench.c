/*
 * Compute benchmark of the cpu expert backend against the limits and a peer,
 * all measured in the same run (`make bench` runs it; not part of make check).
 *
 * Right before each table (the layer built, the peer started and idle) it
 * measures the limits with the table's thread count (bench/limits.c):
 * cblas_sgemm 4096^3, a streaming read of 4x the L3, and the register-only
 * peaks of fp32 FMA and of AVX512-BF16 vdpbf16ps, so that a noisy machine's
 * drift between tables shows in their limits too.  For each shape (S0-S4 of
 * ROUTING.md, V3 of the releases issue, V3-64: V3 with 64 experts, whose peer
 * fits in memory), weight type (f32, bf16, fp8) and T (1 .. 1024 tokens,
 * random distinct top-k routes), forward() on one layer is timed two ways:
 *  - cold (the headline): every rep draws new routes and the caches are
 *    flushed before it (bench_evict(), what the other layers of a real model
 *    do between two visits to this one), so each rep reads its weights from
 *    memory; the median of the reps;
 *  - hot (T <= -H, default 64): the same routes every rep, after one warm-up,
 *    so part of the weights come from L3 — the figure earlier versions printed.
 * Each row prints the roofline time max(weight bytes / read bandwidth, FLOPs /
 * peak of the dtype) and the efficiency roofline time / measured time, where
 * the peak is sgemm's for f32 and vdpbf16ps's for bf16 and fp8 (both feed
 * bf16 dot products; sgemm's again under -o precision=exact or without
 * AVX512-BF16).  Weight bytes are those of the distinct experts the routes
 * touch plus the shared experts (fp8: plus the block scales).
 *
 * The plugin runs as in the daemon: OpenBLAS single-threaded, extra threads
 * only through the host's parallel_for (the daemon's own pool, daemon/pool.c,
 * through tests/common/fake_host.c: threads-1 workers plus the calling
 * thread); it is reached only through its plugin API, so kernels can change
 * under the bench.
 *
 * The peer (bench/torch_peer.py under /usr/bin/python3: the layer written the
 * way HuggingFace's DeepseekV3MoE runs it, same thread count) rebuilds the
 * same weights, inputs and routes from the generator of bench/gen.c, checks
 * its output against ours and reports its times, cold like ours (the same
 * routes per rep, the caches flushed before its call too); for fp8 it runs
 * bf16 on the dequantised weights (what a CPU user of PyTorch must run).  The
 * table prints peer time / our time.  A peer whose weights would not fit
 * beside ours in the memory available (V3) is left out, with a line saying so.
 *
 *	expert_bench [-p PLUGIN_DIR] [-s S0,S1,..,V3] [-d f32,bf16,fp8] [-t 1,2]
 *	             [-T 1,4,16,64,256,1024] [-o KEY=VALUE]... [-P PEER.py|none]
 *	             [-j RESULTS.json] [-z ZIPF] [-r REPS] [-H HOT_MAX_T] [-q]
 *
 * -z routes tokens with a Zipf skew (P(expert e) ~ (e + 1)^-ZIPF, a hot-expert
 * mix) instead of uniformly.
 * -o passes a parameter to the plugin's layer_new (kernel=small, isa=avx2,
 * gemm_min_tokens=64, ...), as [expert] keys in moed.conf do.
 * -r reps per row (default 7), -H 0 leaves out the hot rows, -q measures the
 * limits on small sizes (the harness's smoke test in make check: figures
 * meaningless).
 */
#include <cblas.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/util.h"
#include "include/moed/plugin.h"
#include "tests/common/fake_host.h"

#define MAX_REPS 64
#define MAX_THREADS 64
#define MAX_LIST 16

static const struct shape shapes[] = {
	{ "S0", 256, 128, 16, 4, 1 },     { "S1", 2048, 1408, 64, 6, 2 },
	{ "S2", 2048, 768, 128, 8, 0 },   { "S3", 1792, 512, 256, 8, 1 },
	{ "S4", 1024, 3584, 8, 2, 0 },    { "V3", 7168, 2048, 256, 8, 1 },
	/* V3 cut to 64 experts, so that the peer's bf16 copy fits in 24 GiB
	 * beside ours: its decode rows (T <= 16) read what V3's read */
	{ "V3-64", 7168, 2048, 64, 8, 1 },
};

/* ---- one configuration ---- */

struct config {
	const struct moed_plugin *plugin;
	const struct shape *s;
	enum bench_dtype dtype;
	unsigned threads;
	const struct moed_param *params;
	size_t n_params;
	const char *params_text;
	int exact;              /* precision=exact: bf16/fp8 against the fp32 peak */
	const size_t *Ts;
	size_t nT;
	unsigned reps;
	size_t hot_max_T;
	const char *peer;       /* script or NULL */
	double zipf;            /* routing skew, 0 = uniform */
	int quick;              /* -q: limits on small sizes */
	struct limits *lim;     /* measured by run_config() before its rows */
	FILE *json;
};

/* The layer's weights: 3E routed matrices then 3 shared ones, each with its
 * fp8 scales (NULL otherwise). */
struct weights {
	void **m;
	float **sc;
	size_t n;
	const void **ptrs;      /* the spec's gate, up, down arrays (E each) */
	const float **sptrs;    /* and their scales' */
};

struct gen_job {
	const struct shape *s;
	enum bench_dtype d;
	struct weights *w;
	atomic_size_t next;
};

static void matrix_dims(const struct shape *s, size_t i, uint32_t *rows, uint32_t *cols)
{
	uint32_t in = i < 3ull * s->E ? s->In : s->n_shared * s->In;

	*rows = i % 3 == 2 ? s->H : in;
	*cols = i % 3 == 2 ? in : s->H;
}

static void *gen_thread(void *arg)
{
	struct gen_job *j = arg;

	for (size_t i; (i = atomic_fetch_add(&j->next, 1)) < j->w->n;) {
		uint32_t rows, cols;

		matrix_dims(j->s, i, &rows, &cols);
		if (!rows || !cols)
			continue;
		j->w->m[i] = gen_weights(i, (size_t)rows * cols, j->d);
		if (j->d == BENCH_FP8)
			j->w->sc[i] = gen_scales(i, rows, cols);
	}
	return NULL;
}

/* Generate every matrix on `threads` threads (V3 is 11 GB of codes). */
static void gen_layer(const struct shape *s, enum bench_dtype d, unsigned threads,
		      struct weights *w)
{
	struct gen_job j = { .s = s, .d = d, .w = w };
	pthread_t th[MAX_THREADS];

	w->n = 3ull * s->E + 3;
	w->m = calloc(w->n, sizeof(void *));
	w->sc = calloc(w->n, sizeof(float *));
	if (!w->m || !w->sc) {
		perror("calloc");
		exit(1);
	}
	atomic_init(&j.next, 0);
	for (unsigned t = 1; t < threads; t++)
		if (pthread_create(&th[t], NULL, gen_thread, &j)) {
			perror("pthread_create");
			exit(1);
		}
	gen_thread(&j);
	for (unsigned t = 1; t < threads; t++)
		pthread_join(th[t], NULL);
}

static void free_layer(struct weights *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->m[i]), free(w->sc[i]);
	free(w->m), free(w->sc), free(w->ptrs), free(w->sptrs);
}

/* The spec and what it points to are ours until layer_free(). */
static void *layer_new(const struct config *c, struct weights *w)
{
	const struct shape *s = c->s;
	uint32_t E = s->E, Is = s->n_shared * s->In;
	const void **g = w->ptrs = calloc(3ull * E, sizeof(void *));
	const float **gs = w->sptrs = calloc(3ull * E, sizeof(float *));
	struct moed_expert_spec spec;
	void *layer;

	if (!g || !gs) {
		perror("calloc");
		exit(1);
	}
	for (uint32_t e = 0; e < E; e++)
		for (int q = 0; q < 3; q++)
			g[q * E + e] = w->m[3 * e + q], gs[q * E + e] = w->sc[3 * e + q];
	spec = (struct moed_expert_spec){
		.struct_size = sizeof(spec), .hidden_size = s->H, .intermediate_size = s->In,
		.n_experts = E, .shared_intermediate_size = Is,
		.dtype = c->dtype == BENCH_FP8 ? MOED_DTYPE_F8_E4M3
			 : c->dtype == BENCH_BF16 ? MOED_DTYPE_BF16 : MOED_DTYPE_F32,
		.gate = g, .up = g + E, .down = g + 2 * E,
		.shared_gate = w->m[3 * E], .shared_up = w->m[3 * E + 1],
		.shared_down = w->m[3 * E + 2],
	};
	if (c->dtype == BENCH_FP8) {
		spec.scale_block_rows = spec.scale_block_cols = 128;
		spec.gate_scale = gs, spec.up_scale = gs + E, spec.down_scale = gs + 2 * E;
		spec.shared_gate_scale = w->sc[3 * E];
		spec.shared_up_scale = w->sc[3 * E + 1];
		spec.shared_down_scale = w->sc[3 * E + 2];
	}
	if (c->plugin->expert->layer_new(NULL, &spec, c->params, c->n_params, &layer)) {
		fprintf(stderr, "layer_new failed\n");
		exit(1);
	}
	return layer;
}

/* The rows of one T: cold (every rep its own routes, caches flushed before
 * each call) and, for small T, hot (rep 0's routes every rep). */
struct row {
	double ms, hot_ms, peer_ms;     /* medians; 0 = not measured */
	double experts;                 /* distinct experts, mean over the cold reps */
	double bytes, hot_bytes, flops;
};

static double weight_bytes(const struct config *c, double experts)
{
	const struct shape *s = c->s;
	double per = 3.0 * s->In * s->H, shared = 3.0 * s->n_shared * s->In * s->H;
	double b = (experts * per + shared) * (double)bench_dtype_size(c->dtype);

	if (c->dtype == BENCH_FP8)       /* one fp32 scale per 128x128 block */
		b += (experts * per + shared) / (128.0 * 128.0) * 4;
	return b;
}

static void forward(const struct config *c, void *layer, const float *x, size_t T,
		    const int32_t *ex, const float *w, float *y)
{
	if (c->plugin->expert->forward(layer, x, T, c->s->k, ex, w, y)) {
		fprintf(stderr, "forward failed\n");
		exit(1);
	}
}

static void measure(const struct config *c, void *layer, struct peer *peer, const float *x,
		    size_t T, int32_t *ex, float *w, float *y, struct row *ret)
{
	size_t k = c->s->k;
	double t[MAX_REPS], tp[MAX_REPS], experts = 0;
	int32_t *rex = malloc(T * k * sizeof(*rex));
	float *rw = malloc(T * k * sizeof(*rw));

	if (!rex || !rw) {
		perror("malloc");
		exit(1);
	}
	*ret = (struct row){ 0 };
	for (unsigned r = 0; r < c->reps; r++) {
		double t0;

		experts += gen_routes(c->s, T, c->zipf, r + 1, rex, rw);
		if (peer) {
			bench_evict();
			tp[r] = peer_time(peer, c->s, T, r + 1);
		}
		bench_evict();
		t0 = bench_now();
		forward(c, layer, x, T, rex, rw, y);
		t[r] = bench_now() - t0;
	}
	ret->ms = bench_median(t, c->reps) * 1e3;
	ret->experts = experts / c->reps;
	ret->bytes = weight_bytes(c, ret->experts);
	ret->flops = (double)T * (k * 6.0 * c->s->In * c->s->H +
				  6.0 * c->s->n_shared * c->s->In * c->s->H);
	if (peer)
		ret->peer_ms = bench_median(tp, c->reps) * 1e3;
	/* rep 0: the routes of the hot rows and of the check against the peer */
	ret->hot_bytes = weight_bytes(c, gen_routes(c->s, T, c->zipf, 0, ex, w));
	forward(c, layer, x, T, ex, w, y);
	for (unsigned r = 0; T <= c->hot_max_T && r < c->reps; r++) {
		double t0 = bench_now();

		forward(c, layer, x, T, ex, w, y);
		t[r] = bench_now() - t0;
	}
	if (T <= c->hot_max_T)
		ret->hot_ms = bench_median(t, c->reps) * 1e3;
	free(rex), free(rw);
}

/* The plugin's GEMM runs on AMX tiles: the CPU has them and no -o isa= names
 * another instruction set. */
static int uses_amx(const struct config *c)
{
	const char *isa = strstr(c->params_text, "isa=");

	return !isa || !strncmp(isa + 4, "amx", 3) || !strncmp(isa + 4, "auto", 4);
}

/* GFLOP/s the dtype's FLOPs are measured against. */
static double dtype_peak(const struct config *c)
{
	if (c->dtype == BENCH_F32 || c->exact || c->lim->bf16_peak <= 0)
		return c->lim->peak;
	if (c->lim->amx_peak > 0 && uses_amx(c))
		return c->lim->amx_peak;
	return c->lim->bf16_peak;
}

/* Roofline milliseconds of `bytes` and `flops`; *ret_bound "mem" or "cpu". */
static double roofline_ms(const struct config *c, double bytes, double flops,
			  const char **ret_bound)
{
	double mem = bytes / (c->lim->bw * 1e9), cpu = flops / (dtype_peak(c) * 1e9);

	*ret_bound = mem >= cpu ? "mem" : "cpu";
	return (mem >= cpu ? mem : cpu) * 1e3;
}

/* Whether the peer's weights (in its own dtype) fit in the memory available
 * now, ours being built already. */
static int peer_fits(const struct config *c)
{
	const struct shape *s = c->s;
	double n = 3.0 * s->In * s->H * (s->E + s->n_shared);
	double peer = n * (c->dtype == BENCH_F32 ? 4 : 2), avail = 0;
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %lf kB", &avail) == 1)
			break;
	if (f)
		fclose(f);
	/* numpy builds each matrix in fp32 before narrowing it: leave room */
	return avail <= 0 || peer < 0.85 * avail * 1024;
}

static void print_row(const struct config *c, size_t T, const struct row *r)
{
	const char *bound, *hb;
	double roof = roofline_ms(c, r->bytes, r->flops, &bound);
	double hroof = roofline_ms(c, r->hot_bytes, r->flops, &hb);

	printf("%6zu %9.3f %9.1f %7.1f %7.2f %8.1f %8.3f %4s %5.2f", T, r->ms, T / r->ms * 1e3,
	       r->experts, r->bytes / r->ms / 1e6, r->flops / r->ms / 1e6, roof, bound,
	       roof / r->ms);
	if (r->hot_ms > 0)
		printf(" %9.3f %5.2f", r->hot_ms, hroof / r->hot_ms);
	else
		printf(" %9s %5s", "-", "-");
	if (r->peer_ms > 0)
		printf(" %9.3f %6.2f", r->peer_ms, r->peer_ms / r->ms);
	printf("\n");
}

static void json_row(const struct config *c, size_t T, const struct row *r, double err)
{
	const char *bound, *hb;
	double roof = roofline_ms(c, r->bytes, r->flops, &bound);
	double hroof = roofline_ms(c, r->hot_bytes, r->flops, &hb);
	const struct limits *l = c->lim;

	if (!c->json)
		return;
	fprintf(c->json,
		"%s{\"shape\":\"%s\",\"dtype\":\"%s\",\"threads\":%u,\"zipf\":%g,"
		"\"params\":\"%s\",\"T\":%zu,\"reps\":%u,\"ms\":%.6g,\"tokens_per_s\":%.2f,"
		"\"experts\":%.2f,\"weight_bytes\":%.0f,\"flops\":%.0f,"
		"\"weight_gb_per_s\":%.3f,\"of_read_bw\":%.4f,\"gflops\":%.2f,"
		"\"of_sgemm_peak\":%.4f,\"of_dtype_peak\":%.4f,\"roofline_ms\":%.6g,"
		"\"bound\":\"%s\",\"efficiency\":%.4f,\"hot_ms\":%.6g,"
		"\"hot_roofline_ms\":%.6g,\"hot_efficiency\":%.4f,\"peer_ms\":%.6g,"
		"\"x_peer\":%.3f,\"peer_max_rel_err\":%.3g,\"read_bw_gb_per_s\":%.6g,"
		"\"read_bw_mib\":%zu,\"read_bw_streams\":%u,\"read_bw_prefetch\":%u,"
		"\"sgemm_peak_gflops\":%.6g,\"fma_peak_gflops\":%.6g,"
		"\"bf16_peak_gflops\":%.6g,\"amx_peak_gflops\":%.6g,\"dtype_peak_gflops\":%.6g,"
		"\"blas_core\":\"%s\"}",
		ftell(c->json) > 2 ? ",\n" : "\n", c->s->id, bench_dtype_name(c->dtype),
		c->threads, c->zipf, c->params_text, T, c->reps, r->ms, T / r->ms * 1e3,
		r->experts, r->bytes, r->flops, r->bytes / r->ms / 1e6,
		r->bytes / r->ms / 1e6 / l->bw, r->flops / r->ms / 1e6,
		r->flops / r->ms / 1e6 / l->peak, r->flops / r->ms / 1e6 / dtype_peak(c), roof,
		bound, roof / r->ms, r->hot_ms, hroof, r->hot_ms > 0 ? hroof / r->hot_ms : 0,
		r->peer_ms, r->peer_ms > 0 ? r->peer_ms / r->ms : 0, err, l->bw, l->bw_mib,
		l->bw_streams, l->bw_prefetch, l->peak, l->fma_peak, l->bf16_peak, l->amx_peak, dtype_peak(c), openblas_get_corename());
}

static void run_config(const struct config *c)
{
	const struct shape *s = c->s;
	size_t Tmax = c->Ts[c->nT - 1];
	float *x = gen_weights(3ull * s->E + 3, Tmax * s->H, BENCH_F32);
	float *y = malloc(Tmax * s->H * 4), *w = malloc(Tmax * s->k * 4);
	int32_t *ex = malloc(Tmax * s->k * 4);
	struct peer *peer = NULL;
	struct weights wt;
	double worst = 0, t0 = bench_now(), built;
	void *layer;

	if (!y || !w || !ex) {
		perror("malloc");
		exit(1);
	}
	gen_layer(s, c->dtype, c->threads, &wt);
	layer = layer_new(c, &wt);
	built = bench_now() - t0;
	if (c->peer && !peer_fits(c))
		printf("\n(peer left out: its %s weights would not fit beside ours)\n",
		       c->dtype == BENCH_F32 ? "f32" : "bf16");
	else if (c->peer)
		peer = peer_start(c->peer, s, c->dtype, c->threads, Tmax, c->zipf);
	/* the limits right before the rows, the peer idle, the pool started */
	limits_measure(c->threads, c->quick, c->lim);
	openblas_set_num_threads(1);
	printf("\nlimits, %u thread%s: sgemm %s %.1f GFLOP/s (OpenBLAS %s), read %zu MiB "
	       "(%u stream%s/thread, prefetch %u B) %.1f GB/s, "
	       "fp32 FMA %.1f GFLOP/s, vdpbf16ps %.1f GFLOP/s, AMX %.1f GFLOP/s%s", c->threads,
	       c->threads > 1 ? "s" : "", c->quick ? "512^3" : "4096^3", c->lim->peak,
	       openblas_get_corename(), c->lim->bw_mib, c->lim->bw_streams,
	       c->lim->bw_streams > 1 ? "s" : "", c->lim->bw_prefetch, c->lim->bw,
	       c->lim->fma_peak, c->lim->bf16_peak, c->lim->amx_peak,
	       c->lim->bf16_peak > 0 ? "" : " (no AVX512-BF16: bf16 against sgemm)");
	printf("\n%s %s, %u thread%s%s%s, %s routes, layer built in %.1f s; peak %.1f GFLOP/s "
	       "(%s), read %.1f GB/s\n", s->id, bench_dtype_name(c->dtype), c->threads,
	       c->threads > 1 ? "s" : "", *c->params_text ? ", " : "", c->params_text,
	       c->zipf ? "Zipf-skewed" : "uniform", built, dtype_peak(c),
	       dtype_peak(c) == c->lim->peak		? "sgemm"
	       : dtype_peak(c) == c->lim->amx_peak ? "AMX"
						    : "vdpbf16ps",
	       c->lim->bw);
	printf("%6s %9s %9s %7s %7s %8s %8s %4s %5s %9s %5s %9s %6s\n", "T", "cold ms", "tok/s",
	       "experts", "GB/s", "GFLOP/s", "roof ms", "by", "eff", "hot ms", "eff", "peer ms",
	       "x peer");
	for (size_t i = 0; i < c->nT; i++) {
		size_t T = c->Ts[i];
		struct row r;
		double err;

		measure(c, layer, peer, x, T, ex, w, y, &r);
		err = peer ? peer_check(peer, s, T, y) : -1;
		print_row(c, T, &r);
		json_row(c, T, &r, err);
		worst = err > worst ? err : worst;
		fflush(stdout);
	}
	if (peer)
		printf("peer output vs ours: worst token's max relative difference %.2g%s\n", worst,
		       c->dtype != BENCH_F32 ? " (the peer runs bf16 activations)" : "");
	peer_stop(peer);
	c->plugin->expert->layer_free(layer);
	free_layer(&wt);
	free(x), free(y), free(w), free(ex);
}

/* ---- command line ---- */

static size_t parse_list(char *arg, char **out)
{
	size_t n = 0;

	for (char *tok = strtok(arg, ","); tok && n < MAX_LIST; tok = strtok(NULL, ","))
		out[n++] = tok;
	return n;
}

static const struct shape *find_shape(const char *id)
{
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		if (!strcmp(shapes[i].id, id))
			return &shapes[i];
	fprintf(stderr, "unknown shape '%s' (S0..S4, V3, V3-64)\n", id);
	exit(2);
}

int main(int argc, char **argv)
{
	char sh[64] = "S0,S1,S2,S3,S4", dt[32] = "f32,bf16,fp8", th[32] = "1,2";
	char tk[128] = "1,4,16,64,256,1024", *lists[4][MAX_LIST];
	const char *dir = "plugins/.libs", *peer = "bench/torch_peer.py";
	struct moed_param params[MAX_LIST];
	char params_text[512] = "";
	size_t n_params = 0;
	double zipf = 0;
	unsigned reps = 7;
	size_t hot_max_T = 64;
	int quick = 0;
	const char *json_path = NULL;
	size_t ns, nd, nt, nT, Ts[MAX_LIST];
	const struct moed_plugin *p;
	struct config c = { 0 };
	struct limits lim;
	char path[512];
	void *dl, *state;
	int opt;

	while ((opt = getopt(argc, argv, "p:s:d:t:T:o:P:j:z:r:H:q")) != -1) {
		switch (opt) {
		case 'p': dir = optarg; break;
		case 's': snprintf(sh, sizeof(sh), "%s", optarg); break;
		case 'd': snprintf(dt, sizeof(dt), "%s", optarg); break;
		case 't': snprintf(th, sizeof(th), "%s", optarg); break;
		case 'T': snprintf(tk, sizeof(tk), "%s", optarg); break;
		case 'o':
			if (!strchr(optarg, '=') || n_params == MAX_LIST) {
				fprintf(stderr, "-o wants KEY=VALUE\n");
				return 2;
			}
			snprintf(params_text + strlen(params_text),
				 sizeof(params_text) - strlen(params_text), "%s%s",
				 n_params ? " " : "", optarg);
			*strchr(optarg, '=') = 0;
			params[n_params].key = optarg;
			params[n_params].value = optarg + strlen(optarg) + 1;
			n_params++;
			break;
		case 'P': peer = strcmp(optarg, "none") ? optarg : NULL; break;
		case 'j': json_path = optarg; break;
		case 'z': zipf = strtod(optarg, NULL); break;
		case 'r':
			reps = (unsigned)strtoul(optarg, NULL, 10);
			if (reps < 1 || reps > MAX_REPS) {
				fprintf(stderr, "-r wants 1..%d reps\n", MAX_REPS);
				return 2;
			}
			break;
		case 'H': hot_max_T = strtoul(optarg, NULL, 10); break;
		case 'q': quick = 1; break;
		default:
			fprintf(stderr, "usage: %s [-p PLUGIN_DIR] [-s S0,..] [-d f32,bf16,fp8] "
					"[-t 1,2] [-T 1,4,..] [-o KEY=VALUE].. [-P PEER|none] "
					"[-j JSON] [-z ZIPF] [-r REPS] [-H HOT_MAX_T] [-q]\n", argv[0]);
			return 2;
		}
	}
	ns = parse_list(sh, lists[0]);
	nd = parse_list(dt, lists[1]);
	nt = parse_list(th, lists[2]);
	nT = parse_list(tk, lists[3]);
	for (size_t i = 0; i < nT; i++)
		Ts[i] = strtoul(lists[3][i], NULL, 10);
	snprintf(path, sizeof(path), "%s/cpu.so", dir);
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	p = dl ? dlsym(dl, MOED_PLUGIN_SYMBOL) : NULL;
	fake_host_set_verbosity(MOED_LOG_NOTICE);
	if (!p || p->init(fake_host(), NULL, 0, &state)) {
		fprintf(stderr, "cannot load %s: %s\n", path, dl ? "no descriptor" : dlerror());
		return 1;
	}
	if (json_path) {
		c.json = fopen(json_path, "w");
		if (!c.json) {
			perror(json_path);
			return 1;
		}
		fputc('[', c.json);
	}
	c = (struct config){ .plugin = p, .params = params, .n_params = n_params,
			     .params_text = params_text, .Ts = Ts, .nT = nT, .peer = peer,
			     .zipf = zipf, .reps = reps, .hot_max_T = hot_max_T, .quick = quick,
			     .lim = &lim,
			     .json = c.json };
	for (size_t i = 0; i < n_params; i++)
		c.exact |= !strcmp(params[i].key, "precision") && !strcmp(params[i].value, "exact");
	for (size_t t = 0; t < nt; t++) {
		c.threads = (unsigned)strtoul(lists[2][t], NULL, 10);
		if (c.threads < 1 || c.threads > MAX_THREADS)
			return 2;
		openblas_set_num_threads(1);
		if (fake_host_set_threads(c.threads) < 0) {
			fprintf(stderr, "cannot start %u threads\n", c.threads);
			return 1;
		}
		printf("\n== %u thread%s\n", c.threads, c.threads > 1 ? "s" : "");
		for (size_t s = 0; s < ns; s++)
			for (size_t d = 0; d < nd; d++) {
				c.s = find_shape(lists[0][s]);
				if (!strcmp(lists[1][d], "bf16"))
					c.dtype = BENCH_BF16;
				else if (!strcmp(lists[1][d], "fp8"))
					c.dtype = BENCH_FP8;
				else if (!strcmp(lists[1][d], "f32") || !strcmp(lists[1][d], "fp32"))
					c.dtype = BENCH_F32;
				else {
					fprintf(stderr, "unknown dtype '%s' (f32, bf16, fp8)\n",
						lists[1][d]);
					return 2;
				}
				run_config(&c);
				fflush(stdout);
			}
	}
	if (c.json) {
		fputs("\n]\n", c.json);
		fclose(c.json);
	}
	p->fini(state);
	fake_host_stop();
	return 0;
}
