/*
 * Model loading unit tests.  Self-contained parts: dtype conversion against
 * hand-derived values (and, where the compiler has _Float16, every f16 bit
 * pattern against the compiler's own conversion), the safetensors parser on
 * hand-built images (good ones read back, broken ones refused with a reason
 * naming the tensor), config.json rules per family, and the synthetic model's
 * shape and determinism.
 *
 * Given a directory written by tests/ref/make_checkpoint.py (argv[1] or
 * $MOED_TEST_CASES; tests/numerics/checkpoints.sh passes one), it also loads
 * every good case and compares the model with expected.json (config values
 * and tensor elements decoded by numpy), refuses every bad case with the
 * reason in expect.txt, and checks synthetic:S0 against values the script
 * recomputed from the documented generator.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "daemon/dtype.h"
#include "daemon/hfconfig.h"
#include "daemon/model.h"
#include "daemon/model_load.h"
#include "daemon/safetensors.h"

static const char *cases_dir;

static uint32_t f32_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

/* ---- dtype ---------------------------------------------------------------- */

static void test_bf16(void **state)
{
	assert_true(dtype_bf16_to_f32(0x3f80) == 1.0f);
	assert_true(dtype_bf16_to_f32(0xc040) == -3.0f);
	assert_true(dtype_bf16_to_f32(0x0001) == ldexpf(1.0f, -133));  /* subnormal */
	assert_true(isinf(dtype_bf16_to_f32(0x7f80)) && dtype_bf16_to_f32(0x7f80) > 0);
	assert_true(isnan(dtype_bf16_to_f32(0x7fc1)));
	for (uint32_t v = 0; v < 0x10000; v++)
		assert_int_equal(f32_bits(dtype_bf16_to_f32((uint16_t)v)), v << 16);
}

static void test_f16(void **state)
{
	assert_true(dtype_f16_to_f32(0x3c00) == 1.0f);
	assert_true(dtype_f16_to_f32(0xc000) == -2.0f);
	assert_true(dtype_f16_to_f32(0x7bff) == 65504.0f);
	assert_true(dtype_f16_to_f32(0x0400) == ldexpf(1.0f, -14));    /* smallest normal */
	assert_true(dtype_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24)); /* largest subnormal */
	assert_true(dtype_f16_to_f32(0x8001) == -ldexpf(1.0f, -24));
	assert_true(dtype_f16_to_f32(0x3555) == 0x555p-12f);
	assert_int_equal(f32_bits(dtype_f16_to_f32(0x8000)), 0x80000000u);
	assert_true(isinf(dtype_f16_to_f32(0x7c00)) && dtype_f16_to_f32(0x7c00) > 0);
	assert_true(isinf(dtype_f16_to_f32(0xfc00)) && dtype_f16_to_f32(0xfc00) < 0);
	assert_true(isnan(dtype_f16_to_f32(0x7e00)) && isnan(dtype_f16_to_f32(0xfc01)));
#ifdef __FLT16_MAX__
	for (uint32_t v = 0; v < 0x10000; v++) {
		uint16_t b = (uint16_t)v;
		_Float16 h;
		float want, got = dtype_f16_to_f32(b);

		memcpy(&h, &b, sizeof(h));
		want = (float)h;
		if (isnan(want))
			assert_true(isnan(got));
		else
			assert_int_equal(f32_bits(got), f32_bits(want));
	}
#endif
}

/* FP8 E4M3 against values worked out by hand from the format (bias 7). */
static void test_fp8(void **state)
{
	/* [2][3] codes in blocks of 1 row x 2 columns: scales [2][2] */
	const uint8_t q[6] = { 0x38, 0xB8, 0x7E, 0x01, 0x00, 0x40 };
	const float scale[4] = { 1.0f, 0.25f, 8.0f, 0.5f };
	float w[6];
	uint16_t b[6];

	assert_true(dtype_f8e4m3_to_f32(0x38) == 1.0f);
	assert_true(dtype_f8e4m3_to_f32(0xB8) == -1.0f);
	assert_true(dtype_f8e4m3_to_f32(0x7E) == 448.0f);       /* the largest */
	assert_true(dtype_f8e4m3_to_f32(0x08) == ldexpf(1.0f, -6));     /* smallest normal */
	assert_true(dtype_f8e4m3_to_f32(0x07) == ldexpf(7.0f, -9));     /* largest subnormal */
	assert_true(dtype_f8e4m3_to_f32(0x01) == ldexpf(1.0f, -9));
	assert_true(dtype_f8e4m3_to_f32(0x3D) == 1.625f);
	assert_int_equal(f32_bits(dtype_f8e4m3_to_f32(0x80)), 0x80000000u);
	assert_true(isnan(dtype_f8e4m3_to_f32(0x7F)) && isnan(dtype_f8e4m3_to_f32(0xFF)));
	assert_false(dtype_f8e4m3_is_nan(0x7E));
	assert_int_equal(dtype_f8e4m3_find_nan(q, 6), 6);
	assert_int_equal(dtype_f8e4m3_find_nan((const uint8_t *)"\x01\x02\xff", 3), 2);
	assert_int_equal(dtype_size(MOED_DTYPE_F8_E4M3), 1);
	assert_string_equal(dtype_name(MOED_DTYPE_F8_E4M3), "F8_E4M3");
	dtype_f8_dequant(q, scale, 2, 3, 1, 2, MOED_DTYPE_F32, w);
	assert_true(w[0] == 1.0f && w[1] == -1.0f && w[2] == 112.0f);
	assert_true(w[3] == ldexpf(1.0f, -6) && w[4] == 0.0f && w[5] == 1.0f);
	dtype_f8_dequant(q, scale, 2, 3, 1, 2, MOED_DTYPE_BF16, b);
	assert_int_equal(b[2], 0x42e0);                         /* 112 */
}

