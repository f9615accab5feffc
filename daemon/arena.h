/*
 * A reply arena: the heap arrays a reply's protobuf message points into are
 * allocated here while it is built and freed together once it is packed.
 */
#ifndef MOED_ARENA_H
#define MOED_ARENA_H

#include <stddef.h>

struct arena {
	void **ptrs;
	size_t n, cap;
};

/* n zeroed items of size bytes (n = 0 gives a valid pointer); NULL when out of memory. */
void *arena_alloc(struct arena *a, size_t n, size_t size);
/* A copy of s (NULL stays NULL); NULL when out of memory. */
char *arena_strdup(struct arena *a, const char *s);
void arena_release(struct arena *a);

#endif
