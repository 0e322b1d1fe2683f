/* The explain trace of one scan: timestamped lines, each tagged with the
 * check that wrote it. A check owns its own trace while it runs (so a worker
 * thread never shares one); the server merges them by time for the reply.
 * Bounded by LIM_TRACE_BYTES; once full, further lines are counted, not kept. */
#ifndef ALIGND_TRACE_H
#define ALIGND_TRACE_H

#include <stddef.h>
#include <stdint.h>

struct trace_line {
	uint64_t t_us;        /* microseconds since the scan started */
	const char *area;     /* static string: "dns", "spf", "dkim", "dmarc", ... */
	char *text;           /* printable ASCII, owned by the trace */
};

struct trace {
	uint64_t t0_us;       /* monotonic start of the scan */
	int enabled;          /* 0: trace_add() is a cheap no-op */
	struct trace_line *lines;
	size_t n, cap, bytes, dropped;
};

void trace_init(struct trace *t, uint64_t t0_us, int enabled);
void trace_add(struct trace *t, const char *area, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Moves every line of src into dst (src is left empty). */
void trace_merge(struct trace *dst, struct trace *src);
/* Stable sort by time. */
void trace_sort(struct trace *t);
void trace_free(struct trace *t);

uint64_t trace_now_us(void);   /* CLOCK_MONOTONIC in microseconds */

#endif
