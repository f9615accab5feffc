/*
 * infer and route: send hidden states of T tokens for one layer and show or
 * save what comes back.  Input is a .npy float32 [T, H] array (a 1-D [H] array
 * is one token) or --random T tokens, T x H values in row-major order, so
 * any tool can reproduce them: the standard splitmix64 generator with its
 * state starting at --seed (default 0), each value (next() >> 40) * 2^-23 - 1,
 * which is uniform in [-1, 1) and exact in float32.  Inputs are checked here
 * too (finite, non-empty) so the user gets the reason before a round trip.
 *
 * --dtype bf16 sends the hidden states as bf16 (half the bytes): a '<u2' .npy
 * input holds bf16 bits and is sent as it is, a float input is rounded to
 * nearest even first; infer's output then comes back, and is saved, as bf16
 * bits ('<u2').
 */
#include "config.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/moectl.h"
#include "client/npy.h"
#include "common/clock.h"
#include "common/mix.h"
#include "client/output.h"
#include "proto/tensor.h"

struct tensor_args {
	uint64_t layer;
	int have_layer;
	const char *input, *output;
	uint64_t random_tokens, seed;
	Moed__DType dtype;              /* on the wire: F32 (default) or BF16 */
};

static int parse_args(const char *cmd, int allow_output, int argc, char **argv,
		      struct tensor_args *a)
{
	static const struct option opts[] = {
		{ "layer", required_argument, NULL, 'l' },
		{ "input", required_argument, NULL, 'i' },
		{ "output", required_argument, NULL, 'o' },
		{ "random", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, 'S' },
		{ "dtype", required_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(a, 0, sizeof(*a));
	a->dtype = MOED__DTYPE__F32;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (parse_uint(cmd, "--layer", optarg, UINT32_MAX, &a->layer) != EXIT_OK)
				return EXIT_USAGE;
			a->have_layer = 1;
			break;
		case 'i': a->input = optarg; break;
		case 'o':
			if (!allow_output)
				return usage_error(cmd, "--output is for infer");
			a->output = optarg;
			break;
		case 'r':
			if (parse_uint(cmd, "--random", optarg, 1u << 24, &a->random_tokens) != EXIT_OK)
				return EXIT_USAGE;
			if (!a->random_tokens)
				return usage_error(cmd, "--random needs at least 1 token");
			break;
		case 'S':
			if (parse_uint(cmd, "--seed", optarg, UINT64_MAX, &a->seed) != EXIT_OK)
				return EXIT_USAGE;
			break;
		case 'd':
			if (!strcmp(optarg, "bf16"))
				a->dtype = MOED__DTYPE__BF16;
			else if (!strcmp(optarg, "f32") || !strcmp(optarg, "fp32"))
				a->dtype = MOED__DTYPE__F32;
			else
				return usage_error(cmd, "--dtype '%s': want f32 or bf16", optarg);
			break;
		default:
			return usage_error(cmd, "unknown option");
		}
	}
	if (optind < argc)
		return usage_error(cmd, "unexpected argument '%s'", argv[optind]);
	if (!a->have_layer)
		return usage_error(cmd, "--layer is required");
	if (!a->input == !a->random_tokens)
		return usage_error(cmd, "give exactly one of --input FILE and --random T");
	return EXIT_OK;
}

void random_fill(float *x, uint64_t n, uint64_t seed)
{
	uint64_t s = seed;

	for (uint64_t i = 0; i < n; i++)
		x[i] = 2.0f * mix_unit24(splitmix64_next(&s)) - 1.0f;
}

int model_shape(struct conn *c, uint32_t *ret_hidden, uint32_t *ret_first_moe_layer)
{
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__ModelRequest m = MOED__MODEL_REQUEST__INIT;
	Moed__Response *resp;
	int r;

	req.body_case = MOED__REQUEST__BODY_MODEL;
	req.model = &m;
	r = conn_call(c, &req, &resp);
	if (r != EXIT_OK)
		return r;
	*ret_hidden = resp->model->hidden_size;
	if (ret_first_moe_layer)
		*ret_first_moe_layer = resp->model->n_moe_layers ? resp->model->moe_layers[0] : 0;
	moed__response__free_unpacked(resp, NULL);
	return EXIT_OK;
}

