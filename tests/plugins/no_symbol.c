/* A shared object that is not a moed plugin: it exports no descriptor. */
#include "include/moed/plugin.h"

MOED_PLUGIN_EXPORT int not_a_plugin(void);

int not_a_plugin(void)
{
	return 42;
}
