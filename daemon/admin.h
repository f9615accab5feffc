/*
 * Operations that change or inspect how the daemon serves: router/expert swap
 * and show, statistics, bias show/reset/freeze/thaw, and reload.  Changing
 * operations need an admin peer: uid 0, the daemon's own uid, or a member of
 * [daemon] admin_group (checked with SO_PEERCRED credentials).  Denials are
 * answered PERMISSION_DENIED and logged with the peer's uid and pid.
 */
#ifndef MOED_ADMIN_H
#define MOED_ADMIN_H

#include "proto/moed.pb-c.h"

struct session;

int admin_peer_is_admin(const struct session *s);
/* Handle request bodies router_set .. reload; always replies. */
void admin_handle(struct session *s, const Moed__Request *req);

#endif
