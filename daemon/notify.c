/*
 * sd_notify and socket activation.  With libsystemd we call sd_notify() and
 * sd_listen_fds_with_names().  Without it, the fallback below is the whole
 * protocol: one datagram to the AF_UNIX address in $NOTIFY_SOCKET ('@' means the
 * abstract namespace), and fds from SD_LISTEN_FDS_START (3) counted by
 * $LISTEN_FDS, valid only when $LISTEN_PID is our pid, named by $LISTEN_FDNAMES.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "daemon/notify.h"

#ifdef HAVE_LIBSYSTEMD
int notify_send(const char *state)
{
	return sd_notify(0, state);
}

static int listen_fds(char ***ret_names)
{
	return sd_listen_fds_with_names(0, ret_names);
}
#else
int notify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len;
	int fd, r;

	if (!path || !*path)
		return 0;
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = (int)sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
			(socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
	r = r < 0 ? -errno : 1;
	close(fd);
	return r;
}

static int listen_fds(char ***ret_names)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	int n;

	*ret_names = NULL;
	if (!pid || !fds || atol(pid) != (long)getpid())
		return 0;
	n = atoi(fds);
	if (n <= 0 || n > 64)
		return 0;
	for (int i = 0; i < n; i++)
		fcntl(3 + i, F_SETFD, FD_CLOEXEC);
	char **v = calloc((size_t)n + 1, sizeof(char *));
	if (!v)
		return -ENOMEM;
	char *copy = strdup(names ? names : ""), *save = NULL, *tok = copy;
	for (int i = 0; i < n; i++) {
		char *t = copy ? strtok_r(tok, ":", &save) : NULL;
		tok = NULL;
		v[i] = strdup(t ? t : "unknown");
	}
	free(copy);
	*ret_names = v;
	return n;
}
#endif

int notify_sendf(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return notify_send(buf);
}

uint64_t notify_watchdog_usec(void)
{
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");

	if (!usec)
		return 0;
	if (pid && atol(pid) != (long)getpid())
		return 0;
	return strtoull(usec, NULL, 10);
}

int notify_listen_fd(const char *name)
{
	char **names = NULL;
	int n = listen_fds(&names), found = -ENOENT;

	for (int i = 0; i < n; i++) {
		if ((names && names[i] && strcmp(names[i], name) == 0) ||
		    (n == 1 && (!names || !names[i] || strcmp(names[i], "unknown") == 0)))
			found = 3 + i;
	}
	if (names)
		for (int i = 0; i < n; i++)
			free(names[i]);
	free(names);
	return n < 0 ? n : found;
}
