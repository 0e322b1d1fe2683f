/* GET /metrics: the daemon's counters in the Prometheus text exposition
 * format 0.0.4. metrics_write() is a pure function of a snapshot (no I/O,
 * no clock), so it is tested on fixed numbers; server/stats.c fills the
 * snapshot and server/http.c serves it. Any thread; borrows everything. */
#ifndef ALIGND_METRICS_H
#define ALIGND_METRICS_H

#include <stdint.h>

#include "common/buf.h"
#include "server/dns.h"
#include "server/histo.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Index ranges of the outcome tables below. */
#define METRICS_AUTH_RESULTS  8   /* enum auth_res (checks/auth.h) */
#define METRICS_DKIM_ALGS     4   /* rsa-sha256, rsa-sha1, ed25519-sha256, other */
#define METRICS_DMARC_RESULTS 5   /* enum dmarc_res (checks/dmarc/dmarc.h) */
#define METRICS_DMARC_DISPS   3   /* enum dmarc_disp */
#define METRICS_ACTIONS       4   /* accept, quarantine, reject, tempfail */
#define METRICS_OVERRIDES     5   /* forwarded, trusted_forwarder, mailing_list,
                                     local_policy, sampled_out (RFC 7489 6.3) */

/* Counted per scan when its verdict is built (server/stats.c). */
struct metrics_outcomes {
	uint64_t spf_mailfrom[METRICS_AUTH_RESULTS];
	uint64_t spf_helo[METRICS_AUTH_RESULTS];
	uint64_t dkim[METRICS_DKIM_ALGS][METRICS_AUTH_RESULTS];   /* per signature */
	uint64_t dmarc[METRICS_DMARC_RESULTS][METRICS_DMARC_DISPS];
	struct histo scan_duration;   /* request head to verdict */
};

struct metrics_snapshot {
	const char *version;
	uint64_t start_time_s;        /* Unix time */
	uint64_t uptime_s;
	uint64_t workers;
	uint64_t conns_open, conns_total, conns_rejected, conns_shed;
	uint64_t requests_busy, msg_bytes;
	uint64_t tls_handshakes, tls_handshake_failures;   /* listen_tcp with TLS */
	uint64_t sign[3];             /* SIGN requests: signed, refused (4xx), error (5xx) */
	uint64_t signatures[2];       /* DKIM-Signature fields made: rsa-sha256, ed25519-sha256 */
	uint64_t requests, errors_4xx, errors_5xx, timeouts, bytes_in, reloads;
	uint64_t scans_started, scans_in_flight, scans_abandoned;
	uint64_t actions[METRICS_ACTIONS];
	uint64_t overrides[METRICS_OVERRIDES];
	struct metrics_outcomes out;
	int have_dns;
	struct srv_dns_stats dns;
	uint64_t dkim_jobs;
	int have_dkim_keys;
	uint64_t dkim_key_hits, dkim_key_misses, dkim_key_entries;
	int have_history;
	uint64_t hist_queued, hist_written, hist_dropped, hist_errors, hist_purged, hist_open;
};

/* Appends the exposition to out (whose failed flag says whether it fit). */
void metrics_write(const struct metrics_snapshot *m, struct buf *out);

#endif
