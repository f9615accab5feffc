/*
 * Logging to stderr.  When stderr is connected to the journal (JOURNAL_STREAM
 * names our stderr), each line starts with "<N>" so journald records the
 * priority; otherwise it starts with the level word for people and test logs.
 * Each line is formatted into a stack buffer and written with one write(2), so
 * lines from worker threads never interleave.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/log.h"

static atomic_int log_level = MOED_LOG_INFO;
static int log_journal = -1;    /* -1 unknown, 0 no, 1 yes */

static const char *const level_names[] = {
	[MOED_LOG_ERR] = "err", [MOED_LOG_WARNING] = "warning",
	[MOED_LOG_NOTICE] = "notice", [MOED_LOG_INFO] = "info",
	[MOED_LOG_DEBUG] = "debug",
};

void log_set_level(int level)
{
	if (level >= MOED_LOG_ERR && level <= MOED_LOG_DEBUG)
		atomic_store(&log_level, level);
}

int log_get_level(void)
{
	return atomic_load(&log_level);
}

int log_level_parse(const char *s)
{
	for (int i = MOED_LOG_ERR; i <= MOED_LOG_DEBUG; i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	if (strcasecmp(s, "error") == 0)
		return MOED_LOG_ERR;
	if (strcasecmp(s, "warn") == 0)
		return MOED_LOG_WARNING;
	return -EINVAL;
}

static int stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long dev, ino;
	struct stat st;

	if (!js || sscanf(js, "%lu:%lu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return st.st_dev == (dev_t)dev && st.st_ino == (ino_t)ino;
}

void log_vmsg(int level, const char *prefix, const char *fmt, va_list ap)
{
	char line[2048];
	int n;

	if (level > atomic_load(&log_level))
		return;
	if (level < MOED_LOG_ERR)
		level = MOED_LOG_ERR;
	if (level > MOED_LOG_DEBUG)
		level = MOED_LOG_DEBUG;
	if (log_journal < 0)
		log_journal = stderr_is_journal();
	if (log_journal)
		n = snprintf(line, sizeof(line), "<%d>%s%s", level, prefix ? prefix : "",
			     prefix ? ": " : "");
	else
		n = snprintf(line, sizeof(line), "moed[%d] %s: %s%s", (int)getpid(),
			     level_names[level], prefix ? prefix : "", prefix ? ": " : "");
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		n = 0;
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}

void log_msg(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, NULL, fmt, ap);
	va_end(ap);
}
