/* STATS: a snapshot of the counters in struct srv_stats, the DNS layer's
 * and the check engines'. Loop thread. */
#include "server/stats.h"
#include "server/dispatch.h"
#include "server/dns.h"
#include "server/history.h"
#include "server/srv.h"
#include "server/metrics.h"
#include "checks/dkim/dkv.h"
#include "checks/dmarc/dmarc.h"
#include "checks/spf/spf.h"
#include "protocol/reply.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#ifndef ALIGND_VERSION
#define ALIGND_VERSION "unknown"
#endif

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
	ADD("Connections-Shed", st->connections_shed);
	ADD("Requests-Busy", st->requests_busy);
	ADD("TLS-Handshakes", st->tls_handshakes);
	ADD("TLS-Handshake-Failures", st->tls_handshake_failures);
	ADD("Sign-Signed", st->sign_signed);
	ADD("Sign-Refused", st->sign_refused);
	ADD("Sign-Errors", st->sign_failed);
	ADD("Signatures-RSA-SHA256", st->signatures_rsa);
	ADD("Signatures-Ed25519-SHA256", st->signatures_ed25519);
	ADD("Message-Bytes-In-Flight", s->msg_bytes);
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

static size_t dkim_alg_index(const char *a)
{
	if (strcasecmp(a, "rsa-sha256") == 0)
		return 0;
	if (strcasecmp(a, "rsa-sha1") == 0)
		return 1;
	if (strcasecmp(a, "ed25519-sha256") == 0)   /* RFC 8463 */
		return 2;
	return 3;
}

void stats_count_scan(struct srv *s, const struct spf_result *spf,
                      const struct spf_result *helo, const struct dkv_result *dkim,
                      const struct dmarc_result *dmarc, uint64_t elapsed_us)
{
	struct metrics_outcomes *o = &s->stats.out;
	if (spf && (unsigned)spf->result < METRICS_AUTH_RESULTS)
		o->spf_mailfrom[spf->result]++;
	if (helo && (unsigned)helo->result < METRICS_AUTH_RESULTS)
		o->spf_helo[helo->result]++;
	for (size_t i = 0; dkim && i < dkim->n; i++)
		if ((unsigned)dkim->sigs[i].res < METRICS_AUTH_RESULTS)
			o->dkim[dkim_alg_index(dkim->sigs[i].a)][dkim->sigs[i].res]++;
	if (dmarc && (unsigned)dmarc->res < METRICS_DMARC_RESULTS &&
	    (unsigned)dmarc->disp < METRICS_DMARC_DISPS)
		o->dmarc[dmarc->res][dmarc->disp]++;
	histo_observe(&o->scan_duration, elapsed_us);
}

void stats_snapshot(struct srv *s, struct metrics_snapshot *m)
{
	const struct srv_stats *st = &s->stats;
	memset(m, 0, sizeof(*m));
	m->version = ALIGND_VERSION;
	m->uptime_s = (uv_now(s->loop) - s->started_ms) / 1000;
	time_t now = time(NULL);
	m->start_time_s = (uint64_t)now > m->uptime_s ? (uint64_t)now - m->uptime_s : 0;
	m->workers = s->workers;
	m->conns_open = s->n_conns;
	m->conns_total = st->connections_total;
	m->conns_rejected = st->connections_rejected;
	m->conns_shed = st->connections_shed;
	m->requests_busy = st->requests_busy;
	m->tls_handshakes = st->tls_handshakes;
	m->tls_handshake_failures = st->tls_handshake_failures;
	m->sign[0] = st->sign_signed;
	m->sign[1] = st->sign_refused;
	m->sign[2] = st->sign_failed;
	m->signatures[0] = st->signatures_rsa;
	m->signatures[1] = st->signatures_ed25519;
	m->msg_bytes = s->msg_bytes;
	m->requests = st->requests_total;
	m->errors_4xx = st->errors_4xx;
	m->errors_5xx = st->errors_5xx;
	m->timeouts = st->timeouts;
	m->bytes_in = st->bytes_in;
	m->reloads = st->reloads;
	m->scans_started = st->scans_total;
	m->scans_in_flight = st->scans_in_flight;
	m->scans_abandoned = st->scans_abandoned;
	m->actions[0] = st->action_accept;
	m->actions[1] = st->action_quarantine;
	m->actions[2] = st->action_reject;
	m->actions[3] = st->action_tempfail;
	m->overrides[0] = st->override_forwarded;
	m->overrides[1] = st->override_trusted_forwarder;
	m->overrides[2] = st->override_mailing_list;
	m->overrides[3] = st->override_local_policy;
	m->overrides[4] = st->override_sampled_out;
	m->out = st->out;
	struct engines *e = s->eng;
	if (e && e->dns) {
		m->have_dns = 1;
		srv_dns_stats(e->dns, &m->dns);
	}
	if (e) {
		m->dkim_jobs = e->dkim_jobs;
		if (e->dkv) {
			size_t entries;
			dkv_lib_key_stats(e->dkv, &m->dkim_key_hits, &m->dkim_key_misses, &entries);
			m->dkim_key_entries = entries;
			m->have_dkim_keys = 1;
		}
	}
	struct history_counts hc;
	if (history_counts(s, &hc) == 0) {
		m->have_history = 1;
		m->hist_queued = hc.queued;
		m->hist_written = hc.written;
		m->hist_dropped = hc.dropped;
		m->hist_errors = hc.errors;
		m->hist_purged = hc.purged;
		m->hist_open = hc.open;
	}
}
