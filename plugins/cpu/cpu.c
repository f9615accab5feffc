/*
 * cpu: the CPU expert backend.  forward() checks every expert id, groups the
 * T*k (token, expert) choices by expert with a stable counting sort and makes
 * each non-empty expert (and the shared experts, on all tokens with weight 1)
 * a unit: the row-reading small kernel below `gemm_min_tokens` tokens,
 * a GEMM from there on (f32_gemm.c on AVX-512, else OpenBLAS sgemm; the bf16
 * ones of bf16_gemm.c with precision = bf16).  Each unit runs in two halves
 * (kernels.h): act = silu(gate x) * (up x) for all units, then y += w * down act.  The act
 * half is cut into (unit, row-slice[, token-block]) tasks and the down half
 * into slices of y's columns, each slice walking every unit; both go through
 * the host's parallel_for, so one call uses every idle core even when a
 * single expert is hot, and runs serially where the host has no idle worker.
 * A token's outputs are added in a fixed order (experts by id, then shared)
 * whatever the slicing or the thread that runs a slice, so its result does
 * not depend on the rest of the batch beyond the small/sgemm choice.  Tokens
 * go through in passes of PASS_TOKENS, which bounds the act buffer.
 *
 * Concurrency: forward() may run on many threads at once.  Buffers come from
 * two pools per layer (pass buffers, per-task sgemm scratch: mutex-guarded
 * free lists, grown on demand, freed in layer_free), so calls share nothing
 * mutable and steady state allocates nothing.  Buffers of 2 MB and more are
 * advised transparent huge pages.  The weights are never copied: every path
 * reads them where the host put them (the bf16 GEMM packs 64 rows at a time
 * into task scratch that stays in L2).
 *
 * Parameters: gemm_min_tokens (default 40 for F32 weights, 48 for BF16; with
 * precision = bf16 32 for BF16, 16 for FP8; on AMX 1 and 4);
 * split_min_kb (default 8192: smaller calls are not split, 0: always split);
 * kernel = auto|small|gemm (force one path, for tests and benchmarks);
 * isa = auto|amx|avx512bf16|avx512|avx2|generic (the kernels' instruction
 * set; auto takes the best the CPU has; amx: avx512bf16 with amx_gemm.c's
 * tile GEMM); precision = exact|bf16 (BF16 and FP8
 * weights; default bf16 where the CPU has AVX512-BF16): bf16 rounds x and the
 * act to bf16 once per pass / per act slice and runs bf16.c's kernels, or,
 * with an isa that lacks them, the fp32 kernels on the rounded values; exact
 * is the fp32 path, unchanged; prepack = off|on (BF16 and FP8 weights,
 * precision = bf16: every expert's GEMM panels packed once at layer_new into
 * a second copy, FP8 decoded to bf16, and the GEMM then from 1 token on for
 * BF16, 4 for FP8).
 * Weights: F32 or BF16 (BF16 widened on the fly), or FP8 E4M3 with block
 * scales (decoded with them: in registers for small groups, fp8_impl.h; into
 * sgemm scratch for large ones, default from 48 tokens as for BF16, not
 * tuned); F16 is refused.
 * Qwen2-MoE's shared-expert gate: the shared unit's tokens are weighted by
 * sigmoid(x . g) instead of 1, computed per pass into the pass buffer.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "include/moed/plugin.h"
#include "plugins/common/expert_spec.h"
#include "plugins/common/params.h"
#include "plugins/cpu/kernels.h"

#define PLUGIN "cpu"
/* Group sizes from which sgemm beats the small kernel: S1 on AVX-512 Zen 5,
 * one thread (bench/expert_bench -o gemm_min_tokens=16|48|200: 40-48 best
 * for both; bf16 T=1024 took 2.0 s at 48, 2.2 s at 96 and 200). */
#define GEMM_MIN_F32 40u
#define GEMM_MIN_BF16 48u
/* The AVX-512 fp32 GEMM (f32_gemm.c) would be faster from 16 tokens (S1, 2
 * threads, -o gemm_min_tokens=8|16|24 against 40 (F32) or 48 (BF16,
 * precision = exact), 2-3 alternated rounds, cold ms: F32 T=256 210 -> 177
 * (16), 180 (24), 185 (8); BF16 T=256 170 -> 142 (16), 152 (24)), but the
 * defaults stay: a group's path changes its tokens' bits, and at 16 the
 * coalescing of a few small requests already crosses it (tests/python/
 * client.sh's coalesced requests against single ones failed). */
/* The same for the native bf16 kernels (precision = bf16), one S1 expert on
 * n tokens, weights read cold, thread CPU ms, two alternated runs of
 * plugins/cpu/gemm_cmp (row kernel / packed GEMM): bf16 n=8 1.7-2.0/2.8-3.6,
 * 16 2.7-3.3/3.8-4.1, 32 4.4-5.4/5.0-6.3, 64 9.2-10.8/7.2-8.2; FP8 n=8
 * 1.9-2.2/2.7-3.5, 16 3.5-3.6/3.2-4.2, 32 6.6-7.8/4.7-5.8.  At the crossover
 * the two are within the noise of each other: no valley.  Checked again
 * after the GEMM's prefetch and the FP8 quad transpose (S1, 2 threads, 3
 * alternated rounds, cold ms): bf16 16 / 24 / 32 at T=256 95 / 81 / 72, T=128
 * 54 / 49 / 49; FP8 8 / 12 / 16 at T=64 34 / 25 / 25, T=128 51 / 46 / 46. */
