/* Small helpers shared by the DMARC unit tests: checks that count
 * failures, and a deferred-call queue that stands in for the loop. */
#ifndef ALIGND_TEST_DMTEST_H
#define ALIGND_TEST_DMTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dm_failures;

#define CHECK(cond, ...) do { \
	if (!(cond)) { \
		dm_failures++; \
		fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
		fprintf(stderr, __VA_ARGS__); \
		fputc('\n', stderr); \
	} \
} while (0)

#define CHECK_STR(a, b, ctx) do { \
	const char *a_ = (a), *b_ = (b); \
	if (strcmp(a_, b_) != 0) { \
		dm_failures++; \
		fprintf(stderr, "%s:%d: [%s] got \"%s\", want \"%s\"\n", \
		        __FILE__, __LINE__, (ctx), a_, b_); \
	} \
} while (0)

struct dm_deferred {
	void (*fn)(void *);
	void *arg;
};

static struct dm_deferred dm_q[256];
static size_t dm_nq;

static inline void dm_defer(void *loop, void (*fn)(void *), void *arg)
{
	(void)loop;
	if (dm_nq == sizeof(dm_q) / sizeof(dm_q[0]))
		abort();
	dm_q[dm_nq++] = (struct dm_deferred){ fn, arg };
}

/* Runs deferred calls; returns how many ran. */
static inline size_t dm_run_deferred(void)
{
	size_t ran = 0;
	while (dm_nq > 0) {
		struct dm_deferred d = dm_q[0];
		memmove(dm_q, dm_q + 1, (dm_nq - 1) * sizeof(dm_q[0]));
		dm_nq--;
		d.fn(d.arg);
		ran++;
	}
	return ran;
}

static inline int dm_result(const char *name)
{
	if (dm_failures) {
		fprintf(stderr, "%s: %d check(s) failed\n", name, dm_failures);
		return 1;
	}
	printf("%s: all checks passed\n", name);
	return 0;
}

#endif
