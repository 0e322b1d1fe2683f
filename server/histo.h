/* A latency histogram with fixed bucket bounds: counters only, no
 * allocation, so it can be fed on every scan and every DNS answer. The
 * counts are per bucket (not cumulative); the exposition writer
 * (server/metrics.c) adds them up as Prometheus wants. Owner's thread. */
#ifndef ALIGND_HISTO_H
#define ALIGND_HISTO_H

#include <stddef.h>
#include <stdint.h>

/* Upper bounds in microseconds: 1 ms ... 10 s; one more bucket is +Inf. */
#define HISTO_BOUNDS 13
static inline uint64_t histo_bound_us(size_t i)
{
	static const uint64_t b[HISTO_BOUNDS] = {
		1000, 2500, 5000, 10000, 25000, 50000, 100000,
		250000, 500000, 1000000, 2500000, 5000000, 10000000,
	};
	return b[i];
}

struct histo {
	uint64_t bucket[HISTO_BOUNDS + 1];   /* last: above every bound */
	uint64_t count;
	uint64_t sum_us;
};

static inline void histo_observe(struct histo *h, uint64_t us)
{
	size_t i = 0;
	while (i < HISTO_BOUNDS && us > histo_bound_us(i))
		i++;
	h->bucket[i]++;
	h->count++;
	h->sum_us += us;
}

#endif