#define GEMM_MIN_B16 32u
#define GEMM_MIN_B16_FP8 16u
/* ... and for the AMX tiles (isa = amx, H and I multiples of 32): one S1
 * expert, gemm_cmp, thread CPU ms, row kernel / AMX GEMM (weights read in
 * place), 2 runs: BF16 n=1 1.15-1.26/1.03-1.10, 2 1.20-1.23/0.71-0.73,
 * 4 0.88-0.97/0.74-0.75, 8 1.46-1.52/0.82-0.90, 16 3.0/1.14-1.15; FP8 n=1
 * 0.53-0.67/0.99-1.08, 2 0.66-0.67/0.89-0.92, 4 1.01/0.93-0.99, 6 1.58-1.66
 * /0.96-1.11.  The layer (S1, 2 threads, -o gemm_min_tokens=1|2|8, 2
 * alternated rounds, cold ms): BF16 T=1 5.28-5.43 / 5.24-5.39 / 5.24-5.49,
 * T=64 40.9-41.9 / 41.3-41.8 / 50.9-51.8; FP8 (1|4|8) T=1 5.75-5.88 /
 * 2.66-3.03 / 2.87-3.18, T=16 33.6-34.4 / 21.0-21.2 / 21.1-21.7.  So BF16
 * takes the GEMM from one token on, and then every group of a layer runs
 * the same kernel: a token's result no longer depends on its batch or on
 * coalescing (tests/unit/test_cpu_expert.c); FP8 keeps the in-register
 * decode of its one-byte rows below 4 tokens. */
#define GEMM_MIN_AMX 1u
#define GEMM_MIN_AMX_FP8 4u
/* ... and for pre-packed BF16 weights (prepack = on): the GEMM from one
 * token on (S1, 2 threads, bench/expert_bench -o prepack=on -o
 * gemm_min_tokens=1|4, 3 alternated rounds, cold ms: T=1 5.0-6.0 / 5.5-6.3,
 * 16 23.6-29.5 / 32.4-37.5, 64 42.8-50.5 / 47.5-54.3, 256 101-120 / 106-109;
 * the panel is read as one sequential stream, and nothing is packed). */
#define GEMM_MIN_B16_PACKED 1u
/* ... and for FP8 (the row kernel reads one byte per weight, the packed
 * panels two, so decode keeps it): S1 fp8, 2 threads, -o prepack=on -o
 * gemm_min_tokens=2|4|6|8|16, 2-3 alternated rounds, within the noise of each
 * other from 2 to 6 (T=64 44-58 ms, T=256 107-138); against prepack = off
 * T=64 60-63 -> 46-58, T=256 152-168 -> 103-127, T=1024 443-460 -> 379-414. */
#define GEMM_MIN_F8_PACKED 4u
/* Tokens per pass (bounds the act buffer: PASS_TOKENS * (k * I + I_shared)). */
#define PASS_TOKENS 1024u
/* Rows per act task on the sgemm path, and y columns per down task (wider
 * when a unit takes sgemm, which repacks its act rows for every slice). */
#define GEMM_TASK_ROWS GEMM_SLICE_MAX
/* The bf16 GEMM's act tasks: up to B16_GEMM_TOKENS tokens (kernels.h), so a
 * panel's pack serves more of them, in slices of fewer rows, so one hot
 * expert still makes enough tasks for every core (S1, 1024 tokens: 6). */
#define B16_TASK_ROWS 256u
#define DOWN_TASK_ROWS 128u
#define DOWN_TASK_ROWS_GEMM GEMM_SLICE_MAX
/* Passes smaller than this many kB of work (weight bytes read + FLOPs / 4:
 * 8 MB is about 0.4 ms of one core) run on the calling thread alone: waking a
 * helper costs tens of microseconds (S0, T=1 took twice as long on 2 threads
 * as on 1).  Parameter split_min_kb; 0 splits every call. */
#define SPLIT_MIN_KB 8192u
/* Scratch buffers from this size on are 2 MB aligned and advised huge pages. */
#define HUGE_MIN ((size_t)2 << 20)

enum path_mode { PATH_AUTO, PATH_SMALL, PATH_GEMM };

struct scratch {
	struct scratch *next;
	size_t cap;             /* bytes */
	void *buf;
};

struct scratch_pool {
	pthread_mutex_t lock;   /* guards head */
	struct scratch *head;
	atomic_size_t bytes;    /* of every buffer, in use or not (layer_bytes) */
};

enum precision { PREC_EXACT, PREC_BF16 };

struct cpu_layer {
	struct moed_expert_spec spec;
	const struct cpu_isa *isa;
	int isa_auto;           /* isa = auto (for the kernels notice) */
	/* precision = bf16 and BF16 or FP8 weights: activations rounded to bf16 */
	int b16;
	/* ... and these kernels take them as bf16 (NULL: the fp32 kernels take
	 * them rounded, in fp32) */
	const struct cpu_bf16_ops *bops;
	uint32_t gemm_min;
	uint32_t split_min;     /* kB of work (SPLIT_MIN_COST) before splitting */
	enum path_mode mode;
	int fp8;                /* FP8 weights: every unit takes sgemm */
	/* prepack = on: each expert's (and [n_experts] the shared one's) panels
	 * for the bf16 GEMM, or NULL (packed per call) */
	uint32_t **packed;
	size_t packed_bytes;
	/* U_GEMM's halves: f32_gemm.c's where the ISA has them (not for FP8),
	 * else OpenBLAS sgemm's (gemm.c) */
	expert_fp8_fn *gemm_act, *gemm_down;
	size_t task_bytes;      /* sgemm scratch of one task */
	struct scratch_pool passes, tasks;
};

