/*
 * Transparent huge pages for expert weights.  Decode streams every weight of
 * the chosen experts once per token; in 4 KiB pages that is a TLB miss per
 * 4 KiB, in 2 MiB pages one per 2 MiB.  With THP in "madvise" mode (Debian's
 * default) memory gets huge pages only when asked, so the buffers moed
 * converts or generates (model_weight_alloc) and the checkpoint files it maps
 * (safetensors.c: read-only private file mappings, PMD-mapped when the page
 * cache holds large folios, as ext4 and xfs do on recent kernels) are
 * advised.  MOED_NO_HUGEPAGES=1 in the environment turns the advice off, to
 * measure what it brings.
 */
#ifndef MOED_HUGEPAGES_H
#define MOED_HUGEPAGES_H

#include <stddef.h>

#define HUGE_PAGE_BYTES ((size_t)2 << 20)

/* Advise the whole 2 MiB pages inside [p, p + len); advice only (a kernel
 * without THP says no, and nothing changes). */
void huge_advise(void *p, size_t len);

#endif
