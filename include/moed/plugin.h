/*
 * moed plugin ABI — the one public header a router or expert-backend plugin needs.
 *
 * A plugin is a shared object that exports exactly one constant descriptor named
 * `moed_plugin` (declare it with MOED_PLUGIN_DECLARE).  The daemon dlopen()s the file
 * with RTLD_NOW|RTLD_LOCAL, reads the descriptor, and checks abi_version, struct_size,
 * name and kind before it calls anything.  Host services reach the plugin only through
 * the `struct moed_host` function table passed to init(), so a plugin links with
 * `-module -avoid-version -Wl,-z,defs` and needs no symbol from the daemon.
 *
 * Lifecycle: init() once per loaded generation -> layer_new() once per MoE layer ->
 * route()/forward() from worker threads, concurrently, for as long as the generation
 * serves -> layer_free() for every layer -> fini() once, after the last user is gone.
 * fini() is never called after a failed init().  A failed layer_new() makes the daemon
 * free the layers already made and call fini(); the previous generation keeps serving.
 *
 * Compatibility (ABI 2): every struct that crosses the boundary starts with its size
 * (or the descriptor's abi_version/struct_size pair) and only ever grows at the end.
 * Both sides read a member only when the other side's struct_size covers it
 * (MOED_STRUCT_HAS), so the ABI grows both ways: this host loads plugins built for
 * ABI 1 or 2 (members an older plugin lacks are absent: NULL or 0), and a plugin
 * learns what the host offers from the host table's and the specs' struct_size.
 * The host never hands a layer a feature that the plugin's ABI cannot describe
 * (FP8 weights, a shared-expert gate, a subset of experts): it refuses the binding.
 *
 * Parameters are declared in the descriptor (`params`): the host checks every
 * key=value against the declarations before it calls init() or layer_new(), and
 * `moed --check-config`, reload and `moectl plugins` use the same table.
 *
 * Errors are 0 or a negative errno.  Buffers: the host owns every pointer it passes in
 * (weights stay valid until layer_free; inputs and outputs for the duration of the
 * call).  Plugins own the layer and state objects they return.
 */
#ifndef MOED_PLUGIN_H
#define MOED_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOED_PLUGIN_ABI_VERSION 2u
#define MOED_PLUGIN_ABI_MIN 1u          /* the oldest ABI this host still loads */
#define MOED_PLUGIN_SYMBOL "moed_plugin"

#define MOED_PLUGIN_EXPORT __attribute__((visibility("default")))

/* Declare the plugin's descriptor: MOED_PLUGIN_DECLARE(.name = "x", .kind = ..., ...) */
#define MOED_PLUGIN_DECLARE(...)                                      \
	MOED_PLUGIN_EXPORT const struct moed_plugin moed_plugin = {   \
		.abi_version = MOED_PLUGIN_ABI_VERSION,               \
		.struct_size = sizeof(struct moed_plugin),            \
		.param_decl_size = sizeof(struct moed_param_decl),    \
		__VA_ARGS__                                           \
	}

enum moed_plugin_kind {
	MOED_PLUGIN_ROUTER = 1,
	MOED_PLUGIN_EXPERT = 2,
};

/* syslog(3) priorities */
enum moed_log_level {
	MOED_LOG_ERR = 3,
	MOED_LOG_WARNING = 4,
	MOED_LOG_NOTICE = 5,
	MOED_LOG_INFO = 6,
	MOED_LOG_DEBUG = 7,
};

enum moed_scoring {
	MOED_SCORING_SOFTMAX = 1,
	MOED_SCORING_SIGMOID = 2,
};

enum moed_dtype {
	MOED_DTYPE_F32 = 1,
	MOED_DTYPE_BF16 = 2,
	MOED_DTYPE_F16 = 3,
	MOED_DTYPE_F8_E4M3 = 4,         /* ABI 2: OCP FP8 E4M3, usually with block scales */
};

/* Does *ptr, a struct of `type` that starts with uint32_t struct_size, have member
 * `field`?  Structs only grow at the end, so a smaller struct_size means an older
 * peer that does not have it. */
#define MOED_STRUCT_HAS(ptr, type, field) \
	((ptr)->struct_size >= offsetof(type, field) + sizeof(((type *)0)->field))

/* A key=value parameter from the config file or `moectl router set --param`. */
struct moed_param {
	const char *key;
	const char *value;
};

