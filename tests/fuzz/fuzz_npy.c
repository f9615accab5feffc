/* Fuzz target: moectl's .npy reader on arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "client/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct npy_array a;
	char err[512];

	if (npy_parse(data, size, "fuzz.npy", &a, err, sizeof(err)) == 0) {
		if (a.rows != 0 && a.cols != 0) {
			volatile float last = ((float *)a.data)[a.rows * a.cols - 1];
			(void)last;
		}
		npy_release(&a);
	}
	return 0;
}
