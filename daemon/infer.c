/*
 * The infer and route handlers: everything a tensor request must satisfy is
 * checked here, before anything is queued (shutting down, per-connection
 * limit, layer, dtype, shape against the byte count, hidden size, token
 * limits, finite values); a valid request goes to the batcher, which answers
 * it once the worker pool has run the layer.
 *
 * Hidden states may come as F32 or BF16.  BF16 is widened to F32 here, in the
 * unpacked request itself, so the batcher and the engine see one dtype; an
 * infer request without output_dtype is then marked with the dtype it came
 * in, which is what reply_member answers in.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/batch.h"
#include "daemon/conf.h"
#include "daemon/dtype.h"
#include "daemon/engine.h"
#include "daemon/service.h"
#include "proto/tensor.h"

static void describe_moe_layers(const struct engine *e, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (uint32_t i = 0; i < e->n_layers && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%u", i ? ", " : "",
					e->layers[i].w->index);
}

/* Validate a tensor request; returns the layer or NULL after answering. */
static struct engine_layer *check_tensor_request(struct service *svc, const struct reply_to *to,
						 uint32_t index, const Moed__Tensor *hidden)
{
	struct engine *e = svc->engine;
	struct engine_layer *l = engine_layer(e, index);
	const struct moed_config *cfg = svc->cfg;
	char why[256], layers[256];

	if (!l) {
		const struct moed_model *m = e->model;
		int moe = 0;

		for (uint32_t i = 0; m->moe_all && i < m->n_moe_all; i++)
			moe |= m->moe_all[i] == index;
		describe_moe_layers(e, layers, sizeof(layers));
		if (moe)        /* [model] layers / --layers left it out */
			reply_error(to, MOED__STATUS__NOT_FOUND, "layer %u is not served here; "
				    "served layers: %s", index, layers);
		else
			reply_error(to, MOED__STATUS__NOT_FOUND, "layer %u is %s; %s: %s", index,
				    index < m->num_hidden_layers ? "a dense layer" : "not in this model",
				    m->moe_all ? "served layers" : "MoE layers are", layers);
		return NULL;
	}
	Moed__DType dt = hidden && hidden->dtype == MOED__DTYPE__BF16 ? MOED__DTYPE__BF16
								       : MOED__DTYPE__F32;
	if (hidden && hidden->dtype != dt) {
		reply_error(to, MOED__STATUS__INVALID_ARGUMENT, "hidden: tensor dtype %s, want F32 or BF16",
			    tensor_dtype_name(hidden->dtype));
		return NULL;
	}
	if (tensor_check(hidden, dt, 2, why, sizeof(why)) < 0) {
		reply_error(to, MOED__STATUS__INVALID_ARGUMENT, "hidden: %s", why);
		return NULL;
	}
	if (hidden->shape[1] != l->rspec.hidden_size) {
		reply_error(to, MOED__STATUS__INVALID_ARGUMENT, "hidden size %llu, the model's is %u",
			    (unsigned long long)hidden->shape[1], l->rspec.hidden_size);
		return NULL;
	}
	if (hidden->shape[0] == 0) {
		reply_error(to, MOED__STATUS__INVALID_ARGUMENT, "empty batch (0 tokens)");
		return NULL;
	}
	if (hidden->shape[0] > cfg->max_tokens_per_request) {
		reply_error(to, MOED__STATUS__RESOURCE_EXHAUSTED,
			    "%llu tokens exceed max_tokens_per_request %u",
			    (unsigned long long)hidden->shape[0], cfg->max_tokens_per_request);
		return NULL;
	}
	size_t es = tensor_dtype_size(dt), n = hidden->data.len / es;
	for (size_t i = 0; i < n; i++) {
		float v;
		if (dt == MOED__DTYPE__BF16) {
			uint16_t h;
			memcpy(&h, hidden->data.data + 2 * i, sizeof(h));
			v = dtype_bf16_to_f32(h);
		} else {
			memcpy(&v, hidden->data.data + 4 * i, sizeof(v));
		}
		if (!isfinite(v)) {
			reply_error(to, MOED__STATUS__INVALID_ARGUMENT, "hidden[%zu][%zu] is not finite",
				    i / l->rspec.hidden_size, i % l->rspec.hidden_size);
			return NULL;
		}
	}
	return l;
}

/* Widen a checked BF16 tensor to F32 in place (its buffer is plain malloc:
 * see dispatch.c).  0 or -ENOMEM, the tensor untouched on failure. */
static int widen_bf16(Moed__Tensor *t)
{
	size_t n = t->data.len / 2;
	float *x = malloc(n * sizeof(float));

	if (!x)
		return -ENOMEM;
	dtype_to_f32(MOED_DTYPE_BF16, t->data.data, x, n);
	free(t->data.data);
	t->data.data = (uint8_t *)x;
	t->data.len = n * sizeof(float);
	t->dtype = MOED__DTYPE__F32;
	return 0;
}

static int tensor_request(struct service *svc, struct caller *c, const struct reply_to *to,
			  Moed__Request *req, uint32_t layer, Moed__Tensor *hidden)
{
	struct engine_layer *l;

	if (svc->stopping) {
		reply_error(to, MOED__STATUS__UNAVAILABLE, "moed is shutting down");
		return 0;
	}
	if (c->inflight >= svc->cfg->max_inflight_per_conn) {
		reply_error(to, MOED__STATUS__RESOURCE_EXHAUSTED,
			    "busy: %u requests in flight on this connection (max_inflight_per_conn)",
			    c->inflight);
		return 0;
	}
	l = check_tensor_request(svc, to, layer, hidden);
	if (!l)
		return 0;
	if (req->body_case == MOED__REQUEST__BODY_INFER) {
		Moed__InferRequest *ir = req->infer;
		if (!ir->has_output_dtype) {
			ir->has_output_dtype = 1;
			ir->output_dtype = hidden->dtype;
		} else if (ir->output_dtype != MOED__DTYPE__F32 &&
			   ir->output_dtype != MOED__DTYPE__BF16) {
			reply_error(to, MOED__STATUS__INVALID_ARGUMENT,
				    "output_dtype %s; moed answers F32 or BF16",
				    tensor_dtype_name(ir->output_dtype));
			return 0;
		}
	}
	if (hidden->dtype == MOED__DTYPE__BF16 && widen_bf16(hidden) < 0) {
		reply_error(to, MOED__STATUS__RESOURCE_EXHAUSTED, "out of memory");
		return 0;
	}
	batch_request(svc->batcher, to, req, l);
	return 1;
}

int handle_infer(struct service *svc, struct caller *c, const struct reply_to *to,
		 Moed__Request *req)
{
	return tensor_request(svc, c, to, req, req->infer->layer, req->infer->hidden);
}

int handle_route(struct service *svc, struct caller *c, const struct reply_to *to,
		 Moed__Request *req)
{
	return tensor_request(svc, c, to, req, req->route->layer, req->route->hidden);
}
