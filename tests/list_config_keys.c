/*
 * The config key table as `moed --list-config-keys` prints it, for tests/man.sh
 * to run without the daemon's flag: one line per row (config_keys_print()).
 */
#include "config.h"

#include <stdio.h>

#include "daemon/conf.h"

int main(void)
{
	config_keys_print(stdout);
	return fflush(stdout) == 0 ? 0 : 1;
}
