/*
 * huge_advise (see hugepages.h): the environment is read once; the range is
 * shrunk to the 2 MiB pages wholly inside it, so a buffer's tail never pulls
 * in a huge page beyond its end.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "daemon/hugepages.h"

void huge_advise(void *p, size_t len)
{
	static int off = -1;
	uintptr_t lo = ((uintptr_t)p + HUGE_PAGE_BYTES - 1) & ~(uintptr_t)(HUGE_PAGE_BYTES - 1);
	uintptr_t hi = ((uintptr_t)p + len) & ~(uintptr_t)(HUGE_PAGE_BYTES - 1);

	if (off < 0) {
		const char *v = getenv("MOED_NO_HUGEPAGES");

		off = v && *v && strcmp(v, "0") != 0;
	}
	if (!off && hi > lo)
		madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
}
