/* Fuzz target: config.json reading on arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "daemon/hfconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hf_config c;
	char err[512];

	if (hfconfig_parse((const char *)data, size, "fuzz.json", &c, err, sizeof(err)) == 0)
		for (uint32_t l = 0; l < c.num_hidden_layers && l < 1024; l++)
			hfconfig_layer_is_moe(&c, l);
	return 0;
}
