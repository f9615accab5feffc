/*
 * Loading one expert reference case (expert_case.h): the arrays are checked
 * for their sizes, bf16 cases for holding bf16 values (low halves zero, so
 * the top halves are exactly the weights the reference used), fp8 cases for
 * codes in 0..255 that are not NaN (stored as int32) and block scales of the
 * shape 128x128 blocks give.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/expert_case.h"

static int load(const char *dir, const char *file, const char *descr, struct npy_test *a)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return npy_test_load(path, descr, a);
}

/* Float32 array holding bf16 values -> its top halves (NULL if not bf16). */
static void *to_bf16(const struct npy_test *a)
{
	uint16_t *o = malloc(a->count * 2 + 1);
	const uint32_t *u = a->data;

	for (size_t i = 0; o && i < a->count; i++) {
		if (u[i] & 0xffff) {
			free(o);
			return NULL;
		}
		o[i] = (uint16_t)(u[i] >> 16);
	}
	return o;
}

/* Int32 array of e4m3 codes -> bytes (NULL if a code is out of range or NaN). */
static void *to_fp8(const struct npy_test *a)
{
	uint8_t *o = malloc(a->count + 1);
	const int32_t *v = a->data;

	for (size_t i = 0; o && i < a->count; i++) {
		if (v[i] < 0 || v[i] > 255 || (v[i] & 0x7f) == 0x7f) {
			free(o);
			return NULL;
		}
		o[i] = (uint8_t)v[i];
	}
	return o;
}

void expert_case_free(struct tcase *c)
{
	struct npy_test *all[] = { &c->x, &c->experts, &c->weights, &c->gate, &c->up,
				   &c->down, &c->y, &c->sg, &c->su, &c->sd };

	if (!c)
		return;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		free(all[i]->data);
	for (int i = 0; i < 6; i++) {
		free(c->wbuf[i]);
		free(c->scale[i].data);
	}
	free(c->gsp);
	free(c->usp);
	free(c->dsp);
	free(c->gp);
	free(c->upp);
	free(c->dp);
	free(c);
}

static int load_arrays(struct tcase *c, const char *dir)
{
	static const char *const names[] = { "x", "experts", "weights", "gate", "up", "down",
					     "y", "shared_gate", "shared_up", "shared_down" };
	struct npy_test *all[] = { &c->x, &c->experts, &c->weights, &c->gate, &c->up,
				   &c->down, &c->y, &c->sg, &c->su, &c->sd };
	char file[64];

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (i >= 7 && !c->Is)
			break;
		snprintf(file, sizeof(file), "%s.npy", names[i]);
		if (load(dir, file, i == 1 || (c->fp8 && (i < 6 ? i >= 3 : i >= 7)) ? "<i4" : "<f4",
			 all[i]) != 0)
			return -1;
		if (c->fp8 && (i >= 3 && i != 6)) {
			struct npy_test *s = &c->scale[i < 6 ? i - 3 : i - 4];
			/* rows, columns of each matrix: gate and up I x H, down H x I */
			uint32_t R = i == 5 || i == 9 ? c->H : i < 6 ? c->I : c->Is;
			uint32_t C = i == 5 ? c->I : i == 9 ? c->Is : c->H;
			size_t n = (size_t)(i < 6 ? c->E : 1) * ((R + 127) / 128) * ((C + 127) / 128);

			snprintf(file, sizeof(file), "%s_scale.npy", names[i]);
			if (load(dir, file, "<f4", s) != 0 || s->count != n)
				return -1;
		}
	}
	return c->x.count == (size_t)c->T * c->H && c->experts.count == (size_t)c->T * c->k &&
	       c->gate.count == (size_t)c->E * c->I * c->H &&
	       c->down.count == (size_t)c->E * c->H * c->I ? 0 : -1;
}

struct tcase *expert_case_load(const char *cases_dir, const char *name, char *err, size_t errlen)
{
	struct tcase *c = calloc(1, sizeof(*c));
	char dir[400], dtype[8] = "", path[512];
	const struct npy_test *w[6];
	const void *wp[6];
	FILE *f;
	int ok;

