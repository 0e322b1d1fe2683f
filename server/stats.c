/* STATS: a snapshot of the counters in struct srv_stats, the DNS layer's
 * and the check engines'. Loop thread. */
#include "server/stats.h"
#include "server/dispatch.h"
#include "server/history.h"
#include "server/srv.h"
#include "protocol/reply.h"

#include <stddef.h>
#include <string.h>

#define MAX_STATS 96

void stats_reply(struct srv *s, struct buf *out)
{
	const char *names[MAX_STATS];
	uint64_t values[MAX_STATS];
	size_t n = 0;
#define ADD(name, v) do { if (n < MAX_STATS) { names[n] = (name); values[n] = (uint64_t)(v); n++; } } while (0)
	const struct srv_stats *st = &s->stats;
	ADD("Uptime-Seconds", (uv_now(s->loop) - s->started_ms) / 1000);
	ADD("Workers", s->workers);
	ADD("Connections-Current", s->n_conns);
	ADD("Connections-Total", st->connections_total);
	ADD("Connections-Rejected", st->connections_rejected);
	ADD("Requests-Total", st->requests_total);
	ADD("Scans-Total", st->scans_total);
	ADD("Scans-In-Flight", st->scans_in_flight);
	ADD("Scans-Abandoned", st->scans_abandoned);
	ADD("Action-Accept", st->action_accept);
	ADD("Action-Quarantine", st->action_quarantine);
	ADD("Action-Reject", st->action_reject);
	ADD("Action-Tempfail", st->action_tempfail);
	ADD("Errors-4xx", st->errors_4xx);
	ADD("Errors-5xx", st->errors_5xx);
	ADD("Timeouts", st->timeouts);
	ADD("Bytes-In", st->bytes_in);
	ADD("Config-Reloads", st->reloads);
	ADD("Override-Forwarded", st->override_forwarded);
	ADD("Override-Trusted-Forwarder", st->override_trusted_forwarder);
	ADD("Override-Mailing-List", st->override_mailing_list);
	ADD("Override-Local-Policy", st->override_local_policy);
	ADD("Override-Sampled-Out", st->override_sampled_out);
	size_t more = dispatch_stats(s, names + n, values + n, MAX_STATS - n);
	n += more;
	n += history_stats(s, names + n, values + n, MAX_STATS - n);
#undef ADD
	proto_reply_stats(out, names, values, n);
}

void stats_count_override(struct srv *s, const char *reason)
{
	struct srv_stats *st = &s->stats;
	if (strcmp(reason, "forwarded") == 0)
		st->override_forwarded++;
	else if (strcmp(reason, "trusted_forwarder") == 0)
		st->override_trusted_forwarder++;
	else if (strcmp(reason, "mailing_list") == 0)
		st->override_mailing_list++;
	else if (strcmp(reason, "local_policy") == 0)
		st->override_local_policy++;
	else if (strcmp(reason, "sampled_out") == 0)
		st->override_sampled_out++;
}
