/* The history writer: scans hand their evidence record to a bounded
 * queue on the loop thread and never wait; one writer thread drains it
 * into the store (store/store.h) in batches and enforces retention.
 * docs/REPORTS.md "History store". */
#ifndef ALIGND_HISTORY_H
#define ALIGND_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "checks/policy/policy.h"
#include "checks/verdict/verdict.h"
#include "protocol/request.h"

struct srv;
struct srv_config;

/* Before privileges are dropped: creates the SQLite file's directory for
 * the configured user. 0 or -1 with a reason. */
int history_prepare(const struct srv_config *c, char *err, size_t errlen);
/* Starts the writer thread (after privileges are dropped). The store is
 * opened by the writer, and re-tried while it cannot be: the daemon serves
 * mail whether or not its history can be written. 0 or -1. */
int history_start(struct srv *s, char *err, size_t errlen);
/* A scan's verdict is final: queues its record when DMARC was evaluated
 * (in->dmarc set). Loop thread; never blocks on the store. */
void history_add(struct srv *s, const struct srv_config *cfg, const struct proto_request *req,
                 const struct verdict_in *in, const struct policy_facts *facts,
                 const struct policy_evidence *ev, const struct verdict *v);
/* Writes what is queued (one attempt per batch) and stops the writer. */
void history_stop(struct srv *s);
/* STATS lines; returns how many were written (at most max). */
size_t history_stats(struct srv *s, const char **names, uint64_t *values, size_t max);
/* The same counters for /metrics; 0, or -1 when there is no writer. */
struct history_counts {
	uint64_t queued, written, dropped, errors, purged, open;
};
int history_counts(struct srv *s, struct history_counts *c);

#endif
