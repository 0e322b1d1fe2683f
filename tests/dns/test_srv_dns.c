/* srv_dns against the test DNS world (run through tests/lib/with_world.py,
 * which sets ALIGND_TEST_UNBOUND_CONF): DNSSEC states, faults, deadlines,
 * the one-callback-per-lookup contract, close with lookups pending, and the
 * cached-answer rate. One process, one loop. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "server/dns.h"

#define TIMEOUT_MS 500u
#define SLACK_MS 400u

static uv_loop_t *loop;
static const char *ub_conf;
static int failures;
static int outstanding;          /* lookups whose callback has not run */
static int inside_lookup;        /* set while dnsq_lookup() runs */

#define CHECK(cond, ...)                                                    \
	do {                                                                \
		if (!(cond)) {                                              \
			failures++;                                         \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__,       \
			        __LINE__, #cond);                           \
			fprintf(stderr, __VA_ARGS__);                       \
			fputc('\n', stderr);                                \
		}                                                           \
	} while (0)

struct rec {
	int calls;
	int reentered;               /* callback ran inside lookup() */
	enum dnsq_status status;
	enum dnsq_sec sec;
	size_t count;
	int from_cache;
	int stale;
	uint64_t elapsed_us;
	uint32_t ttl;
	int has_rdata;
	char why[256];
	char txt[8192];              /* TXT record 0, or the decoded target */
	size_t txtlen;
};

static void rec_cb(void *arg, const struct dnsq_answer *a)
{
	struct rec *r = arg;

	r->calls++;
	r->reentered |= inside_lookup;
	outstanding--;
	r->status = a->status;
	r->sec = a->sec;
	r->count = a->count;
	r->from_cache = a->from_cache;
	r->stale = a->stale;
	r->elapsed_us = a->elapsed_us;
	r->ttl = a->ttl;
	r->has_rdata = a->rdata != NULL;
	snprintf(r->why, sizeof r->why, "%s", a->why ? a->why : "");
	r->txt[0] = '\0';
	r->txtlen = 0;
	if (a->status != DNSQ_OK)
		return;
	switch (a->qtype) {
	case DNSQ_T_TXT:
		if (dnsq_txt(a, 0, r->txt, sizeof r->txt, &r->txtlen) != 0)
			snprintf(r->txt, sizeof r->txt, "<undecodable>");
		break;
	case DNSQ_T_PTR:
	case DNSQ_T_CNAME:
		if (dnsq_target(a, 0, r->txt, sizeof r->txt) != 0)
			snprintf(r->txt, sizeof r->txt, "<undecodable>");
		break;
	case DNSQ_T_A:
		if (a->rdlen[0] == 4)
			inet_ntop(AF_INET, a->rdata[0], r->txt, sizeof r->txt);
		break;
	case DNSQ_T_AAAA:
		if (a->rdlen[0] == 16)
			inet_ntop(AF_INET6, a->rdata[0], r->txt, sizeof r->txt);
		break;
	default:
		break;
	}
}

static void look(struct dnsq *dq, const char *name, uint16_t type,
                 dnsq_cb cb, void *arg)
{
	outstanding++;
	inside_lookup = 1;
	dnsq_lookup(dq, name, type, cb, arg);
	inside_lookup = 0;
}

static void guard_cb(uv_timer_t *t)
{
	*(int *)t->data = 1;
}

