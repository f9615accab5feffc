/* Fuzz target: moed.conf parsing and validation on arbitrary text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moed_config cfg;
	char err[512];
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	config_init(&cfg);
	if (config_load_string(&cfg, text, "fuzz.conf", err, sizeof(err)) == 0)
		config_validate(&cfg, err, sizeof(err));
	config_release(&cfg);
	free(text);
	return 0;
}