/* The kernel a unit takes: fp32 activations (small, sgemm, FP8 small) or
 * bf16 ones (precision = bf16 with native kernels). */
enum unit_kind { U_SMALL, U_GEMM, U_FP8, U_B16_SMALL, U_B16_GEMM };

/* A unit of work: one expert (or the shared experts) and its group. */
struct unit {
	struct expert_w w;
	struct group g;
	/* g.n rows of w.inter floats; U_B16_*: g.n rows of bf16, act_ld apart */
	float *act;
	enum unit_kind kind;
};

/* An act task: rows r0..r1 of a unit for its tokens j0..j1. */
struct task {
	uint32_t unit, r0, r1;
	size_t j0, j1;
};

/* One pass of forward(), shared by its tasks. */
struct pass {
	struct cpu_layer *l;
	const float *x;
	const float *xf;        /* what the fp32 kernels read: x, or x rounded to bf16 */
	const uint16_t *xb;     /* U_B16_* units: x in bf16, rows x_ld apart */
	size_t x_ld;
	float *y;
	struct unit *units;
	size_t n_units;
	struct task *tasks;
	size_t n_tasks;
	uint32_t down_rows;     /* y columns per down task */
	atomic_int failed;      /* a task could not get scratch */
};

static const struct moed_host *host;

/* The daemon hands init() the same parameters as every layer_new(), which
 * checks them. */
static int cpu_init(const struct moed_host *h, const struct moed_param *params, size_t n_params,
		    void **ret_state)
{
	host = h;
	*ret_state = NULL;
	return 0;
}

static void cpu_fini(void *state)
{
}

static const char *const kernel_choices[] = { "auto", "small", "gemm", NULL };
static const char *const isa_choices[] = { "auto", "amx", "avx512bf16", "avx512", "avx2", "generic",
					   NULL };
static const char *const precision_choices[] = { "exact", "bf16", NULL };
static const char *const prepack_choices[] = { "off", "on", NULL };

static const struct moed_param_decl decls[] = {
	{ .name = "gemm_min_tokens", .type = MOED_PARAM_INT, .min = 1, .max = 1e9,
	  .def = "40 (F32), 48 (BF16); precision=bf16: 32 (BF16), 16 (FP8); amx: 1, 4; prepack: 1, 4",
	  .help = "tokens of one expert from which sgemm is used" },
	{ .name = "split_min_kb", .type = MOED_PARAM_INT, .min = 0, .max = 1e9, .def = "8192",
	  .help = "work (kB) below which a call is not split across threads; 0: always split" },
	{ .name = "kernel", .type = MOED_PARAM_ENUM, .def = "auto", .choices = kernel_choices,
	  .help = "force the small or the sgemm path (tests, benchmarks)" },
	{ .name = "isa", .type = MOED_PARAM_ENUM, .def = "auto", .choices = isa_choices,
	  .help = "instruction set of the kernels; auto: the best this CPU has" },
	{ .name = "precision", .type = MOED_PARAM_ENUM, .def = "bf16 with AVX512-BF16, else exact",
	  .choices = precision_choices,
	  .help = "BF16 and FP8 weights: exact keeps fp32 activations, bf16 rounds them to "
		  "bf16 for native bf16 dot products" },
	{ .name = "prepack", .type = MOED_PARAM_ENUM, .def = "off", .choices = prepack_choices,
	  .help = "BF16 and FP8 weights, precision bf16: a second copy of the weights packed "
		  "for the bf16 GEMM at load (FP8: decoded, two bytes per weight), which then "
		  "starts at fewer tokens" },
};

static int parse_params(struct cpu_layer *l, const struct moed_param *params, size_t n_params,
			uint32_t *prepack)
{
	uint32_t mode = PATH_AUTO, prec = cpu_isa_pick("avx512bf16") ? PREC_BF16 : PREC_EXACT;
	const char *isa = "auto";
	const struct param_slot slots[] = {
		{ "gemm_min_tokens", &l->gemm_min },
		{ "split_min_kb", &l->split_min },
		{ "kernel", &mode },
		{ "precision", &prec },
		{ "prepack", prepack },
	};

	/* an instruction set this build or CPU lacks is "not supported", not a
	 * malformed value, so it is looked at before the declared check */
	for (size_t i = 0; i < n_params; i++)
		if (!strcmp(params[i].key, "isa"))
			isa = params[i].value;
	l->isa = cpu_isa_pick(isa);
	l->isa_auto = !strcmp(isa, "auto");
	if (!l->isa) {
		host->log(MOED_LOG_ERR, PLUGIN,
			  "parameter 'isa' = '%s': unknown or not supported by this CPU", isa);
		return -ENOTSUP;
	}
	if (params_parse(host, PLUGIN, decls, PARAMS_COUNT(decls), slots, PARAMS_COUNT(slots),
			 params, n_params) < 0)
		return -EINVAL;
	l->mode = mode == 1 ? PATH_SMALL : mode == 2 ? PATH_GEMM : PATH_AUTO;
	l->b16 = prec == PREC_BF16;
	return 0;
}

static int check_spec(const struct moed_expert_spec *s)
{
	return expert_spec_check_caps(host, PLUGIN, s,
				      EXPERT_CAP_FP8 | EXPERT_CAP_SHARED_GATE | EXPERT_CAP_LOCAL);
}

/* Expert e's weights as the kernels take them (e == n_experts: the shared
 * expert). */
