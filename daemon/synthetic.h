/*
 * The embedded synthetic model: deterministic weights from a fixed seed in
 * DeepSeek-V3 form, so that moed serves out of the box and benchmarks have
 * every shape of ROUTING.md without a checkpoint on disk.
 */
#ifndef MOED_SYNTHETIC_H
#define MOED_SYNTHETIC_H

#include <stddef.h>

#include "daemon/model.h"

/* name: "S0".."S4" or "V3" (what follows "synthetic:"); "" means S0. */
int synthetic_load(const char *name, const struct model_want *want, struct moed_model **ret_model,
		   char *err, size_t errlen);
/* Generate the experts `want` asks for that m (from synthetic_load) lacks,
 * held in m's dtype. */
int synthetic_add_experts(struct moed_model *m, const struct model_want *want, char *err,
			  size_t errlen);

#endif
