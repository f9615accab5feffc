/*
 * Persistent router state in the state directory, one file `router.state`:
 * per MoE layer, the router serving it (plugin name and parameters) and the
 * router's opaque state blob (plugin name, version, bytes), with the model's
 * fingerprint, the config's [router] at the time of writing, and a checksum.
 * Saved atomically (temporary file `.router.state.XXXXXX`, fsync, rename, fsync
 * of the directory), so a crash leaves the previous or the new file, never a
 * torn one.  A file written for another model, of another layout, failing its
 * checksum, or that is not a regular file is ignored with a warning.
 *
 * The former `bias.state` (bias-balanced's biases only) is read when there is
 * no router.state, its biases given to bias-balanced as its state, and the
 * file removed after the first successful router.state save.
 *
 * Start-up order (main.c): state_cleanup(dir); state_load() (fills each layer's
 * saved state); bind the config's plugins (each stateful router gets its
 * layer's blob when it is the same plugin); state_restore_routers().
 */
#ifndef MOED_STATE_H
#define MOED_STATE_H

#include <stddef.h>

#include "include/moed/plugin.h"

struct engine;

#define STATE_ROUTER_FILE "router.state"
#define STATE_BIAS_FILE "bias.state"    /* the old format, read once and migrated */

/* Capture every router's state and write router.state; then remove an old
 * bias.state.  0, or a negative errno with err saying what failed (missing,
 * read-only or full directory, ...): never 0 when nothing was written. */
int state_save(struct engine *e, const char *dir, char *err, size_t errlen);
/* Read router.state (or else bias.state) into the layers' saved state.
 * 0 loaded, -ENOENT none, -ESTALE for another model, -EBADMSG corrupt or
 * holding non-finite values, -EINVAL not a regular file (err says which:
 * a directory, a FIFO, a link; never blocks). */
int state_load(struct engine *e, const char *dir, char *err, size_t errlen);
/*
 * Bring back the routers that served when router.state was written, as set at
 * run time (`moectl router set`), instead of the config's.  Policy: only when
 * the config's [router] (cfg_router after defaults, cfg_params) is the same as
 * when the file was written — an operator who edited [router] gets the new
 * config — and only for layers whose saved router differs from what is bound
 * now.  Layers that all had the same router get one generation.  Also records
 * the config's [router] for later saves (engine_config_router()).  0 (also
 * when there was nothing to restore), or a negative errno with err when a
 * saved router could not be bound (the config's then keeps serving).
 */
int state_restore_routers(struct engine *e, const char *cfg_router,
			  const struct moed_param *cfg_params, size_t n, char *err, size_t errlen);
/* Remove temporary files (`.router.state.*`, `.bias.state.*`) that a killed
 * save left in dir.  The number removed, or a negative errno. */
int state_cleanup(const char *dir);

#endif
