/*
 * The shadow step of an engine call.  On the worker, after the serving route
 * (and forward) succeeded: the shadow router routes the same tokens into its
 * own buffers; per token the overlap |A n B| / k of the two expert sets and
 * whether the top-1 experts (largest final weight, first on ties) agree are
 * counted; a token is sampled when splitmix64 of its sequence number falls
 * below the sample fraction, and for the sampled tokens the expert backend
 * runs with the shadow's routes (and, for a route-only call, with the serving
 * routes too), giving the relative drift ||y_shadow - y|| / ||y|| in double.
 * Nothing the call answers with is written.  Back on the loop,
 * engine_shadow_record() adds the result to the layer's shadow_stats.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/mix.h"
#include "daemon/engine.h"

struct engine_shadow_out {
	int rc;
	int32_t *experts;               /* [T][k] the shadow's choices */
	uint64_t top1_agree;
	uint64_t same;                  /* sum over tokens of |A n B| */
	double *drift;                  /* [n_drift] */
	size_t n_drift;
	uint64_t ns;
};

void engine_shadow_out_free(struct engine_shadow_out *o)
{
	if (!o)
		return;
	free(o->experts);
	free(o->drift);
	free(o);
}

static size_t top1(const int32_t *e, const float *w, size_t k)
{
	size_t best = 0;

	for (size_t j = 1; j < k; j++)
		if (w[j] > w[best])
			best = j;
	return (size_t)e[best];
}

static int sampled(uint64_t seq, float f)
{
	if (f >= 1.0f)
		return 1;
	if (f <= 0.0f)
		return 0;
	return (double)(splitmix64_at(seq) >> 11) * 0x1p-53 < (double)f;
}

/* Drifts of the sampled tokens (rows[]) into o->drift. */
static int drift(struct engine_call *c, struct engine_shadow_out *o, const float *w_shadow,
		 const size_t *rows, size_t n)
{
	const struct engine_layer *l = c->layer;
	const struct moed_expert_ops *ops = c->shadow_expert->gen->desc->expert;
	size_t k = l->rspec.top_k, H = l->rspec.hidden_size;
	float *x = malloc(n * H * sizeof(float)), *ys = malloc(n * H * sizeof(float));
	float *yc = malloc(n * H * sizeof(float)), *w = malloc(2 * n * k * sizeof(float));
	int32_t *e = malloc(2 * n * k * sizeof(int32_t));
	int r = -ENOMEM;

	o->drift = malloc(n * sizeof(double));
	if (!x || !ys || !yc || !w || !e || !o->drift)
		goto out;
	for (size_t i = 0; i < n; i++) {
		memcpy(x + i * H, c->x + rows[i] * H, H * sizeof(float));
		memcpy(e + i * k, c->experts + rows[i] * k, k * sizeof(int32_t));
		memcpy(w + i * k, c->weights + rows[i] * k, k * sizeof(float));
		memcpy(e + (n + i) * k, o->experts + rows[i] * k, k * sizeof(int32_t));
		memcpy(w + (n + i) * k, w_shadow + rows[i] * k, k * sizeof(float));
	}
	if (c->y) {
		for (size_t i = 0; i < n; i++)
			memcpy(ys + i * H, c->y + rows[i] * H, H * sizeof(float));
	} else if ((r = ops->forward(c->shadow_expert->obj, x, n, k, e, w, ys)) < 0) {
		goto out;
	}
	r = ops->forward(c->shadow_expert->obj, x, n, k, e + n * k, w + n * k, yc);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		double d2 = 0, y2 = 0;
		for (size_t h = 0; h < H; h++) {
			double a = ys[i * H + h], b = yc[i * H + h];
			d2 += (b - a) * (b - a);
			y2 += a * a;
		}
		o->drift[i] = y2 > 0 ? sqrt(d2 / y2) : (d2 > 0 ? INFINITY : 0.0);
	}
	o->n_drift = n;
out:
	free(x);
	free(ys);
	free(yc);
	free(w);
	free(e);
	return r;
}

void engine_shadow_run(struct engine_call *c)
{
	const struct engine_layer *l = c->layer;
	size_t T = c->n_tokens, k = l->rspec.top_k, n = 0;
	struct engine_shadow_out *o = calloc(1, sizeof(*o));
	uint64_t t0 = uv_hrtime();
	float *w = malloc(T * k * sizeof(float));
	size_t *rows = malloc(T * sizeof(size_t));
	int r = -ENOMEM;

	if (!o || !w || !rows || !(o->experts = malloc(T * k * sizeof(int32_t))))
		goto out;
	r = c->shadow->gen->desc->router->route(c->shadow->obj, c->x, T, o->experts, w);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < T * k; i++)
		if (o->experts[i] < 0 || (uint32_t)o->experts[i] >= l->rspec.n_experts) {
			r = -EPROTO;
			goto out;
		}
	for (size_t t = 0; t < T; t++) {
		const int32_t *a = c->experts + t * k, *b = o->experts + t * k;
		size_t same = 0;
		for (size_t i = 0; i < k; i++)
			for (size_t j = 0; j < k; j++)
				if (a[i] == b[j]) {
					same++;
					break;
				}
		o->same += same;
		o->top1_agree += top1(a, c->weights + t * k, k) == top1(b, w + t * k, k);
		if (sampled(c->shadow_seq + t, c->shadow_sample))
			rows[n++] = t;
	}
	if (n && c->shadow_expert)      /* none with experts spread over ranks */
		r = drift(c, o, w, rows, n);
out:
	free(w);
	free(rows);
	if (o) {
		o->rc = r;
		o->ns = uv_hrtime() - t0;
	}
	c->shadow_out = o;
}

void engine_shadow_record(struct engine_call *c, uint64_t now_ms)
{
	struct engine_layer *l = c->layer;
	struct engine_shadow_out *o = c->shadow_out;
	struct shadow_stats *s = l->shadow_stats;
	size_t T = c->n_tokens, k = l->rspec.top_k;

	if (!o || !s || l->shadow != c->shadow)
		return;
	s->compute_ns += o->ns;
	if (o->rc < 0)
		return;
	uint64_t counts[SHADOW_COUNTS] = { [SHADOW_SAME] = o->same, [SHADOW_TOP1] = o->top1_agree,
					   [SHADOW_SAMPLED] = o->n_drift };
	stats_record(&s->serving, now_ms, c->experts, T * k, T, 0, 0);
	stats_record(&s->candidate, now_ms, o->experts, T * k, T, 0, 0);
	stats_add(&s->agree, now_ms, counts, T);
	for (size_t i = 0; i < o->n_drift; i++)
		shadow_stats_drift_add(s, now_ms, o->drift[i]);
}
