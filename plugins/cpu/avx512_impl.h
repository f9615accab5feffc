/*
 * What the AVX-512 GEMM files (bf16_gemm.c, f32_gemm.c) share: the 16 x 16
 * dword transpose of their panel packing, the vector silu of their act
 * epilogue, a panel's row pointers, and the prefetch of the next panel's
 * rows.  Included after each file's `#pragma GCC target` (AVX-512F at least).
 */
#ifndef MOED_CPU_AVX512_IMPL_H
#define MOED_CPU_AVX512_IMPL_H

#ifndef INL
#define INL static inline __attribute__((always_inline))
#endif

/* Transpose 16 rows of 16 dwords in place: r[c] becomes column c. */
INL void tr16(__m512i r[16])
{
	__m512i t[16], s[16];

	for (int i = 0; i < 8; i++) {
		t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
		t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
	}
	for (int a = 0; a < 4; a++) {
		s[4 * a] = _mm512_unpacklo_epi64(t[4 * a], t[4 * a + 2]);
		s[4 * a + 1] = _mm512_unpackhi_epi64(t[4 * a], t[4 * a + 2]);
		s[4 * a + 2] = _mm512_unpacklo_epi64(t[4 * a + 1], t[4 * a + 3]);
		s[4 * a + 3] = _mm512_unpackhi_epi64(t[4 * a + 1], t[4 * a + 3]);
	}
	/* s[4a + c], 128-bit lane L: column 4L + c of rows 4a..4a+3 */
	for (int c = 0; c < 4; c++) {
		__m512i u0 = _mm512_shuffle_i32x4(s[c], s[4 + c], 0x44);
		__m512i u1 = _mm512_shuffle_i32x4(s[c], s[4 + c], 0xee);
		__m512i u2 = _mm512_shuffle_i32x4(s[8 + c], s[12 + c], 0x44);
		__m512i u3 = _mm512_shuffle_i32x4(s[8 + c], s[12 + c], 0xee);

		r[c] = _mm512_shuffle_i32x4(u0, u2, 0x88);
		r[4 + c] = _mm512_shuffle_i32x4(u0, u2, 0xdd);
		r[8 + c] = _mm512_shuffle_i32x4(u1, u3, 0x88);
		r[12 + c] = _mm512_shuffle_i32x4(u1, u3, 0xdd);
	}
}

/* e^x for the silu: 2^n * p(r), r = x - n ln 2 in [-ln2/2, ln2/2], a degree-6
 * Taylor polynomial (relative error ~2e-7, far below the bf16 rounding of
 * its result). */
INL __m512 exp16(__m512 x)
{
	__m512 n, r, p;

	x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-104.0f));
	n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
				 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606820309417e-06f), r);
	p = _mm512_set1_ps(1.0f / 720);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	return _mm512_scalef_ps(p, n);
}

INL __m512 silu16(__m512 z)
{
	return _mm512_div_ps(z, _mm512_add_ps(_mm512_set1_ps(1.0f),
					      exp16(_mm512_sub_ps(_mm512_setzero_ps(), z))));
}

/* A panel's rows: n rows of w from row r (below end), then NULL. */
INL void panel_rows(const void *w, uint32_t len, size_t es, uint32_t r, uint32_t end,
		    const void **rows, uint32_t *ri, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		rows[i] = r + i < end ? (const char *)w + (size_t)(r + i) * len * es : NULL;
		ri[i] = r + i < end ? r + i : 0;
	}
}

/*
 * The next panel's weight rows (one or two contiguous ranges: down rows, or
 * gate and up rows), prefetched into L2 one line per range every `every`
 * pairs of this panel's multiply, so its pack finds them there: the pack reads
 * 64 rows at once, more streams than the hardware prefetcher follows.
 */
struct pf {
	const char *p[2], *end[2];
	uint32_t every, left;
};

INL void pf_step(struct pf *f)
{
	if (--f->left)
		return;
	f->left = f->every;
	for (int s = 0; s < 2; s++)
		if (f->p[s] < f->end[s]) {
			_mm_prefetch(f->p[s], _MM_HINT_T1);
			f->p[s] += 64;
		}
}

/* Set f up for ranges [p0, p0 + n0) and [p1, p1 + n1) (n = 0: none), spread
 * over three quarters of `iters` multiply steps. */
INL void pf_init(struct pf *f, const void *p0, size_t n0, const void *p1, size_t n1,
		 size_t iters)
{
	size_t lines = ((n0 > n1 ? n0 : n1) + 63) / 64;
	size_t every = lines ? iters * 3 / 4 / lines : 0;

	f->p[0] = p0;
	f->end[0] = (const char *)p0 + n0;
	f->p[1] = p1;
	f->end[1] = p1 ? (const char *)p1 + n1 : NULL;
	f->every = every ? (uint32_t)(every < 1024 ? every : 1024) : 1;
	f->left = f->every;
}

#endif
