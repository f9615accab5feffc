/*
 * The address of [metrics] listen: parsing and the loopback rule.
 */
#ifndef MOED_LISTEN_ADDR_H
#define MOED_LISTEN_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* "HOST:PORT" or "[HOST6]:PORT" (numeric, or localhost) into ret; -EINVAL with err. */
int listen_addr_parse(const char *listen, struct sockaddr_storage *ret, char *err, size_t errlen);
/* Parse and check it is a loopback address unless allow_remote; -EINVAL /
 * -EPERM with err. */
int listen_addr_check(const char *listen, int allow_remote, char *err, size_t errlen);

#endif
