/*
 * The request path without sockets: frames go into dispatch_frame() with a
 * fake peer standing in for the session (the reply interface), a real engine
 * on the embedded S0 model with the in-tree plugins, a real worker pool and
 * batcher, and a libuv loop run until the answer arrives.  Checks the
 * handshake, the table's admin policy, the kinds without a row, the tensor
 * checks, an infer through the pool, an overflow answered OUT_OF_RANGE, the
 * per-connection limit, and that every hold taken on the peer is released.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/batch.h"
#include "daemon/conf.h"
#include "daemon/dispatch.h"
#include "daemon/engine.h"
#include "daemon/host.h"
#include "daemon/model_load.h"
#include "daemon/pool.h"
#include "daemon/service.h"
#include "proto/frame.h"
#include "proto/tensor.h"

struct fake_peer {
	Moed__Response *resp[16];
	size_t n;
	int holds;
};

static void fake_send(void *peer, const Moed__Response *resp)
{
	struct fake_peer *f = peer;
	uint8_t *buf;
	size_t len;

	assert_int_equal(frame_encode(&resp->base, &buf, &len), 0);
	assert_true(f->n < 16);
	f->resp[f->n] = moed__response__unpack(NULL, len - FRAME_HEADER_BYTES,
						buf + FRAME_HEADER_BYTES);
	assert_non_null(f->resp[f->n]);
	f->n++;
	free(buf);
}

static void fake_hold(void *peer)
{
	((struct fake_peer *)peer)->holds++;
}

static void fake_release(void *peer)
{
	((struct fake_peer *)peer)->holds--;
}

static const struct reply_ops fake_ops = { fake_send, fake_hold, fake_release };

struct env {
	uv_loop_t loop;
	struct moed_config cfg;
	struct engine *engine;
	struct pool *pool;
	struct service svc;
	struct caller caller;
	struct fake_peer peer;
	uint32_t H, moe_layer;
};

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	const char *dir = getenv("MOED_TEST_PLUGIN_DIR");
	struct moed_model *m;
	char err[512];

	if (!dir)
		dir = "plugins/.libs";
	assert_non_null(e);
	assert_int_equal(uv_loop_init(&e->loop), 0);
	assert_int_equal(config_init(&e->cfg), 0);
	assert_int_equal(model_load("synthetic:S0", &m, err, sizeof(err)), 0);
	assert_int_equal(engine_new(m, dir, &e->engine), 0);
	host_init();
	if (engine_set_plugin(e->engine, MOED_PLUGIN_ROUTER, "sigmoid-norm", NULL, 0, -1, err,
			      sizeof(err)) < 0 ||
	    engine_set_plugin(e->engine, MOED_PLUGIN_EXPERT, "cpu", NULL, 0, -1, err,
			      sizeof(err)) < 0)
		fail_msg("plugins from '%s': %s", dir, err);
	assert_int_equal(pool_new(&e->loop, 2, 64, &e->pool), 0);
	host_set_pool(e->pool);
	e->svc = (struct service){ .loop = &e->loop, .cfg = &e->cfg, .engine = e->engine,
				   .pool = e->pool };
	assert_int_equal(batcher_new(&e->svc, &e->svc.batcher), 0);
	e->caller.uid = 4242;           /* not root, not us, no admin group: not an admin */
	e->caller.pid = 1;
	e->H = m->hidden_size;
	e->moe_layer = e->engine->layers[0].w->index;
	*state = e;
	return 0;
}

static void on_pool_closed(void *arg)
{
	(void)arg;
}

static int teardown(void **state)
{
	struct env *e = *state;

	for (size_t i = 0; i < e->peer.n; i++)
		moed__response__free_unpacked(e->peer.resp[i], NULL);
	batcher_free(e->svc.batcher);
	host_set_pool(NULL);
	pool_shutdown(e->pool, on_pool_closed, NULL);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	engine_free(e->engine);
	config_release(&e->cfg);
	assert_int_equal(uv_loop_close(&e->loop), 0);
	free(e);
	return 0;
}

