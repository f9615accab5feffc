/*
 * Persistent state in the state directory: the live router bias of every MoE
 * layer (bias-balanced's online balancing), in `bias.state`.  Saved atomically
 * (temporary file, fsync, rename, fsync of the directory), so a crash leaves the
 * previous or the new file, never a torn one.  A file written for another model
 * (fingerprint mismatch), of another shape, or failing its checksum is ignored
 * with a warning.
 */
#ifndef MOED_STATE_H
#define MOED_STATE_H

#include <stddef.h>

struct engine;

#define STATE_BIAS_FILE "bias.state"

/* Capture and write the layers' saved biases.  0 when there was nothing to save. */
int state_save(struct engine *e, const char *dir, char *err, size_t errlen);
/* Read the file into the layers' saved biases.  0 loaded, -ENOENT none,
 * -ESTALE for another model, -EBADMSG corrupt. */
int state_load(struct engine *e, const char *dir, char *err, size_t errlen);

#endif