	if (!c)
		return NULL;
	snprintf(c->name, sizeof(c->name), "%s", name);
	snprintf(dir, sizeof(dir), "%s/%s", cases_dir, name);
	snprintf(path, sizeof(path), "%s/meta.txt", dir);
	f = fopen(path, "r");
	ok = f && fscanf(f, "%u %u %u %u %u %u %7s", &c->E, &c->H, &c->I, &c->Is, &c->k, &c->T,
			 dtype) == 7;
	if (f)
		fclose(f);
	if (!ok) {
		snprintf(err, errlen, "%s: missing or not 'E H I Is k T dtype'", path);
		goto fail;
	}
	c->bf16 = !strcmp(dtype, "bf16");
	c->fp8 = !strcmp(dtype, "fp8");
	if (load_arrays(c, dir) < 0) {
		snprintf(err, errlen, "%s: an array is missing or has the wrong size", dir);
		goto fail;
	}
	w[0] = &c->gate, w[1] = &c->up, w[2] = &c->down;
	w[3] = &c->sg, w[4] = &c->su, w[5] = &c->sd;
	for (int i = 0; i < 6; i++) {
		wp[i] = w[i]->data;
		if (c->bf16 && w[i]->data && !(wp[i] = c->wbuf[i] = to_bf16(w[i]))) {
			snprintf(err, errlen, "%s: weights are not bf16 values", dir);
			goto fail;
		}
		if (c->fp8 && w[i]->data && !(wp[i] = c->wbuf[i] = to_fp8(w[i]))) {
			snprintf(err, errlen, "%s: weights are not e4m3 codes", dir);
			goto fail;
		}
	}
	c->gp = calloc(c->E, sizeof(void *));
	c->upp = calloc(c->E, sizeof(void *));
	c->dp = calloc(c->E, sizeof(void *));
	if (!c->gp || !c->upp || !c->dp) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (uint32_t e = 0; e < c->E; e++) {
		size_t n = (size_t)c->I * c->H * (c->fp8 ? 1 : c->bf16 ? 2 : 4);

		c->gp[e] = (const char *)wp[0] + e * n;
		c->upp[e] = (const char *)wp[1] + e * n;
		c->dp[e] = (const char *)wp[2] + e * n;
	}
	c->spec = (struct moed_expert_spec){
		.struct_size = sizeof(struct moed_expert_spec),
		.hidden_size = c->H, .intermediate_size = c->I, .n_experts = c->E,
		.shared_intermediate_size = c->Is,
		.dtype = c->bf16 ? MOED_DTYPE_BF16 : MOED_DTYPE_F32,
		.gate = (const void *const *)c->gp, .up = (const void *const *)c->upp,
		.down = (const void *const *)c->dp,
		.shared_gate = wp[3], .shared_up = wp[4], .shared_down = wp[5],
	};
	if (c->fp8) {
		size_t hb = (c->H + 127) / 128, ib = (c->I + 127) / 128;

		c->gsp = calloc(c->E, sizeof(float *));
		c->usp = calloc(c->E, sizeof(float *));
		c->dsp = calloc(c->E, sizeof(float *));
		if (!c->gsp || !c->usp || !c->dsp) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		for (uint32_t e = 0; e < c->E; e++) {
			c->gsp[e] = (const float *)c->scale[0].data + e * ib * hb;
			c->usp[e] = (const float *)c->scale[1].data + e * ib * hb;
			c->dsp[e] = (const float *)c->scale[2].data + e * hb * ib;
		}
		c->spec.dtype = MOED_DTYPE_F8_E4M3;
		c->spec.scale_block_rows = c->spec.scale_block_cols = 128;
		c->spec.gate_scale = (const float *const *)c->gsp;
		c->spec.up_scale = (const float *const *)c->usp;
		c->spec.down_scale = (const float *const *)c->dsp;
		c->spec.shared_gate_scale = c->scale[3].data;
		c->spec.shared_up_scale = c->scale[4].data;
		c->spec.shared_down_scale = c->scale[5].data;
	}
	return c;
fail:
	expert_case_free(c);
	return NULL;
}

double expert_case_err(const float *a, const float *b, size_t T, size_t H)
{
	double worst = 0;

	for (size_t t = 0; t < T; t++) {
		double d = 0, m = 1e-30;

		for (size_t h = 0; h < H; h++) {
			double v = fabs((double)a[t * H + h] - b[t * H + h]);

			d = v > d ? v : d;
			m = fabs(b[t * H + h]) > m ? fabs(b[t * H + h]) : m;
		}
		if (isnan(d) || d / m > worst)
			worst = isnan(d) ? INFINITY : d / m;
	}
	return worst;
}
