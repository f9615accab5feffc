/*
 * The small-group SwiGLU kernel, written once and instantiated per instruction
 * set: kernels.c includes this file several times, each time with SMALL_ISA (a
 * name suffix), SMALL_VW (floats per vector) and SMALL_ROWS (weight rows per
 * pass, even: as many as the registers hold) defined and a `#pragma GCC
 * target` in force, so the same C becomes an SSE2, AVX2 or AVX-512 function.
 *
 * How it works: the weights are walked SMALL_ROWS rows at a time (2 for
 * groups of two tokens, see SMALL_FEW; one for a single token: the act half
 * then reads the slice's gate rows, parking their products in act, then its
 * up rows, so each matrix is one sequential stream), each row
 * read from memory once; the rows are dotted with up to SMALL_NB tokens at a
 * time from registers (a vector accumulator per row and token), and the next
 * block of tokens finds the rows in L1.  The act half takes gate rows i..
 * with up rows i.. and writes act = silu(gate·x) * (up·x); the down half
 * takes rows h.. and adds w * (down_h·act) into y.  Each works on a slice of
 * rows (kernels.h), so an expert can be shared between threads.  Lane sums use a fixed tree, so a token's
 * result is the same whatever block it lands in.
 */
#define SMALL_CAT_(a, b) a##_##b
#define SMALL_CAT(a, b) SMALL_CAT_(a, b)
#define SMALL_FN(x) SMALL_CAT(x, SMALL_ISA)
#define SMALL_INLINE static inline __attribute__((always_inline))

typedef float SMALL_FN(vf) __attribute__((vector_size(SMALL_VW * 4)));
typedef uint32_t SMALL_FN(vu) __attribute__((vector_size(SMALL_VW * 4)));
typedef uint16_t SMALL_FN(vh) __attribute__((vector_size(SMALL_VW * 2)));

/* w * a + y as every instruction set has always computed it: one fused
 * rounding where there is FMA (SMALL_FMA), two without; spelt out so the
 * result does not depend on whether the compiler contracts a given block. */
#if SMALL_FMA
#define SMALL_MADD(w, a, y) __builtin_fmaf((w), (a), (y))
#else
#define SMALL_MADD(w, a, y) ((w) * (a) + (y))
#endif

/* Bytes ahead of bf16 rows to prefetch, 2 rows at a time and 4.  Measured
 * on S1, one thread, A/B builds alternated in one session (bench/expert_bench
 * -p DIR): bf16 decode 7.8-8.3 ms with 4096 against 8.2-8.3 (6144), 8.7
 * (8192), 9.0-9.6 (2048), 9.1-10.4 (1024) and 9.0-9.2 without; 4 rows for
 * 16-256 tokens were 10-25% faster with 8192 than 2048.  fp32 rows stream
 * fastest left to the hardware prefetcher (decode 14.1-17.6 ms without,
 * 16.5-24.5 with 4096). */
#define SMALL_PREFETCH 4096
#define SMALL_PREFETCH_FAR 8192

SMALL_INLINE SMALL_FN(vf) SMALL_FN(load)(const void *row, uint32_t i, const int bf16)
{
	SMALL_FN(vf) f;

	if (bf16) {
		SMALL_FN(vh) h;
		SMALL_FN(vu) u;

		memcpy(&h, (const uint16_t *)row + i, sizeof(h));
		u = __builtin_convertvector(h, SMALL_FN(vu)) << 16;
		memcpy(&f, &u, sizeof(f));
	} else {
		memcpy(&f, (const float *)row + i, sizeof(f));
	}
	return f;
}

SMALL_INLINE float SMALL_FN(hsum)(SMALL_FN(vf) v)
{
	float t[SMALL_VW];

	memcpy(t, &v, sizeof(t));
	for (unsigned w = SMALL_VW / 2; w; w /= 2)
		for (unsigned l = 0; l < w; l++)
			t[l] += t[l + w];
	return t[0];
}

/* dot_span modes: zero the accumulators first; end with the lane sums and
 * the tail (len % SMALL_VW elements) into out. */
#define SMALL_BEGIN 1
#define SMALL_END 2