static struct expert_w expert_w_of(const struct cpu_layer *l, uint32_t e)
{
	const struct moed_expert_spec *s = &l->spec;
	int sh = e == s->n_experts;
	struct expert_w w = { .gate = sh ? s->shared_gate : s->gate[e],
			      .up = sh ? s->shared_up : s->up[e],
			      .down = sh ? s->shared_down : s->down[e],
			      .H = s->hidden_size,
			      .inter = sh ? s->shared_intermediate_size : s->intermediate_size,
			      .bf16 = s->dtype == MOED_DTYPE_BF16, .fp8 = l->fp8,
			      .br = s->scale_block_rows, .bc = s->scale_block_cols,
			      .packed = l->packed ? l->packed[e] : NULL };

	if (l->fp8) {
		w.gate_s = sh ? s->shared_gate_scale : s->gate_scale[e];
		w.up_s = sh ? s->shared_up_scale : s->up_scale[e];
		w.down_s = sh ? s->shared_down_scale : s->down_scale[e];
	}
	return w;
}

static void prepack_free(struct cpu_layer *l)
{
	if (!l->packed)
		return;
	for (uint32_t e = 0; e <= l->spec.n_experts; e++)
		free(l->packed[e]);
	free(l->packed);
	l->packed = NULL;
}

/* Expert e's panels: huge-page aligned and advised, as the scratch; *total
 * grows by their bytes. */
static uint32_t *prepack_one(const struct cpu_layer *l, uint32_t e, size_t *total)
{
	struct expert_w w = expert_w_of(l, e);
	size_t bytes = l->bops->prepack(&w, NULL);
	void *p;

	*total += bytes;
	if (posix_memalign(&p, bytes >= HUGE_MIN ? HUGE_MIN : 64, bytes))
		return NULL;
	if (bytes >= HUGE_MIN)
		madvise(p, bytes & ~(HUGE_MIN - 1), MADV_HUGEPAGE);
	l->bops->prepack(&w, p);
	return p;
}

/* The bf16 GEMM of every unit runs on AMX tiles (amx_gemm.c takes BF16 and
 * FP8 weights whose dimensions are multiples of 32, FP8 blocks of whole
 * tiles). */
static int amx_layer(const struct cpu_layer *l)
{
#if MOED_CPU_AMX
	const struct moed_expert_spec *s = &l->spec;

	return l->bops == &cpu_bf16_amx && s->hidden_size % 32 == 0 &&
	       s->intermediate_size % 32 == 0 && s->shared_intermediate_size % 32 == 0 &&
	       (!l->fp8 || (s->scale_block_cols % 32 == 0 && s->scale_block_rows % 16 == 0));
#else
	(void)l;
	return 0;
#endif
}

/* prepack = on: every (local) expert's and the shared expert's GEMM panels
 * (BF16, or FP8 decoded to bf16 with its scales), packed once here instead of
 * on every GEMM call (bf16_gemm.c); F32 weights and precision = exact have no
 * packed GEMM input to keep, and say so. */
static int prepack_layer(struct cpu_layer *l)
{
	const struct moed_expert_spec *s = &l->spec;
	const uint8_t *local = expert_spec_local(s);
	uint32_t E = s->n_experts;
	size_t total = 0;

	if (!l->bops) {
		/* said once per process, not once per layer (V3: 58 layers) */
		static atomic_flag said = ATOMIC_FLAG_INIT;

		if (!atomic_flag_test_and_set(&said))
			host->log(MOED_LOG_NOTICE, PLUGIN,
				  "prepack = on has no effect here: it needs BF16 or FP8 weights, "
				  "precision = bf16 and AVX512-BF16 (said once, for every layer)");
		return 0;
	}
	if (amx_layer(l)) {
		/* the AMX GEMM reads the weights as stored: no panels to keep */
		static atomic_flag said = ATOMIC_FLAG_INIT;

		if (!atomic_flag_test_and_set(&said))
			host->log(MOED_LOG_NOTICE, PLUGIN,
				  "prepack = on has no effect with isa = amx, whose GEMM reads "
				  "the weights as stored (said once, for every layer)");
		return 0;
	}
	l->packed = calloc((size_t)E + 1, sizeof(*l->packed));
	if (!l->packed)
		return -ENOMEM;
	for (uint32_t e = 0; e < E; e++) {
		if (local && !local[e])
			continue;
		l->packed[e] = prepack_one(l, e, &total);
		if (!l->packed[e])
			goto nomem;
	}
	if (s->shared_intermediate_size) {
		l->packed[E] = prepack_one(l, E, &total);
		if (!l->packed[E])
			goto nomem;
	}
	host->log(MOED_LOG_INFO, PLUGIN, "prepack = on: %.1f MiB of packed panels for this layer",
		  (double)total / (1 << 20));
	l->packed_bytes = total;
	return 0;
nomem:
	host->log(MOED_LOG_ERR, PLUGIN,
		  "prepack = on: out of memory for the packed weights (%.1f MiB so far)",
		  (double)total / (1 << 20));
	prepack_free(l);
	return -ENOMEM;
}

/*
 * What a layer runs on, logged at notice when it differs from the last layer
 * logged (so once for a model whose layers agree, again after a reload that
 * changes the parameters): the instruction set, the weights, the precision,
 * the group size from which the GEMM takes over and which GEMM.
 */
