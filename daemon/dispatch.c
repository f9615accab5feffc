/*
 * Dispatch.  Every request gets exactly one response with its id: either right
 * here (hello, status, plugins, model, every validation error, "busy"), from
 * admin.c, or from batch.c once the worker pool has run the layer.  Validation
 * happens before anything is queued: layer, dtype, shape against the byte
 * count, hidden size, token limits, finite values.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/admin.h"
#include "daemon/batch.h"
#include "daemon/dispatch.h"
#include "daemon/engine.h"
#include "daemon/info.h"
#include "daemon/log.h"
#include "daemon/pool.h"
#include "daemon/server.h"
#include "daemon/session.h"
#include "proto/tensor.h"

static void reply_ok(struct session *s, Moed__Response *resp, uint64_t id)
{
	resp->id = id;
	resp->status = MOED__STATUS__OK;
	session_send(s, resp);
}

static void do_hello(struct session *s, const Moed__Request *req)
{
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__HelloResponse hello = MOED__HELLO_RESPONSE__INIT;
	uint32_t v = req->hello->protocol_version;

	if (v != MOED_PROTOCOL_VERSION) {
		session_send_error(s, req->id, MOED__STATUS__FAILED_PRECONDITION,
				   "protocol version %u not supported; this moed speaks version %u",
				   v, MOED_PROTOCOL_VERSION);
		return;
	}
	s->hello_done = 1;
	log_debug("session %llu: hello from '%s'", (unsigned long long)s->id,
		  req->hello->client ? req->hello->client : "?");
	hello.protocol_version = MOED_PROTOCOL_VERSION;
	hello.server_version = PACKAGE_VERSION;
	resp.body_case = MOED__RESPONSE__BODY_HELLO;
	resp.hello = &hello;
	reply_ok(s, &resp, req->id);
}

static void do_info(struct session *s, const Moed__Request *req)
{
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__StatusResponse status;
	Moed__PluginsResponse plugins;
	Moed__ModelInfo model;
	struct info_mem mem = { .n = 0 };
	int r;

	switch (req->body_case) {
	case MOED__REQUEST__BODY_STATUS:
		r = info_status(s->srv, &status, &model, &mem);
		resp.body_case = MOED__RESPONSE__BODY_STATUS_INFO;
		resp.status_info = &status;
		break;
	case MOED__REQUEST__BODY_PLUGINS:
		r = info_plugins(s->srv, &plugins, &mem);
		resp.body_case = MOED__RESPONSE__BODY_PLUGINS;
		resp.plugins = &plugins;
		break;
	default:
		r = info_model(s->srv->engine, &model, &mem);
		resp.body_case = MOED__RESPONSE__BODY_MODEL;
		resp.model = &model;
		break;
	}
	if (r < 0)
		session_send_error(s, req->id, MOED__STATUS__INTERNAL, "cannot describe: %s",
				   strerror(-r));
	else
		reply_ok(s, &resp, req->id);
	info_mem_release(&mem);
}

static void describe_moe_layers(const struct engine *e, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (uint32_t i = 0; i < e->n_layers && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%u", i ? ", " : "",
					e->layers[i].w->index);
}

/* Validate a tensor request; returns the layer or NULL after replying. */
static struct engine_layer *check_tensor_request(struct session *s, uint64_t id, uint32_t index,
						 const Moed__Tensor *hidden)
{
	struct engine *e = s->srv->engine;
	struct engine_layer *l = engine_layer(e, index);
	const struct moed_config *cfg = s->srv->cfg;
	char why[256], layers[256];

	if (!l) {
		describe_moe_layers(e, layers, sizeof(layers));
		session_send_error(s, id, MOED__STATUS__NOT_FOUND,
				   "layer %u is %s; MoE layers are: %s", index,
				   index < e->model->num_hidden_layers ? "a dense layer"
								      : "not in this model",
				   layers);
		return NULL;
	}
	if (tensor_check(hidden, MOED__DTYPE__F32, 2, why, sizeof(why)) < 0) {
		session_send_error(s, id, MOED__STATUS__INVALID_ARGUMENT, "hidden: %s", why);
		return NULL;
	}
	if (hidden->shape[1] != l->rspec.hidden_size) {
		session_send_error(s, id, MOED__STATUS__INVALID_ARGUMENT,
				   "hidden size %llu, the model's is %u",
				   (unsigned long long)hidden->shape[1], l->rspec.hidden_size);
		return NULL;
	}
	if (hidden->shape[0] == 0) {
		session_send_error(s, id, MOED__STATUS__INVALID_ARGUMENT, "empty batch (0 tokens)");
		return NULL;
	}
	if (hidden->shape[0] > cfg->max_tokens_per_request) {
		session_send_error(s, id, MOED__STATUS__RESOURCE_EXHAUSTED,
				   "%llu tokens exceed max_tokens_per_request %u",
				   (unsigned long long)hidden->shape[0], cfg->max_tokens_per_request);
		return NULL;
	}
	const float *x = (const float *)hidden->data.data;
	size_t n = hidden->data.len / sizeof(float);
	for (size_t i = 0; i < n; i++) {
		float v;
		memcpy(&v, &x[i], sizeof(v));
		if (!isfinite(v)) {
			session_send_error(s, id, MOED__STATUS__INVALID_ARGUMENT,
					   "hidden[%zu][%zu] is not finite", i / l->rspec.hidden_size,
					   i % l->rspec.hidden_size);
			return NULL;
		}
	}
	return l;
}

