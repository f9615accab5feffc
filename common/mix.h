/*
 * Bit mixers shared by the daemon, moectl and the benchmarks, header-only so
 * that every program gets the same numbers without a library.  splitmix64
 * (Steele, Lea and Flood 2014; Vigna's reference code): the state advances by
 * the golden gamma and each output is the new state through the finaliser.
 * Documented inputs depend on these exact bits (moectl --random, synthetic
 * models, the benchmark's weights, mirrored in tests/ref/make_checkpoint.py
 * and bench/torch_peer.py): do not change them.
 */
#ifndef MOED_COMMON_MIX_H
#define MOED_COMMON_MIX_H

#include <stdint.h>

#define SPLITMIX64_GAMMA 0x9e3779b97f4a7c15ULL

/* The splitmix64 finaliser. */
static inline uint64_t splitmix64_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* The next output of the generator whose state is *state. */
static inline uint64_t splitmix64_next(uint64_t *state)
{
	return splitmix64_mix(*state += SPLITMIX64_GAMMA);
}

/* Counter form: the output of a generator in state z (z is not advanced). */
static inline uint64_t splitmix64_at(uint64_t z)
{
	return splitmix64_mix(z + SPLITMIX64_GAMMA);
}

/* The top 24 bits of h as a float uniform in [0, 1), exact in fp32. */
static inline float mix_unit24(uint64_t h)
{
	return (float)(h >> 40) * (1.0f / 16777216.0f);
}

#endif