static void log_kernels(const struct cpu_layer *l)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static char last[256];
	const struct moed_expert_spec *s = &l->spec;
	const char *gemm = amx_layer(l) ? "AMX tiles"
			   : l->bops	? "vdpbf16ps, packed panels"
			   : l->gemm_act != expert_gemm_act ? "AVX-512 fp32"
							    : "OpenBLAS sgemm";
	char line[256];

	snprintf(line, sizeof(line),
		 "kernels: isa %s%s, %s weights, precision %s, GEMM (%s) from %u tokens%s%s",
		 l->isa->name, l->isa_auto ? " (auto)" : "",
		 l->fp8 ? "FP8 E4M3" : s->dtype == MOED_DTYPE_BF16 ? "BF16" : "F32",
		 l->b16 ? "bf16" : "exact", gemm, l->gemm_min, l->packed ? ", prepacked" : "",
		 l->mode == PATH_SMALL ? ", forced small" : l->mode == PATH_GEMM ? ", forced gemm" : "");
	pthread_mutex_lock(&lock);
	if (strcmp(line, last)) {
		memcpy(last, line, sizeof(last));
		host->log(MOED_LOG_NOTICE, PLUGIN, "%s", line);
	}
	pthread_mutex_unlock(&lock);
}

static int cpu_layer_new(void *state, const struct moed_expert_spec *spec,
			 const struct moed_param *params, size_t n_params, void **ret_layer)
{
	struct cpu_layer *l;
	uint32_t imax, prepack = 0;
	int r;

	r = check_spec(spec);
	if (r < 0)
		return r;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->spec = *spec;
	/* the ABI-2 fields of an older host's smaller spec read as absent */
	if (spec->struct_size < sizeof(*spec))
		memset((char *)&l->spec + spec->struct_size, 0, sizeof(*spec) - spec->struct_size);
	l->fp8 = MOED_STRUCT_HAS(spec, struct moed_expert_spec, local) &&
		 spec->dtype == MOED_DTYPE_F8_E4M3;
	l->mode = PATH_AUTO;
	l->split_min = SPLIT_MIN_KB;
	r = parse_params(l, params, n_params, &prepack);
	if (r < 0)
		goto fail;
	/* precision only concerns weights narrower than fp32 */
	l->b16 = l->b16 && (spec->dtype == MOED_DTYPE_BF16 || l->fp8);
	/* the packed GEMM applies FP8 scales per pair of columns */
	if (l->b16 && (!l->fp8 || spec->scale_block_cols % 2 == 0))
		l->bops = l->isa->bf16;
	if (prepack) {
		r = prepack_layer(l);
		if (r < 0)
			goto fail;
	}
	if (!l->gemm_min)
		l->gemm_min = spec->dtype == MOED_DTYPE_F32 ? GEMM_MIN_F32
			      : l->packed && l->fp8 ? GEMM_MIN_F8_PACKED
			      : l->packed	  ? GEMM_MIN_B16_PACKED
			      : amx_layer(l)	  ? (l->fp8 ? GEMM_MIN_AMX_FP8 : GEMM_MIN_AMX)
			      : l->bops && l->fp8 ? GEMM_MIN_B16_FP8
			      : l->bops	  ? GEMM_MIN_B16
						  : GEMM_MIN_BF16;
	imax = spec->intermediate_size > spec->shared_intermediate_size
		       ? spec->intermediate_size
		       : spec->shared_intermediate_size;
	l->task_bytes = expert_gemm_scratch(spec->hidden_size, imax,
					    spec->dtype == MOED_DTYPE_BF16 || l->fp8) *
			sizeof(float);
	if (l->bops && expert_b16_scratch(spec->hidden_size, imax) > l->task_bytes)
		l->task_bytes = expert_b16_scratch(spec->hidden_size, imax);
#if MOED_CPU_AMX
	if (l->bops == &cpu_bf16_amx && amx_gemm_scratch(spec->hidden_size, imax) > l->task_bytes)
		l->task_bytes = amx_gemm_scratch(spec->hidden_size, imax);
#endif
	l->gemm_act = l->isa->gemm_act && !l->fp8 ? l->isa->gemm_act : expert_gemm_act;
	l->gemm_down = l->isa->gemm_down && !l->fp8 ? l->isa->gemm_down : expert_gemm_down;
#if MOED_CPU_BF16
	if (l->gemm_act == f32_gemm_act &&
	    f32_gemm_scratch(spec->hidden_size, imax) * 4 > l->task_bytes)
		l->task_bytes = f32_gemm_scratch(spec->hidden_size, imax) * 4;
#endif
	r = -pthread_mutex_init(&l->passes.lock, NULL);
	if (r < 0)
		goto fail;
	r = -pthread_mutex_init(&l->tasks.lock, NULL);
	if (r < 0) {
		pthread_mutex_destroy(&l->passes.lock);
		goto fail;
	}
	log_kernels(l);
	*ret_layer = l;
	return 0;
fail:
	prepack_free(l);
	free(l);
	return r;
}

static void pool_drain(struct scratch_pool *sp)
{
	while (sp->head) {
		struct scratch *s = sp->head;

		sp->head = s->next;
		free(s->buf);
		free(s);
	}
	pthread_mutex_destroy(&sp->lock);
}

static void cpu_layer_free(void *layer)
{
	struct cpu_layer *l = layer;

	if (!l)
		return;
	pool_drain(&l->passes);
	pool_drain(&l->tasks);
	prepack_free(l);
	free(l);
}

/* A scratch buffer of at least `bytes`, 64-byte aligned, owned by the caller
 * until scratch_put(). */
static struct scratch *scratch_get(struct scratch_pool *sp, size_t bytes)
{
	struct scratch *s;

