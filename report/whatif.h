/* The what-if report: stored messages re-decided under a proposed
 * configuration, counted by the change of verdict (accept -> reject, ...),
 * grouped by author domain and by sending source, with a few example
 * messages and why each changed, and the verdicts per day now and as
 * proposed (for a chart). The caller re-decides (store_replay_decide);
 * this only counts and writes. No I/O, any thread, one owner. */
#ifndef ALIGND_WHATIF_H
#define ALIGND_WHATIF_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Verdicts, in the order of enum verdict_action. */
enum { RPT_WI_ACCEPT = 0, RPT_WI_QUARANTINE, RPT_WI_REJECT, RPT_WI_TEMPFAIL, RPT_WI_ACTIONS };

struct rpt_whatif_msg {
	int64_t time;
	const char *domain;          /* the DMARC author domain ("" none) */
	const char *source;          /* the client IP address */
	const char *queue_id;
	int now, proposed;           /* RPT_WI_* */
	const char *why;             /* why it changed; read only when it did */
	int unknown;                 /* --as-policy: no DMARC record was seen */
};

struct rpt_whatif;

struct rpt_whatif *rpt_whatif_new(void);
void rpt_whatif_free(struct rpt_whatif **w);

/* Counts one message. Past LIM_WHATIF_GROUPS domains or sources, further
 * ones are counted in the totals only. 0, or -1 without memory. */
int rpt_whatif_add(struct rpt_whatif *w, const struct rpt_whatif_msg *m);

/* Adds what src counted into dst (a replay split over threads, each with
 * its own counts, merged at the end; the result does not depend on the
 * split: the examples kept are the oldest). 0, or -1 without memory. */
int rpt_whatif_merge(struct rpt_whatif *dst, const struct rpt_whatif *src);

/* Messages counted, and messages whose verdict would change. */
uint64_t rpt_whatif_messages(const struct rpt_whatif *w);
uint64_t rpt_whatif_changed(const struct rpt_whatif *w);

/* What the report says about itself. */
struct rpt_whatif_head {
	int64_t since, until;
	const char *proposal;        /* one line: what the proposed configuration changes */
	uint64_t unreadable;         /* stored records that could not be replayed */
	uint64_t disp_changed;       /* messages whose DMARC disposition changes */
};

/* The report, groups with the most changes first, at most `top` of each
 * kind (0: all). As text, or as one JSON document. 0 or -1 (memory). */
int rpt_whatif_text(const struct rpt_whatif *w, const struct rpt_whatif_head *h, size_t top,
                    struct buf *out);
int rpt_whatif_json(const struct rpt_whatif *w, const struct rpt_whatif_head *h, size_t top,
                    struct buf *out);
/* Per UTC day: "YYYY-MM-DD" then the count of each verdict now, then as
 * proposed (RPT_WI_* order), tab-separated, one line a day, oldest first.
 * 0 or -1. */
int rpt_whatif_days(const struct rpt_whatif *w, struct buf *out);

const char *rpt_whatif_action_name(int a);

#endif