/*
 * rows[r] · xs[j] for r < R (<= SMALL_ROWS), j < nb, over elements i0..i1
 * (multiples of SMALL_VW) of rows of len: acc holds the vector sums between
 * calls, so a dot product may be taken in spans of K; with SMALL_END, out[r][j]
 * gets the whole sum.  Each (row, token) sum runs in the same order whatever
 * R, nb and the spans.
 */
SMALL_INLINE void SMALL_FN(dot)(const void *const *rows, const int bf16, uint32_t i0, uint32_t i1,
				uint32_t len, const float *const *xs, const unsigned nb,
				const unsigned R, SMALL_FN(vf) io[SMALL_ROWS][SMALL_NB], int mode,
				float out[SMALL_ROWS][SMALL_NB])
{
	SMALL_FN(vf) acc[SMALL_ROWS][SMALL_NB];

#pragma GCC unroll 8
	for (unsigned r = 0; r < R; r++)
#pragma GCC unroll 8
		for (unsigned j = 0; j < nb; j++)
			acc[r][j] = mode & SMALL_BEGIN ? (SMALL_FN(vf)){ 0 } : io[r][j];
	for (uint32_t i = i0; i < i1; i += SMALL_VW) {
		SMALL_FN(vf) w[SMALL_ROWS];

#pragma GCC unroll 8
		for (unsigned r = 0; r < R; r++) {
			w[r] = SMALL_FN(load)(rows[r], i, bf16);
			if (bf16 && R > 1)
				__builtin_prefetch((const char *)rows[r] + (size_t)i * 2 +
						   (R > 2 ? SMALL_PREFETCH_FAR : SMALL_PREFETCH));
		}
#pragma GCC unroll 8
		for (unsigned j = 0; j < nb; j++) {
			SMALL_FN(vf) xv;

			memcpy(&xv, xs[j] + i, sizeof(xv));
#pragma GCC unroll 8
			for (unsigned r = 0; r < R; r++)
				acc[r][j] += w[r] * xv;
		}
	}
	if (!(mode & SMALL_END)) {
		for (unsigned r = 0; r < R; r++)
			for (unsigned j = 0; j < nb; j++)
				io[r][j] = acc[r][j];
		return;
	}
	for (unsigned r = 0; r < R; r++)
		for (unsigned j = 0; j < nb; j++) {
			float sum = SMALL_FN(hsum)(acc[r][j]);

			for (uint32_t t = i1; t < len; t++)
				sum += wload(rows[r], t, bf16) * xs[j][t];
			out[r][j] = sum;
		}
}

/* dot with nb a compile-time constant in each branch. */
SMALL_INLINE void SMALL_FN(dot_n)(const void *const *rows, const int bf16, uint32_t i0,
				  uint32_t i1, uint32_t len, const float *const *xs, unsigned nb,
				  const unsigned R, SMALL_FN(vf) io[SMALL_ROWS][SMALL_NB], int mode,
				  float out[SMALL_ROWS][SMALL_NB])
{
	switch (nb) {
	case 4:
		SMALL_FN(dot)(rows, bf16, i0, i1, len, xs, 4, R, io, mode, out);
		break;
	case 3:
		SMALL_FN(dot)(rows, bf16, i0, i1, len, xs, 3, R, io, mode, out);
		break;
	case 2:
		SMALL_FN(dot)(rows, bf16, i0, i1, len, xs, 2, R, io, mode, out);
		break;
	default:
		SMALL_FN(dot)(rows, bf16, i0, i1, len, xs, 1, R, io, mode, out);
		break;
	}
}

/*
 * out[j][r] = rows[r] · xs[j] for the n <= SMALL_SUPER tokens xs, in blocks
 * of SMALL_NB tokens.  More than one block: K is taken in spans of
 * SMALL_SPAN elements, every block finishing a span before the next, so the
 * span of the rows and of the n tokens stays in L1 while the blocks pass (a
 * whole row's worth of tokens would come from L2, and the FMAs wait on it);
 * the sums are the same, in the same order, as in one pass.
 */