	pthread_mutex_lock(&sp->lock);
	s = sp->head;
	if (s)
		sp->head = s->next;
	pthread_mutex_unlock(&sp->lock);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
	}
	if (s->cap < bytes) {
		free(s->buf);
		atomic_fetch_sub(&sp->bytes, s->cap);
		s->cap = 0;
		if (posix_memalign(&s->buf, bytes >= HUGE_MIN ? HUGE_MIN : 64, bytes)) {
			s->buf = NULL;
			free(s);
			return NULL;
		}
		/* a pass buffer of a large batch (tens of MB of act rows) is read
		 * and written across its whole size: transparent huge pages save
		 * TLB misses; advice only, so a refusal changes nothing */
		if (bytes >= HUGE_MIN)
			madvise(s->buf, bytes & ~(HUGE_MIN - 1), MADV_HUGEPAGE);
		s->cap = bytes;
		atomic_fetch_add(&sp->bytes, bytes);
	}
	return s;
}

static void scratch_put(struct scratch_pool *sp, struct scratch *s)
{
	pthread_mutex_lock(&sp->lock);
	s->next = sp->head;
	sp->head = s;
	pthread_mutex_unlock(&sp->lock);
}

static size_t align64(size_t bytes)
{
	return (bytes + 63) & ~(size_t)63;
}

static size_t div_up(size_t a, size_t b)
{
	return (a + b - 1) / b;
}

static int use_gemm(const struct cpu_layer *l, size_t n)
{
	return l->mode == PATH_GEMM || (l->mode == PATH_AUTO && n >= l->gemm_min);
}

static enum unit_kind unit_kind(const struct cpu_layer *l, size_t n)
{
	int gemm = use_gemm(l, n);

	if (l->bops)
		return gemm ? U_B16_GEMM : U_B16_SMALL;
	if (gemm)
		return U_GEMM;
	return l->fp8 ? U_FP8 : U_SMALL;
}

static int is_gemm(enum unit_kind k)
{
	return k == U_GEMM || k == U_B16_GEMM;
}

static int is_b16(enum unit_kind k)
{
	return k == U_B16_SMALL || k == U_B16_GEMM;
}

/* Row stride of bf16 activations of width n: even, so pairs never straddle. */
static size_t b16_ld(uint32_t n)
{
	return n + (n & 1);
}

/* fn(arg, i) for i < n on the host's workers (if worth it), or here. */
static void run_tasks(size_t n, void (*fn)(void *arg, size_t i), void *arg, int split)
{
	if (split && MOED_HOST_HAS(host, parallel_for)) {
		host->parallel_for(n, fn, arg);
		return;
	}
	for (size_t i = 0; i < n; i++)
		fn(arg, i);
}

/* Tokens j0..j1 of g. */
static struct group sub_group(const struct group *g, size_t j0, size_t j1)
{
	return (struct group){ .n = j1 - j0, .tok = g->tok ? g->tok + j0 : NULL,
			       .first = g->first + j0, .w = g->w ? g->w + j0 : NULL };
}

static void act_task(void *arg, size_t i)
{
	struct pass *p = arg;
	const struct task *t = &p->tasks[i];
	const struct unit *u = &p->units[t->unit];
	const struct cpu_isa *isa = p->l->isa;
	struct group g = sub_group(&u->g, t->j0, t->j1);
	uint32_t In = u->w.inter;
	float *act = u->act + t->j0 * In;
	uint16_t *actb = (uint16_t *)u->act + t->j0 * b16_ld(In);
	struct scratch *s = NULL;

	if (u->kind != U_SMALL && u->kind != U_B16_SMALL) {
		s = scratch_get(&p->l->tasks, p->l->task_bytes);
		if (!s) {
			atomic_store(&p->failed, 1);
			return;
		}
	}
	switch (u->kind) {
	case U_SMALL:
		isa->act(&u->w, p->xf, &g, act, t->r0, t->r1);
		break;
	case U_GEMM:
		p->l->gemm_act(&u->w, p->xf, &g, act, t->r0, t->r1, s->buf);
		break;
	case U_FP8:
		isa->fp8_act(&u->w, p->xf, &g, act, t->r0, t->r1, s->buf);
		break;
	case U_B16_SMALL:
		p->l->bops->small_act(&u->w, p->xb, p->x_ld, &g, actb, b16_ld(In), t->r0, t->r1,
				      NULL);
		break;
	case U_B16_GEMM:
		p->l->bops->gemm_act(&u->w, p->xb, p->x_ld, &g, actb, b16_ld(In), t->r0, t->r1,
				     s->buf);
		break;
	}
	/* precision = bf16 through the fp32 kernels: the act meets bf16 down rows
	 * rounded, as the native kernels store it */
	if (p->l->b16 && !is_b16(u->kind))
		for (size_t j = 0; j < g.n; j++)
			for (uint32_t r = t->r0; r < t->r1; r++)
				act[j * In + r] = bf16_round(act[j * In + r]);
	if (s)
		scratch_put(&p->l->tasks, s);
}

