/*
 * [metrics] listen: "HOST:PORT" or "[HOST6]:PORT", numeric (or localhost),
 * parsed with inet_pton, and the loopback rule.  Its own module so the config
 * check (daemon/conf.c) and the listener (daemon/http.c) share it.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/listen_addr.h"

int listen_addr_parse(const char *listen, struct sockaddr_storage *ss, char *err, size_t errlen)
{
	char host[128];
	const char *colon, *h = listen;
	size_t hl;
	char *end;
	unsigned long port;

	memset(ss, 0, sizeof(*ss));
	if (listen[0] == '[') {
		const char *rb = strchr(listen, ']');
		if (!rb || rb[1] != ':')
			goto bad;
		h = listen + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(listen, ':');
		if (!colon)
			goto bad;
		hl = (size_t)(colon - listen);
	}
	if (hl == 0 || hl >= sizeof(host))
		goto bad;
	memcpy(host, h, hl);
	host[hl] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port > 65535)
		goto bad;
	if (!strcmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		return 0;
	}
bad:
	snprintf(err, errlen, "[metrics] listen '%s': want a numeric HOST:PORT or [HOST6]:PORT",
		 listen);
	return -EINVAL;
}

static int is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

int listen_addr_check(const char *listen, int allow_remote, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	int r = listen_addr_parse(listen, &ss, err, errlen);

	if (r < 0)
		return r;
	if (!allow_remote && !is_loopback(&ss)) {
		snprintf(err, errlen,
			 "[metrics] listen '%s' is not a loopback address; set [metrics] allow_remote = yes to serve other hosts",
			 listen);
		return -EPERM;
	}
	return 0;
}