SMALL_INLINE void SMALL_FN(dots)(const void *const *rows, const int bf16, uint32_t len,
				 const float *const *xs, size_t n, const unsigned R,
				 float out[SMALL_SUPER][SMALL_ROWS])
{
	SMALL_FN(vf) io[SMALL_SUPER / SMALL_NB][SMALL_ROWS][SMALL_NB];
	float o[SMALL_ROWS][SMALL_NB];
	uint32_t lenv = len / SMALL_VW * SMALL_VW, span = n > SMALL_NB ? SMALL_SPAN : lenv;

	for (uint32_t c = 0;; c += span) {
		uint32_t ce = lenv - c < span ? lenv : c + span;
		int mode = (c ? 0 : SMALL_BEGIN) | (ce == lenv ? SMALL_END : 0);

		for (size_t j0 = 0; j0 < n; j0 += SMALL_NB) {
			unsigned nb = n - j0 < SMALL_NB ? (unsigned)(n - j0) : SMALL_NB;

			SMALL_FN(dot_n)(rows, bf16, c, ce, len, xs + j0, nb, R, io[j0 / SMALL_NB],
					mode, o);
			if (mode & SMALL_END)
				for (unsigned j = 0; j < nb; j++)
					for (unsigned r = 0; r < R; r++)
						out[j0 + j][r] = o[r][j];
		}
		if (ce == lenv)
			return;
	}
}

/* Rows first .. first + n - 1 of w (row length len), clamped to row end - 1
 * (the slice's last): the duplicates' results are computed and ignored. */
SMALL_INLINE void SMALL_FN(rows_at)(const void **rows, const void *w, uint32_t first,
				    unsigned n, uint32_t end, uint32_t len, size_t es)
{
	for (unsigned r = 0; r < n; r++) {
		uint32_t at = first + r < end ? first + r : end - 1;

		rows[r] = (const char *)w + (size_t)at * len * es;
	}
}

SMALL_INLINE void SMALL_FN(act_body)(const struct expert_w *e, const float *x,
				     const struct group *g, float *act, uint32_t r0, uint32_t r1,
				     const int bf16, const unsigned R)
{
	const unsigned half = R / 2;
	uint32_t H = e->H, In = e->inter;
	size_t es = bf16 ? 2 : 4;
	const float *xs[SMALL_SUPER];
	const void *rows[SMALL_ROWS];
	float out[SMALL_SUPER][SMALL_ROWS];

	if (R == 1) {
		/* the gate rows, their products parked in act, then the up rows:
		 * each matrix one sequential stream */
		for (int up = 0; up < 2; up++)
			for (uint32_t i = r0; i < r1; i++) {
				rows[0] = (const char *)(up ? e->up : e->gate) + (size_t)i * H * es;
				for (size_t j0 = 0; j0 < g->n; j0 += SMALL_SUPER) {
					size_t n = g->n - j0 < SMALL_SUPER ? g->n - j0 : SMALL_SUPER;

					for (size_t j = 0; j < n; j++)
						xs[j] = x + group_tok(g, j0 + j) * H;
					SMALL_FN(dots)(rows, bf16, H, xs, n, 1, out);
					for (size_t j = 0; j < n; j++) {
						float *a = act + (j0 + j) * In + i;

						*a = up ? silu(*a) * out[j][0] : out[j][0];
					}
				}
			}
		return;
	}
	/* gate rows i.. paired with up rows i.. */
	for (uint32_t i = r0; i < r1; i += half) {
		SMALL_FN(rows_at)(rows, e->gate, i, half, r1, H, es);
		SMALL_FN(rows_at)(rows + half, e->up, i, half, r1, H, es);
		for (size_t j0 = 0; j0 < g->n; j0 += SMALL_SUPER) {
			size_t n = g->n - j0 < SMALL_SUPER ? g->n - j0 : SMALL_SUPER;

			for (size_t j = 0; j < n; j++)
				xs[j] = x + group_tok(g, j0 + j) * H;
			SMALL_FN(dots)(rows, bf16, H, xs, n, R, out);
			for (unsigned r = 0; r < half && i + r < r1; r++)
				for (size_t j = 0; j < n; j++)
					act[(j0 + j) * In + i + r] = silu(out[j][r]) * out[j][half + r];
		}
	}
}