/* ABI 2: the declaration of one parameter a plugin accepts. */
enum moed_param_type {
	MOED_PARAM_INT = 1,             /* integer in [min, max] */
	MOED_PARAM_FLOAT = 2,           /* finite number in [min, max] */
	MOED_PARAM_BOOL = 3,            /* 0/1, true/false, yes/no, on/off */
	MOED_PARAM_STRING = 4,          /* any text */
	MOED_PARAM_ENUM = 5,            /* one of choices */
};

struct moed_param_decl {
	const char *name;
	uint32_t type;                  /* enum moed_param_type */
	double min, max;                /* INT and FLOAT: inclusive range */
	const char *def;                /* the default, as text (documentation only) */
	const char *help;               /* one line */
	const char *const *choices;     /* ENUM: NULL-terminated list */
};

/* Services the daemon offers to plugins.  Every function is thread-safe. */
struct moed_host {
	uint32_t struct_size;
	uint32_t abi_version;
	/* Log one line under the plugin's name; no trailing newline needed. */
	void (*log)(int level, const char *plugin, const char *fmt, ...)
		__attribute__((format(printf, 3, 4)));
	/* c[m][n] = a[m][k] · b[n][k]^T, fp32, row-major, on the calling thread. */
	void (*sgemm_nt)(size_t m, size_t n, size_t k, const float *a, const float *b,
			 float *c);
	/* Run fn(arg, i) for every i in [0, n) on the daemon's worker threads, the
	 * caller included, and return when all are done.  For splitting one
	 * route()/forward() call across the cores: idle workers help, busy ones do
	 * not, so it never oversubscribes.  fn must not call parallel_for.  Added
	 * after ABI 1's first release: check struct_size before use. */
	void (*parallel_for)(size_t n, void (*fn)(void *arg, size_t i), void *arg);
};

/* Does the host table have member `field`?  (Tables only grow at the end.) */
#define MOED_HOST_HAS(host, field) \
	(MOED_STRUCT_HAS(host, struct moed_host, field) && (host)->field != NULL)

/* One MoE layer as a router sees it.  Host-owned; valid until layer_free(). */
struct moed_router_spec {
	uint32_t struct_size;
	uint32_t layer;                 /* layer index in the checkpoint */
	uint32_t hidden_size;           /* H */
	uint32_t n_experts;             /* E */
	uint32_t top_k;                 /* k = num_experts_per_tok */
	uint32_t n_group;               /* 1 = no group limit */
	uint32_t topk_group;
	uint32_t scoring;               /* enum moed_scoring the model was trained with */
	uint32_t norm_topk_prob;        /* normalise the chosen weights (sigmoid: always) */
	float routed_scaling_factor;
	const float *gate;              /* [E][H] fp32 router weight */
	const float *bias;              /* [E] e_score_correction_bias, or NULL */
};

enum moed_bias_op {
	MOED_BIAS_RESET = 1,            /* back to the checkpoint's bias */
	MOED_BIAS_FREEZE = 2,           /* stop updating */
	MOED_BIAS_THAW = 3,             /* resume updating */
};

struct moed_router_ops {
	uint32_t struct_size;
	int (*layer_new)(void *state, const struct moed_router_spec *spec,
			 const struct moed_param *params, size_t n_params, void **ret_layer);
	void (*layer_free)(void *layer);
	/* Route T tokens.  x: [T][H] fp32.  Writes ret_experts [T][k] and ret_weights
	 * [T][k] (final weights: normalised and scaled).  May run concurrently. */
	int (*route)(void *layer, const float *x, size_t n_tokens, int32_t *ret_experts,
		     float *ret_weights);
	/* Optional (NULL when the router keeps no live bias). */
	int (*get_bias)(void *layer, float *ret_bias, uint32_t *ret_frozen);
	/* ABI 1 routers (no state ops below): the host keeps their live bias with
	 * get_bias and gives it back with set_bias (and bias_ctl FREEZE) */
	int (*set_bias)(void *layer, const float *bias);
	int (*bias_ctl)(void *layer, int op);
	/*
	 * ABI 2, optional: the layer's live state as an opaque, versioned blob, which
	 * the host keeps across swaps and restarts (router.state) and gives back to
	 * the next layer object of a router with the same name on the same layer.
	 * state_size: an upper bound of the blob's size now.  state_save: write at
	 * most len bytes to buf, set *ret_len and *ret_version (the blob's format,
	 * the plugin's own numbering).  state_restore: take a blob this plugin saved
	 * (any version it still reads); refuse (-EINVAL, -EPROTO) one of a wrong size,
	 * an unknown version or with values it would not produce (NaN, Inf), and then
	 * keep the state it had.  May be called while route() runs on other threads.
	 */
	int (*state_size)(void *layer, size_t *ret_size);
	int (*state_save)(void *layer, void *buf, size_t len, size_t *ret_len,
			  uint32_t *ret_version);
	int (*state_restore)(void *layer, const void *buf, size_t len, uint32_t version);
};

