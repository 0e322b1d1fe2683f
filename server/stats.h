/* STATS reply: the daemon's counters as "Name: value" lines. Loop thread. */
#ifndef ALIGND_STATS_H
#define ALIGND_STATS_H

#include "common/buf.h"

struct srv;

void stats_reply(struct srv *s, struct buf *out);
/* Counts a DMARC override by its reason (forwarded, trusted_forwarder,
 * mailing_list, local_policy, sampled_out). */
void stats_count_override(struct srv *s, const char *reason);

#endif