/* Columns h0..h1 of y: every unit in order, so a token's sum has one order. */
static void down_task(void *arg, size_t i)
{
	struct pass *p = arg;
	uint32_t H = p->l->spec.hidden_size, h0 = (uint32_t)i * p->down_rows;
	uint32_t h1 = H - h0 < p->down_rows ? H : h0 + p->down_rows;
	struct scratch *s = NULL;

	for (size_t k = 0; k < p->n_units; k++) {
		const struct unit *u = &p->units[k];
		const uint16_t *actb = (const uint16_t *)u->act;
		size_t ld = b16_ld(u->w.inter);

		if (u->kind == U_SMALL) {
			p->l->isa->down(&u->w, u->act, &u->g, p->y, h0, h1);
			continue;
		}
		if (u->kind == U_B16_SMALL) {
			p->l->bops->small_down(&u->w, actb, ld, &u->g, p->y, h0, h1, NULL);
			continue;
		}
		if (!s)
			s = scratch_get(&p->l->tasks, p->l->task_bytes);
		if (!s) {
			atomic_store(&p->failed, 1);
			return;
		}
		if (u->kind == U_GEMM)
			p->l->gemm_down(&u->w, u->act, &u->g, p->y, h0, h1, s->buf);
		else if (u->kind == U_FP8)
			p->l->isa->fp8_down(&u->w, u->act, &u->g, p->y, h0, h1, s->buf);
		else
			p->l->bops->gemm_down(&u->w, actb, ld, &u->g, p->y, h0, h1, s->buf);
	}
	if (s)
		scratch_put(&p->l->tasks, s);
}

/* Append unit u's act tasks. */
static void add_tasks(struct pass *p, uint32_t k)
{
	const struct unit *u = &p->units[k];
	uint32_t rows = u->kind == U_B16_GEMM ? B16_TASK_ROWS
			: is_gemm(u->kind)	? GEMM_TASK_ROWS
						: SMALL_TASK_ROWS;
	size_t toks = u->kind == U_B16_GEMM ? B16_GEMM_TOKENS
		      : is_gemm(u->kind)    ? GEMM_TOKENS
					    : u->g.n;

	for (size_t j0 = 0; j0 < u->g.n; j0 += toks)
		for (uint32_t r0 = 0; r0 < u->w.inter; r0 += rows) {
			struct task *t = &p->tasks[p->n_tasks++];

			t->unit = k;
			t->r0 = r0;
			t->r1 = u->w.inter - r0 < rows ? u->w.inter : r0 + rows;
			t->j0 = j0;
			t->j1 = u->g.n - j0 < toks ? u->g.n : j0 + toks;
		}
}

/* Rough size of a pass: weight bytes read plus FLOPs / 4 (see SPLIT_MIN_KB). */
static double pass_cost(const struct pass *p)
{
	double cost = 0;

	for (size_t i = 0; i < p->n_units; i++) {
		const struct unit *u = &p->units[i];
		double w = 3.0 * u->w.H * u->w.inter;

		cost += w * (u->w.fp8 ? 1 : u->w.bf16 ? 2 : 4) + w * 2.0 * (double)u->g.n / 4;
	}
	return cost;
}

/* Most act tasks a pass of T tokens (n = T*k choices) can make. */
static size_t max_tasks(const struct moed_expert_spec *s, size_t T, size_t n)
{
	uint32_t I = s->intermediate_size > s->shared_intermediate_size
			     ? s->intermediate_size
			     : s->shared_intermediate_size;

	return ((size_t)s->n_experts + 1) * div_up(I, SMALL_TASK_ROWS) +
	       div_up(I, B16_TASK_ROWS) * ((n + T) / GEMM_TOKENS + 2);
}

/* w[t] = sigmoid(g . x[t]), the Qwen2-MoE shared expert's weight. */
static void shared_gate_weights(const float *g, const float *x, size_t T, uint32_t H, float *w)
{
	for (size_t t = 0; t < T; t++) {
		const float *xt = x + t * H;
		float dot = 0;

		for (uint32_t h = 0; h < H; h++)
			dot += g[h] * xt[h];
		w[t] = 1.0f / (1.0f + expf(-dot));
	}
}