static void test_parse_layers(void **state)
{
	static const char *bad[] = { "", "a", "3-1", "1,", "1-", ",1", "1,,2", "-1", "65536",
				     "1 2", "0x3" };
	uint32_t *v = NULL, n = 0;
	char err[256];

	assert_int_equal(model_parse_layers("1-3,7", &v, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 4);
	assert_true(v[0] == 1 && v[1] == 2 && v[2] == 3 && v[3] == 7);
	free(v);
	assert_int_equal(model_parse_layers("7,2-3,1,2,65535", &v, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 5);
	assert_true(v[0] == 1 && v[1] == 2 && v[2] == 3 && v[3] == 7 && v[4] == 65535);
	free(v);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = (uint32_t *)&v;
		if (model_parse_layers(bad[i], &v, &n, err, sizeof(err)) != -EINVAL ||
		    v != (uint32_t *)&v || !strstr(err, "want layer indices"))
			fail_msg("'%s' accepted or wrong message '%s'", bad[i], err);
	}
}

static void test_dtype_bulk(void **state)
{
	/* unaligned sources, as tensors sit at any offset of a mapped file */
	uint8_t buf[1 + 8] = { 0, 0x00, 0x3c, 0x00, 0xc0, 0x00, 0x7c, 0x01, 0x00 };
	uint8_t bbuf[1 + 4] = { 0, 0x80, 0x3f, 0x40, 0xc0 };
	float out[4], one = 1.5f, back;

	dtype_to_f32(MOED_DTYPE_F16, buf + 1, out, 4);
	assert_true(out[0] == 1.0f && out[1] == -2.0f && isinf(out[2]) && out[3] == 0x1p-24f);
	dtype_to_f32(MOED_DTYPE_BF16, bbuf + 1, out, 2);
	assert_true(out[0] == 1.0f && out[1] == -3.0f);
	dtype_to_f32(MOED_DTYPE_F32, &one, &back, 1);
	assert_true(back == 1.5f);
	assert_int_equal(dtype_size(MOED_DTYPE_F32), 4);
	assert_int_equal(dtype_size(MOED_DTYPE_BF16), 2);
	assert_int_equal(dtype_size(MOED_DTYPE_F16), 2);
	assert_int_equal(dtype_size(0), 0);
	assert_string_equal(dtype_name(MOED_DTYPE_BF16), "BF16");
}

/* ---- safetensors ---------------------------------------------------------- */

/* A file image: 8-byte little-endian length, header text, then `data`. */
static uint8_t *st_image(uint64_t hlen, const char *header, const void *data, size_t dlen,
			 size_t *ret_size)
{
	size_t n = strlen(header);
	uint8_t *p = malloc(8 + n + dlen + 1);

	assert_non_null(p);
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(hlen >> (8 * i));
	memcpy(p + 8, header, n);
	if (dlen)
		memcpy(p + 8 + n, data, dlen);
	*ret_size = 8 + n + dlen;
	return p;
}

static void test_st_good(void **state)
{
	const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
			"\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]},"
			"\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
			"\"c\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[22,30]},"
			"\"empty\":{\"dtype\":\"F16\",\"shape\":[4,0],\"data_offsets\":[30,30]},"
			"\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[30,34]}}   ";
	float a[4] = { 1, 2, 3, 4 }, s = 7;
	uint8_t data[34] = { 0 };
	const struct st_tensor *t;
	struct st_file *f = NULL;
	char err[256] = "";
	uint8_t *img;
	size_t size;

	memcpy(data, a, 16);
	data[17] = 0x3f;        /* bf16 1.0 */
	memcpy(data + 30, &s, 4);
	img = st_image(strlen(h), h, data, sizeof(data), &size);
	assert_int_equal(st_parse(img, size, "x.safetensors", &f, err, sizeof(err)), 0);
	assert_int_equal(f->n, 5);
	assert_null(st_find(f, "__metadata__"));
	assert_null(st_find(f, "d"));
	t = st_find(f, "a");
	assert_non_null(t);
	assert_int_equal(t->dtype, MOED_DTYPE_F32);
	assert_int_equal(t->ndim, 2);
	assert_int_equal(st_elements(t), 4);
	assert_memory_equal(st_data(f, t), a, 16);
	t = st_find(f, "b");
	assert_int_equal(t->dtype, MOED_DTYPE_BF16);
	assert_ptr_equal(st_data(f, t), img + 8 + strlen(h) + 16);
	t = st_find(f, "c");
	assert_int_equal(t->dtype, 0);          /* known to the parser, not computable */
	assert_string_equal(t->dtype_name, "I64");
	assert_int_equal(st_elements(st_find(f, "empty")), 0);
	t = st_find(f, "s");
	assert_int_equal(t->ndim, 0);
	assert_int_equal(st_elements(t), 1);
	st_close(f);
	free(img);
}

static const struct {
	const char *header;
	const char *want;
} st_bad[] = {
	{ "[]", "header is not a JSON object" },
	{ "{\"a\": ", "header is not a JSON object (it ends early)" },
	{ "{} x", "header has bytes after its JSON object" },
	{ "{}\t\n\r ", NULL },
	{ "{\"a\":1}", "tensor 'a': needs dtype, shape and data_offsets" },
	{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", "tensor 'a': needs dtype" },
	{ "{\"a\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", "tensor 'a': needs" },
	{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", "tensor 'a': needs" },
	{ "{\"a\":{\"dtype\":\"Q4_K\",\"shape\":[1],\"data_offsets\":[0,4]}}",
	  "tensor 'a': unknown dtype 'Q4_K'" },
	{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
	  "tensor 'a': shape must be non-negative integers" },
	{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}",
	  "tensor 'a': shape must be" },
	{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
	  "tensor 'a': 9 dimensions" },
	{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]}}",
	  "tensor 'a': shape overflows" },
	{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}",
	  "tensor 'a': data_offsets outside the file's 16 data bytes" },
	{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,20]}}",
	  "tensor 'a': data_offsets outside" },
	{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}",
	  "tensor 'a': data_offsets outside" },
	{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551615]}}",
	  "tensor 'a': data_offsets outside" },
	{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
	  "tensor 'a': F32 shape needs 12 bytes, data_offsets give 8" },
	{ "{\"__metadata__\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
	  "header is not a JSON object" },
};

