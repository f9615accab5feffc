/*
 * The expert-backend reference cases (tests/ref/gen_expert_cases.py output:
 * meta.txt and .npy arrays per case folder), loaded into a ready expert spec,
 * for the cpu and cuda backend tests alike.
 */
#ifndef MOED_TEST_EXPERT_CASE_H
#define MOED_TEST_EXPERT_CASE_H

#include <stddef.h>
#include <stdint.h>

#include "include/moed/plugin.h"
#include "tests/unit/npy_test.h"

struct tcase {
	char name[96];
	uint32_t E, H, I, Is, k, T;
	int bf16;
	int fp8;                        /* E4M3 codes with 128x128 block scales */
	struct npy_test x, experts, weights, gate, up, down, y, sg, su, sd;
	/* fp8: the block scales of gate, up, down, sg, su, sd */
	struct npy_test scale[6];
	void *wbuf[6];                  /* bf16 or fp8 copies of gate, up, down, sg, su, sd */
	const void **gp, **upp, **dp;   /* E pointers each */
	const float **gsp, **usp, **dsp; /* fp8: E scale pointers each */
	struct moed_expert_spec spec;
};

/* Case `name` under `dir`, or NULL with the reason in err. */
struct tcase *expert_case_load(const char *dir, const char *name, char *err, size_t errlen);
void expert_case_free(struct tcase *c);
/* Worst per-token max|a - b| / max|b| over T tokens of width H (NaN: infinity). */
double expert_case_err(const float *a, const float *b, size_t T, size_t H);

#endif