/* y += the experts' outputs for T tokens (T <= PASS_TOKENS). */
static int forward_pass(struct cpu_layer *l, const float *x, size_t T, size_t k,
			const int32_t *experts, const float *weights, float *y)
{
	const struct moed_expert_spec *s = &l->spec;
	uint32_t E = s->n_experts, H = s->hidden_size, In = s->intermediate_size;
	size_t n = T * k, n_tasks = max_tasks(s, T, n), bytes;
	struct pass p = { .l = l, .x = x, .xf = x, .y = y, .down_rows = DOWN_TASK_ROWS };
	int split, any_f32 = 0, any_b16 = 0;
	size_t xr_bytes = l->b16 && !l->bops ? align64(T * H * sizeof(float)) : 0;
	size_t xb_bytes = l->bops ? align64(T * b16_ld(H) * sizeof(uint16_t)) : 0;
	float *xr = NULL;
	uint16_t *xb = NULL;
	struct scratch *sc;
	size_t *start;
	uint32_t *tok;
	float *wt, *act, *shw;
	char *at;

	bytes = align64(((size_t)E + 1) * sizeof(size_t)) + align64(n * sizeof(uint32_t)) +
		align64(n * sizeof(float)) + align64(((size_t)E + 1) * sizeof(struct unit)) +
		align64(n_tasks * sizeof(struct task)) + align64(T * sizeof(float)) + xr_bytes +
		xb_bytes + (n * In + T * (size_t)s->shared_intermediate_size) * sizeof(float);
	sc = scratch_get(&l->passes, bytes);
	if (!sc)
		return -ENOMEM;
	at = sc->buf;
	start = (size_t *)at;
	at += align64(((size_t)E + 1) * sizeof(size_t));
	tok = (uint32_t *)at;
	at += align64(n * sizeof(uint32_t));
	wt = (float *)at;
	at += align64(n * sizeof(float));
	p.units = (struct unit *)at;
	at += align64(((size_t)E + 1) * sizeof(struct unit));
	p.tasks = (struct task *)at;
	at += align64(n_tasks * sizeof(struct task));
	shw = (float *)at;
	at += align64(T * sizeof(float));
	if (xr_bytes)
		xr = (float *)at;
	at += xr_bytes;
	if (xb_bytes)
		xb = (uint16_t *)at;
	at += xb_bytes;
	act = (float *)at;

	memset(start, 0, ((size_t)E + 1) * sizeof(size_t));
	for (size_t i = 0; i < n; i++)
		if (experts[i] >= 0)    /* -1: a pair held elsewhere (local subset) */
			start[experts[i] + 1]++;
	for (uint32_t e = 0; e < E; e++)
		start[e + 1] += start[e];
	/* Stable scatter: start[e] walks forward, ending at the next expert's start. */
	for (size_t i = 0; i < n; i++) {
		size_t to;

		if (experts[i] < 0)
			continue;
		to = start[experts[i]]++;
		tok[to] = (uint32_t)(i / k);
		wt[to] = weights[i];
	}
	for (uint32_t e = 0, begin = 0; e < E; begin = (uint32_t)start[e], e++) {
		struct unit *u = &p.units[p.n_units];

		if (start[e] == begin)
			continue;
		*u = (struct unit){ .w = expert_w_of(l, e),
				    .g = { .n = start[e] - begin, .tok = tok + begin,
					   .w = wt + begin },
				    .act = act + (size_t)begin * In, .kind = unit_kind(l, start[e] - begin) };
		if (is_gemm(u->kind))
			p.down_rows = DOWN_TASK_ROWS_GEMM;
		any_b16 |= is_b16(u->kind);
		any_f32 |= !is_b16(u->kind);
		add_tasks(&p, (uint32_t)p.n_units++);
	}
	if (s->shared_intermediate_size) {
		struct unit *u = &p.units[p.n_units];

		*u = (struct unit){ .w = expert_w_of(l, E),
				    .g = { .n = T }, .act = act + n * In, .kind = unit_kind(l, T) };
		if (s->shared_expert_gate) {
			shared_gate_weights(s->shared_expert_gate, x, T, H, shw);
			u->g.w = shw;
		}
		if (is_gemm(u->kind))
			p.down_rows = DOWN_TASK_ROWS_GEMM;
		any_b16 |= is_b16(u->kind);
		any_f32 |= !is_b16(u->kind);
		add_tasks(&p, (uint32_t)p.n_units++);
	}
	/* precision = bf16: x rounded once per pass, for each kind of kernel */
	if (l->b16 && any_f32) {
		for (size_t i = 0; i < T * H; i++)
			xr[i] = bf16_round(x[i]);
		p.xf = xr;
	}
	if (any_b16) {
		l->bops->round_rows(x, T, H, xb, b16_ld(H));
		p.xb = xb;
		p.x_ld = b16_ld(H);
	}
	atomic_init(&p.failed, 0);
	split = pass_cost(&p) >= l->split_min * 1024.0;
	run_tasks(p.n_tasks, act_task, &p, split);
	if (!atomic_load(&p.failed))
		run_tasks(div_up(H, p.down_rows), down_task, &p, split);
	scratch_put(&l->passes, sc);
	return atomic_load(&p.failed) ? -ENOMEM : 0;
}

static int cpu_forward(void *layer, const float *x, size_t T, size_t k, const int32_t *experts,
		       const float *weights, float *y)
{
	struct cpu_layer *l = layer;
	uint32_t E = l->spec.n_experts, H = l->spec.hidden_size;
	const uint8_t *local = expert_spec_local(&l->spec);

	if (!T)
		return 0;
	if (T > UINT32_MAX || (k && T > SIZE_MAX / sizeof(size_t) / k) || !x || !y ||
	    (k && (!experts || !weights)))
		return -EINVAL;
	for (size_t i = 0; i < T * k; i++) {
		if (local && experts[i] == -1)
			continue;       /* held by another rank */
		if (experts[i] < 0 || (uint32_t)experts[i] >= E || (local && !local[experts[i]]))
			return -EINVAL;
	}
	memset(y, 0, T * H * sizeof(float));
	for (size_t t0 = 0; t0 < T; t0 += PASS_TOKENS) {
		size_t nt = T - t0 < PASS_TOKENS ? T - t0 : PASS_TOKENS;
		int r = forward_pass(l, x + t0 * H, nt, k, experts + t0 * k, weights + t0 * k,
				     y + t0 * H);

		if (r < 0)
			return r;
	}
	return 0;
}

/* The packed panels and both scratch pools. */
static size_t cpu_layer_bytes(void *layer)
{
	struct cpu_layer *l = layer;

	return sizeof(*l) + l->packed_bytes + atomic_load(&l->passes.bytes) +
	       atomic_load(&l->tasks.bytes);
}

static const struct moed_expert_ops ops = {
	.struct_size = sizeof(struct moed_expert_ops),
	.layer_new = cpu_layer_new,
	.layer_free = cpu_layer_free,
	.forward = cpu_forward,
	.layer_bytes = cpu_layer_bytes,
};

MOED_PLUGIN_DECLARE(.name = PLUGIN,
		    .description = "SwiGLU experts on the CPU: row-reading kernel for small groups, "
				   "sgemm for large; F32, BF16 and block-scaled FP8 E4M3 weights",
		    .kind = MOED_PLUGIN_EXPERT, .init = cpu_init, .fini = cpu_fini, .expert = &ops,
		    .params = decls, .n_params = PARAMS_COUNT(decls));
