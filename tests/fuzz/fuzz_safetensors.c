/* Fuzz target: safetensors header parsing and tensor lookup on arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "daemon/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st_file *f;
	char err[512];

	if (st_parse(data, size, "fuzz", &f, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < f->n; i++) {
			const struct st_tensor *t = st_find(f, f->t[i].name);
			if (t && t->end > t->begin) {
				const uint8_t *p = st_data(f, t);
				volatile uint8_t last = p[t->end - t->begin - 1];   /* in bounds */
				(void)last;
			}
		}
		st_close(f);
	}
	return 0;
}
