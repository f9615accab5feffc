/*
 * Compute benchmark of the cpu expert backend against the limits and a peer,
 * all measured in the same run (`make bench` runs it; not part of make check).
 *
 * For each thread count it first measures the limits with that many threads:
 * cblas_sgemm 4096^3 (OpenBLAS's own threads) and a streaming read of 512 MiB
 * (one slice per thread).  Then for each shape of ROUTING.md (S0-S4), weight
 * type (f32, bf16, fp8) and T (1 .. 1024 tokens, random distinct top-k routes), the
 * median time of forward() on one layer, printed as tokens/s, weight bytes of
 * the experts touched per second over the read bandwidth, and FLOP/s over the
 * sgemm peak.  The plugin runs as in the daemon: OpenBLAS single-threaded,
 * extra threads only through the host's parallel_for (the daemon's own pool,
 * daemon/pool.c, through tests/common/fake_host.c: threads-1 workers plus the
 * calling thread).
 *
 * The peer (bench/torch_peer.py under /usr/bin/python3: the layer written the
 * way HuggingFace's DeepseekV3MoE runs it, same thread count) rebuilds the
 * same weights, inputs and routes from the same counter-based generator
 * (bench_value() below, mirrored there), checks its output against ours and
 * reports its times; the table prints our speed over its speed.  fp8 (E4M3
 * codes from the same generator, NaN codes skipped, block scales of 128x128
 * that differ between blocks) runs without the peer.
 *
 *	expert_bench [-p PLUGIN_DIR] [-s S0,S1,..] [-d f32,bf16,fp8] [-t 1,2]
 *	             [-T 1,4,16,64,256,1024] [-o KEY=VALUE]... [-P PEER.py|none]
 *	             [-j RESULTS.json] [-z ZIPF]
 *
 * -z routes tokens with a Zipf skew (P(expert e) ~ (e + 1)^-ZIPF, a hot-expert
 * mix) instead of uniformly.
 * -o passes a parameter to the plugin's layer_new (kernel=small, isa=avx2,
 * gemm_min_tokens=64, ...), as [expert] keys in moed.conf do.
 */
#include <cblas.h>
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/util.h"
#include "common/mix.h"
#include "include/moed/plugin.h"
#include "tests/common/fake_host.h"

#define REPS 7
#define MAX_THREADS 64
#define MAX_LIST 16

static const struct shape shapes[] = {
	{ "S0", 256, 128, 16, 4, 1 },     { "S1", 2048, 1408, 64, 6, 2 },
	{ "S2", 2048, 768, 128, 8, 0 },   { "S3", 1792, 512, 256, 8, 1 },
	{ "S4", 1024, 3584, 8, 2, 0 },
};

/* ---- the counter-based generator (mirrored in torch_peer.py) ---- */

/* Element i of tensor `id`: uniform in [-scale/2, scale/2), exactly an fp32. */
static float bench_value(uint64_t id, uint64_t i, float scale)
{
	uint64_t h = splitmix64_at((id << 40) + i);

	return (mix_unit24(h) - 0.5f) * scale;
}

/* Tensor ids: expert e gate/up/down 3e..3e+2, shared 3E..3E+2, x 3E+3,
 * routes 3E+4, route weights 3E+5. */
static void *gen_weights(uint64_t id, size_t n, int bf16, int fp8)
{
	void *p = malloc(n * (fp8 ? 1 : bf16 ? 2 : 4));

	if (!p) {
		perror("malloc");
		exit(1);
	}
	for (size_t i = 0; i < n; i++) {
		float f = bench_value(id, i, 0.05f);
		uint32_t u;

		memcpy(&u, &f, 4);
		if (fp8)
			/* a code of magnitude below 2^7 (the scales bring it near the f32 values) */
			((uint8_t *)p)[i] = (uint8_t)((u >> 24 & 0x80) | ((u >> 13) % 0x78));
		else if (bf16)
			((uint16_t *)p)[i] = (uint16_t)(u >> 16);
		else
			((float *)p)[i] = f;
	}
	return p;
}

