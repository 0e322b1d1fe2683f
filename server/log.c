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
static enum log_format format;

static const char *const level_name[] = { "error", "warning", "info", "debug" };

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

void log_open(int syslog_wanted, const char *facility, int debug, enum log_format fmt)
{
	format = fmt;
	if (use_syslog && !syslog_wanted)
		closelog();
	use_syslog = syslog_wanted;
	debug_on = debug;
	if (use_syslog)
		openlog("alignd", LOG_PID | LOG_NDELAY, facility_code(facility));
}

/* A bounded line under construction: what does not fit is cut, and the
 * line still ends well (a JSON line with its closing brace). */
struct line {
	char b[LIM_LOG_LINE];
	size_t n;
};

static void put(struct line *l, const char *s, size_t len)
{
	/* keep room for the closing of a JSON line */
	size_t room = sizeof(l->b) - 4 - l->n;
	if (len > room)
		len = room;
	memcpy(l->b + l->n, s, len);
	l->n += len;
}

static void puts_(struct line *l, const char *s)
{
	put(l, s, strlen(s));
}

static void put_json_str(struct line *l, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	put(l, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			put(l, e, 2);
		} else if (c < 0x20 || c >= 0x7f) {
			char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
			put(l, e, 6);
		} else {
			put(l, (const char *)&c, 1);
		}
	}
	put(l, "\"", 1);
}

static void stamp(char *buf, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	         tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000) % 1000);
}

static void emit(enum log_level lvl, const char *text)
{
	if (use_syslog) {
		static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
		syslog(prio[lvl], "%s", text);
		return;
	}
	if (format == LOG_FMT_JSON) {
		fprintf(stderr, "%s\n", text);
		return;
	}
	char ts[64];
	stamp(ts, sizeof(ts));
	fprintf(stderr, "%s alignd %s: %s\n", ts, level_name[lvl], text);
}

/* {"ts":..,"level":.. (the head of every JSON line; syslog has its own
 * time stamp and priority) */
static void json_head(struct line *l, enum log_level lvl)
{
	put(l, "{", 1);
	if (!use_syslog) {
		char ts[64];
		stamp(ts, sizeof(ts));
		puts_(l, "\"ts\":");
		put_json_str(l, ts, strlen(ts));
		put(l, ",", 1);
	}
	puts_(l, "\"level\":");
	put_json_str(l, level_name[lvl], strlen(level_name[lvl]));
}

static void json_field(struct line *l, const char *k, size_t klen, const char *v, size_t vlen,
                       int num)
{
	put(l, ",", 1);
	put_json_str(l, k, klen);
	put(l, ":", 1);
	if (num)
		put(l, v, vlen);
	else
		put_json_str(l, v, vlen);
}

static void finish_json(struct line *l)
{
	l->b[l->n++] = '}';
	l->b[l->n] = '\0';
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	if (lvl == LOG_LVL_DEBUG && !debug_on)
		return;
	char text[LIM_LOG_LINE];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (format != LOG_FMT_JSON) {
		emit(lvl, text);
		return;
	}
	struct line l = { .n = 0 };
	json_head(&l, lvl);
	json_field(&l, "msg", 3, text, strlen(text), 0);
	finish_json(&l);
	emit(lvl, l.b);
}

void log_event(enum log_level lvl, const char *event, const struct log_kv *kv, size_t n)
{
	if (lvl == LOG_LVL_DEBUG && !debug_on)
		return;
	struct line l = { .n = 0 };
	if (format == LOG_FMT_JSON) {
		json_head(&l, lvl);
		json_field(&l, "event", 5, event, strlen(event), 0);
		for (size_t i = 0; i < n; i++) {
			const char *v = kv[i].v ? kv[i].v : "-";
			if (kv[i].k) {
				json_field(&l, kv[i].k, strlen(kv[i].k), v, strlen(v), kv[i].num);
				continue;
			}
			/* "k=v k=v": each word its own field */
			while (*v) {
				while (*v == ' ')
					v++;
				size_t w = strcspn(v, " ");
				const char *eq = memchr(v, '=', w);
				if (w && eq)
					json_field(&l, v, (size_t)(eq - v), eq + 1, w - (size_t)(eq - v) - 1, 0);
				v += w;
			}
		}
		finish_json(&l);
	} else {
		puts_(&l, event);
		for (size_t i = 0; i < n; i++) {
			put(&l, " ", 1);
			if (kv[i].k) {
				puts_(&l, kv[i].k);
				put(&l, "=", 1);
			}
			puts_(&l, kv[i].v ? kv[i].v : "-");
		}
		l.b[l.n] = '\0';
	}
	emit(lvl, l.b);
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
