/* Daemon logging to stderr or syslog. Callers pass only printable text:
 * anything from a peer goes through log_clean() first. Any thread. */
#ifndef ALIGND_LOG_H
#define ALIGND_LOG_H

#include <stddef.h>

enum log_level { LOG_LVL_ERR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_open(int use_syslog, const char *facility, int debug);
void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A printable copy of untrusted bytes (at most LIM_LOG_FIELD), in one of
 * a few rotating static buffers: use it in the same log call. NULL -> "-". */
const char *log_clean(const char *s);

#endif
