/* Daemon logging to stderr or syslog, as text lines or as JSON lines (one
 * object per line). Callers pass only printable text: anything from a
 * peer goes through log_clean() first. Any thread. */
#ifndef ALIGND_LOG_H
#define ALIGND_LOG_H

#include <stddef.h>

enum log_level { LOG_LVL_ERR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

enum log_format { LOG_FMT_TEXT = 0, LOG_FMT_JSON };

void log_open(int use_syslog, const char *facility, int debug, enum log_format fmt);
void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* One field of an event. num: v is a JSON number (written bare). k NULL:
 * v is a run of "key=value" words separated by spaces, each its own field
 * (a summary formatted elsewhere). */
struct log_kv {
	const char *k;
	const char *v;
	int num;
};

/* An event with fields: text "EVENT k=v k=v ...", JSON
 * {"ts":..., "level":..., "event":EVENT, "k":"v", ...}. */
void log_event(enum log_level lvl, const char *event, const struct log_kv *kv, size_t n);

/* A printable copy of untrusted bytes (at most LIM_LOG_FIELD), in one of
 * a few rotating static buffers: use it in the same log call. NULL -> "-". */
const char *log_clean(const char *s);

#endif
