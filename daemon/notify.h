/*
 * The systemd service-manager contract: sd_notify(3) messages and socket
 * activation.  With libsystemd these call it; without, notify.c writes the
 * datagram to $NOTIFY_SOCKET itself and reads LISTEN_FDS/LISTEN_FDNAMES itself.
 * All are no-ops when not run under a service manager.
 */
#ifndef MOED_NOTIFY_H
#define MOED_NOTIFY_H

#include <stdint.h>

/* Send one or more newline-separated KEY=VALUE assignments.  Returns > 0 sent,
 * 0 no manager listening, -errno on error. */
int notify_send(const char *state);
int notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Watchdog interval the manager asked for, in microseconds; 0 = none. */
uint64_t notify_watchdog_usec(void);

/* Socket activation: the fd passed under `name` (FileDescriptorName=), or the
 * only fd when exactly one unnamed one was passed; -ENOENT when none. */
int notify_listen_fd(const char *name);

#endif