static void test_st_bad(void **state)
{
	uint8_t data[16] = { 0 };

	for (size_t i = 0; i < sizeof(st_bad) / sizeof(st_bad[0]); i++) {
		struct st_file *f = (struct st_file *)&data;    /* must stay untouched */
		char err[512] = "";
		size_t size;
		uint8_t *img = st_image(strlen(st_bad[i].header), st_bad[i].header, data,
					sizeof(data), &size);
		int r = st_parse(img, size, "bad.safetensors", &f, err, sizeof(err));

		if (!st_bad[i].want) {
			assert_int_equal(r, 0);
			st_close(f);
		} else {
			if (r >= 0 || !strstr(err, st_bad[i].want) ||
			    strncmp(err, "bad.safetensors: ", 17))
				fail_msg("header %s: r=%d err '%s', want '%s'", st_bad[i].header, r,
					 err, st_bad[i].want);
			assert_ptr_equal(f, (struct st_file *)&data);
		}
		free(img);
	}
}

static void test_st_lengths(void **state)
{
	const uint64_t lens[] = { 0, 1, 100, (uint64_t)ST_MAX_HEADER + 1, UINT64_MAX };
	struct st_file *f = NULL;
	char err[256];
	size_t size;
	uint8_t *img;

	assert_int_equal(st_parse((const uint8_t *)"\2\0\0\0", 4, "s", &f, err, sizeof(err)),
			 -EBADMSG);
	assert_non_null(strstr(err, "too short"));
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		img = st_image(lens[i], "{}", NULL, 0, &size);
		assert_int_equal(st_parse(img, size, "s", &f, err, sizeof(err)), -EBADMSG);
		assert_non_null(strstr(err, "header length"));
		free(img);
	}
	assert_null(f);
	/* missing and non-regular files */
	assert_int_equal(st_open("/nonexistent/model.safetensors", &f, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/model.safetensors: "));
	assert_true(st_open("/", &f, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "not a regular file"));
	assert_null(f);
}

/* ---- config.json ---------------------------------------------------------- */

static struct hf_config parse_ok(const char *json)
{
	struct hf_config c;
	char err[512] = "";

	if (hfconfig_parse(json, strlen(json), "config.json", &c, err, sizeof(err)) != 0)
		fail_msg("%s: %s", json, err);
	return c;
}

#define DS_BASE "\"num_hidden_layers\":4,\"hidden_size\":64,\"moe_intermediate_size\":32," \
		"\"n_routed_experts\":16,\"num_experts_per_tok\":4"

static void test_hf_families(void **state)
{
	struct hf_config c;

	c = parse_ok("{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"n_group\":4,\"topk_group\":2,"
		     "\"n_shared_experts\":1,\"routed_scaling_factor\":2.5,\"scoring_func\":\"sigmoid\","
		     "\"topk_method\":\"noaux_tc\",\"first_k_dense_replace\":3,\"moe_layer_freq\":1,"
		     "\"quantization_config\":{\"fmt\":\"e4m3\"}}");
	assert_int_equal(c.family, HF_DEEPSEEK);
	assert_string_equal(c.model_type, "deepseek_v3");
	assert_int_equal(c.num_hidden_layers, 4);
	assert_int_equal(c.hidden_size, 64);
	assert_int_equal(c.moe_intermediate_size, 32);
	assert_int_equal(c.n_routed_experts, 16);
	assert_int_equal(c.num_experts_per_tok, 4);
	assert_int_equal(c.n_group, 4);
	assert_int_equal(c.topk_group, 2);
	assert_int_equal(c.n_shared_experts, 1);
	assert_true(c.routed_scaling_factor == 2.5f);
	assert_true(c.sigmoid);
	assert_true(c.norm_topk_prob);          /* deepseek_v3 default */
	assert_string_equal(c.topk_method, "noaux_tc");
	assert_false(hfconfig_layer_is_moe(&c, 2));
	assert_true(hfconfig_layer_is_moe(&c, 3));

	/* defaults: HF DeepseekV3Config's (no scoring_func key: the V3 router) */
	c = parse_ok("{\"model_type\":\"deepseek_v3\"," DS_BASE "}");
	assert_int_equal(c.n_group, 8);
	assert_int_equal(c.topk_group, 4);
	assert_int_equal(c.n_shared_experts, 1);
	assert_int_equal(c.shared_intermediate_size, 32);
	assert_int_equal(c.first_k_dense_replace, 3);
	assert_int_equal(c.moe_layer_freq, 1);
	assert_true(c.routed_scaling_factor == 2.5f);
	assert_true(c.sigmoid);
	assert_string_equal(c.topk_method, "noaux_tc");
	assert_true(c.norm_topk_prob);
	c = parse_ok("{\"model_type\":\"kimi_k2\"," DS_BASE ",\"n_group\":1,\"topk_group\":1}");
	assert_int_equal(c.family, HF_DEEPSEEK);
	assert_true(c.sigmoid);
	assert_string_equal(c.topk_method, "noaux_tc");
	/* GLM-4.5: DeepSeek-V3's router without the keys that say so */
	c = parse_ok("{\"model_type\":\"glm4_moe\"," DS_BASE ",\"routed_scaling_factor\":2.5,"
		     "\"moe_layer_freq\":2}");
	assert_int_equal(c.family, HF_GLM);
	assert_true(c.sigmoid);
	assert_string_equal(c.topk_method, "noaux_tc");
	assert_true(c.norm_topk_prob);
	assert_int_equal(c.n_group, 1);
	assert_int_equal(c.n_shared_experts, 1);
	assert_true(c.routed_scaling_factor == 2.5f);
	assert_false(hfconfig_layer_is_moe(&c, 0));
	assert_true(hfconfig_layer_is_moe(&c, 1));      /* moe_layer_freq is not GLM's */
	assert_true(hfconfig_layer_is_moe(&c, 2));
	c = parse_ok("{\"model_type\":\"deepseek_v2\"," DS_BASE "}");
	assert_int_equal(c.n_group, 1);
	assert_int_equal(c.n_shared_experts, 0);
	assert_int_equal(c.first_k_dense_replace, 0);
	assert_true(c.routed_scaling_factor == 1.0f);
	assert_false(c.sigmoid);
	assert_string_equal(c.topk_method, "greedy");
	assert_false(c.norm_topk_prob);
	c = parse_ok("{\"model_type\":\"deepseek_v2\"," DS_BASE ",\"moe_layer_freq\":2}");
	assert_false(c.norm_topk_prob);
	assert_true(hfconfig_layer_is_moe(&c, 2));
	assert_false(hfconfig_layer_is_moe(&c, 3));
	/* V2 greedy ignores groups; group_limited_greedy keeps them */
	c = parse_ok("{\"model_type\":\"deepseek_v2\"," DS_BASE ",\"n_group\":8,\"topk_group\":3}");
	assert_int_equal(c.n_group, 1);
	assert_int_equal(c.topk_group, 1);
	c = parse_ok("{\"model_type\":\"deepseek_v2\"," DS_BASE ",\"n_group\":8,\"topk_group\":3,"
		     "\"topk_method\":\"group_limited_greedy\",\"norm_topk_prob\":true}");
	assert_int_equal(c.n_group, 8);
	assert_int_equal(c.topk_group, 3);
	assert_true(c.norm_topk_prob);

	c = parse_ok("{\"model_type\":\"mixtral\",\"num_hidden_layers\":32,\"hidden_size\":4096,"
		     "\"intermediate_size\":14336,\"num_local_experts\":8,\"num_experts_per_tok\":2,"
		     "\"norm_topk_prob\":false}");
	assert_int_equal(c.family, HF_MIXTRAL);
	assert_int_equal(c.moe_intermediate_size, 14336);
	assert_int_equal(c.n_routed_experts, 8);
	assert_true(c.norm_topk_prob);          /* Mixtral always renormalises */
	assert_true(hfconfig_layer_is_moe(&c, 0));

	c = parse_ok("{\"model_type\":\"qwen3_moe\",\"num_hidden_layers\":4,\"hidden_size\":64,"
		     "\"intermediate_size\":256,\"moe_intermediate_size\":32,\"num_experts\":8,"
		     "\"num_experts_per_tok\":2,\"decoder_sparse_step\":2}");
	assert_int_equal(c.family, HF_QWEN);
	assert_int_equal(c.moe_intermediate_size, 32);
	assert_false(c.norm_topk_prob);
	assert_false(hfconfig_layer_is_moe(&c, 0));
	assert_true(hfconfig_layer_is_moe(&c, 1));
	c = parse_ok("{\"model_type\":\"qwen3_moe\",\"num_hidden_layers\":8,\"hidden_size\":64,"
		     "\"moe_intermediate_size\":32,\"num_experts\":8,\"num_experts_per_tok\":2,"
		     "\"decoder_sparse_step\":2,\"mlp_only_layers\":[3,4],\"norm_topk_prob\":true}");
	assert_true(c.norm_topk_prob);
	assert_true(hfconfig_layer_is_moe(&c, 1));
	assert_false(hfconfig_layer_is_moe(&c, 3));
	assert_false(hfconfig_layer_is_moe(&c, 4));
	assert_true(hfconfig_layer_is_moe(&c, 5));

	/* Qwen2-MoE: one gated shared expert of its own width (HF default 5632) */
	c = parse_ok("{\"model_type\":\"qwen2_moe\",\"num_hidden_layers\":4,\"hidden_size\":64,"
		     "\"moe_intermediate_size\":32,\"num_experts\":8,\"num_experts_per_tok\":2,"
		     "\"shared_expert_intermediate_size\":96}");
	assert_true(c.shared_expert_gate);
	assert_int_equal(c.n_shared_experts, 1);
	assert_int_equal(c.shared_intermediate_size, 96);
	assert_false(c.norm_topk_prob);
	c = parse_ok("{\"model_type\":\"qwen2_moe\",\"num_hidden_layers\":4,\"hidden_size\":64,"
		     "\"moe_intermediate_size\":32,\"num_experts\":8,\"num_experts_per_tok\":2}");
	assert_int_equal(c.shared_intermediate_size, 5632);
	c = parse_ok("{\"model_type\":\"qwen3_moe\",\"num_hidden_layers\":4,\"hidden_size\":64,"
		     "\"moe_intermediate_size\":32,\"num_experts\":8,\"num_experts_per_tok\":2,"
		     "\"shared_expert_intermediate_size\":96}");
	assert_false(c.shared_expert_gate);
	assert_int_equal(c.shared_intermediate_size, 0);

	c = parse_ok("{\"model_type\":\"olmoe\",\"num_hidden_layers\":16,\"hidden_size\":2048,"
		     "\"intermediate_size\":1024,\"num_experts\":64,\"num_experts_per_tok\":8}");
	assert_int_equal(c.family, HF_OLMOE);
	assert_int_equal(c.n_routed_experts, 64);
	assert_false(c.norm_topk_prob);
}

static const struct {
	const char *json;
	const char *want;
} hf_bad[] = {
	{ "", "config.json: not a JSON object" },
	{ "[1]", "config.json: not a JSON object" },
	{ "{\"model_type\":\"llama\",\"hidden_size\":64}",
	  "'model_type' 'llama' is not a MoE family" },
	{ "{\"model_type\":7}", "'model_type' must be a short string" },
	/* a family is never guessed from the keys present */
	{ "{\"model_type\":\"deepseek_v9\"," DS_BASE "}",
	  "'model_type' 'deepseek_v9' is not a MoE family moed knows (deepseek_v2, deepseek_v3, "
	  "kimi_k2, glm4_moe, qwen2_moe, qwen3_moe, olmoe, mixtral)" },
	{ "{" DS_BASE "}", "'model_type' '' is not a MoE family" },
	{ "{\"model_type\":\"qwen3_moe\",\"num_hidden_layers\":2,\"hidden_size\":64,"
	  "\"moe_intermediate_size\":32,\"num_experts\":8,\"num_experts_per_tok\":2,"
	  "\"mlp_only_layers\":[\"1\"]}", "'mlp_only_layers' must be a list" },
	{ "{\"model_type\":\"deepseek_v3\",\"hidden_size\":64}", "'num_hidden_layers' missing" },
	{ "{\"model_type\":\"deepseek_v3\",\"num_hidden_layers\":4,\"hidden_size\":64,"
	  "\"num_experts_per_tok\":4,\"n_routed_experts\":16}", "'moe_intermediate_size' missing" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"hidden_size\":0}",
	  "'hidden_size' must be a positive integer" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"hidden_size\":64.0}",
	  "'hidden_size' must be a positive integer" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"hidden_size\":true}",
	  "'hidden_size' must be a positive integer" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"hidden_size\":-64}",
	  "'hidden_size' must be a positive integer" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"hidden_size\":99999999999}",
	  "'hidden_size' must be a positive integer" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"hidden_size\":2097152}",
	  "'hidden_size' 2097152 exceeds moed's limit" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"n_shared_experts\":-1}",
	  "'n_shared_experts' must be a non-negative integer" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"n_shared_experts\":65536}",
	  "'n_shared_experts x moe_intermediate_size' 2097152 exceeds" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"norm_topk_prob\":1}",
	  "'norm_topk_prob' must be true or false" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"routed_scaling_factor\":-1}",
	  "'routed_scaling_factor' must be a positive number" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"routed_scaling_factor\":\"2\"}",
	  "'routed_scaling_factor' must be a positive number" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"scoring_func\":\"tanh\"}",
	  "'scoring_func' must be softmax or sigmoid, got 'tanh'" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"topk_method\":\"best\"}",
	  "'topk_method' 'best' is not one of" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"num_experts_per_tok\":17}",
	  "'num_experts_per_tok' 17 exceeds the 16 experts" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"n_group\":3}",
	  "'n_routed_experts' 16 is not divisible by 'n_group' 3" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"n_group\":4,\"topk_group\":5}",
	  "'topk_group' 5 exceeds 'n_group' 4" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"n_group\":8,\"topk_group\":1}",
	  "leaves fewer than 'num_experts_per_tok' 4 experts" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"n_group\":16,\"topk_group\":8,"
	  "\"topk_method\":\"noaux_tc\"}", "one expert per group" },
	{ "{\"model_type\":\"deepseek_v3\"," DS_BASE ",\"num_hidden_layers\":100000}",
	  "'num_hidden_layers' 100000 exceeds" },
	{ "{\"model_type\":\"mixtral\",\"num_hidden_layers\":2,\"hidden_size\":64,"
	  "\"num_local_experts\":8,\"num_experts_per_tok\":2}", "'intermediate_size' missing" },
	{ "{\"model_type\":\"qwen2_moe\",\"num_hidden_layers\":2,\"hidden_size\":64,"
	  "\"moe_intermediate_size\":32,\"num_experts\":8,\"num_experts_per_tok\":2,"
	  "\"shared_expert_intermediate_size\":2097152}", "'shared_expert_intermediate_size' 2097152 exceeds" },
};

static void test_hf_bad(void **state)
{
	for (size_t i = 0; i < sizeof(hf_bad) / sizeof(hf_bad[0]); i++) {
		struct hf_config c = { .hidden_size = 12345 };
		char err[512] = "";
		int r = hfconfig_parse(hf_bad[i].json, strlen(hf_bad[i].json), "config.json", &c,
				       err, sizeof(err));

		if (r >= 0 || !strstr(err, hf_bad[i].want) || strncmp(err, "config.json: ", 13))
			fail_msg("%s: r=%d err '%s', want '%s'", hf_bad[i].json, r, err, hf_bad[i].want);
		assert_int_equal(c.hidden_size, 12345);
	}
}

/* ---- comparing a model with an expected.json ------------------------------ */

static int64_t jint(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("expected.json lacks '%s'", key);
	return json_object_get_int64(v);
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("expected.json lacks '%s'", key);
	return json_object_get_string(v);
}

/* Element `i` of a layer tensor named as in expected.json, or NULL if out of range. */
static const float *tensor_at(const struct moed_model *m, const struct moed_layer *l,
			      const char *field, int64_t e, int64_t i)
{
	uint64_t H = m->hidden_size, I = m->intermediate_size, Is = m->shared_intermediate_size;
	const float *p = NULL;
	uint64_t n = 0;

	if (e >= (int64_t)m->n_experts)
		return NULL;
	if (!strcmp(field, "gate"))
		p = l->gate, n = m->n_experts * H;
	else if (!strcmp(field, "bias"))
		p = l->bias, n = m->n_experts;
	else if (!strcmp(field, "expert_gate") && e >= 0)
		p = l->expert_gate[e], n = I * H;
	else if (!strcmp(field, "expert_up") && e >= 0)
		p = l->expert_up[e], n = I * H;
	else if (!strcmp(field, "expert_down") && e >= 0)
		p = l->expert_down[e], n = H * I;
	else if (!strcmp(field, "shared_gate"))
		p = l->shared_gate, n = Is * H;
	else if (!strcmp(field, "shared_up"))
		p = l->shared_up, n = Is * H;
	else if (!strcmp(field, "shared_down"))
		p = l->shared_down, n = H * Is;
	return p && i >= 0 && (uint64_t)i < n ? p + i : NULL;
}

#define EXPECT(cond, ...) do { if (!(cond)) { print_error(__VA_ARGS__); bad++; } } while (0)

/* Compare `m` with an expected.json object; prints each difference, returns their number. */
static int compare_expected(const char *what, const struct moed_model *m, json_object *exp)
{
	json_object *mo, *layers, *dense, *samples, *v;
	int bad = 0;

	json_object_object_get_ex(exp, "model", &mo);
	json_object_object_get_ex(exp, "layers", &layers);
	json_object_object_get_ex(exp, "dense", &dense);
	json_object_object_get_ex(exp, "samples", &samples);
	if (!mo || !layers || !dense || !samples)
		fail_msg("%s: expected.json lacks model/layers/dense/samples", what);
#define FIELD(f) EXPECT(m->f == jint(mo, #f), "%s: " #f " %lld, want %lld\n", what, \
			(long long)m->f, (long long)jint(mo, #f))
	FIELD(num_hidden_layers);
	FIELD(hidden_size);
	FIELD(intermediate_size);
	FIELD(n_experts);
	FIELD(top_k);
	FIELD(n_group);
	FIELD(topk_group);
	FIELD(n_shared_experts);
	FIELD(shared_intermediate_size);
	FIELD(norm_topk_prob);
#undef FIELD
	json_object_object_get_ex(mo, "routed_scaling_factor", &v);
	EXPECT(m->routed_scaling_factor == (float)json_object_get_double(v),
	       "%s: routed_scaling_factor %g\n", what, m->routed_scaling_factor);
	EXPECT(!strcmp(m->model_type, jstr(mo, "model_type")), "%s: model_type %s\n", what,
	       m->model_type);
	EXPECT(!strcmp(m->topk_method, jstr(mo, "topk_method")), "%s: topk_method %s\n", what,
	       m->topk_method);
	EXPECT(m->scoring == (strcmp(jstr(mo, "scoring"), "sigmoid") ? MOED_SCORING_SOFTMAX
			      : MOED_SCORING_SIGMOID), "%s: scoring %u\n", what, m->scoring);
	EXPECT(!strcmp(model_default_router(m), jstr(mo, "default_router")),
	       "%s: default router %s\n", what, model_default_router(m));
	EXPECT(!strcmp(dtype_name(m->dtype), jstr(mo, "dtype")), "%s: dtype %s\n", what,
	       dtype_name(m->dtype));
	EXPECT(m->n_layers == json_object_array_length(layers), "%s: %u MoE layers\n", what,
	       m->n_layers);
	for (size_t i = 0; i < json_object_array_length(layers) && i < m->n_layers; i++) {
		uint32_t L = (uint32_t)json_object_get_int(json_object_array_get_idx(layers, i));
		const struct moed_layer *l = model_layer(m, L);

		EXPECT(m->layers[i].index == L, "%s: layers[%zu] is %u, want %u\n", what, i,
		       m->layers[i].index, L);
		if (!l)
			continue;
		json_object_object_get_ex(exp, "has_bias", &v);
		EXPECT(!!l->bias == json_object_get_boolean(v), "%s: layer %u bias\n", what, L);
		json_object_object_get_ex(exp, "has_shared", &v);
		EXPECT(!!l->shared_gate == json_object_get_boolean(v) &&
		       !!l->shared_up == !!l->shared_gate && !!l->shared_down == !!l->shared_gate,
		       "%s: layer %u shared expert\n", what, L);
	}
	for (size_t i = 0; i < json_object_array_length(dense); i++) {
		uint32_t L = (uint32_t)json_object_get_int(json_object_array_get_idx(dense, i));
		EXPECT(model_layer(m, L) == NULL, "%s: dense layer %u is MoE\n", what, L);
	}
	EXPECT(model_layer(m, m->num_hidden_layers) == NULL, "%s: layer past the end\n", what);
	for (size_t i = 0; i < json_object_array_length(samples); i++) {
		json_object *s = json_object_array_get_idx(samples, i);
		const char *field = json_object_get_string(json_object_array_get_idx(s, 0));
		uint32_t L = (uint32_t)json_object_get_int(json_object_array_get_idx(s, 1));
		int64_t e = json_object_get_int64(json_object_array_get_idx(s, 2));
		int64_t at = json_object_get_int64(json_object_array_get_idx(s, 3));
		float want = (float)json_object_get_double(json_object_array_get_idx(s, 4));
		const struct moed_layer *l = model_layer(m, L);
		const float *got = l ? tensor_at(m, l, field, e, at) : NULL;

		EXPECT(got && f32_bits(*got) == f32_bits(want),
		       "%s: layer %u %s[%lld][%lld] = %.9g, want %.9g\n", what, L, field,
		       (long long)e, (long long)at, got ? *got : NAN, want);
	}
	return bad;
}

/* ---- synthetic ------------------------------------------------------------ */

static int same_floats(const void *a, const void *b, size_t n)
{
	return (!a && !b) || (a && b && memcmp(a, b, n * sizeof(float)) == 0);
}

static int max_abs_within(const float *p, size_t n, float bound)
{
	float mx = 0;

	for (size_t i = 0; i < n; i++)
		mx = fmaxf(mx, fabsf(p[i]));
	return mx <= bound && mx > 0.9f * bound;
}

static void test_synthetic(void **state)
{
	struct moed_model *a = NULL, *b = NULL, *keep = (struct moed_model *)&keep;
	char err[256] = "";
	uint64_t H = 256, I = 128, E = 16;

	assert_int_equal(model_load("synthetic", &a, err, sizeof(err)), 0);
	assert_int_equal(model_load("synthetic:S0", &b, err, sizeof(err)), 0);
	assert_string_equal(a->source, "synthetic:S0");
	assert_string_equal(a->model_type, "deepseek_v3");
	assert_int_equal(a->num_hidden_layers, 4);
	assert_int_equal(a->hidden_size, H);
	assert_int_equal(a->intermediate_size, I);
	assert_int_equal(a->n_experts, E);
	assert_int_equal(a->top_k, 4);
	assert_int_equal(a->n_group, 4);
	assert_int_equal(a->topk_group, 2);
	assert_int_equal(a->n_shared_experts, 1);
	assert_int_equal(a->shared_intermediate_size, I);
	assert_int_equal(a->scoring, MOED_SCORING_SIGMOID);
	assert_int_equal(a->norm_topk_prob, 1);
	assert_true(a->routed_scaling_factor == 2.5f);
	assert_string_equal(a->topk_method, "noaux_tc");
	assert_int_equal(a->dtype, MOED_DTYPE_F32);
	assert_string_equal(model_default_router(a), "sigmoid-norm");
	assert_int_equal(a->n_layers, 3);
	assert_null(model_layer(a, 0));
	assert_null(model_layer(a, 4));
	/* router + bias + E experts + one shared expert of width I, fp32 */
	assert_int_equal(a->weight_bytes, 3 * (E * H * 4 + E * 4 + (E + 1) * 3 * H * I * 4));
	for (uint32_t L = 1; L <= 3; L++) {
		const struct moed_layer *la = model_layer(a, L), *lb = model_layer(b, L);

		assert_non_null(la);
		assert_int_equal(la->index, L);
		assert_true(same_floats(la->gate, lb->gate, E * H));
		assert_true(same_floats(la->bias, lb->bias, E));
		assert_true(same_floats(la->shared_down, lb->shared_down, H * I));
		for (uint32_t e = 0; e < E; e++) {
			assert_true(same_floats(la->expert_gate[e], lb->expert_gate[e], I * H));
			assert_true(same_floats(la->expert_up[e], lb->expert_up[e], I * H));
			assert_true(same_floats(la->expert_down[e], lb->expert_down[e], H * I));
		}
		/* uniform in +-1/sqrt(fan_in), bias +-0.05: the bound is reached, not passed */
		assert_true(max_abs_within(la->gate, E * H, 1.0f / 16));
		assert_true(max_abs_within(la->bias, E, 0.05f));
		assert_true(max_abs_within(la->expert_up[3], I * H, 1.0f / 16));
		assert_true(max_abs_within(la->expert_down[3], H * I, 1.0f / sqrtf(128)));
		assert_true(max_abs_within(la->shared_gate, I * H, 1.0f / 16));
	}
	/* different layers and experts draw different numbers */
	assert_false(same_floats(model_layer(a, 1)->gate, model_layer(a, 2)->gate, E * H));
	assert_false(same_floats(a->layers[0].expert_gate[0], a->layers[0].expert_gate[1], I * H));
	model_free(a);
	model_free(b);
	model_free(NULL);

	assert_int_equal(model_load("synthetic:S9", &keep, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown synthetic model 'S9'"));
	assert_non_null(strstr(err, "synthetic:S0, S1, S2, S3, S4 or V3"));
	assert_ptr_equal(keep, (struct moed_model *)&keep);
}

/* ---- checkpoint directories from make_checkpoint.py ----------------------- */

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "re");
	char *s = calloc(1, 4096);

	assert_non_null(f);
	assert_non_null(s);
	if (fread(s, 1, 4095, f) == 0)
		s[0] = '\0';
	fclose(f);
	s[strcspn(s, "\n")] = '\0';
	return s;
}

/* Are the tensors of dir's model.safetensors (if one file) aligned for
 * elements of es bytes?  (Shards and our single files pad the header to 8;
 * a file with tensors appended later may not.) */
static int data_aligned(const char *dir, size_t es)
{
	char path[4200];
	uint8_t h[8];
	uint64_t n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	f = fopen(path, "rb");
	if (!f)
		return 1;
	if (fread(h, 1, 8, f) == 8)
		for (int i = 7; i >= 0; i--)
			n = n << 8 | h[i];
	fclose(f);
	return (8 + n) % es == 0;
}

/* One expert matrix of `as_stored` against the fp32 load `f32`: mapped when
 * held as stored (and aligned), and equal (bf16 widened exactly) to the fp32
 * values. */
static int same_matrix(const struct moed_model *as_stored, int may_map, const void *p,
		       const float *scale, uint32_t rows, const float *f32, size_t n)
{
	if (model_is_mapped(as_stored, p) != may_map)
		return 0;
	if (as_stored->dtype == MOED_DTYPE_F8_E4M3) {
		float *w = malloc(n * sizeof(float));
		int same;

		if (!w || !scale)
			return free(w), 0;
		dtype_f8_dequant(p, scale, rows, n / rows, as_stored->scale_block_rows,
				 as_stored->scale_block_cols, MOED_DTYPE_F32, w);
		same = memcmp(w, f32, n * sizeof(float)) == 0;
		free(w);
		return same;
	}
	if (as_stored->dtype == MOED_DTYPE_F32)
		return memcmp(p, f32, n * sizeof(float)) == 0;
	for (size_t i = 0; i < n; i++)
		if (dtype_bf16_to_f32(((const uint16_t *)p)[i]) != f32[i] &&
		    !(isnan(f32[i]) && isnan(dtype_bf16_to_f32(((const uint16_t *)p)[i]))))
			return 0;
	return 1;
}

/* Load dir as stored and compare every expert matrix with the fp32 load f. */
static int check_as_stored(const char *dir, const struct moed_model *f)
{
	size_t e_n = (size_t)f->hidden_size * f->intermediate_size;
	size_t s_n = (size_t)f->hidden_size * f->shared_intermediate_size;
	uint32_t H = f->hidden_size, I = f->intermediate_size, Is = f->shared_intermediate_size;
	struct moed_model *m;
	uint64_t expect_mapped = 0;
	char err[1024];
	int bad = 0, may;

	if (model_load(dir, &m, err, sizeof(err)) < 0) {
		print_error("%s: refused as stored: %s\n", dir, err);
		return 1;
	}
	EXPECT(m->dtype == (m->stored_dtype == MOED_DTYPE_BF16 ||
			    m->stored_dtype == MOED_DTYPE_F8_E4M3 ? m->stored_dtype : MOED_DTYPE_F32),
	       "%s: stored %s held as %s\n", dir, dtype_name(m->stored_dtype),
	       dtype_name(m->dtype));
	may = m->dtype == m->stored_dtype && data_aligned(dir, dtype_size(m->dtype));
	for (uint32_t i = 0; i < m->n_layers; i++) {
		const struct moed_layer *a = &m->layers[i], *b = &f->layers[i];

		for (uint32_t e = 0; e < m->n_experts; e++)
			EXPECT(same_matrix(m, may, a->expert_gate[e], a->gate_scale[e], I,
					   b->expert_gate[e], e_n) &&
			       same_matrix(m, may, a->expert_up[e], a->up_scale[e], I,
					   b->expert_up[e], e_n) &&
			       same_matrix(m, may, a->expert_down[e], a->down_scale[e], H,
					   b->expert_down[e], e_n),
			       "%s: layer %u expert %u as stored differs\n", dir, a->index, e);
		if (a->shared_gate)
			EXPECT(same_matrix(m, may, a->shared_gate, a->shared_gate_scale, Is,
					   b->shared_gate, s_n) &&
			       same_matrix(m, may, a->shared_up, a->shared_up_scale, Is,
					   b->shared_up, s_n) &&
			       same_matrix(m, may, a->shared_down, a->shared_down_scale, H,
					   b->shared_down, s_n),
			       "%s: layer %u shared expert as stored differs\n", dir, a->index);
		expect_mapped += (3 * (uint64_t)m->n_experts * e_n + (a->shared_gate ? 3 * s_n : 0)) *
				 dtype_size(m->dtype);
	}
	if (!may)
		expect_mapped = 0;
	EXPECT(m->mapped_bytes == expect_mapped, "%s: %llu bytes mapped, want %llu\n", dir,
	       (unsigned long long)m->mapped_bytes, (unsigned long long)expect_mapped);
	model_free(m);
	return bad;
}

static int run_case(const char *kind, const char *name)
{
	struct moed_model *m = (struct moed_model *)&m, *sentinel = m;
	char dir[4096], path[4200], err[1024] = "";
	int r, bad = 0;

	snprintf(dir, sizeof(dir), "%s/%s/%s", cases_dir, kind, name);
	/* good cases in fp32 (the expected values are fp32), then as stored */
	if (!strcmp(kind, "bad"))
		r = model_load(dir, &m, err, sizeof(err));
	else
		r = model_load_as(dir, MOED_DTYPE_F32, &m, err, sizeof(err));
	if (!strcmp(kind, "bad")) {
		snprintf(path, sizeof(path), "%s/expect.txt", dir);
		char *want = read_text(path);
		EXPECT(r < 0 && strstr(err, want) && !strchr(err, '\n'),
		       "bad/%s: r=%d err '%s', want '%s'\n", name, r, err, want);
		EXPECT(m == sentinel, "bad/%s: ret_model changed on failure\n", name);
		free(want);
		return bad;
	}
	if (r < 0) {
		print_error("good/%s: refused: %s\n", name, err);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/expected.json", dir);
	json_object *exp = json_object_from_file(path);
	if (!exp)
		fail_msg("%s: unreadable", path);
	bad += compare_expected(name, m, exp);
	bad += check_as_stored(dir, m);
	EXPECT(!strcmp(m->source, dir), "good/%s: source %s\n", name, m->source);
	if (!bad)
		print_message("ok good/%s: %u MoE layers, %zu samples equal\n", name, m->n_layers,
			      json_object_array_length(json_object_object_get(exp, "samples")));
	json_object_put(exp);
	model_free(m);
	return bad;
}

static void test_cases(void **state)
{
	const char *kinds[] = { "good", "bad" };
	int bad = 0, n = 0;

	if (!cases_dir)
		skip();
	for (size_t k = 0; k < 2; k++) {
		char path[4096];
		struct dirent **names;
		int cnt;

		snprintf(path, sizeof(path), "%s/%s", cases_dir, kinds[k]);
		cnt = scandir(path, &names, NULL, alphasort);
		if (cnt < 0)
			fail_msg("%s: %s", path, strerror(errno));
		for (int i = 0; i < cnt; i++) {
			if (names[i]->d_name[0] != '.') {
				bad += run_case(kinds[k], names[i]->d_name);
				n++;
			}
			free(names[i]);
		}
		free(names);
	}
	print_message("%d cases, %d differences\n", n, bad);
	assert_true(n >= 20);
	assert_int_equal(bad, 0);
}

static void test_synthetic_values(void **state)
{
	struct moed_model *m = NULL;
	char path[4096], err[256];
	json_object *exp;

	if (!cases_dir)
		skip();
	snprintf(path, sizeof(path), "%s/synthetic.json", cases_dir);
	exp = json_object_from_file(path);
	assert_non_null(exp);
	assert_int_equal(model_load("synthetic:S0", &m, err, sizeof(err)), 0);
	assert_int_equal(compare_expected("synthetic:S0", m, exp), 0);
	json_object_put(exp);
	model_free(m);
}

static void test_missing_dir(void **state)
{
	struct moed_model *m = NULL;
	char err[512];

	assert_int_equal(model_load("/nonexistent/ckpt", &m, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/ckpt/config.json"));
	assert_null(m);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bf16),
		cmocka_unit_test(test_f16),
		cmocka_unit_test(test_dtype_bulk),
		cmocka_unit_test(test_fp8),
		cmocka_unit_test(test_parse_layers),
		cmocka_unit_test(test_st_good),
		cmocka_unit_test(test_st_bad),
		cmocka_unit_test(test_st_lengths),
		cmocka_unit_test(test_hf_families),
		cmocka_unit_test(test_hf_bad),
		cmocka_unit_test(test_synthetic),
		cmocka_unit_test(test_missing_dir),
		cmocka_unit_test(test_synthetic_values),
		cmocka_unit_test(test_cases),
	};

	cases_dir = argc > 1 ? argv[1] : getenv("MOED_TEST_CASES");
	if (cases_dir && !*cases_dir)
		cases_dir = NULL;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
