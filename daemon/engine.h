/*
 * The engine: the loaded model plus, for every MoE layer, the router and expert
 * backend currently bound to it.  A *binding* is one plugin generation's layer
 * object for one layer.  Requests take a reference to the layer's current
 * bindings when they are dispatched (loop thread) and drop it when they complete
 * (loop thread), so a swap only changes which binding new requests get: work in
 * flight finishes on the old one, whose layer_free() runs after its last user,
 * followed by the generation's fini() and dlclose() after its last layer.
 *
 * A swap is two steps, so a reload can change several things all or nothing:
 * engine_prepare() loads the generation and creates every layer object
 * (changing nothing visible), engine_commit() swaps them in and cannot fail.
 *
 * Router state: a router that keeps live state (ABI 2 state_save/restore, e.g.
 * bias-balanced's bias) has it captured per layer into the layer's saved state
 * blob before a swap, a save or exit; the blob is given to the next router of
 * the same plugin name bound to that layer, and persisted by state.c.
 *
 * All functions except engine_call_run() are for the loop thread only.
 */
#ifndef MOED_ENGINE_H
#define MOED_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/loader.h"
#include "daemon/model.h"
#include "daemon/stats.h"

struct engine_call;

struct binding {
	unsigned refs;
	struct plugin_gen *gen;
	void *obj;                      /* the plugin's layer object */
	struct moed_expert_spec espec;  /* its own spec (engine_bind_expert), else unused */
};

/* A router's saved state for one layer, and (from router.state) which router
 * served the layer when it was written. */
struct engine_saved {
	char *plugin;                   /* whose blob this is; NULL = no blob */
	uint32_t version;               /* the blob's format, the plugin's numbering */
	void *blob;
	size_t len;
	char *router;                   /* serving when saved; NULL = unknown */
	struct moed_param *params;      /* its parameters */
	size_t n_params;
};

struct engine_layer {
	const struct moed_layer *w;
	struct moed_router_spec rspec;
	struct moed_expert_spec espec;
	struct binding *router;
	struct binding *expert;
	struct layer_stats stats;
	struct engine_saved saved;
	/* a shadow router (engine_set_shadow): routes every call after the
	 * serving one, never changing a reply; NULL = none */
	struct binding *shadow;
	struct shadow_stats *shadow_stats;      /* owned, with shadow */
	float shadow_sample;                    /* fraction of tokens whose drift is computed */
	uint64_t shadow_seq;                    /* tokens offered to it (sampling is a hash of it) */
	/* expert parallelism (daemon/cluster.c): when set, a call's forward step
	 * runs here (the experts spread over ranks) instead of on `expert` */
	int (*remote)(void *ctx, struct engine_call *c);
	void *remote_ctx;
};

struct engine {
	struct moed_model *model;       /* owned */
	char *plugin_dir;
	uint32_t n_layers;
	struct engine_layer *layers;    /* parallel to model->layers */
	uint64_t last_generation;
	/* the config's [router] (engine_config_router), written to router.state */
	char *cfg_router;
	struct moed_param *cfg_params;
	size_t n_cfg_params;
	/* router.state's record of the config's [router] when it was written */
	char *file_cfg_router;
	struct moed_param *file_cfg_params;
	size_t n_file_cfg_params;
	int file_cfg_known;
};

/* Takes ownership of model (freed by engine_free, also on failure). */
int engine_new(struct moed_model *model, const char *plugin_dir, struct engine **ret_engine);
void engine_free(struct engine *e);
/* Set the statistics window (at startup: it clears the statistics). */
int engine_stats_window(struct engine *e, uint64_t window_ms);

struct engine_layer *engine_layer(struct engine *e, uint32_t index);

/* A prepared, not yet visible swap (owned by the caller until committed). */
struct engine_swap;

/* Load plugin `name` as a new generation and create its layer object for layer
 * `layer`, or for all MoE layers when layer < 0; changes nothing that serves.
 * On failure *ret is untouched and err says why. */
int engine_prepare(struct engine *e, uint32_t kind, const char *name,
		   const struct moed_param *params, size_t n_params, int64_t layer,
		   struct engine_swap **ret, char *err, size_t errlen);
/* Swap a prepared generation in (routers get their layer's saved state when
 * it is theirs) and free s.  Cannot fail. */
void engine_commit(struct engine *e, struct engine_swap *s);
/* Discard a prepared swap that will not be committed; NULL ok. */
void engine_swap_free(struct engine_swap *s);
/* The generation number a prepared swap will serve as. */
uint64_t engine_swap_generation(const struct engine_swap *s);

/* engine_prepare() + engine_commit(). */
int engine_set_plugin(struct engine *e, uint32_t kind, const char *name,
		      const struct moed_param *params, size_t n_params, int64_t layer,
		      char *err, size_t errlen);

void binding_unref(struct binding *b);
/* Create generation g's expert layer object for layer l with the layer's spec
 * but local (E flags; NULL = all) as its subset of experts (a cluster's
 * placement epoch).  0 or the plugin's -errno. */
