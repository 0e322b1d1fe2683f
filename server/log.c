/* Logging to stderr or syslog. */
#include "server/log.h"
#include "common/limits.h"
#include "common/text.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static int use_syslog;
static int debug_on;

static int facility_code(const char *f)
{
	static const struct { const char *n; int v; } map[] = {
		{ "mail", LOG_MAIL }, { "daemon", LOG_DAEMON },
		{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
		{ "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
		{ "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
		{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (f && strcmp(f, map[i].n) == 0)
			return map[i].v;
	return LOG_MAIL;
}

void log_open(int syslog_wanted, const char *facility, int debug)
{
	if (use_syslog && !syslog_wanted)
		closelog();
	use_syslog = syslog_wanted;
	debug_on = debug;
	if (use_syslog)
		openlog("alignd", LOG_PID | LOG_NDELAY, facility_code(facility));
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	if (lvl == LOG_LVL_DEBUG && !debug_on)
		return;
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (use_syslog) {
		static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
		syslog(prio[lvl], "%s", line);
		return;
	}
	static const char *const name[] = { "error", "warning", "info", "debug" };
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ alignd %s: %s\n",
	        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	        tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, name[lvl], line);
}

const char *log_clean(const char *s)
{
	static __thread char ring[8][LIM_LOG_FIELD];
	static __thread unsigned next;
	if (!s)
		return "-";
	char *b = ring[next++ % 8];
	text_printable(b, LIM_LOG_FIELD, s, strlen(s));
	return b;
}
