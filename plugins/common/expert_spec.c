/*
 * Expert layer spec validation shared by the cpu and cuda backends.  The size
 * check accepts a spec of ABI 1 (the fields up to shared_down); the ABI-2
 * fields are read only when the spec has them.
 */
#include <errno.h>
#include <stddef.h>

#include "plugins/common/expert_spec.h"

/* FP8 weights: a block size and a scale for every matrix. */
static int check_scales(const struct moed_host *host, const char *plugin,
			const struct moed_expert_spec *s)
{
	if (!s->scale_block_rows || !s->scale_block_cols || !s->gate_scale || !s->up_scale ||
	    !s->down_scale ||
	    (s->shared_intermediate_size &&
	     (!s->shared_gate_scale || !s->shared_up_scale || !s->shared_down_scale)))
		goto bad;
	for (uint32_t e = 0; e < s->n_experts; e++)
		if ((!expert_spec_local(s) || s->local[e]) &&
		    (!s->gate_scale[e] || !s->up_scale[e] || !s->down_scale[e]))
			goto bad;
	return 0;
bad:
	host->log(MOED_LOG_ERR, plugin, "layer %u: FP8 weights without a block size or a scale "
		  "for every matrix", s->layer);
	return -EINVAL;
}

int expert_spec_check(const struct moed_host *host, const char *plugin,
		      const struct moed_expert_spec *s)
{
	return expert_spec_check_caps(host, plugin, s, 0);
}

int expert_spec_check_caps(const struct moed_host *host, const char *plugin,
			   const struct moed_expert_spec *s, unsigned caps)
{
	int fp8 = 0;

	const uint32_t max = EXPERT_SPEC_MAX_DIM;

	if (!MOED_STRUCT_HAS(s, struct moed_expert_spec, shared_down)) {
		host->log(MOED_LOG_ERR, plugin, "expert spec of %u bytes, want %zu", s->struct_size,
			  offsetof(struct moed_expert_spec, shared_down) + sizeof(void *));
		return -EINVAL;
	}
	/* ABI 2 features these backends do not compute with yet: say so rather
	 * than compute something else */
	if (MOED_STRUCT_HAS(s, struct moed_expert_spec, local)) {
		int scales = s->gate_scale || s->up_scale || s->down_scale || s->shared_gate_scale ||
			     s->shared_up_scale || s->shared_down_scale;
		const char *what;

		fp8 = s->dtype == MOED_DTYPE_F8_E4M3 && (caps & EXPERT_CAP_FP8);
		what = s->dtype == MOED_DTYPE_F8_E4M3 && !fp8
			       ? "FP8 (E4M3) weights (hold them as bf16: [expert] weights = bf16)"
		       : scales && !fp8 ? "per-block weight scales"
		       : s->shared_expert_gate && !(caps & EXPERT_CAP_SHARED_GATE)
			       ? "a shared-expert gate (Qwen2-MoE)"
		       : s->local && !(caps & EXPERT_CAP_LOCAL)
			       ? "a subset of the experts (expert parallelism)"
		       : NULL;
		if (what) {
			host->log(MOED_LOG_ERR, plugin, "layer %u: %s not supported by this "
				  "backend", s->layer, what);
			return -ENOTSUP;
		}
		if (fp8 && check_scales(host, plugin, s) < 0)
			return -EINVAL;
	}
	if (s->dtype != MOED_DTYPE_F32 && s->dtype != MOED_DTYPE_BF16 && !fp8) {
		host->log(MOED_LOG_ERR, plugin, "layer %u: weight dtype %u not supported (F32 or "
			  "BF16; convert F16 weights when loading)", s->layer, s->dtype);
		return -ENOTSUP;
	}
	if (!s->hidden_size || s->hidden_size > max || !s->intermediate_size ||
	    s->intermediate_size > max || !s->n_experts || s->n_experts > EXPERT_SPEC_MAX_EXPERTS ||
	    s->shared_intermediate_size > max) {
		host->log(MOED_LOG_ERR, plugin, "layer %u: dimensions H %u, I %u, E %u, shared %u "
			  "out of range", s->layer, s->hidden_size, s->intermediate_size,
			  s->n_experts, s->shared_intermediate_size);
		return -EINVAL;
	}
	if (!s->gate || !s->up || !s->down ||
	    (s->shared_intermediate_size &&
	     (!s->shared_gate || !s->shared_up || !s->shared_down))) {
		host->log(MOED_LOG_ERR, plugin, "layer %u: missing weights", s->layer);
		return -EINVAL;
	}
	for (uint32_t e = 0; e < s->n_experts; e++) {
		if (expert_spec_local(s) && !s->local[e])
			continue;
		if (!s->gate[e] || !s->up[e] || !s->down[e]) {
			host->log(MOED_LOG_ERR, plugin, "layer %u: expert %u has no weights",
				  s->layer, e);
			return -EINVAL;
		}
	}
	return 0;
}
