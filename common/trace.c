/* Explain trace storage. Any thread, one trace per thread at a time. */
#include "common/trace.h"
#include "common/limits.h"
#include "common/text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t trace_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void trace_init(struct trace *t, uint64_t t0_us, int enabled)
{
	memset(t, 0, sizeof(*t));
	t->t0_us = t0_us;
	t->enabled = enabled;
}

static int trace_push(struct trace *t, struct trace_line line)
{
	if (t->n == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 16;
		struct trace_line *nl = realloc(t->lines, ncap * sizeof(*nl));
		if (!nl)
			return -1;
		t->lines = nl;
		t->cap = ncap;
	}
	t->lines[t->n++] = line;
	return 0;
}

void trace_add(struct trace *t, const char *area, const char *fmt, ...)
{
	if (!t || !t->enabled)
		return;
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	size_t len = strlen(buf);
	if (t->bytes + len > LIM_TRACE_BYTES) {
		t->dropped++;
		return;
	}
	char *text = malloc(len + 1);
	if (!text) {
		t->dropped++;
		return;
	}
	text_printable(text, len + 1, buf, len);
	uint64_t now = trace_now_us();
	struct trace_line line = { now > t->t0_us ? now - t->t0_us : 0, area, text };
	if (trace_push(t, line) < 0) {
		free(text);
		t->dropped++;
		return;
	}
	t->bytes += len;
}

void trace_merge(struct trace *dst, struct trace *src)
{
	for (size_t i = 0; i < src->n; i++) {
		if (!dst->enabled || trace_push(dst, src->lines[i]) < 0) {
			free(src->lines[i].text);
			dst->dropped++;
		}
	}
	dst->bytes += src->bytes;
	dst->dropped += src->dropped;
	free(src->lines);
	src->lines = NULL;
	src->n = src->cap = src->bytes = src->dropped = 0;
}


void trace_sort(struct trace *t)
{
	/* insertion sort: traces are short and mostly ordered already,
	 * and qsort is not stable */
	for (size_t i = 1; i < t->n; i++) {
		struct trace_line cur = t->lines[i];
		size_t j = i;
		while (j > 0 && t->lines[j - 1].t_us > cur.t_us) {
			t->lines[j] = t->lines[j - 1];
			j--;
		}
		t->lines[j] = cur;
	}
}

void trace_free(struct trace *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->lines[i].text);
	free(t->lines);
	t->lines = NULL;
	t->n = t->cap = t->bytes = 0;
}