/* Block scales of an FP8 matrix of rows x cols: 2^-12 .. 2^-9 by block. */
static float *gen_scales(uint64_t id, uint32_t rows, uint32_t cols)
{
	size_t n = (size_t)((rows + 127) / 128) * ((cols + 127) / 128);
	float *p = malloc(n * sizeof(float));

	if (!p) {
		perror("malloc");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		p[i] = ldexpf(1.0f, -12 + (int)(splitmix64_at((id << 40) + (1ull << 39) + i) % 4));
	return p;
}

/* Expert for hash h: uniform, or Zipf-skewed (P(e) ~ (e + 1)^-zipf, expert 0
 * hottest; the cumulative sums computed in this order in both programs). */
static int32_t pick_expert(uint64_t h, uint32_t E, double zipf)
{
	double u = (double)(h >> 11) * (1.0 / 9007199254740992.0), total = 0, acc = 0;

	if (zipf == 0)
		return (int32_t)(h % E);
	for (uint32_t e = 0; e < E; e++)
		total += pow((double)(e + 1), -zipf);
	for (uint32_t e = 0; e < E; e++) {
		acc += pow((double)(e + 1), -zipf);
		if (u < acc / total)
			return (int32_t)e;
	}
	return (int32_t)E - 1;
}

/* Distinct top-k routes for T tokens; returns the number of distinct experts. */
static unsigned gen_routes(const struct shape *s, size_t T, double zipf, int32_t *ex, float *w)
{
	uint64_t rid = 3ull * s->E + 4, wid = rid + 1;
	unsigned char used[256] = { 0 };
	unsigned distinct = 0;

	for (size_t t = 0; t < T; t++)
		for (unsigned j = 0; j < s->k; j++) {
			size_t at = t * s->k + j;
			int32_t e;
			int dup;

			for (uint64_t a = 0;; a++) {
				e = pick_expert(splitmix64_at((rid << 40) + at * 64 + a), s->E, zipf);
				dup = 0;
				for (unsigned q = 0; q < j; q++)
					dup |= ex[t * s->k + q] == e;
				if (!dup)
					break;
			}
			ex[at] = e;
			w[at] = bench_value(wid, at, 0.4f) + 0.3f;
			distinct += !used[e];
			used[e] = 1;
		}
	return distinct;
}

/* ---- one configuration ---- */

struct config {
	const struct moed_plugin *plugin;
	const struct shape *s;
	int bf16;
	int fp8;
	unsigned threads;
	const struct moed_param *params;
	size_t n_params;
	const char *params_text;
	const size_t *Ts;
	size_t nT;
	const char *peer;       /* script or NULL */
	double zipf;            /* routing skew, 0 = uniform */
	const struct limits *lim;
	FILE *json;
};

static void *layer_new(const struct config *c, const struct moed_expert_spec *spec)
{
	void *layer;

	if (c->plugin->expert->layer_new(NULL, spec, c->params, c->n_params, &layer)) {
		fprintf(stderr, "layer_new failed\n");
		exit(1);
	}
	return layer;
}

/* Median seconds of forward on T tokens, and of the peer's (*ret_peer, 0
 * without one), their runs interleaved; y gets our output. */
static double time_forward(const struct config *c, void *layer, struct peer *peer,
			   const float *x, size_t T, const int32_t *ex, const float *w, float *y,
			   double *ret_peer)
{
	double t[REPS], tp[REPS];

	*ret_peer = 0;
	for (int r = 0; r < REPS; r++) {
		double t0;

		tp[r] = peer ? peer_time(peer, c->s, T) : 0;
		t0 = bench_now();
		if (c->plugin->expert->forward(layer, x, T, c->s->k, ex, w, y)) {
			fprintf(stderr, "forward failed\n");
			exit(1);
		}
		t[r] = bench_now() - t0;
	}
	if (peer)
		*ret_peer = bench_median(tp, REPS);
	return bench_median(t, REPS);
}

static void run_config(const struct config *c)
{
	const struct shape *s = c->s;
	size_t Tmax = c->Ts[c->nT - 1], eb = (size_t)s->In * s->H, Is = (size_t)s->n_shared * s->In;
	const void **gate = calloc(s->E, sizeof(void *)), **up = calloc(s->E, sizeof(void *));
	const void **down = calloc(s->E, sizeof(void *));
	float *x = gen_weights(3ull * s->E + 3, Tmax * s->H, 0, 0), *y = malloc(Tmax * s->H * 4);
	float *w = malloc(Tmax * s->k * 4);
	int32_t *ex = malloc(Tmax * s->k * 4);
	double bpw = c->fp8 ? 1 : c->bf16 ? 2 : 4, worst = 0;
	const char *dname = c->fp8 ? "fp8" : c->bf16 ? "bf16" : "f32";
	float **sc = c->fp8 ? calloc(3ull * s->E + 3, sizeof(float *)) : NULL;
	struct moed_expert_spec spec;
	struct peer *peer = NULL;
	void *layer;

	for (uint32_t e = 0; e < s->E; e++) {
		gate[e] = gen_weights(3ull * e, eb, c->bf16, c->fp8);
		up[e] = gen_weights(3ull * e + 1, eb, c->bf16, c->fp8);
		down[e] = gen_weights(3ull * e + 2, eb, c->bf16, c->fp8);
	}
	for (uint32_t e = 0; c->fp8 && e <= s->E; e++) {
		uint32_t in = e < s->E ? s->In : (uint32_t)Is;

		if (!in)
			continue;
		sc[3 * e] = gen_scales(3ull * e, in, s->H);
		sc[3 * e + 1] = gen_scales(3ull * e + 1, in, s->H);
		sc[3 * e + 2] = gen_scales(3ull * e + 2, s->H, in);
	}
	spec = (struct moed_expert_spec){
		.struct_size = sizeof(spec), .hidden_size = s->H, .intermediate_size = s->In,
		.n_experts = s->E, .shared_intermediate_size = (uint32_t)Is,
		.dtype = c->fp8 ? MOED_DTYPE_F8_E4M3 : c->bf16 ? MOED_DTYPE_BF16 : MOED_DTYPE_F32,
		.gate = gate, .up = up, .down = down,
		.shared_gate = Is ? gen_weights(3ull * s->E, Is * s->H, c->bf16, c->fp8) : NULL,
		.shared_up = Is ? gen_weights(3ull * s->E + 1, Is * s->H, c->bf16, c->fp8) : NULL,
		.shared_down = Is ? gen_weights(3ull * s->E + 2, Is * s->H, c->bf16, c->fp8)
				  : NULL,
	};
	if (c->fp8) {
		float **gs = calloc(3ull * s->E, sizeof(float *));

		for (uint32_t e = 0; e < s->E; e++)
			gs[e] = sc[3 * e], gs[s->E + e] = sc[3 * e + 1], gs[2 * s->E + e] = sc[3 * e + 2];
		spec.scale_block_rows = spec.scale_block_cols = 128;
		spec.gate_scale = (const float *const *)gs;
		spec.up_scale = (const float *const *)gs + s->E;
		spec.down_scale = (const float *const *)gs + 2 * s->E;
		spec.shared_gate_scale = sc[3 * s->E];
		spec.shared_up_scale = sc[3 * s->E + 1];
		spec.shared_down_scale = sc[3 * s->E + 2];
	}
	layer = layer_new(c, &spec);
	if (c->peer && !c->fp8)
		peer = peer_start(c->peer, s, c->bf16, c->threads, Tmax, c->zipf);
	printf("\n%s %s, %u thread%s%s%s, %s routes\n", s->id, dname,
	       c->threads, c->threads > 1 ? "s" : "", *c->params_text ? ", " : "", c->params_text,
	       c->zipf ? "Zipf-skewed" : "uniform");
	printf("%6s %9s %9s %7s %8s %6s %8s %6s %9s %7s\n", "T", "ms", "tok/s", "experts",
	       "GB/s", "of bw", "GFLOP/s", "of pk", "peer ms", "x peer");
	for (size_t i = 0; i < c->nT; i++) {
		size_t T = c->Ts[i];
		unsigned d = gen_routes(s, T, c->zipf, ex, w);
		double psec, sec = time_forward(c, layer, peer, x, T, ex, w, y, &psec);
		double bytes = ((double)d * 3 * eb + 3.0 * Is * s->H) * bpw;
		double flops = (double)T * (s->k * 6.0 * eb + 6.0 * Is * s->H);
		double err = peer ? peer_check(peer, s, T, y) : -1;

		printf("%6zu %9.3f %9.1f %7u %8.2f %6.2f %8.1f %6.2f", T, sec * 1e3, T / sec, d,
		       bytes / sec / 1e9, bytes / sec / 1e9 / c->lim->bw, flops / sec / 1e9,
		       flops / sec / 1e9 / c->lim->peak);
		if (psec > 0)
			printf(" %9.3f %7.2f", psec * 1e3, psec / sec);
		printf("\n");
		worst = err > worst ? err : worst;
		if (c->json)
			fprintf(c->json,
				"%s{\"shape\":\"%s\",\"dtype\":\"%s\",\"threads\":%u,\"zipf\":%g,"
				"\"params\":\"%s\",\"T\":%zu,\"ms\":%.4f,\"tokens_per_s\":%.2f,"
				"\"experts\":%u,\"weight_gb_per_s\":%.3f,\"of_read_bw\":%.4f,"
				"\"gflops\":%.2f,\"of_sgemm_peak\":%.4f,\"peer_ms\":%.4f,"
				"\"x_peer\":%.3f,\"peer_max_rel_err\":%.3g,"
				"\"read_bw_gb_per_s\":%.2f,\"sgemm_peak_gflops\":%.2f}",
				ftell(c->json) > 2 ? ",\n" : "\n", s->id, dname,
				c->threads, c->zipf, c->params_text, T, sec * 1e3, T / sec, d,
				bytes / sec / 1e9, bytes / sec / 1e9 / c->lim->bw, flops / sec / 1e9,
				flops / sec / 1e9 / c->lim->peak, psec * 1e3,
				psec > 0 ? psec / sec : 0, err, c->lim->bw, c->lim->peak);
	}
	if (peer)
		printf("peer output vs ours: worst token's max relative difference %.2g%s\n", worst,
		       c->bf16 ? " (the peer runs bf16 activations)" : "");
	peer_stop(peer);
	c->plugin->expert->layer_free(layer);
	for (uint32_t e = 0; e < s->E; e++)
		free((void *)gate[e]), free((void *)up[e]), free((void *)down[e]);
	free((void *)spec.shared_gate), free((void *)spec.shared_up);
	free((void *)spec.shared_down);
	free(gate), free(up), free(down), free(x), free(y), free(w), free(ex);
	if (c->fp8) {
		free((void *)spec.gate_scale);
		for (size_t i = 0; i < 3ull * s->E + 3; i++)
			free(sc[i]);
		free(sc);
	}
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
	fprintf(stderr, "unknown shape '%s' (S0..S4)\n", id);
	exit(2);
}

int main(int argc, char **argv)
{
	char sh[64] = "S0,S1,S2,S3,S4", dt[32] = "f32,bf16", th[32] = "1,2";
	char tk[128] = "1,4,16,64,256,1024", *lists[4][MAX_LIST];
	const char *dir = "plugins/.libs", *peer = "bench/torch_peer.py";
	struct moed_param params[MAX_LIST];
	char params_text[512] = "";
	size_t n_params = 0;
	double zipf = 0;
	const char *json_path = NULL;
	size_t ns, nd, nt, nT, Ts[MAX_LIST];
	const struct moed_plugin *p;
	struct config c = { 0 };
	char path[512];
	void *dl, *state;
	int opt;

	while ((opt = getopt(argc, argv, "p:s:d:t:T:o:P:j:z:")) != -1) {
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
		default:
			fprintf(stderr, "usage: %s [-p PLUGIN_DIR] [-s S0,..] [-d f32,bf16,fp8] "
					"[-t 1,2] [-T 1,4,..] [-o KEY=VALUE].. [-P PEER|none] "
					"[-j JSON] [-z ZIPF]\n", argv[0]);
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
			     .zipf = zipf,
			     .json = c.json };
	for (size_t t = 0; t < nt; t++) {
		struct limits lim;

		c.threads = (unsigned)strtoul(lists[2][t], NULL, 10);
		if (c.threads < 1 || c.threads > MAX_THREADS)
			return 2;
		limits_measure(c.threads, &lim);
		printf("\n== %u thread%s: sgemm 4096^3 %.1f GFLOP/s (OpenBLAS %s), read 512 MiB "
		       "%.1f GB/s\n", c.threads, c.threads > 1 ? "s" : "", lim.peak,
		       openblas_get_corename(), lim.bw);
		openblas_set_num_threads(1);
		if (fake_host_set_threads(c.threads) < 0) {
			fprintf(stderr, "cannot start %u threads\n", c.threads);
			return 1;
		}
		c.lim = &lim;
		for (size_t s = 0; s < ns; s++)
			for (size_t d = 0; d < nd; d++) {
				c.s = find_shape(lists[0][s]);
				c.bf16 = !strcmp(lists[1][d], "bf16");
				c.fp8 = !strcmp(lists[1][d], "fp8");
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