/* Takes ownership of req. */
static void do_tensor(struct session *s, Moed__Request *req)
{
	int infer = req->body_case == MOED__REQUEST__BODY_INFER;
	uint32_t layer = infer ? req->infer->layer : req->route->layer;
	const Moed__Tensor *hidden = infer ? req->infer->hidden : req->route->hidden;
	struct engine_layer *l;

	if (s->srv->stopping) {
		session_send_error(s, req->id, MOED__STATUS__UNAVAILABLE, "moed is shutting down");
		goto drop;
	}
	if (s->inflight >= s->srv->cfg->max_inflight_per_conn) {
		session_send_error(s, req->id, MOED__STATUS__RESOURCE_EXHAUSTED,
				   "busy: %u requests in flight on this connection (max_inflight_per_conn)",
				   s->inflight);
		goto drop;
	}
	l = check_tensor_request(s, req->id, layer, hidden);
	if (!l)
		goto drop;
	batch_request(s, req, l);
	return;
drop:
	moed__request__free_unpacked(req, NULL);
}

/*
 * protobuf-c's unpack may allocate many times the input size (OPS.md); this
 * allocator gives it a byte budget proportional to the frame.  The memory is
 * plain malloc(), so requests are later freed with the default allocator (jobs
 * keep them after the budget, which lives on this stack, is gone).
 */
struct budget {
	size_t left;
};

static void *budget_alloc(void *data, size_t size)
{
	struct budget *b = data;

	if (!b || size > b->left)
		return NULL;
	b->left -= size;
	return malloc(size);
}

static void budget_free(void *data, void *ptr)
{
	free(ptr);
}

void dispatch_frame(struct session *s, const uint8_t *frame, size_t len)
{
	struct budget budget = { .left = 4 * len + (256u << 10) };
	ProtobufCAllocator alloc = { budget_alloc, budget_free, &budget };
	Moed__Request *req = moed__request__unpack(&alloc, len, frame);

	if (!req) {
		log_warn("session %llu (uid %u pid %d): undecodable request (%zu bytes)",
			 (unsigned long long)s->id, (unsigned)s->uid, (int)s->pid, len);
		session_send_error(s, 0, MOED__STATUS__INVALID_ARGUMENT,
				   "cannot decode the request (%zu bytes) as moed.Request", len);
		return;
	}
	if (req->body_case == MOED__REQUEST__BODY_HELLO) {
		do_hello(s, req);
		goto done;
	}
	if (!s->hello_done) {
		session_send_error(s, req->id, MOED__STATUS__FAILED_PRECONDITION,
				   "the first request must be hello (protocol version %u)",
				   MOED_PROTOCOL_VERSION);
		goto done;
	}
	switch (req->body_case) {
	case MOED__REQUEST__BODY_STATUS:
	case MOED__REQUEST__BODY_PLUGINS:
	case MOED__REQUEST__BODY_MODEL:
		do_info(s, req);
		break;
	case MOED__REQUEST__BODY_INFER:
	case MOED__REQUEST__BODY_ROUTE:
		do_tensor(s, req);
		return;         /* owns req */
	case MOED__REQUEST__BODY_ROUTER_SET:
	case MOED__REQUEST__BODY_ROUTER_SHOW:
	case MOED__REQUEST__BODY_EXPERT_SET:
	case MOED__REQUEST__BODY_STATS:
	case MOED__REQUEST__BODY_BIAS:
	case MOED__REQUEST__BODY_RELOAD:
		admin_handle(s, req);
		break;
	default:
		session_send_error(s, req->id, MOED__STATUS__UNIMPLEMENTED,
				   "unknown request type %d", (int)req->body_case);
		break;
	}
done:
	moed__request__free_unpacked(req, NULL);
}