/* One MoE layer as an expert backend sees it.  Host-owned; valid until layer_free(). */
struct moed_expert_spec {
	uint32_t struct_size;
	uint32_t layer;
	uint32_t hidden_size;           /* H */
	uint32_t intermediate_size;     /* I, width of one routed expert */
	uint32_t n_experts;             /* E */
	uint32_t shared_intermediate_size; /* n_shared_experts * I; 0 = no shared expert */
	uint32_t dtype;                 /* enum moed_dtype of every weight array below */
	const void *const *gate;        /* E pointers, each [I][H] */
	const void *const *up;          /* E pointers, each [I][H] */
	const void *const *down;        /* E pointers, each [H][I] */
	const void *shared_gate;        /* [Is][H] or NULL */
	const void *shared_up;          /* [Is][H] or NULL */
	const void *shared_down;        /* [H][Is] or NULL */
	/*
	 * ABI 2 (check MOED_STRUCT_HAS before reading; a plugin of ABI 1 is never
	 * given a layer that uses any of these).
	 * Per-block scales (FP8): a weight matrix of R rows and C columns stored in
	 * dtype has scale[ceil(R / scale_block_rows)][ceil(C / scale_block_cols)]
	 * fp32, and w[r][c] = stored[r][c] * scale[r / br][c / bc].  NULL = no scales.
	 */
	uint32_t scale_block_rows;      /* br; 0 when there are no scales */
	uint32_t scale_block_cols;      /* bc */
	const float *const *gate_scale; /* E pointers, or NULL */
	const float *const *up_scale;
	const float *const *down_scale;
	const float *shared_gate_scale; /* or NULL */
	const float *shared_up_scale;
	const float *shared_down_scale;
	/* Qwen2-MoE: the shared expert's output is scaled by sigmoid(x . g) per
	 * token.  [H] fp32, NULL = unscaled (weight 1). */
	const float *shared_expert_gate;
	/* Expert parallelism: local[e] != 0 when expert e's weights are held here
	 * (the others' pointers are NULL and they are never chosen).  NULL = all. */
	const uint8_t *local;
};

struct moed_expert_ops {
	uint32_t struct_size;
	int (*layer_new)(void *state, const struct moed_expert_spec *spec,
			 const struct moed_param *params, size_t n_params, void **ret_layer);
	void (*layer_free)(void *layer);
	/* y[t] = sum_j weights[t][j] * FFN_{experts[t][j]}(x[t]) + FFN_shared(x[t]).
	 * x, ret_y: [T][H] fp32; experts, weights: [T][top_k].  May run concurrently. */
	int (*forward)(void *layer, const float *x, size_t n_tokens, size_t top_k,
		       const int32_t *experts, const float *weights, float *ret_y);
	/* Optional, added after ABI 2's first release (the host reads it only when
	 * struct_size covers it): the bytes the layer object holds beyond the
	 * host's weights (packed or converted copies, scratch buffers), for the
	 * host's memory report.  May be called while forward() runs. */
	size_t (*layer_bytes)(void *layer);
};

struct moed_plugin {
	uint32_t abi_version;           /* MOED_PLUGIN_ABI_VERSION */
	uint32_t struct_size;           /* sizeof(struct moed_plugin) */
	const char *name;               /* must equal the file name without ".so" */
	const char *description;
	uint32_t kind;                  /* enum moed_plugin_kind */
	/* Called once per loaded generation.  *ret_state is passed back to everything. */
	int (*init)(const struct moed_host *host, const struct moed_param *params,
		    size_t n_params, void **ret_state);
	void (*fini)(void *state);
	const struct moed_router_ops *router;   /* kind == MOED_PLUGIN_ROUTER */
	const struct moed_expert_ops *expert;   /* kind == MOED_PLUGIN_EXPERT */
	/* ABI 2: the parameters init() and layer_new() accept; the host refuses any
	 * other key, and values outside the declaration, before calling either.
	 * n_params 0 = none accepted.  param_decl_size is set by MOED_PLUGIN_DECLARE. */
	const struct moed_param_decl *params;
	uint32_t n_params;
	uint32_t param_decl_size;       /* sizeof(struct moed_param_decl) */
};

#ifdef __cplusplus
}
#endif

#endif