/* Element i of a float32 or bf16 array, as fp32. */
static float value_at(enum npy_type type, const void *data, uint64_t i)
{
	if (type == NPY_BF16)
		return tensor_bf16_to_f32(((const uint16_t *)data)[i]);
	return ((const float *)data)[i];
}

/* Refuse an input the daemon would refuse anyway: empty, or not finite. */
static int check_input(const char *cmd, const struct npy_array *x)
{
	if (x->rows == 0 || x->cols == 0)
		return usage_error(cmd, "the input is empty (%llu x %llu)",
				   (unsigned long long)x->rows, (unsigned long long)x->cols);
	for (uint64_t i = 0; i < x->rows * x->cols; i++)
		if (!isfinite(value_at(x->type, x->data, i)))
			return usage_error(cmd, "input[%llu][%llu] is not finite",
					   (unsigned long long)(i / x->cols),
					   (unsigned long long)(i % x->cols));
	return EXIT_OK;
}

/* Read and check the --input file: before connecting, so a bad file is a
 * usage error whether or not the daemon runs. */
static int load_input(const char *cmd, const char *path, Moed__DType dtype,
		      struct npy_array *x)
{
	char err[512];

	if (npy_read(path, x, err, sizeof(err)) < 0) {
		fprintf(stderr, "moectl %s: %s\n", cmd, err);
		return EXIT_USAGE;
	}
	if (x->type == NPY_I32)
		return usage_error(cmd, "%s: input must be float32 [T, H], not int32", path);
	if (x->type == NPY_BF16 && dtype != MOED__DTYPE__BF16)
		return usage_error(cmd, "%s: a uint16 ('<u2') input holds bf16 bits: give --dtype bf16",
				   path);
	return check_input(cmd, x);
}

/* --dtype bf16 with a float32 input: round it to bf16 (in x). */
static int narrow_input(const char *cmd, struct npy_array *x)
{
	uint64_t n = x->rows * x->cols;
	uint16_t *h;

	if (x->type != NPY_F32)
		return EXIT_OK;
	h = malloc(n ? n * sizeof(*h) : 1);
	if (!h) {
		fprintf(stderr, "moectl %s: out of memory\n", cmd);
		return EXIT_USAGE;
	}
	for (uint64_t i = 0; i < n; i++)
		h[i] = tensor_f32_to_bf16(((const float *)x->data)[i]);
	free(x->data);
	x->data = h;
	x->type = NPY_BF16;
	return check_input(cmd, x);     /* a huge float may round to infinity */
}

/* --random T: T x H values uniform in [-1, 1), H asked from the daemon. */
static int random_input(const char *cmd, struct conn *c, const struct tensor_args *a,
			struct npy_array *x)
{
	uint64_t n;
	uint32_t H;
	int r;

	r = model_shape(c, &H, NULL);
	if (r != EXIT_OK)
		return r;
	n = a->random_tokens * H;       /* <= 2^24 * 2^32: no overflow */
	if (n > CONN_MAX_FRAME / sizeof(float))
		return usage_error(cmd, "--random %llu: %llu x %u floats is more than moectl sends",
				   (unsigned long long)a->random_tokens,
				   (unsigned long long)a->random_tokens, H);
	x->type = NPY_F32;
	x->ndim = 2;
	x->rows = a->random_tokens;
	x->cols = H;
	x->data = malloc(n ? n * sizeof(float) : 1);
	if (!x->data) {
		fprintf(stderr, "moectl %s: out of memory for %llu tokens\n", cmd,
			(unsigned long long)x->rows);
		return EXIT_USAGE;
	}
	random_fill(x->data, n, a->seed);
	return check_input(cmd, x);
}

static double now_us(void)
{
	return mono_ns() / 1e3;
}

