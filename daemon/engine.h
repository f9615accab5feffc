/*
 * The engine: the loaded model plus, for every MoE layer, the router and expert
 * backend currently bound to it.  A *binding* is one plugin generation's layer
 * object for one layer.  Requests take a reference to the layer's current
 * bindings when they are dispatched (loop thread) and drop it when they complete
 * (loop thread), so a swap only changes which binding new requests get: work in
 * flight finishes on the old one, whose layer_free() runs after its last user,
 * followed by the generation's fini() and dlclose() after its last layer.
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

struct binding {
	unsigned refs;
	struct plugin_gen *gen;
	void *obj;                      /* the plugin's layer object */
};

struct engine_layer {
	const struct moed_layer *w;
	struct moed_router_spec rspec;
	struct moed_expert_spec espec;
	struct binding *router;
	struct binding *expert;
	struct layer_stats stats;
	/* last live bias seen from a router that keeps one (bias-balanced); given
	 * to the next such router bound to this layer, persisted in the state dir */
	float *saved_bias;              /* [E] */
	int has_saved_bias;
	int saved_frozen;
};

struct engine {
	struct moed_model *model;       /* owned */
	char *plugin_dir;
	uint32_t n_layers;
	struct engine_layer *layers;    /* parallel to model->layers */
	uint64_t last_generation;
};

/* Takes ownership of model (freed by engine_free, also on failure). */
int engine_new(struct moed_model *model, const char *plugin_dir, struct engine **ret_engine);
void engine_free(struct engine *e);
/* Set the statistics window (at startup: it clears the statistics). */
int engine_stats_window(struct engine *e, uint64_t window_ms);

struct engine_layer *engine_layer(struct engine *e, uint32_t index);

/* Load plugin `name` as a new generation and bind it to layer `layer`, or to all
 * MoE layers when layer < 0.  On any failure nothing changes and err says why. */
int engine_set_plugin(struct engine *e, uint32_t kind, const char *name,
		      const struct moed_param *params, size_t n_params, int64_t layer,
		      char *err, size_t errlen);

void binding_unref(struct binding *b);

/* Does this router binding keep a live, settable bias? */
int binding_bias_live(const struct binding *b);
/* Copy every live router bias into saved_bias (before a swap, save or exit). */
void engine_bias_capture(struct engine *e);
/* Apply a MOED_BIAS_* op to layer `layer` (or all when < 0); -ENOTSUP if the
 * layer's router keeps no live bias, -ENOENT for a non-MoE layer. */
int engine_bias_op(struct engine *e, int64_t layer, int op, char *err, size_t errlen);
/* A fingerprint of the model's shape and router weights, for the state file. */
uint64_t engine_model_fingerprint(const struct engine *e);

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
};

void engine_call_begin(struct engine_call *c, struct engine_layer *layer);
void engine_call_run(struct engine_call *c);    /* worker thread */
void engine_call_end(struct engine_call *c);

#endif