/* Dispatch one packed request; run the loop until its answer is in. */
static const Moed__Response *call(struct env *e, const Moed__Request *req)
{
	struct reply_to to = { .ops = &fake_ops, .peer = &e->peer };
	uint8_t *buf;
	size_t len, want = e->peer.n + 1;

	assert_int_equal(frame_encode(&req->base, &buf, &len), 0);
	dispatch_frame(&e->svc, &e->caller, &to, buf + FRAME_HEADER_BYTES, len - FRAME_HEADER_BYTES);
	free(buf);
	for (int i = 0; i < 10000 && e->peer.n < want; i++)
		uv_run(&e->loop, UV_RUN_ONCE);
	assert_int_equal(e->peer.n, want);
	assert_int_equal(e->peer.holds, 0);     /* every hold was released */
	return e->peer.resp[want - 1];
}

static const Moed__Response *hello(struct env *e, uint32_t v, int range, uint32_t lo, uint32_t hi)
{
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__HelloRequest h = MOED__HELLO_REQUEST__INIT;

	h.protocol_version = v;
	h.has_min_protocol_version = h.has_max_protocol_version = range;
	h.min_protocol_version = lo;
	h.max_protocol_version = hi;
	req.id = 1;
	req.body_case = MOED__REQUEST__BODY_HELLO;
	req.hello = &h;
	return call(e, &req);
}

static void handshake(void **state)
{
	struct env *e = *state;
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__StatusRequest st = MOED__STATUS_REQUEST__INIT;
	struct reply_to to = { .ops = &fake_ops, .peer = &e->peer };
	const Moed__Response *r;

	dispatch_frame(&e->svc, &e->caller, &to, (const uint8_t *)"\xff\xff\xff", 3);
	assert_int_equal(e->peer.n, 1);
	assert_int_equal(e->peer.resp[0]->status, MOED__STATUS__INVALID_ARGUMENT);
	assert_int_equal(e->peer.resp[0]->id, 0);

	req.id = 7;
	req.body_case = MOED__REQUEST__BODY_STATUS;
	req.status = &st;
	r = call(e, &req);
	assert_int_equal(r->id, 7);
	assert_int_equal(r->status, MOED__STATUS__FAILED_PRECONDITION);
	assert_non_null(strstr(r->message, "hello"));

	r = hello(e, 5, 0, 0, 0);
	assert_int_equal(r->status, MOED__STATUS__FAILED_PRECONDITION);
	assert_false(e->caller.hello_done);
	r = hello(e, 5, 1, 1, 9);       /* a range: the highest common version */
	assert_int_equal(r->status, MOED__STATUS__OK);
	assert_int_equal(r->body_case, MOED__RESPONSE__BODY_HELLO);
	assert_int_equal(r->hello->protocol_version, 1);
	assert_true(e->caller.hello_done);

	r = call(e, &req);
	assert_int_equal(r->status, MOED__STATUS__OK);
	assert_int_equal(r->body_case, MOED__RESPONSE__BODY_STATUS_INFO);
	assert_int_equal(r->status_info->workers, 2);
	assert_null(r->status_info->health);

	Moed__Request none = MOED__REQUEST__INIT;       /* a body this daemon has no row for */
	none.id = 9;
	r = call(e, &none);
	assert_int_equal(r->status, MOED__STATUS__UNIMPLEMENTED);
	assert_int_equal(r->id, 9);
}

