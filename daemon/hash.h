/*
 * FNV-1a, 64-bit: the one non-cryptographic hash of the daemon (model
 * fingerprints, state file checksums).  Chain calls by passing the previous
 * result; start from MOED_FNV1A_INIT.
 */
#ifndef MOED_HASH_H
#define MOED_HASH_H

#include <stddef.h>
#include <stdint.h>

#define MOED_FNV1A_INIT 0xcbf29ce484222325ULL

static inline uint64_t moed_fnv1a(uint64_t h, const void *data, size_t n)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

#endif
