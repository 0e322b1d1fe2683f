/* The Prometheus text exposition (format 0.0.4): one "# HELP" and one
 * "# TYPE" line per family, then its samples. Label sets that a table
 * can hold are all written, zeros included, so that rate() sees a series
 * from its first scrape. Pure: a snapshot in, text out. */
#include "server/metrics.h"
#include "checks/auth.h"
#include "checks/dmarc/dmarc.h"

#include <inttypes.h>
#include <stddef.h>

_Static_assert(AUTH_POLICY + 1 == METRICS_AUTH_RESULTS, "auth_res table size");
_Static_assert(DMARC_RES_PERMERROR + 1 == METRICS_DMARC_RESULTS, "dmarc_res table size");
_Static_assert(DMARC_DISP_REJECT + 1 == METRICS_DMARC_DISPS, "dmarc_disp table size");

static const char *const dkim_algs[METRICS_DKIM_ALGS] = {
	"rsa-sha256", "rsa-sha1", "ed25519-sha256", "other",
};
static const char *const dmarc_results[METRICS_DMARC_RESULTS] = {
	"none", "pass", "fail", "temperror", "permerror",
};
static const char *const dmarc_disps[METRICS_DMARC_DISPS] = {
	"none", "quarantine", "reject",
};
static const char *const actions[METRICS_ACTIONS] = {
	"accept", "quarantine", "reject", "tempfail",
};
static const char *const overrides[METRICS_OVERRIDES] = {
	"forwarded", "trusted_forwarder", "mailing_list", "local_policy", "sampled_out",
};

