/*
 * The small-group FP8 E4M3 kernel, written once and instantiated per
 * instruction set: fp8.c includes this file with FP8_ISA (a name suffix),
 * FP8_VW (floats per vector) and FP8_DEC (FP8_VW codes -> FP8_VW floats,
 * each the code's value times 2^-8, exactly) defined and a `#pragma GCC
 * target` in force.
 *
 * How it works: two weight rows at a time (gate i with up i, or down h with
 * h + half, the two halves of a slice) are read once, as bytes, and decoded in registers (fp8.c: the codes
 * become fp16 bit patterns that vcvtph2ps widens, subnormals included); each
 * decoded vector is multiplied by its block's scale (times 2^8, undoing the
 * decode's 2^-8; the scale is loaded and broadcast once per block of bc
 * columns), which gives exactly the fp32 weight fp8 * scale that the sgemm
 * path and the reference use, and then meets up to FP8_NB tokens from
 * registers, so the multiply is shared by the group's tokens.  (Scaling a
 * per-block accumulator instead saves that multiply at one token, but needs
 * twice the accumulators, so only 4 tokens fit the 32 registers; measured on
 * S1, one thread: T=1 5.8-7.4 ms against 6.2-10 here, within the noise;
 * T=64 226-238 against 186-216.  Decoding 32 codes per AVX-512BW widening
 * instead of 16 was 5-10% slower at T=1-16 and 5% faster at T=64, 4 rounds
 * alternated.)  Columns that do not fill a vector take a
 * scalar path with the same weights.  Lane sums use a fixed tree and every
 * (row, token) sum runs in the same order whatever the group, so a token's
 * result does not depend on its neighbours.
 */
#define FP8_CAT_(a, b) a##_##b
#define FP8_CAT(a, b) FP8_CAT_(a, b)
#define FP8_FN(x) FP8_CAT(x, FP8_ISA)
#define FP8_INLINE static inline __attribute__((always_inline))

typedef float FP8_FN(vf) __attribute__((vector_size(FP8_VW * 4)));

FP8_INLINE float FP8_FN(hsum)(FP8_FN(vf) v)
{
	float t[FP8_VW];

	memcpy(t, &v, sizeof(t));
	for (unsigned w = FP8_VW / 2; w; w /= 2)
		for (unsigned l = 0; l < w; l++)
			t[l] += t[l + w];
	return t[0];
}

/* out[r][j] = (rows[r] * scales) . xs[j] for r < 2, j < nb; rows of len
 * codes, srow[r]: the row's block scales (blocks of bc columns). */
FP8_INLINE void FP8_FN(dot)(const uint8_t *const rows[2], const float *const srow[2],
			    uint32_t bc, uint32_t len, const float *const *xs, const unsigned nb,
			    float out[2][FP8_NB])
{
	FP8_FN(vf) acc[2][FP8_NB];
	float tail[2][FP8_NB];

#pragma GCC unroll 8
	for (unsigned r = 0; r < 2; r++)
#pragma GCC unroll 8
		for (unsigned j = 0; j < nb; j++) {
			acc[r][j] = (FP8_FN(vf)){ 0 };
			tail[r][j] = 0;
		}
	for (uint32_t c0 = 0, b = 0; c0 < len; c0 += bc, b++) {
		uint32_t c1 = len - c0 < bc ? len : c0 + bc, c = c0;
		float s0 = srow[0][b] * 0x1p8f, s1 = srow[1][b] * 0x1p8f;

		for (uint32_t p = 0; p < c1 - c0; p += 64) {
			__builtin_prefetch(rows[0] + c0 + p + FP8_PREFETCH);
			__builtin_prefetch(rows[1] + c0 + p + FP8_PREFETCH);
		}
		for (; c + FP8_VW <= c1; c += FP8_VW) {
			FP8_FN(vf) w0 = FP8_DEC(rows[0] + c) * s0, w1 = FP8_DEC(rows[1] + c) * s1;

#pragma GCC unroll 8
			for (unsigned j = 0; j < nb; j++) {
				FP8_FN(vf) xv;

				memcpy(&xv, xs[j] + c, sizeof(xv));
				acc[0][j] += w0 * xv;
				acc[1][j] += w1 * xv;
			}
		}
		for (; c < c1; c++) {
			float w0 = fp8_lut_scaled[rows[0][c]] * s0;
			float w1 = fp8_lut_scaled[rows[1][c]] * s1;

#pragma GCC unroll 8
			for (unsigned j = 0; j < nb; j++) {
				tail[0][j] += w0 * xs[j][c];
				tail[1][j] += w1 * xs[j][c];
			}
		}
	}
	for (unsigned r = 0; r < 2; r++)
		for (unsigned j = 0; j < nb; j++)
			out[r][j] = FP8_FN(hsum)(acc[r][j]) + tail[r][j];
}