static void admin_policy(void **state)
{
	struct env *e = *state;
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__PluginSetRequest ps = MOED__PLUGIN_SET_REQUEST__INIT;
	Moed__BiasRequest br = MOED__BIAS_REQUEST__INIT;
	const Moed__Response *r;

	hello(e, 1, 0, 0, 0);
	req.id = 2;
	req.body_case = MOED__REQUEST__BODY_ROUTER_SET;
	req.router_set = &ps;
	ps.name = "softmax-topk";
	r = call(e, &req);
	assert_int_equal(r->status, MOED__STATUS__PERMISSION_DENIED);
	assert_string_equal(e->engine->layers[0].router->gen->name, "sigmoid-norm");

	req.body_case = MOED__REQUEST__BODY_BIAS;   /* reading is allowed, changing is not */
	req.bias = &br;
	br.op = MOED__BIAS_OP__BIAS_SHOW;
	r = call(e, &req);
	if (r->status != MOED__STATUS__OK)
		fail_msg("bias show: %d %s", r->status, r->message);
	assert_int_equal(r->body_case, MOED__RESPONSE__BODY_BIAS);
	br.op = MOED__BIAS_OP__BIAS_FREEZE;
	r = call(e, &req);
	assert_int_equal(r->status, MOED__STATUS__PERMISSION_DENIED);

	e->caller.admin_socket = 1;     /* a peer of the admin socket may */
	req.body_case = MOED__REQUEST__BODY_ROUTER_SET;
	req.router_set = &ps;           /* the body is a union */
	r = call(e, &req);
	assert_int_equal(r->status, MOED__STATUS__OK);
	assert_int_equal(r->body_case, MOED__RESPONSE__BODY_BINDINGS);
	assert_string_equal(e->engine->layers[0].router->gen->name, "softmax-topk");
}

static const Moed__Response *infer(struct env *e, uint32_t layer, size_t T, float value)
{
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__InferRequest ir = MOED__INFER_REQUEST__INIT;
	Moed__Tensor t;
	uint64_t shape[2];
	float *x = calloc(T * e->H, sizeof(float));
	const Moed__Response *r;

	for (size_t i = 0; i < T * e->H; i++)
		x[i] = value * ((float)((i % 7) + 1) / 7.0f);
	tensor_wrap2(&t, shape, MOED__DTYPE__F32, x, T, e->H);
	ir.layer = layer;
	ir.hidden = &t;
	req.id = 100 + e->peer.n;
	req.body_case = MOED__REQUEST__BODY_INFER;
	req.infer = &ir;
	r = call(e, &req);
	free(x);
	return r;
}

static void tensors(void **state)
{
	struct env *e = *state;
	const Moed__Response *r;

	hello(e, 1, 0, 0, 0);
	r = infer(e, 0, 2, 0.5f);               /* layer 0 of S0 is dense */
	assert_int_equal(r->status, MOED__STATUS__NOT_FOUND);
	assert_non_null(strstr(r->message, "dense"));

	r = infer(e, e->moe_layer, 3, 0.5f);
	assert_int_equal(r->status, MOED__STATUS__OK);
	assert_int_equal(r->body_case, MOED__RESPONSE__BODY_INFER);
	assert_int_equal(r->infer->output->n_shape, 2);
	assert_int_equal(r->infer->output->shape[0], 3);
	assert_int_equal(r->infer->output->shape[1], e->H);
	assert_string_equal(r->infer->router, "sigmoid-norm");
	assert_int_equal(batcher_counters(e->svc.batcher)->requests_served, 1);
	assert_int_equal(batcher_counters(e->svc.batcher)->queued_tokens, 0);

	/* finite inputs near the fp32 limit overflow inside the experts: refused,
	 * never sent as Inf/NaN */
	r = infer(e, e->moe_layer, 2, 3e38f);
	assert_int_equal(r->status, MOED__STATUS__OUT_OF_RANGE);
	assert_non_null(strstr(r->message, "not finite"));

	e->caller.inflight = e->cfg.max_inflight_per_conn;      /* the per-connection limit */
	r = infer(e, e->moe_layer, 1, 0.5f);
	e->caller.inflight = 0;
	assert_int_equal(r->status, MOED__STATUS__RESOURCE_EXHAUSTED);

	e->svc.stopping = 1;
	r = infer(e, e->moe_layer, 1, 0.5f);
	assert_int_equal(r->status, MOED__STATUS__UNAVAILABLE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(handshake, setup, teardown),
		cmocka_unit_test_setup_teardown(admin_policy, setup, teardown),
		cmocka_unit_test_setup_teardown(tensors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
