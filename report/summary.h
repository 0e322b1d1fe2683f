/* The administrator's summary of the history store: per author domain,
 * how many messages passed and failed DMARC over a period, what was done
 * with the failing ones, and the sending sources (client IP addresses)
 * that failed most. Fed with the same struct rpt_msg the aggregate
 * reports read; no I/O, any thread, one owner. */
#ifndef ALIGND_SUMMARY_H
#define ALIGND_SUMMARY_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "report/report.h"

struct rpt_summary;

struct rpt_summary *rpt_summary_new(void);
void rpt_summary_free(struct rpt_summary **s);

/* Counts one message. A DMARC failure is a message with neither a
 * DKIM- nor an SPF-aligned pass. Past LIM_SUMMARY_SOURCES distinct
 * (domain, source) pairs or LIM_SUMMARY_DOMAINS domains, further ones are
 * counted in the totals only (rpt_summary_dropped). 0, or -1 without
 * memory. */
int rpt_summary_add(struct rpt_summary *s, const struct rpt_msg *m);

/* Messages that found no room for their domain or source. */
uint64_t rpt_summary_dropped(const struct rpt_summary *s);

/* The summary of [since, until), domains with the most failures first,
 * at most `top` sources each (0: all). As text for a terminal, or as one
 * JSON document. 0 or -1 (no memory). */
int rpt_summary_text(const struct rpt_summary *s, int64_t since, int64_t until, size_t top,
                     struct buf *out);
int rpt_summary_json(const struct rpt_summary *s, int64_t since, int64_t until, size_t top,
                     struct buf *out);

/* Appends v as a JSON string, made printable first (at most
 * LIM_REPORT_FIELD bytes). The what-if report writes its strings so too. */
void rpt_json_str(struct buf *out, const char *v);

#endif