FP8_INLINE void FP8_FN(dot_n)(const uint8_t *const rows[2], const float *const srow[2],
			      uint32_t bc, uint32_t len, const float *const *xs, unsigned nb,
			      float out[2][FP8_NB])
{
	switch (nb) {
	case 8:
		FP8_FN(dot)(rows, srow, bc, len, xs, 8, out);
		break;
	case 7:
		FP8_FN(dot)(rows, srow, bc, len, xs, 7, out);
		break;
	case 6:
		FP8_FN(dot)(rows, srow, bc, len, xs, 6, out);
		break;
	case 5:
		FP8_FN(dot)(rows, srow, bc, len, xs, 5, out);
		break;
	case 4:
		FP8_FN(dot)(rows, srow, bc, len, xs, 4, out);
		break;
	case 3:
		FP8_FN(dot)(rows, srow, bc, len, xs, 3, out);
		break;
	case 2:
		FP8_FN(dot)(rows, srow, bc, len, xs, 2, out);
		break;
	default:
		FP8_FN(dot)(rows, srow, bc, len, xs, 1, out);
		break;
	}
}

void FP8_FN(expert_fp8_act)(const struct expert_w *e, const float *x,
				   const struct group *g, float *act, uint32_t r0, uint32_t r1,
				   float *scratch)
{
	uint32_t H = e->H, In = e->inter, scols = (H + e->bc - 1) / e->bc;
	const float *xs[FP8_NB];
	float out[2][FP8_NB];

	(void)scratch;
	fp8_init();
	for (uint32_t i = r0; i < r1; i++) {
		const uint8_t *rows[2] = { (const uint8_t *)e->gate + (size_t)i * H,
					   (const uint8_t *)e->up + (size_t)i * H };
		const float *srow[2] = { e->gate_s + (size_t)(i / e->br) * scols,
					 e->up_s + (size_t)(i / e->br) * scols };

		for (size_t j0 = 0; j0 < g->n; j0 += FP8_NB) {
			unsigned nb = g->n - j0 < FP8_NB ? (unsigned)(g->n - j0) : FP8_NB;

			for (unsigned j = 0; j < nb; j++)
				xs[j] = x + group_tok(g, j0 + j) * H;
			FP8_FN(dot_n)(rows, srow, e->bc, H, xs, nb, out);
			for (unsigned j = 0; j < nb; j++)
				act[(j0 + j) * In + i] = silu(out[0][j]) * out[1][j];
		}
	}
}

void FP8_FN(expert_fp8_down)(const struct expert_w *e, const float *act,
				    const struct group *g, float *y, uint32_t h0, uint32_t h1,
				    float *scratch)
{
	uint32_t H = e->H, In = e->inter, scols = (In + e->bc - 1) / e->bc;
	uint32_t half = (h1 - h0 + 1) / 2;
	const float *xs[FP8_NB];
	float out[2][FP8_NB];

	(void)scratch;
	fp8_init();
	/* row h0 + i beside row h0 + half + i (an odd slice's last row paired
	 * with itself; the copy is ignored): as in bf16.c's f8_small_down, two
	 * rows that each run on as one stream */
	for (uint32_t h = h0; h < h0 + half; h++) {
		uint32_t h2 = h + half < h1 ? h + half : h;
		const uint8_t *rows[2] = { (const uint8_t *)e->down + (size_t)h * In,
					   (const uint8_t *)e->down + (size_t)h2 * In };
		const float *srow[2] = { e->down_s + (size_t)(h / e->br) * scols,
					 e->down_s + (size_t)(h2 / e->br) * scols };

		for (size_t j0 = 0; j0 < g->n; j0 += FP8_NB) {
			unsigned nb = g->n - j0 < FP8_NB ? (unsigned)(g->n - j0) : FP8_NB;

			for (unsigned j = 0; j < nb; j++)
				xs[j] = act + (j0 + j) * In;
			FP8_FN(dot_n)(rows, srow, e->bc, In, xs, nb, out);
			for (unsigned j = 0; j < nb; j++) {
				float *yj = y + group_tok(g, j0 + j) * H;
				float w = group_w(g, j0 + j);

				yj[h] += w * out[0][j];
				if (h2 != h)
					yj[h2] += w * out[1][j];
			}
		}
	}
}

#undef FP8_CAT_
#undef FP8_CAT
#undef FP8_FN
#undef FP8_INLINE
#undef FP8_ISA
#undef FP8_VW
#undef FP8_DEC
