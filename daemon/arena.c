/*
 * Reply arena: a growing list of calloc'ed blocks.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "daemon/arena.h"

void *arena_alloc(struct arena *a, size_t n, size_t size)
{
	void *q;

	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 32;
		void **p = realloc(a->ptrs, cap * sizeof(*p));
		if (!p)
			return NULL;
		a->ptrs = p;
		a->cap = cap;
	}
	q = calloc(n ? n : 1, size);
	if (q)
		a->ptrs[a->n++] = q;
	return q;
}

char *arena_strdup(struct arena *a, const char *s)
{
	char *c;

	if (!s)
		return NULL;
	c = arena_alloc(a, strlen(s) + 1, 1);
	if (c)
		memcpy(c, s, strlen(s) + 1);
	return c;
}

void arena_release(struct arena *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->ptrs[i]);
	free(a->ptrs);
	a->ptrs = NULL;
	a->n = a->cap = 0;
}