SMALL_INLINE void SMALL_FN(down_body)(const struct expert_w *e, const float *act,
				      const struct group *g, float *y, uint32_t h0, uint32_t h1,
				      const int bf16, const unsigned R)
{
	uint32_t H = e->H, In = e->inter;
	size_t es = bf16 ? 2 : 4;
	const float *xs[SMALL_SUPER];
	const void *rows[SMALL_ROWS];
	float out[SMALL_SUPER][SMALL_ROWS];

	for (uint32_t h = h0; h < h1; h += R) {
		SMALL_FN(rows_at)(rows, e->down, h, R, h1, In, es);
		for (size_t j0 = 0; j0 < g->n; j0 += SMALL_SUPER) {
			size_t n = g->n - j0 < SMALL_SUPER ? g->n - j0 : SMALL_SUPER;

			for (size_t j = 0; j < n; j++)
				xs[j] = act + (j0 + j) * In;
			SMALL_FN(dots)(rows, bf16, In, xs, n, R, out);
			for (size_t j = 0; j < n; j++) {
				float *yj = y + group_tok(g, j0 + j) * H;
				float w = group_w(g, j0 + j);

				for (unsigned r = 0; r < R && h + r < h1; r++)
					yj[h + r] = SMALL_MADD(w, out[j][r], yj[h + r]);
			}
		}
	}
}

/* Groups of up to SMALL_FEW tokens take 2 rows at a time, and one token one
 * row: fewer streams for the prefetchers, and the extra rows buy nothing when
 * each row meets only one or two tokens (S1 fp32 decode 13.5 ms against 17
 * with 4 rows; figures for one row in expert_act). */
#define SMALL_FEW 2

/* One row for one token: one S1 expert, fp32 weights, gemm_cmp with
 * huge-page weights, medians of 7 alternated rounds, 1.95 -> 1.22 ms (bf16
 * widened, precision = exact: 1.05 -> 0.93); with the down half left on 2
 * rows the gain was gone (1.83).  Two tokens keep 2 rows: one row was no
 * faster for fp32 and 18% slower for bf16. */
static void SMALL_FN(expert_act)(const struct expert_w *e, const float *x, const struct group *g,
				 float *act, uint32_t r0, uint32_t r1)
{
	if (g->n == 1 && e->bf16)
		SMALL_FN(act_body)(e, x, g, act, r0, r1, 1, 1);
	else if (g->n == 1)
		SMALL_FN(act_body)(e, x, g, act, r0, r1, 0, 1);
	else if (g->n <= SMALL_FEW && e->bf16)
		SMALL_FN(act_body)(e, x, g, act, r0, r1, 1, 2);
	else if (g->n <= SMALL_FEW)
		SMALL_FN(act_body)(e, x, g, act, r0, r1, 0, 2);
	else if (e->bf16)
		SMALL_FN(act_body)(e, x, g, act, r0, r1, 1, SMALL_ROWS);
	else
		SMALL_FN(act_body)(e, x, g, act, r0, r1, 0, SMALL_ROWS);
}

static void SMALL_FN(expert_down)(const struct expert_w *e, const float *act,
				  const struct group *g, float *y, uint32_t h0, uint32_t h1)
{
	if (g->n == 1 && e->bf16)
		SMALL_FN(down_body)(e, act, g, y, h0, h1, 1, 1);
	else if (g->n == 1)
		SMALL_FN(down_body)(e, act, g, y, h0, h1, 0, 1);
	else if (g->n <= SMALL_FEW && e->bf16)
		SMALL_FN(down_body)(e, act, g, y, h0, h1, 1, 2);
	else if (g->n <= SMALL_FEW)
		SMALL_FN(down_body)(e, act, g, y, h0, h1, 0, 2);
	else if (e->bf16)
		SMALL_FN(down_body)(e, act, g, y, h0, h1, 1, SMALL_ROWS);
	else
		SMALL_FN(down_body)(e, act, g, y, h0, h1, 0, SMALL_ROWS);
}

#undef SMALL_CAT_
#undef SMALL_CAT
#undef SMALL_FN
#undef SMALL_INLINE
#undef SMALL_ISA
#undef SMALL_VW
#undef SMALL_ROWS
#undef SMALL_PREFETCH
#undef SMALL_PREFETCH_FAR
#undef SMALL_FEW
#undef SMALL_FMA
#undef SMALL_MADD
