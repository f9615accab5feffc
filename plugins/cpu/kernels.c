/*
 * Small-group expert kernels and the table that picks one per CPU.  The kernel
 * body lives in small_impl.h and is compiled here once per instruction set
 * under `#pragma GCC target`; cpu_isa_pick() takes the first entry the CPU
 * supports (or the one a test names).
 */
#include <math.h>
#include <string.h>

#include "plugins/cpu/kernels.h"

#define SMALL_NB 4u
/* Tokens of a group dotted with the same rows per pass (small_impl.h's
 * dots()), and the span of K they take together. */
#define SMALL_SUPER 24u
#ifndef SMALL_SPAN
#define SMALL_SPAN 256u
#endif

float silu(float z)
{
	return z / (1.0f + expf(-z));
}

/* One weight, widened to fp32: bf16 is the top half of an fp32. */
static inline float wload(const void *row, uint32_t i, int bf16)
{
	if (bf16) {
		uint32_t u = (uint32_t)((const uint16_t *)row)[i] << 16;
		float f;

		memcpy(&f, &u, sizeof(f));
		return f;
	}
	return ((const float *)row)[i];
}

#define SMALL_ISA generic
#ifdef __FP_FAST_FMAF   /* the base target has FMA (not x86-64's default) */
#define SMALL_FMA 1
#else
#define SMALL_FMA 0
#endif
#define SMALL_VW 4
#define SMALL_ROWS 2
#include "plugins/cpu/small_impl.h"

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SMALL_ISA avx2
#define SMALL_FMA 1
#define SMALL_VW 8
#define SMALL_ROWS 2
#include "plugins/cpu/small_impl.h"
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,fma")
#define SMALL_ISA avx512
#define SMALL_FMA 1
#define SMALL_VW 16
#define SMALL_ROWS 4
#include "plugins/cpu/small_impl.h"
#pragma GCC pop_options

static int has_avx2(void)
{
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
	       __builtin_cpu_supports("f16c");
}

static int has_avx512(void)
{
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma") &&
	       __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
}

#if MOED_CPU_BF16
static int has_avx512bf16(void)
{
	return has_avx512() && __builtin_cpu_supports("avx512bw") &&
	       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
	       __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bf16");
}
#endif
#endif

#if MOED_CPU_AMX
static int has_amx(void)
{
	return has_avx512bf16() && amx_usable();
}
#endif

static int always(void)
{
	return 1;
}

const struct cpu_isa cpu_isas[] = {
#if MOED_CPU_AMX
	/* avx512bf16 with AMX tiles for the bf16 GEMM */
	{ "amx", has_amx, expert_act_avx512, expert_down_avx512, expert_fp8_act_avx512,
	  expert_fp8_down_avx512, &cpu_bf16_amx, F32_GEMM_ACT, F32_GEMM_DOWN },
#endif
#if MOED_CPU_BF16
	/* the avx512 kernels, plus vdpbf16ps ones for precision = bf16 */
	{ "avx512bf16", has_avx512bf16, expert_act_avx512, expert_down_avx512,
	  expert_fp8_act_avx512, expert_fp8_down_avx512, &cpu_bf16_avx512, F32_GEMM_ACT,
	  F32_GEMM_DOWN },
#endif
#if defined(__x86_64__)
	{ "avx512", has_avx512, expert_act_avx512, expert_down_avx512,
	  expert_fp8_act_avx512, expert_fp8_down_avx512, NULL, F32_GEMM_ACT, F32_GEMM_DOWN },
	{ "avx2", has_avx2, expert_act_avx2, expert_down_avx2, expert_fp8_act_avx2,
	  expert_fp8_down_avx2, NULL, NULL, NULL },
#endif
	{ "generic", always, expert_act_generic, expert_down_generic, expert_fp8_act_generic,
	  expert_fp8_down_generic, NULL, NULL, NULL },
	{ NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL },
};

const struct cpu_isa *cpu_isa_pick(const char *name)
{
	int any = !name || !strcmp(name, "auto");

	for (const struct cpu_isa *k = cpu_isas; k->name; k++) {
		if (any && k->supported())
			return k;
		if (!any && !strcmp(name, k->name))
			return k->supported() ? k : NULL;
	}
	return NULL;
}