/* Runs the loop until every callback ran or max_ms passed. */
static void run_until_done(unsigned max_ms)
{
	uv_timer_t guard;
	int expired = 0;

	uv_timer_init(loop, &guard);
	guard.data = &expired;
	uv_timer_start(&guard, guard_cb, max_ms, 0);
	while (outstanding > 0 && !expired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	CHECK(outstanding == 0, "%d callbacks missing after %u ms",
	      outstanding, max_ms);
}

/* Lets the loop run for ms (late answers may arrive meanwhile). */
static void run_for(unsigned ms)
{
	uv_timer_t guard;
	int expired = 0;

	uv_timer_init(loop, &guard);
	guard.data = &expired;
	uv_timer_start(&guard, guard_cb, ms, 0);
	while (!expired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

static struct srv_dns *open_dns(unsigned max_inflight)
{
	struct dns_opts o;
	struct srv_dns *d = NULL;
	char err[256];

	dns_opts_default(&o);
	o.trust_anchor_file = "";        /* the world's anchors only */
	o.recursion = 1;                 /* stubs only, no forwarders */
	o.unbound_config = ub_conf;
	o.timeout_ms = TIMEOUT_MS;
	if (max_inflight)
		o.max_inflight = max_inflight;
	if (srv_dns_new(loop, &o, &d, err, sizeof err) != 0) {
		fprintf(stderr, "srv_dns_new: %s\n", err);
		exit(1);
	}
	return d;
}

/* One lookup, waited for; returns its record by value. */
static struct rec one(struct dnsq *dq, const char *name, uint16_t type)
{
	struct rec r;

	memset(&r, 0, sizeof r);
	look(dq, name, type, rec_cb, &r);
	CHECK(r.calls == 0, "%s: callback ran inside lookup()", name);
	run_until_done(TIMEOUT_MS + 5000);
	CHECK(r.calls == 1, "%s: %d callbacks", name, r.calls);
	CHECK(!r.reentered, "%s: callback inside lookup()", name);
	return r;
}

#define EXPECT(r, st, sc, name)                                             \
	CHECK((r).status == (st) && (sc < 0 || (int)(r).sec == sc),         \
	      "%s: got %s/%s (%s), want %s/%s", name,                      \
	      dnsq_status_name((r).status), dnsq_sec_name((r).sec),        \
	      (r).why, dnsq_status_name(st),                                \
	      sc < 0 ? "any" : dnsq_sec_name((enum dnsq_sec)sc))

static void t_dnssec_states(struct dnsq *dq)
{
	struct rec r;

	r = one(dq, "example.com", DNSQ_T_TXT);
	EXPECT(r, DNSQ_OK, DNSQ_SEC_SECURE, "signed TXT");
	CHECK(r.count == 1 && strcmp(r.txt, "v=spf1 ip4:192.0.2.0/24 "
	      "ip6:2001:db8:1::/48 mx -all") == 0, "signed TXT: %zu '%s'",
	      r.count, r.txt);
	CHECK(r.ttl > 0 && r.ttl <= 300, "ttl %u", r.ttl);

	r = one(dq, "unsigned.example", DNSQ_T_TXT);
	EXPECT(r, DNSQ_OK, DNSQ_SEC_INSECURE, "unsigned TXT");
	CHECK(strcmp(r.txt, "v=spf1 ip4:203.0.113.0/24 -all") == 0,
	      "unsigned TXT '%s'", r.txt);

	r = one(dq, "bogus.example", DNSQ_T_TXT);
	EXPECT(r, DNSQ_BOGUS, DNSQ_SEC_BOGUS, "tampered TXT");
	CHECK(r.count == 0 && !r.has_rdata, "bogus data passed on");
	CHECK(r.why[0] != '\0', "bogus without a reason");
	printf("bogus reason: %s\n", r.why);

	r = one(dq, "_dmarc.bogus.example", DNSQ_T_TXT);
	EXPECT(r, DNSQ_BOGUS, DNSQ_SEC_BOGUS, "tampered DMARC TXT");

	r = one(dq, "expired.example", DNSQ_T_TXT);
	EXPECT(r, DNSQ_BOGUS, DNSQ_SEC_BOGUS, "expired TXT");
	CHECK(r.count == 0 && !r.has_rdata, "expired data passed on");
	printf("expired reason: %s\n", r.why);
}

static void t_faults(struct dnsq *dq)
{
	struct rec r;

	r = one(dq, "silent.example", DNSQ_T_TXT);
	EXPECT(r, DNSQ_TIMEOUT, -1, "silent zone");
	CHECK(r.elapsed_us >= (TIMEOUT_MS - 20) * 1000u &&
	      r.elapsed_us <= (TIMEOUT_MS + SLACK_MS) * 1000u,
	      "timeout after %llu us", (unsigned long long)r.elapsed_us);
	printf("silent zone: timeout after %.1f ms\n", r.elapsed_us / 1000.0);

	r = one(dq, "servfail.example", DNSQ_T_TXT);
	EXPECT(r, DNSQ_TEMPFAIL, -1, "SERVFAIL zone");
	CHECK(r.count == 0, "tempfail with data");
	r = one(dq, "refused.example", DNSQ_T_TXT);
	EXPECT(r, DNSQ_TEMPFAIL, -1, "REFUSED zone");

	r = one(dq, "no-such-name.example.com", DNSQ_T_TXT);
	EXPECT(r, DNSQ_NXDOMAIN, DNSQ_SEC_SECURE, "NXDOMAIN");
	r = one(dq, "only-a.example.com", DNSQ_T_TXT);
	EXPECT(r, DNSQ_NODATA, DNSQ_SEC_SECURE, "NODATA");
	r = one(dq, "only-a.example.com", DNSQ_T_A);
	EXPECT(r, DNSQ_OK, DNSQ_SEC_SECURE, "A");
	CHECK(strcmp(r.txt, "192.0.2.80") == 0, "A %s", r.txt);
	r = one(dq, "nothing.unsigned.example", DNSQ_T_TXT);
	EXPECT(r, DNSQ_NXDOMAIN, DNSQ_SEC_INSECURE, "insecure NXDOMAIN");
	/* outside the world: the unsigned root of the world says NXDOMAIN */
	r = one(dq, "_dmarc.example", DNSQ_T_TXT);
	EXPECT(r, DNSQ_NXDOMAIN, -1, "outside the world");
	/* unusable names fail at once, yet asynchronously, and for good: no
	 * answer can exist, so a sender cannot make them temporary */
	r = one(dq, "bad name.example.com", DNSQ_T_TXT);
	EXPECT(r, DNSQ_NXDOMAIN, -1, "name with a space");
	char longlabel[128], longname[320];
	memset(longlabel, 'a', 70);
	strcpy(longlabel + 70, ".example.com");
	r = one(dq, longlabel, DNSQ_T_TXT);
	EXPECT(r, DNSQ_NXDOMAIN, -1, "a label of 70 octets");
	for (int i = 0; i < 10; i++)
		memcpy(longname + i * 30, "abcdefghijklmnopqrstuvwxyz123.", 30);
	strcpy(longname + 300, "example.com");
	r = one(dq, longname, DNSQ_T_TXT);
	EXPECT(r, DNSQ_NXDOMAIN, -1, "a name of 311 octets");
}

static void t_records(struct dnsq *dq)
{
	struct rec r;
	char want[2048];

	r = one(dq, "long.example.com", DNSQ_T_TXT);
	EXPECT(r, DNSQ_OK, DNSQ_SEC_SECURE, "long TXT");
	snprintf(want, sizeof want, "v=spf1");
	for (int i = 1; i <= 24; i++) {
		size_t n = strlen(want);
		snprintf(want + n, sizeof want - n, " ip4:192.0.2.%d", i);
	}
	strcat(want, " -all");
	CHECK(strlen(want) > 255 && strcmp(r.txt, want) == 0,
	      "long TXT joined to '%s'", r.txt);

	r = one(dq, "split.example.com", DNSQ_T_TXT);
	CHECK(strcmp(r.txt, "v=spf1 ip4:192.0.2.0/24 -all") == 0,
	      "split TXT '%s'", r.txt);
	r = one(dq, "many-txt.example.com", DNSQ_T_TXT);
	EXPECT(r, DNSQ_OK, DNSQ_SEC_SECURE, "many TXT");
	CHECK(r.count == 6, "many TXT: %zu records", r.count);
	r = one(dq, "big.example.com", DNSQ_T_TXT);
	EXPECT(r, DNSQ_OK, DNSQ_SEC_SECURE, "big TXT (TCP)");
	CHECK(r.txtlen == 4096, "big TXT length %zu", r.txtlen);

	r = one(dq, "chain1.example.com", DNSQ_T_TXT);
	EXPECT(r, DNSQ_OK, DNSQ_SEC_SECURE, "CNAME chain");
	CHECK(strcmp(r.txt, "end of chain") == 0, "chain '%s'", r.txt);
	r = one(dq, "loop1.example.com", DNSQ_T_TXT);
	CHECK(r.status != DNSQ_OK, "CNAME loop gave data");
	printf("CNAME loop: %s (%s)\n", dnsq_status_name(r.status), r.why);

	r = one(dq, "25.2.0.192.in-addr.arpa", DNSQ_T_PTR);
	EXPECT(r, DNSQ_OK, DNSQ_SEC_SECURE, "PTR v4");
	CHECK(strcmp(r.txt, "mail.example.com") == 0, "PTR '%s'", r.txt);
	r = one(dq, "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0."
	        "8.b.d.0.1.0.0.2.ip6.arpa", DNSQ_T_PTR);
	EXPECT(r, DNSQ_OK, DNSQ_SEC_SECURE, "PTR v6");
	CHECK(strcmp(r.txt, "mail.example.com") == 0, "PTR6 '%s'", r.txt);
	r = one(dq, "mail.example.org", DNSQ_T_AAAA);
	EXPECT(r, DNSQ_OK, DNSQ_SEC_SECURE, "AAAA");
	CHECK(strcmp(r.txt, "2001:db8:2::25") == 0, "AAAA '%s'", r.txt);
}

static void t_cache(struct dnsq *dq)
{
	struct rec r1, r2;

	r1 = one(dq, "_dmarc.example.org", DNSQ_T_TXT);
	EXPECT(r1, DNSQ_OK, DNSQ_SEC_SECURE, "DMARC TXT");
	CHECK(r1.from_cache == 0, "first lookup from cache");
	r2 = one(dq, "_dmarc.example.org", DNSQ_T_TXT);
	CHECK(r2.from_cache == 1, "repeated lookup not from cache");
	CHECK(strcmp(r1.txt, r2.txt) == 0, "cached answer differs");
	/* the answer memo keeps the DNSSEC status and the remaining TTL */
	CHECK(r2.sec == DNSQ_SEC_SECURE, "cached answer lost its DNSSEC status");
	CHECK(r2.ttl > 0 && r2.ttl <= r1.ttl, "cached TTL %u after %u", r2.ttl, r1.ttl);
	/* negative answers are kept too, failures never */
	struct rec n1 = one(dq, "nosuchname.example.org", DNSQ_T_TXT);
	struct rec n2 = one(dq, "nosuchname.example.org", DNSQ_T_TXT);
	CHECK(n1.status == DNSQ_NXDOMAIN && n2.status == DNSQ_NXDOMAIN, "NXDOMAIN twice");
	CHECK(n2.from_cache == 1 || n1.ttl == 0, "NXDOMAIN not kept");
	printf("first lookup %.3f ms, repeated %.3f ms\n",
	       r1.elapsed_us / 1000.0, r2.elapsed_us / 1000.0);
}

/* 500 distinct names at once (a wildcard: each one a real upstream query). */
#define CONC 500
static int conc_calls[CONC];
static int conc_ok;

static void conc_cb(void *arg, const struct dnsq_answer *a)
{
	int i = (int)(intptr_t)arg;
	char txt[64];

	outstanding--;
	conc_calls[i]++;
	if (a->status == DNSQ_OK && a->sec == DNSQ_SEC_SECURE &&
	    dnsq_txt(a, 0, txt, sizeof txt, NULL) == 0 &&
	    strcmp(txt, "wildcard answer") == 0)
		conc_ok++;
}

static void t_concurrent(struct srv_dns *d, struct dnsq *dq)
{
	struct srv_dns_stats st;
	char name[64];
	uint64_t t0 = uv_hrtime();
	int once = 1;

	for (int i = 0; i < CONC; i++) {
		snprintf(name, sizeof name, "n%d.wild.example.com", i);
		look(dq, name, DNSQ_T_TXT, conc_cb, (void *)(intptr_t)i);
	}
	srv_dns_stats(d, &st);
	CHECK(st.inflight >= CONC, "in flight %llu",
	      (unsigned long long)st.inflight);
	run_until_done(10000);
	for (int i = 0; i < CONC; i++)
		once &= conc_calls[i] == 1;
	CHECK(once, "not every lookup answered exactly once");
	CHECK(conc_ok == CONC, "%d of %d secure wildcard answers", conc_ok,
	      CONC);
	printf("%d concurrent lookups (cold, distinct names): %.1f ms\n", CONC,
	       (uv_hrtime() - t0) / 1e6);
	srv_dns_stats(d, &st);
	CHECK(st.inflight_peak >= CONC, "peak %llu",
	      (unsigned long long)st.inflight_peak);
}

/* Callbacks that start the next lookup. */
struct chain {
	struct dnsq *dq;
	int depth, calls;
};

static void chain_cb(void *arg, const struct dnsq_answer *a)
{
	struct chain *c = arg;
	static const char *const names[] = {
		"example.com", "example.org", "example.net",
		"_spf.example.net", "mail.example.org", "unsigned.example",
	};

	outstanding--;
	c->calls++;
	CHECK(a->status == DNSQ_OK, "chain step %d: %s", c->depth,
	      dnsq_status_name(a->status));
	if (++c->depth < 6)
		look(c->dq, names[c->depth], c->depth == 4 ? DNSQ_T_A
		     : DNSQ_T_TXT, chain_cb, c);
}

static void t_chained(struct dnsq *dq)
{
	struct chain c = { dq, 0, 0 };

	look(dq, "example.com", DNSQ_T_TXT, chain_cb, &c);
	run_until_done(5000);
	CHECK(c.calls == 6 && c.depth == 6, "chain: %d calls", c.calls);
}

/* An answer that arrives after the deadline never reaches the callback. */
static void t_late_answer(struct srv_dns *d, struct dnsq *dq)
{
	struct srv_dns_stats before, after;
	struct rec r;

	srv_dns_stats(d, &before);
	r = one(dq, "slow.example", DNSQ_T_TXT);
	EXPECT(r, DNSQ_TIMEOUT, -1, "late zone");
	run_for(3500);   /* nsd's answer, relayed 1500 ms late, comes in */
	CHECK(r.calls == 1, "late answer: %d callbacks", r.calls);
	srv_dns_stats(d, &after);
	CHECK(after.answered == before.answered + 1, "late answer counted");
}

static void t_cap(void)
{
	struct srv_dns *d = open_dns(5);
	struct dnsq *dq = srv_dns_dnsq(d);
	struct rec r[8];
	struct srv_dns_stats st;
	int tempfail = 0, ok = 0;

	memset(r, 0, sizeof r);
	for (int i = 0; i < 8; i++)
		look(dq, "example.net", DNSQ_T_TXT, rec_cb, &r[i]);
	for (int i = 0; i < 8; i++)
		CHECK(r[i].calls == 0, "cap: callback %d inside lookup()", i);
	run_until_done(5000);
	for (int i = 0; i < 8; i++) {
		CHECK(r[i].calls == 1, "cap: %d calls", r[i].calls);
		tempfail += r[i].status == DNSQ_TEMPFAIL;
		ok += r[i].status == DNSQ_OK;
	}
	CHECK(ok == 5 && tempfail == 3, "cap: %d ok, %d tempfail", ok,
	      tempfail);
	srv_dns_stats(d, &st);
	CHECK(st.rejected == 3, "cap: rejected %llu",
	      (unsigned long long)st.rejected);
	srv_dns_close(&d);
	CHECK(d == NULL, "close did not clear the pointer");
	uv_run(loop, UV_RUN_NOWAIT);
}

/* Close with lookups pending: every callback once, TEMPFAIL, including
 * those of lookups started by callbacks during the close. */
static int close_calls[22], close_tempfail, close_restarted;
static struct dnsq *close_dq;

static void close_cb(void *arg, const struct dnsq_answer *a)
{
	int i = (int)(intptr_t)arg;

	outstanding--;
	close_calls[i]++;
	close_tempfail += a->status == DNSQ_TEMPFAIL;
	if (i == 0 && !close_restarted) {
		close_restarted = 1;
		look(close_dq, "example.com", DNSQ_T_TXT, close_cb,
		     (void *)(intptr_t)20);
	}
}

static void t_close_pending(void)
{
	struct srv_dns *d = open_dns(0);
	char name[64];
	int once = 1;

	close_dq = srv_dns_dnsq(d);
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof name, i % 2 ? "x%d.silent.example"
		         : "c%d.wild.example.com", i);
		look(close_dq, name, DNSQ_T_TXT, close_cb, (void *)(intptr_t)i);
	}
	look(close_dq, "bad name", DNSQ_T_TXT, close_cb, (void *)(intptr_t)21);
	srv_dns_close(&d);
	for (int i = 0; i < 22; i++)
		once &= close_calls[i] == 1;
	CHECK(once && outstanding == 0, "close: not every callback once");
	/* the 20 in flight fail as the resolver closes; the unusable name
	 * fails for good whatever happens */
	CHECK(close_tempfail == 21, "close: %d tempfail of 21", close_tempfail);
	/* the handles finish closing on the next loop turn */
	uv_run(loop, UV_RUN_DEFAULT);
}

static int rate_left, rate_done, rate_bad;

static void rate_cb(void *arg, const struct dnsq_answer *a)
{
	struct dnsq *dq = arg;

	outstanding--;
	rate_done++;
	rate_bad += a->status != DNSQ_OK;
	if (rate_left > 0) {
		rate_left--;
		look(dq, "example.com", DNSQ_T_TXT, rate_cb, dq);
	}
}

/* Repeated lookups of one cached name, 64 in flight at a time. */
static void t_rate(struct srv_dns *d, struct dnsq *dq)
{
	struct srv_dns_stats st0, st1;
	const int total = 100000, window = 64;
	uint64_t t0;
	double secs;

	(void)one(dq, "example.com", DNSQ_T_TXT);
	srv_dns_stats(d, &st0);
	rate_left = total - window;
	rate_done = 0;
	t0 = uv_hrtime();
	for (int i = 0; i < window; i++)
		look(dq, "example.com", DNSQ_T_TXT, rate_cb, dq);
	run_until_done(60000);
	secs = (uv_hrtime() - t0) / 1e9;
	srv_dns_stats(d, &st1);
	CHECK(rate_done == total, "rate: %d of %d", rate_done, total);
	CHECK(rate_bad == 0, "rate: %d answers not OK", rate_bad);
	CHECK(st1.cache_hits - st0.cache_hits == (uint64_t)total,
	      "rate: %llu cache hits", (unsigned long long)(st1.cache_hits -
	      st0.cache_hits));
	printf("cached lookups: %d in %.3f s = %.0f lookups/s "
	       "(%d in flight)\n", total, secs, total / secs, window);
}

/* Serve-stale (RFC 8767): once stale.example's server goes silent and its
 * 1 s TTL ran out, a context with serve_stale answers from the expired
 * entry after unbound's client timeout; one without it cannot answer. */
static void t_stale(void)
{
	const char *rundir = getenv("ALIGND_TEST_RUN_DIR");
	char down[1024];
	struct dns_opts o;
	struct srv_dns *ds = NULL, *dp = NULL;
	struct rec rs, rp;
	char err[256];
	FILE *f;

	if (!rundir) {
		CHECK(0, "ALIGND_TEST_RUN_DIR not set");
		return;
	}
	snprintf(down, sizeof down, "%s/stale.example.down", rundir);
	dns_opts_default(&o);
	o.trust_anchor_file = "";
	o.recursion = 1;
	o.unbound_config = ub_conf;
	o.timeout_ms = 4000;
	o.serve_stale = 1;
	CHECK(srv_dns_new(loop, &o, &ds, err, sizeof err) == 0, "%s", err);
	o.serve_stale = 0;
	o.timeout_ms = 2500;
	CHECK(srv_dns_new(loop, &o, &dp, err, sizeof err) == 0, "%s", err);
	if (!ds || !dp)
		return;
	rs = one(srv_dns_dnsq(ds), "stale.example", DNSQ_T_TXT);
	EXPECT(rs, DNSQ_OK, DNSQ_SEC_SECURE, "stale zone up");
	CHECK(rs.stale == 0, "a fresh answer is not stale");
	rp = one(srv_dns_dnsq(dp), "stale.example", DNSQ_T_TXT);
	EXPECT(rp, DNSQ_OK, DNSQ_SEC_SECURE, "stale zone up (plain)");
	f = fopen(down, "w");
	CHECK(f != NULL, "cannot create %s", down);
	if (f)
		fclose(f);
	run_for(2200);
	memset(&rs, 0, sizeof rs);
	memset(&rp, 0, sizeof rp);
	look(srv_dns_dnsq(ds), "stale.example", DNSQ_T_TXT, rec_cb, &rs);
	look(srv_dns_dnsq(dp), "stale.example", DNSQ_T_TXT, rec_cb, &rp);
	run_until_done(6000);
	EXPECT(rs, DNSQ_OK, -1, "serve-stale answer");
	CHECK(strcmp(rs.txt, "v=spf1 ip4:192.0.2.0/24 -all") == 0,
	      "stale data '%s'", rs.txt);
	CHECK(rp.status != DNSQ_OK, "expired data without serve_stale");
	CHECK(rs.stale == 1, "the served expired record is flagged stale");
	printf("server down: serve_stale %s after %.0f ms (%s), "
	       "without %s after %.0f ms\n", dnsq_status_name(rs.status),
	       rs.elapsed_us / 1000.0, dnsq_sec_name(rs.sec),
	       dnsq_status_name(rp.status), rp.elapsed_us / 1000.0);
	unlink(down);
	srv_dns_close(&ds);
	srv_dns_close(&dp);
	uv_run(loop, UV_RUN_DEFAULT);
}

/* The option paths: explicit forwarders with a trust anchor file (no
 * config file), cache sizes and serve-stale accepted, bad values refused. */
static void t_options(void)
{
	const char *wdir = getenv("ALIGND_TEST_WORLD_DIR");
	const char *port = getenv("ALIGND_TEST_NSD_PORT");
	char ta[1024], fwd[64], err[256];
	struct dns_opts o;
	struct srv_dns *d = NULL;
	struct rec r;
	int rc;

	if (!wdir || !port) {
		CHECK(0, "world directory or nsd port not in the environment");
		return;
	}
	snprintf(ta, sizeof ta, "%s/anchors.keys", wdir);
	snprintf(fwd, sizeof fwd, "127.0.0.1@%s", port);
	dns_opts_default(&o);
	o.trust_anchor_file = ta;
	o.forwarders = fwd;
	o.timeout_ms = TIMEOUT_MS;
	o.msg_cache_size = 4u << 20;
	o.rrset_cache_size = 8u << 20;
	o.serve_stale = 1;
	rc = srv_dns_new(loop, &o, &d, err, sizeof err);
	CHECK(rc == 0, "options: %s", err);
	if (rc == 0) {
		r = one(srv_dns_dnsq(d), "example.net", DNSQ_T_TXT);
		EXPECT(r, DNSQ_OK, DNSQ_SEC_SECURE, "via forwarder");
		CHECK(strcmp(r.txt, "v=spf1 mx -all") == 0, "forwarded '%s'",
		      r.txt);
		srv_dns_close(&d);
		uv_run(loop, UV_RUN_DEFAULT);
	}

	dns_opts_default(&o);
	o.trust_anchor_file = "/nonexistent/anchor.keys";
	rc = srv_dns_new(loop, &o, &d, err, sizeof err);
	CHECK(rc != 0 && d == NULL && err[0], "missing anchor file accepted");
	dns_opts_default(&o);
	o.trust_anchor_file = "";
	o.forwarders = "not-an-address";
	rc = srv_dns_new(loop, &o, &d, err, sizeof err);
	CHECK(rc != 0 && d == NULL && err[0], "bad forwarder accepted");
	printf("refused bad forwarder: %s\n", err);
	dns_opts_default(&o);
	o.trust_anchor_file = "";
	o.recursion = 1;
	o.unbound_config = "/nonexistent/unbound.conf";
	rc = srv_dns_new(loop, &o, &d, err, sizeof err);
	CHECK(rc != 0 && d == NULL && err[0], "missing config accepted");
}

int main(void)
{
	static uv_loop_t l;
	struct srv_dns *d;
	struct dnsq *dq;
	struct srv_dns_stats st;

	setvbuf(stdout, NULL, _IOLBF, 0);
	ub_conf = getenv("ALIGND_TEST_UNBOUND_CONF");
	if (!ub_conf) {
		fprintf(stderr, "ALIGND_TEST_UNBOUND_CONF not set: run through "
		        "tests/lib/with_world.py\n");
		return 77;
	}
	uv_loop_init(&l);
	loop = &l;

	d = open_dns(0);
	dq = srv_dns_dnsq(d);
	t_dnssec_states(dq);
	t_faults(dq);
	t_records(dq);
	t_cache(dq);
	t_chained(dq);
	t_concurrent(d, dq);
	t_late_answer(d, dq);
	t_rate(d, dq);

	srv_dns_stats(d, &st);
	CHECK(st.started == st.answered && st.inflight == 0,
	      "started %llu answered %llu in flight %llu",
	      (unsigned long long)st.started, (unsigned long long)st.answered,
	      (unsigned long long)st.inflight);
	CHECK(st.timeouts == 2, "timeouts %llu",
	      (unsigned long long)st.timeouts);
	CHECK(st.bogus == 3, "bogus %llu", (unsigned long long)st.bogus);
	CHECK(st.servfail >= 2, "servfail %llu",
	      (unsigned long long)st.servfail);
	CHECK(st.nxdomain >= 3, "nxdomain %llu",
	      (unsigned long long)st.nxdomain);
	printf("stats: started %llu answered %llu peak %llu timeouts %llu "
	       "bogus %llu servfail %llu nxdomain %llu rejected %llu "
	       "cache_hits %llu\n",
	       (unsigned long long)st.started, (unsigned long long)st.answered,
	       (unsigned long long)st.inflight_peak,
	       (unsigned long long)st.timeouts, (unsigned long long)st.bogus,
	       (unsigned long long)st.servfail, (unsigned long long)st.nxdomain,
	       (unsigned long long)st.rejected,
	       (unsigned long long)st.cache_hits);
	srv_dns_close(&d);
	uv_run(loop, UV_RUN_DEFAULT);

	t_cap();
	t_close_pending();
	t_options();
	t_stale();

	if (uv_loop_close(loop) != 0) {
		failures++;
		fprintf(stderr, "FAIL: handles left open on the loop\n");
	}
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("all srv_dns checks passed\n");
	return 0;
}