static void family(struct buf *o, const char *name, const char *type, const char *help)
{
	buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(struct buf *o, const char *name, uint64_t v)
{
	buf_printf(o, "%s %" PRIu64 "\n", name, v);
}

static void one(struct buf *o, const char *name, const char *type, const char *help, uint64_t v)
{
	family(o, name, type, help);
	sample(o, name, v);
}

/* A label value: backslash, double quote and line feed are escaped. */
static void label_value(struct buf *o, const char *v)
{
	buf_adds(o, "\"");
	for (const char *p = v; *p; p++) {
		if (*p == '\\')
			buf_adds(o, "\\\\");
		else if (*p == '"')
			buf_adds(o, "\\\"");
		else if (*p == '\n')
			buf_adds(o, "\\n");
		else
			buf_add(o, p, 1);
	}
	buf_adds(o, "\"");
}

static void sample1(struct buf *o, const char *name, const char *label, const char *value,
                    uint64_t v)
{
	buf_printf(o, "%s{%s=", name, label);
	label_value(o, value);
	buf_printf(o, "} %" PRIu64 "\n", v);
}

static void sample2(struct buf *o, const char *name, const char *l1, const char *v1,
                    const char *l2, const char *v2, uint64_t v)
{
	buf_printf(o, "%s{%s=", name, l1);
	label_value(o, v1);
	buf_printf(o, ",%s=", l2);
	label_value(o, v2);
	buf_printf(o, "} %" PRIu64 "\n", v);
}

static void histogram(struct buf *o, const char *name, const char *help, const struct histo *h)
{
	family(o, name, "histogram", help);
	uint64_t cum = 0;
	for (size_t i = 0; i < HISTO_BOUNDS; i++) {
		cum += h->bucket[i];
		buf_printf(o, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
		           (double)histo_bound_us(i) / 1e6, cum);
	}
	/* +Inf is the count, by definition (a bucket is "less or equal") */
	buf_printf(o, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, h->count);
	buf_printf(o, "%s_sum %" PRIu64 ".%06" PRIu64 "\n", name,
	           h->sum_us / 1000000, h->sum_us % 1000000);
	buf_printf(o, "%s_count %" PRIu64 "\n", name, h->count);
}

/* SPF results (RFC 7208 2.6) and DKIM signature results (RFC 8601 2.7.1)
 * are subsets of enum auth_res. */
static int spf_result(enum auth_res r)
{
	return r != AUTH_POLICY;
}

static int dkim_result(enum auth_res r)
{
	return r != AUTH_NONE && r != AUTH_SOFTFAIL;
}

void metrics_write(const struct metrics_snapshot *m, struct buf *o)
{
	const struct metrics_outcomes *out = &m->out;

	family(o, "alignd_build_info", "gauge", "Always 1; the version in a label.");
	sample1(o, "alignd_build_info", "version", m->version ? m->version : "unknown", 1);
	one(o, "alignd_start_time_seconds", "gauge", "Start time of the daemon, Unix time.",
	    m->start_time_s);
	one(o, "alignd_uptime_seconds", "gauge", "Seconds since the daemon started.", m->uptime_s);
	one(o, "alignd_workers", "gauge", "Size of the worker pool.", m->workers);

	one(o, "alignd_connections_open", "gauge",
	    "Client connections open now (line protocol and HTTP).", m->conns_open);
	one(o, "alignd_connections_total", "counter", "Client connections accepted.",
	    m->conns_total);
	one(o, "alignd_connections_rejected_total", "counter",
	    "Connections closed at once because max_connections was reached and none was idle.",
	    m->conns_rejected);
	one(o, "alignd_connections_shed_total", "counter",
	    "Idle connections closed at max_connections to admit a new client.", m->conns_shed);
	one(o, "alignd_tls_handshakes_total", "counter",
	    "TLS handshakes completed on listen_tcp.", m->tls_handshakes);
	one(o, "alignd_tls_handshake_failures_total", "counter",
	    "TLS handshakes on listen_tcp that failed (no or a bad client certificate, not TLS) "
	    "or did not finish within tls_handshake_timeout.", m->tls_handshake_failures);
	one(o, "alignd_requests_busy_total", "counter",
	    "Scan and sign requests refused with 503 because max_inflight_bytes was reached.",
	    m->requests_busy);
	one(o, "alignd_message_bytes_in_flight", "gauge",
	    "Message bytes held by scans and signing requests now.", m->msg_bytes);
	one(o, "alignd_requests_total", "counter", "Requests read (every command).", m->requests);
	family(o, "alignd_request_errors_total", "counter", "Error replies, by status class.");
	sample1(o, "alignd_request_errors_total", "class", "4xx", m->errors_4xx);
	sample1(o, "alignd_request_errors_total", "class", "5xx", m->errors_5xx);
	one(o, "alignd_request_timeouts_total", "counter",
	    "Idle and request timeouts that closed a connection or ended a request.", m->timeouts);
	one(o, "alignd_received_bytes_total", "counter", "Bytes read from clients.", m->bytes_in);
	one(o, "alignd_config_reloads_total", "counter", "Configuration reloads (SIGHUP).",
	    m->reloads);

	one(o, "alignd_scans_started_total", "counter", "Scans started.", m->scans_started);
	family(o, "alignd_scans_total", "counter", "Scans answered, by the action of the verdict.");
	for (size_t i = 0; i < METRICS_ACTIONS; i++)
		sample1(o, "alignd_scans_total", "action", actions[i], m->actions[i]);
	one(o, "alignd_scans_in_flight", "gauge", "Scans started and not yet finished.",
	    m->scans_in_flight);
	one(o, "alignd_scans_abandoned_total", "counter",
	    "Scans whose client went away before the verdict.", m->scans_abandoned);
	histogram(o, "alignd_scan_duration_seconds",
	          "Time from the request head to the verdict.", &out->scan_duration);

	family(o, "alignd_spf_results_total", "counter",
	       "SPF results (RFC 7208 2.6), by identity checked.");
	for (int r = 0; r < METRICS_AUTH_RESULTS; r++)
		if (spf_result((enum auth_res)r))
			sample2(o, "alignd_spf_results_total", "identity", "mailfrom",
			        "result", auth_res_name((enum auth_res)r), out->spf_mailfrom[r]);
	for (int r = 0; r < METRICS_AUTH_RESULTS; r++)
		if (spf_result((enum auth_res)r))
			sample2(o, "alignd_spf_results_total", "identity", "helo",
			        "result", auth_res_name((enum auth_res)r), out->spf_helo[r]);
	family(o, "alignd_dkim_results_total", "counter",
	       "DKIM signature results (RFC 8601 2.7.1), by signing algorithm (a=).");
	for (size_t a = 0; a < METRICS_DKIM_ALGS; a++)
		for (int r = 0; r < METRICS_AUTH_RESULTS; r++)
			if (dkim_result((enum auth_res)r))
				sample2(o, "alignd_dkim_results_total", "algorithm", dkim_algs[a],
				        "result", auth_res_name((enum auth_res)r), out->dkim[a][r]);
	family(o, "alignd_sign_requests_total", "counter",
	       "SIGN requests (outbound signing), by outcome.");
	sample1(o, "alignd_sign_requests_total", "result", "signed", m->sign[0]);
	sample1(o, "alignd_sign_requests_total", "result", "refused", m->sign[1]);
	sample1(o, "alignd_sign_requests_total", "result", "error", m->sign[2]);
	family(o, "alignd_signatures_made_total", "counter",
	       "DKIM-Signature fields made for outbound mail, by algorithm.");
	sample1(o, "alignd_signatures_made_total", "algorithm", "rsa-sha256", m->signatures[0]);
	sample1(o, "alignd_signatures_made_total", "algorithm", "ed25519-sha256", m->signatures[1]);
	family(o, "alignd_dmarc_results_total", "counter",
	       "DMARC results, by the disposition applied (RFC 7489 6.6.2).");
	for (size_t r = 0; r < METRICS_DMARC_RESULTS; r++)
		for (size_t d = 0; d < METRICS_DMARC_DISPS; d++)
			sample2(o, "alignd_dmarc_results_total", "result", dmarc_results[r],
			        "disposition", dmarc_disps[d], out->dmarc[r][d]);
	family(o, "alignd_dmarc_overrides_total", "counter",
	       "DMARC policies not applied, by reason (RFC 7489 PolicyOverrideType).");
	for (size_t i = 0; i < METRICS_OVERRIDES; i++)
		sample1(o, "alignd_dmarc_overrides_total", "reason", overrides[i], m->overrides[i]);

	if (m->have_dns) {
		const struct srv_dns_stats *d = &m->dns;
		one(o, "alignd_dns_lookups_total", "counter", "DNS lookups started.", d->started);
		one(o, "alignd_dns_lookups_in_flight", "gauge", "DNS lookups not yet answered.",
		    d->inflight);
		one(o, "alignd_dns_lookups_in_flight_peak", "gauge",
		    "Most DNS lookups in flight at once since start.", d->inflight_peak);
		family(o, "alignd_dns_failures_total", "counter",
		       "DNS lookups that gave no data, by kind.");
		sample1(o, "alignd_dns_failures_total", "kind", "timeout", d->timeouts);
		sample1(o, "alignd_dns_failures_total", "kind", "bogus", d->bogus);
		sample1(o, "alignd_dns_failures_total", "kind", "servfail", d->servfail);
		sample1(o, "alignd_dns_failures_total", "kind", "rejected", d->rejected);
		one(o, "alignd_dns_nxdomain_total", "counter", "DNS answers NXDOMAIN.", d->nxdomain);
		one(o, "alignd_dns_cache_hits_total", "counter",
		    "DNS answers from the cache (approximate: see STATS DNS-Cache-Hits).",
		    d->cache_hits);
		one(o, "alignd_dns_cache_misses_total", "counter",
		    "DNS answers not from the cache.",
		    d->answered > d->cache_hits ? d->answered - d->cache_hits : 0);
		one(o, "alignd_dns_memo_hits_total", "counter",
		    "DNS answers from the answer memo, without asking libunbound.", d->memo_hits);
		one(o, "alignd_dns_stale_answers_total", "counter",
		    "Expired records served (RFC 8767).", d->stale);
		histogram(o, "alignd_dns_lookup_duration_seconds",
		          "Time from a DNS lookup to its answer.", &d->lookup_duration);
	}
	one(o, "alignd_dkim_jobs_total", "counter",
	    "DKIM and ARC verifications run on the worker pool.", m->dkim_jobs);
	if (m->have_dkim_keys) {
		one(o, "alignd_dkim_key_cache_hits_total", "counter",
		    "DKIM keys found decoded in the key cache.", m->dkim_key_hits);
		one(o, "alignd_dkim_key_cache_misses_total", "counter",
		    "DKIM keys decoded because the key cache did not have them.", m->dkim_key_misses);
		one(o, "alignd_dkim_key_cache_entries", "gauge",
		    "Decoded DKIM keys held in the key cache.", m->dkim_key_entries);
	}
	if (m->have_history) {
		one(o, "alignd_history_queued", "gauge",
		    "History records accepted and not yet committed to the store.", m->hist_queued);
		one(o, "alignd_history_written_total", "counter",
		    "History records committed to the store.", m->hist_written);
		one(o, "alignd_history_dropped_total", "counter",
		    "History records lost (queue full or store failure).", m->hist_dropped);
		one(o, "alignd_history_errors_total", "counter", "History store errors.",
		    m->hist_errors);
		one(o, "alignd_history_purged_total", "counter",
		    "History records removed by retention.", m->hist_purged);
		one(o, "alignd_history_store_open", "gauge", "1 when the history store is open.",
		    m->hist_open);
	}
}
