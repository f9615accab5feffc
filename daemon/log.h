/*
 * Logging: one line per event to stderr, with a syslog "<N>" prefix that journald
 * turns into the priority when stderr is the journal, and a plain level word
 * otherwise.  Thread-safe (one write(2) per line).  Messages are lowercase,
 * subsystem first: log_warn("router: plugin '%s' ABI %u, want %u", ...).
 */
#ifndef MOED_LOG_H
#define MOED_LOG_H

#include <stdarg.h>

#include "include/moed/plugin.h"

void log_set_level(int level);          /* MOED_LOG_* ; default MOED_LOG_INFO */
int log_get_level(void);
int log_level_parse(const char *s);     /* "debug".."err" -> level, -EINVAL */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(int level, const char *prefix, const char *fmt, va_list ap);

#define log_err(...) log_msg(MOED_LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(MOED_LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(MOED_LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(MOED_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(MOED_LOG_DEBUG, __VA_ARGS__)

#endif