int engine_bind_expert(struct plugin_gen *g, struct engine_layer *l,
		       const struct moed_param *params, size_t n_params, const uint8_t *local,
		       struct binding **ret);

/* Bind router `name` as the shadow of layer `layer` (all MoE layers when < 0),
 * replacing any shadow there, with fresh statistics from now_ms; sample in
 * [0, 1].  Nothing changes on failure (err says why). */
int engine_set_shadow(struct engine *e, const char *name, const struct moed_param *params,
		      size_t n_params, int64_t layer, float sample, uint64_t now_ms, char *err,
		      size_t errlen);
/* Drop the shadow of `layer` (all when < 0); -ENOENT for a non-MoE layer. */
int engine_shadow_off(struct engine *e, int64_t layer);

/* Does this router binding keep a live bias (bias_ctl and get_bias)? */
int binding_bias_live(const struct binding *b);
/* The selection bias layer l's router uses now, into ret (E floats): E, or 0
 * when the router shows none.  *ret_frozen 1 when it is not being updated. */
size_t engine_router_bias(const struct engine_layer *l, float *ret, uint32_t *ret_frozen);
/*
 * The bias blob, version ENGINE_BIAS_BLOB_VERSION: u32 frozen | u32 E | E x f32
 * bias (host byte order).  bias-balanced's state blob has this format; the
 * engine keeps the live bias of ABI-1 routers (get_bias/set_bias/bias_ctl, no
 * state ops) in it too, and state.c migrates bias.state into it.
 * engine_bias_blob(): a malloc'ed blob (bias NULL: zeros), caller frees.
 */
#define ENGINE_BIAS_BLOB_VERSION 1u
void *engine_bias_blob(uint32_t n_experts, uint32_t frozen, const float *bias, size_t *ret_len);
/* Copy every stateful router's state into its layer's saved blob (before a
 * swap, save or exit). */
void engine_state_capture(struct engine *e);
/* The old name of engine_state_capture(). */
void engine_bias_capture(struct engine *e);
/* Apply a MOED_BIAS_* op to layer `layer` (or all when < 0); -ENOTSUP if the
 * layer's router keeps no live bias, -ENOENT for a non-MoE layer. */
int engine_bias_op(struct engine *e, int64_t layer, int op, char *err, size_t errlen);
/* A fingerprint of the model's shape and router weights, for the state file. */
uint64_t engine_model_fingerprint(const struct engine *e);

/* Record the config's [router] (name after defaults, and its parameters), so
 * router.state says which config it was written under.  main.c at start (done
 * by state_restore_routers()) and reload.c after a committed reload. */
int engine_config_router(struct engine *e, const char *name, const struct moed_param *params,
			 size_t n_params);
/* Two parameter lists hold the same key=value pairs (in any order)? */
int engine_params_equal(const struct moed_param *a, size_t na, const struct moed_param *b,
			size_t nb);
/* Helpers for owned parameter lists (state.c). */
int engine_params_dup(const struct moed_param *p, size_t n, struct moed_param **ret);
void engine_params_free(struct moed_param *p, size_t n);
void engine_saved_clear(struct engine_saved *s);

/* One routing (and optionally expert) computation over T tokens of one layer. */
struct engine_call {
	struct engine_layer *layer;
	struct binding *router, *expert;        /* referenced by begin, released by end */
	const float *x;                         /* [T][H], caller-owned */
	size_t n_tokens;
	int32_t *experts;                       /* [T][k], caller-owned */
	float *weights;                         /* [T][k] */
	float *y;                               /* [T][H], NULL = route only */
	int rc;
	char err[256];
	uint64_t compute_ns;
	/* the layer's shadow, taken by begin (engine_shadow.c runs it after the
	 * serving route, on the worker; engine_shadow_record folds it in) */
	struct binding *shadow, *shadow_expert;
	float shadow_sample;
	uint64_t shadow_seq;
	struct engine_shadow_out *shadow_out;   /* malloc'ed by the worker, freed by end */
};

void engine_call_begin(struct engine_call *c, struct engine_layer *layer);
void engine_call_run(struct engine_call *c);    /* worker thread */
void engine_call_end(struct engine_call *c);

/* The shadow step of a call (engine_shadow.c): worker thread, after a
 * successful serving route (and forward); never touches c's outputs. */
void engine_shadow_run(struct engine_call *c);
/* Fold a finished call's shadow result into its layer's shadow statistics
 * (dropped when the layer's shadow changed meanwhile).  Loop thread, before
 * engine_call_end. */
void engine_shadow_record(struct engine_call *c, uint64_t now_ms);
void engine_shadow_out_free(struct engine_shadow_out *o);

/* Bytes the layers' expert backends hold beyond the model's weights (the
 * sum of their layer_bytes; backends without it count 0). */
uint64_t engine_backend_bytes(const struct engine *e);

/* The distinct plugin generations bound to any layer, in layer order, at most
 * max (3 per layer is always enough); ret_role[i]: 0 router, 1 expert backend,
 * 2 shadow router. */
size_t engine_bound_gens(const struct engine *e, const struct plugin_gen **ret, int *ret_role,
			 size_t max);

#endif