/* Connect, build the input, send infer or route; the reply goes to *ret. */
static int run_tensor(const struct global *g, const char *cmd, const struct tensor_args *a,
		      int infer, struct npy_array *x, Moed__Response **ret, double *ret_rtt_us)
{
	Moed__Request req = MOED__REQUEST__INIT;
	Moed__InferRequest ir = MOED__INFER_REQUEST__INIT;
	Moed__RouteRequest rr = MOED__ROUTE_REQUEST__INIT;
	Moed__Tensor t;
	uint64_t shape[2];
	struct conn c;
	int r;

	if (a->input) {
		r = load_input(cmd, a->input, a->dtype, x);
		if (r != EXIT_OK)
			return r;
	}
	r = moectl_connect(g, &c);
	if (r != EXIT_OK)
		return r;
	if (!a->input) {
		r = random_input(cmd, &c, a, x);
		if (r != EXIT_OK)
			goto out;
	}
	if (a->dtype == MOED__DTYPE__BF16 && (r = narrow_input(cmd, x)) != EXIT_OK)
		goto out;
	tensor_wrap2(&t, shape, x->type == NPY_BF16 ? MOED__DTYPE__BF16 : MOED__DTYPE__F32, x->data,
		     x->rows, x->cols);
	if (infer) {
		ir.layer = (uint32_t)a->layer;
		ir.hidden = &t;
		req.body_case = MOED__REQUEST__BODY_INFER;
		req.infer = &ir;
	} else {
		rr.layer = (uint32_t)a->layer;
		rr.hidden = &t;
		req.body_case = MOED__REQUEST__BODY_ROUTE;
		req.route = &rr;
	}
	double t0 = now_us();
	r = conn_call(&c, &req, ret);
	*ret_rtt_us = now_us() - t0;
out:
	conn_close(&c);
	return r;
}

/* The daemon's tensor must be dtype [rows, cols] (cols 0: any) before we index it. */
static int check_reply_tensor(const char *cmd, const char *what, const Moed__Tensor *t,
			      Moed__DType dtype, uint64_t rows, uint64_t cols)
{
	char why[256] = "";

	if (tensor_check(t, dtype, 2, why, sizeof(why)) < 0 || t->shape[0] != rows ||
	    (cols && t->shape[1] != cols)) {
		fprintf(stderr, "moectl %s: protocol error: reply %s: %s\n", cmd, what,
			why[0] ? why : "shape does not match the request");
		return EXIT_UNREACHABLE;
	}
	return EXIT_OK;
}

int cmd_infer(const struct global *g, int argc, char **argv)
{
	struct tensor_args a;
	struct npy_array x = { 0 };
	Moed__Response *resp = NULL;
	double rtt, norm = 0, sum_abs = 0;
	char err[512];
	int r = parse_args("infer", 1, argc, argv, &a);

	if (r != EXIT_OK || (r = run_tensor(g, "infer", &a, 1, &x, &resp, &rtt)) != EXIT_OK)
		goto out;
	const Moed__InferResponse *ir = resp->infer;
	r = check_reply_tensor("infer", "output", ir->output, a.dtype, x.rows, x.cols);
	if (r != EXIT_OK)
		goto out;
	enum npy_type yt = a.dtype == MOED__DTYPE__BF16 ? NPY_BF16 : NPY_F32;
	const void *y = ir->output->data.data;
	size_t n = ir->output->data.len / tensor_dtype_size(a.dtype);
	for (size_t i = 0; i < n; i++) {
		double v = value_at(yt, y, i);
		norm += v * v;
		sum_abs += fabs(v);
	}
	if (a.output && npy_write(a.output, yt, y, ir->output->shape[0],
				  ir->output->shape[1], err, sizeof(err)) < 0) {
		fprintf(stderr, "moectl infer: %s\n", err);
		r = EXIT_USAGE;
		goto out;
	}
	if (g->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "layer", json_object_new_int64((int64_t)a.layer));
		json_object_object_add(o, "tokens", json_object_new_uint64(x.rows));
		json_object_object_add(o, "hidden_size", json_object_new_uint64(x.cols));
		json_object_object_add(o, "dtype", json_object_new_string(a.dtype == MOED__DTYPE__BF16
									 ? "bf16" : "f32"));
		json_object_object_add(o, "l2_norm", json_object_new_double(sqrt(norm)));
		json_object_object_add(o, "mean_abs", json_object_new_double(n ? sum_abs / n : 0));
		json_object_object_add(o, "router", json_object_new_string(ir->router));
		json_object_object_add(o, "generation", json_object_new_uint64(ir->generation));
		json_object_object_add(o, "compute_us", json_object_new_uint64(ir->compute_us));
		json_object_object_add(o, "round_trip_us", json_object_new_uint64((uint64_t)rtt));
		if (a.output)
			json_object_object_add(o, "output", json_object_new_string(a.output));
		json_print(o);
	} else {
		printf("layer %llu: %llu tokens x %llu, output L2 norm %.6g, mean |y| %.6g\n",
		       (unsigned long long)a.layer, (unsigned long long)x.rows,
		       (unsigned long long)x.cols, sqrt(norm), n ? sum_abs / n : 0.0);
		printf("router %s (generation %llu), compute %.3f ms, round trip %.3f ms%s%s\n",
		       ir->router, (unsigned long long)ir->generation, ir->compute_us / 1e3,
		       rtt / 1e3, a.output ? ", written to " : "", a.output ? a.output : "");
	}
