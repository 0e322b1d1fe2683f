/* The daemon's one DNSSEC-validating DNS cache: struct dnsq (checks/dnsq.h)
 * over a single libunbound context in threaded async mode, polled by the
 * libuv loop. Everything here runs on the loop thread; libunbound's own
 * resolver thread never calls into this module (answers come back through
 * ub_fd(), read by ub_process() from a uv_poll callback). */
#ifndef ALIGND_SRV_DNS_H
#define ALIGND_SRV_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "checks/dnsq.h"
#include "server/histo.h"

struct dns_opts {
	/* DS/DNSKEY trust anchor file (ub_ctx_add_ta_file). NULL means the
	 * default, the dns-root-data package's root key; "" means none (the
	 * test world brings its own anchors in unbound_config). */
	const char *trust_anchor_file;
	/* 1: full recursion from the root hints, no forwarders. */
	int recursion;
	/* With recursion == 0: forwarders as a space- or comma-separated list
	 * of addresses (addr[@port]); NULL or "" reads /etc/resolv.conf. */
	const char *forwarders;
	/* Optional unbound.conf-style file for ub_ctx_config, applied after
	 * the keys above (so it can add stub zones, anchors, anything else). */
	const char *unbound_config;
	unsigned timeout_ms;          /* per-lookup deadline; 0 = LIM_DNS_TIMEOUT_MS */
	size_t msg_cache_size;        /* bytes; 0 = libunbound's default */
	size_t rrset_cache_size;      /* bytes; 0 = libunbound's default */
	int serve_stale;              /* RFC 8767 via unbound's serve-expired */
	int qname_minimisation;       /* RFC 9156 when recursing; 0: off */
	unsigned max_inflight;        /* 0 = LIM_DNS_MAX_INFLIGHT */
};

struct srv_dns_stats {
	uint64_t started;      /* lookup() calls */
	uint64_t answered;     /* callbacks run (every lookup ends in exactly one) */
	uint64_t inflight;     /* started, callback not yet run */
	uint64_t inflight_peak;
	uint64_t timeouts;     /* DNSQ_TIMEOUT */
	uint64_t bogus;        /* DNSQ_BOGUS */
	uint64_t servfail;     /* DNSQ_TEMPFAIL from a DNS rcode or resolver error */
	uint64_t nxdomain;
	uint64_t rejected;     /* DNSQ_TEMPFAIL because max_inflight was reached,
	                          the name was unusable or the context closing */
	uint64_t cache_hits;   /* answers with from_cache == 1 (approximate) */
	uint64_t stale;        /* answers flagged stale (serve-stale) */
	uint64_t memo_hits;    /* answered from the answer memo, without libunbound */
	struct histo lookup_duration;   /* lookup() to callback, every answer */
};

/* Answers (struct dnsq_answer) carry status, DNSSEC state, TTL, elapsed
 * time and from_cache. libunbound does not say whether it answered from its
 * cache: from_cache is 1 when an answer to the same (name, type) was passed
 * on before and its TTL has not run out (a bounded table of
 * LIM_DNS_SEEN_SLOTS entries), else 0. It is an approximation for traces and
 * STATS: wrong when libunbound evicted the entry early or a slot collided. A
 * bogus answer never carries data (count 0, sec BOGUS, why = libunbound's
 * reason); SERVFAIL, REFUSED and resolver errors are DNSQ_TEMPFAIL; a
 * lookup past its deadline is cancelled in libunbound and answered
 * DNSQ_TIMEOUT, and its late answer is dropped. */
struct srv_dns;

void dns_opts_default(struct dns_opts *o);

/* Creates the context and applies every option (cache sizes must be set
 * before the first query, so they are set here). 0 or a negative errno-style
 * code with a message in err. The loop is borrowed and must outlive d. */
int srv_dns_new(uv_loop_t *loop, const struct dns_opts *o,
                struct srv_dns **d_r, char *err, size_t errlen);

/* The interface handed to the checks; valid until srv_dns_close(). */
struct dnsq *srv_dns_dnsq(struct srv_dns *d);

void srv_dns_stats(const struct srv_dns *d, struct srv_dns_stats *st);

/* Ends every pending lookup with DNSQ_TEMPFAIL (why "resolver closing"),
 * synchronously, before it returns: callbacks run from inside this call, and
 * lookups they start are answered DNSQ_TEMPFAIL at once, too (so a callback
 * must not retry forever on TEMPFAIL). Then the libunbound context is
 * deleted and the libuv handles are closed; the memory is freed by their
 * close callbacks, so the loop must run at least once more (as for any
 * uv_close) before uv_loop_close(). Clears *d. Loop thread only. */
void srv_dns_close(struct srv_dns **d);

#endif
