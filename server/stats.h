/* STATS reply: the daemon's counters as "Name: value" lines. Loop thread. */
#ifndef ALIGND_STATS_H
#define ALIGND_STATS_H

#include "common/buf.h"

#include <stdint.h>

struct srv;

void stats_reply(struct srv *s, struct buf *out);
/* Counts a DMARC override by its reason (forwarded, trusted_forwarder,
 * mailing_list, local_policy, sampled_out). */
void stats_count_override(struct srv *s, const char *reason);

struct spf_result;
struct dkv_result;
struct dmarc_result;
struct metrics_snapshot;
/* Counts a verdict's evidence for /metrics: each pointer may be NULL (that
 * check was not evaluated); elapsed_us from the request head to now. */
void stats_count_scan(struct srv *s, const struct spf_result *spf,
                      const struct spf_result *helo, const struct dkv_result *dkim,
                      const struct dmarc_result *dmarc, uint64_t elapsed_us);
/* Fills m from the daemon's counters, the DNS layer's, the DKIM key
 * cache's and the history writer's (server/metrics.h). */
void stats_snapshot(struct srv *s, struct metrics_snapshot *m);

#endif