out:
	if (resp)
		moed__response__free_unpacked(resp, NULL);
	npy_release(&x);
	return r;
}

int cmd_route(const struct global *g, int argc, char **argv)
{
	struct tensor_args a;
	struct npy_array x = { 0 };
	Moed__Response *resp = NULL;
	double rtt;
	int r = parse_args("route", 0, argc, argv, &a);

	if (r != EXIT_OK || (r = run_tensor(g, "route", &a, 0, &x, &resp, &rtt)) != EXIT_OK)
		goto out;
	const Moed__RouteResponse *rr = resp->route;
	r = check_reply_tensor("route", "experts", rr->experts, MOED__DTYPE__I32, x.rows, 0);
	if (r == EXIT_OK)
		r = check_reply_tensor("route", "weights", rr->weights, MOED__DTYPE__F32, x.rows,
				       rr->experts->shape[1]);
	if (r != EXIT_OK)
		goto out;
	uint64_t T = x.rows, k = rr->experts->shape[1];
	const int32_t *e = (const int32_t *)rr->experts->data.data;
	const float *w = (const float *)rr->weights->data.data;
	if (g->json) {
		json_object *o = json_object_new_object(), *ea = json_object_new_array(),
			    *wa = json_object_new_array();
		for (uint64_t t = 0; t < T; t++) {
			json_object *er = json_object_new_array(), *wr = json_object_new_array();
			for (uint64_t j = 0; j < k; j++) {
				json_object_array_add(er, json_object_new_int(e[t * k + j]));
				json_object_array_add(wr, json_object_new_double(w[t * k + j]));
			}
			json_object_array_add(ea, er);
			json_object_array_add(wa, wr);
		}
		json_object_object_add(o, "layer", json_object_new_int64((int64_t)a.layer));
		json_object_object_add(o, "experts", ea);
		json_object_object_add(o, "weights", wa);
		json_object_object_add(o, "router", json_object_new_string(rr->router));
		json_object_object_add(o, "generation", json_object_new_uint64(rr->generation));
		json_print(o);
	} else {
		printf("layer %llu, router %s (generation %llu)\n", (unsigned long long)a.layer,
		       rr->router, (unsigned long long)rr->generation);
		for (uint64_t t = 0; t < T; t++) {
			printf("token %llu:", (unsigned long long)t);
			for (uint64_t j = 0; j < k; j++)
				printf("  %3d (%.4f)", e[t * k + j], w[t * k + j]);
			printf("\n");
		}
	}
out:
	if (resp)
		moed__response__free_unpacked(resp, NULL);
	npy_release(&x);
	return r;
}
