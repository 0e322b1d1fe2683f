/* Evaluator behaviour beyond the RFC suite: sibling lookups in flight
 * together (round trips = include depth), speculative lookups that must not
 * change the result, deadlines, the callback contract, request builders,
 * and the crash/truncation cases of libspf2 through both engines. */
#include "tests/spf/suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned failures, checks;

#define CHECK(cond, ...) do { checks++; if (!(cond)) { failures++; \
	printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

/* A dnsq wrapper over memdns that measures round trips: a lookup started
 * while the answer of generation g is being handled has generation g+1. */
struct gen_dnsq {
	struct dnsq dq;
	struct memdns *m;
	unsigned cur, max;
	uint64_t sleep_after_first_us;   /* stall once, to pass a deadline */
	int slept;
};

struct gen_ctx {
	struct gen_dnsq *w;
	unsigned gen;
	dnsq_cb cb;
	void *arg;
};

static void gen_cb(void *arg, const struct dnsq_answer *a)
{
	struct gen_ctx *c = arg;
	struct gen_dnsq *w = c->w;
	if (w->sleep_after_first_us && !w->slept) {
		w->slept = 1;
		usleep((useconds_t)w->sleep_after_first_us);
	}
	unsigned saved = w->cur;
	w->cur = c->gen;
	c->cb(c->arg, a);
	w->cur = saved;
	free(c);
}

static void gen_lookup(struct dnsq *dq, const char *name, uint16_t type,
                       dnsq_cb cb, void *arg)
{
	struct gen_dnsq *w = (struct gen_dnsq *)dq;
	struct gen_ctx *c = malloc(sizeof(*c));
	if (!c)
		abort();
	*c = (struct gen_ctx){ w, w->cur + 1, cb, arg };
	if (c->gen > w->max)
		w->max = c->gen;
	dnsq_lookup(memdns_dnsq(w->m), name, type, gen_cb, c);
}

static int in_call;

static void done_cb(void *arg, const struct spf_result *r)
{
	struct run_out *o = arg;
	o->calls++;
	o->reentrant |= in_call;
	o->r = *r;
}

static void run_gen(struct gen_dnsq *w, const struct spf_request *rq, struct run_out *o)
{
	memset(o, 0, sizeof(*o));
	w->dq.lookup = gen_lookup;
	w->cur = w->max = 0;
	in_call = 1;
	if (spf_check_host(&w->dq, rq, NULL, done_cb, o) < 0)
		o->calls = -1;   /* no memory: reported as a broken run */
	in_call = 0;
	memdns_run(w->m);
}

static void req(struct spf_request *rq, const char *ip, const char *from, int engine)
{
	spf_request_mailfrom(rq, ip, from, "mail.client.example");
	rq->engine = engine;
	rq->default_explanation = "DEFAULT";
}

/* ---- parallel issue ---- */

static void test_parallel(void)
{
	struct memdns *m = memdns_new();
	memdns_add_txt(m, "par.example", "v=spf1 include:a.par.example include:b.par.example "
	               "include:c.par.example -all");
	const char *lvl1[] = { "a", "b", "c" };
	for (int i = 0; i < 3; i++) {
		char n[64], r[200];
		snprintf(n, sizeof(n), "%s.par.example", lvl1[i]);
		snprintf(r, sizeof(r), "v=spf1 include:x.%s.par.example include:y.%s.par.example",
		         lvl1[i], lvl1[i]);
		memdns_add_txt(m, n, r);
		snprintf(n, sizeof(n), "x.%s.par.example", lvl1[i]);
		memdns_add_txt(m, n, "v=spf1 ip4:198.51.100.1");
		snprintf(n, sizeof(n), "y.%s.par.example", lvl1[i]);
		snprintf(r, sizeof(r), "v=spf1 ip4:203.0.113.%d", 10 + i);
		memdns_add_txt(m, n, r);
	}
	struct gen_dnsq w = { .m = m };
	struct spf_request rq;
	struct run_out o;
	req(&rq, "203.0.113.12", "user@par.example", SPF_ENGINE_NATIVE);
	run_gen(&w, &rq, &o);
	CHECK(o.calls == 1 && !o.reentrant, "done ran %d times", o.calls);
	CHECK(o.r.result == AUTH_PASS, "parallel tree: %s", auth_res_name(o.r.result));
	CHECK(o.r.dns_terms == 9, "9 DNS terms, got %u", o.r.dns_terms);
	CHECK(memdns_max_pending(m) >= 3, "siblings in flight together: max pending %u",
	      memdns_max_pending(m));
	CHECK(o.r.max_parallel >= 6, "max_parallel %u", o.r.max_parallel);
	CHECK(w.max == 3, "round trips = include depth + 1 = 3, got %u "
	      "(sequential would be 10)", w.max);
	printf("parallel: 10 lookups in %u round trips, at most %u in flight\n", w.max,
	       o.r.max_parallel);
	memdns_free(&m);

	/* a, mx and exists of one record all start together */
	m = memdns_new();
	memdns_add_txt(m, "flat.example", "v=spf1 a:h1.flat.example a:h2.flat.example "
	               "mx:flat.example exists:%{i}.bl.flat.example -all");
	memdns_add_a(m, "h1.flat.example", "192.0.2.1");
	memdns_add_a(m, "h2.flat.example", "192.0.2.2");
	memdns_add_mx(m, "flat.example", 10, "mx1.flat.example");
	memdns_add_mx(m, "flat.example", 20, "mx2.flat.example");
	memdns_add_a(m, "mx1.flat.example", "192.0.2.3");
	memdns_add_a(m, "mx2.flat.example", "192.0.2.4");
	w = (struct gen_dnsq){ .m = m };
	req(&rq, "192.0.2.4", "u@flat.example", SPF_ENGINE_NATIVE);
	run_gen(&w, &rq, &o);
	CHECK(o.r.result == AUTH_PASS && strcmp(o.r.mechanism, "mx:flat.example") == 0,
	      "flat: %s by %s", auth_res_name(o.r.result), o.r.mechanism);
	CHECK(memdns_max_pending(m) >= 4, "flat: max pending %u", memdns_max_pending(m));
	CHECK(w.max == 3, "flat: round trips %u (TXT, terms, MX addresses)", w.max);
	memdns_free(&m);
}

/* ---- speculation must not change results ---- */

static void test_speculation(void)
{
	struct memdns *m = memdns_new();
	/* voids and errors after the matching term are never counted */
	memdns_add_txt(m, "spec.example", "v=spf1 a:v1.spec.example a:v2.spec.example "
	               "ip4:192.0.2.9 a:v3.spec.example a:v4.spec.example "
	               "include:broken.spec.example exists:tmo.spec.example -all");
	memdns_add_txt(m, "broken.spec.example", "v=spf1 bogus-term");
	memdns_set_status(m, "tmo.spec.example", 0, DNSQ_TIMEOUT);
	struct spf_request rq;
	struct run_out o;
	req(&rq, "192.0.2.9", "u@spec.example", SPF_ENGINE_NATIVE);
	CHECK(run_check(m, &rq, NULL, &o) == 0, "contract");
	CHECK(o.r.result == AUTH_PASS, "speculative voids/errors changed the result: %s (%s)",
	      auth_res_name(o.r.result), o.r.problem);
	CHECK(o.r.void_lookups == 2 && o.r.dns_terms == 2, "voids %u terms %u",
	      o.r.void_lookups, o.r.dns_terms);
	CHECK(memdns_lookups(m) >= 7, "lookups were issued speculatively: %u",
	      memdns_lookups(m));
	/* a different client reaches them: third void is a permerror */
	req(&rq, "192.0.2.10", "u@spec.example", SPF_ENGINE_NATIVE);
	run_check(m, &rq, NULL, &o);
	CHECK(o.r.result == AUTH_PERMERROR, "third void: %s", auth_res_name(o.r.result));
	memdns_free(&m);

	/* early result: pass while lookups are still in flight; they are
	 * absorbed when they land (ASan checks the memory) */
	m = memdns_new();
	memdns_add_txt(m, "early.example", "v=spf1 ip4:192.0.2.1 include:x.early.example "
	               "include:y.early.example mx -all");
	memdns_add_txt(m, "x.early.example", "v=spf1 include:z.early.example");
	req(&rq, "192.0.2.1", "u@early.example", SPF_ENGINE_NATIVE);
	CHECK(run_check(m, &rq, NULL, &o) == 0 && o.r.result == AUTH_PASS, "early pass");
	memdns_free(&m);
}

/* ---- limits: lookups issued stay bounded ---- */

static void add_tree(struct memdns *m, const char *name, int depth)
{
	char rec[2048] = "v=spf1";
	if (depth < 3) {
		for (int i = 0; i < 9; i++) {
			char child[256];
			snprintf(child, sizeof(child), "n%d.%s", i, name);
			size_t l = strlen(rec);
			snprintf(rec + l, sizeof(rec) - l, " include:%s", child);
			add_tree(m, child, depth + 1);
		}
	} else {
		strcat(rec, " ip4:198.51.100.1");
	}
	strcat(rec, depth == 0 ? " -all" : "");
	memdns_add_txt(m, name, rec);
}

/* ---- deadline and contract ---- */

static void test_deadline(void)
{
	struct memdns *m = memdns_new();
	memdns_add_txt(m, "slow.example", "v=spf1 include:i.slow.example -all");
	memdns_add_txt(m, "i.slow.example", "v=spf1 ip4:192.0.2.1");
	struct spf_request rq;
	struct run_out o;
	for (int e = 0; e < 2; e++) {
		req(&rq, "192.0.2.1", "u@slow.example", e);
		rq.deadline_us = 1;   /* long past */
		CHECK(run_check(m, &rq, NULL, &o) == 0, "contract with past deadline");
		CHECK(o.r.result == AUTH_TEMPERROR, "%s past deadline: %s",
		      spf_engine_name(e), auth_res_name(o.r.result));
		/* deadline passes while the first answer is handled */
		struct gen_dnsq w = { .m = m, .sleep_after_first_us = 30000 };
		req(&rq, "192.0.2.1", "u@slow.example", e);
		rq.deadline_us = trace_now_us() + 10000;
		run_gen(&w, &rq, &o);
		CHECK(o.calls == 1 && o.r.result == AUTH_TEMPERROR, "%s deadline mid-way: %s",
		      spf_engine_name(e), auth_res_name(o.r.result));
	}
	/* results known at once still come through a callback */
	const char *bad[][2] = { { "192.0.2.1", "u@[192.0.2.1]" }, { "192.0.2.1", "u@single" },
	                         { "not-an-ip", "u@slow.example" },
	                         { "192.0.2.1", "u@a..b.example" } };
	const enum auth_res want[] = { AUTH_NONE, AUTH_NONE, AUTH_PERMERROR, AUTH_NONE };
	for (size_t i = 0; i < 4; i++) {
		req(&rq, bad[i][0], bad[i][1], SPF_ENGINE_NATIVE);
		CHECK(run_check(m, &rq, NULL, &o) == 0, "deferred done for %s", bad[i][1]);
		CHECK(o.r.result == want[i], "%s %s: %s", bad[i][0], bad[i][1],
		      auth_res_name(o.r.result));
	}
	memdns_free(&m);
}

static void test_builders(void)
{
	struct memdns *m = memdns_new();
	memdns_add_txt(m, "mail.client.example", "v=spf1 -all exp=why.client.example");
	memdns_add_txt(m, "why.client.example", "%{l} at %{o} via %{h} / %{d}");
	memdns_add_txt(m, "client.example", "v=spf1 ?all");
	struct spf_request rq;
	struct run_out o;
	/* null MAIL FROM: postmaster@<helo> (RFC 7208 2.4) */
	spf_request_mailfrom(&rq, "192.0.2.1", "", "mail.client.example");
	CHECK(run_check(m, &rq, NULL, &o) == 0 && o.r.result == AUTH_FAIL, "null sender");
	CHECK(strcmp(o.r.explanation, "postmaster at mail.client.example via "
	             "mail.client.example / mail.client.example") == 0, "expl \"%s\"",
	      o.r.explanation);
	CHECK(strcmp(o.r.domain, "mail.client.example") == 0, "domain %s", o.r.domain);
	/* HELO identity (RFC 7208 2.3) */
	spf_request_helo(&rq, "192.0.2.1", "mail.client.example");
	CHECK(run_check(m, &rq, NULL, &o) == 0 && o.r.result == AUTH_FAIL, "helo");
	/* ordinary MAIL FROM */
	spf_request_mailfrom(&rq, "192.0.2.1", "a@client.example", "mail.client.example");
	CHECK(run_check(m, &rq, NULL, &o) == 0 && o.r.result == AUTH_NEUTRAL &&
	      strcmp(o.r.domain, "client.example") == 0, "mailfrom");
	memdns_free(&m);
}

/* ---- libspf2's crash and truncation cases, through both engines ---- */

static void test_crash_cases(void)
{
	struct memdns *m = memdns_new();
	char rec[8192];
	/* a ~4 KB record, client not listed: fail */
	strcpy(rec, "v=spf1");
	for (int i = 0; strlen(rec) < 4000; i++) {
		size_t l = strlen(rec);
		snprintf(rec + l, sizeof(rec) - l, " ip4:10.%d.%d.0/24", i / 250, i % 250);
	}
	strcat(rec, " -all");
	memdns_add_txt(m, "big.example", rec);
	/* 70 ip4 terms then -all: truncation would lose the -all */
	strcpy(rec, "v=spf1");
	for (int i = 0; i < 70; i++) {
		size_t l = strlen(rec);
		snprintf(rec + l, sizeof(rec) - l, " ip4:172.16.%d.%d", i / 200, i % 200 + 1);
	}
	strcat(rec, " -all");
	memdns_add_txt(m, "seventy.example", rec);
	/* a ~497-byte record whose exp= has two macros */
	strcpy(rec, "v=spf1 -all exp=%{l}.%{d}");
	while (strlen(rec) + 41 + 9 + 8 <= 497) {
		size_t l = strlen(rec);
		snprintf(rec + l, sizeof(rec) - l, ".%.*s", 40,
		         "abcdefghijabcdefghijabcdefghijabcdefghij");
	}
	{
		size_t l = strlen(rec), pad = 497 - 8 - l - 1;
		rec[l++] = '.';
		memset(rec + l, 'z', pad);
		rec[l + pad] = '\0';
	}
	strcat(rec, ".example");
	CHECK(strlen(rec) == 497, "exp record is %zu bytes", strlen(rec));
	memdns_add_txt(m, "longexp.example", rec);
	memdns_add_txt(m, "zero.example", "v=spf1 ip4:0.0.0.0/0 -all");
	memdns_add_txt(m, "zero6.example", "v=spf1 ip6:::/0 a//0 -all");
	memdns_add_txt(m, "mapped.example", "v=spf1 ip4:192.0.2.77 -all");
	add_tree(m, "tree.example", 0);

	struct { const char *from, *ip; enum auth_res native; int same; } cases[] = {
		{ "u@big.example", "192.0.2.1", AUTH_FAIL, 1 },
		{ "u@seventy.example", "192.0.2.1", AUTH_FAIL, 1 },
		{ "u@seventy.example", "172.16.0.70", AUTH_PASS, 1 },
		{ "u@longexp.example", "192.0.2.1", AUTH_FAIL, 1 },
		{ "u@zero.example", "192.0.2.1", AUTH_PASS, 0 },
		{ "u@zero6.example", "2001:db8::1", AUTH_PASS, 0 },
		{ "u@mapped.example", "::ffff:192.0.2.77", AUTH_PASS, 1 },
		{ "u@mapped.example", "::ffff:192.0.2.78", AUTH_FAIL, 1 },
		{ "u@tree.example", "198.51.100.2", AUTH_PERMERROR, 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct run_out o[2];
		unsigned lk[2];
		for (int e = 0; e < 2; e++) {
			struct spf_request rq;
			req(&rq, cases[i].ip, cases[i].from, e);
			unsigned before = memdns_lookups(m);
			CHECK(run_check(m, &rq, NULL, &o[e]) == 0, "%s %s: done ran %d times",
			      spf_engine_name(e), cases[i].from, o[e].calls);
			lk[e] = memdns_lookups(m) - before;
		}
		CHECK(o[0].r.result == cases[i].native, "native %s %s: %s (%s)", cases[i].from,
		      cases[i].ip, auth_res_name(o[0].r.result), o[0].r.problem);
		if (cases[i].same)
			CHECK(o[1].r.result == cases[i].native, "libspf2 %s %s: %s (%s)",
			      cases[i].from, cases[i].ip, auth_res_name(o[1].r.result),
			      o[1].r.problem);
		printf("crash case %-20s %-18s native %-9s libspf2 %-9s (%u / %u lookups)\n",
		       cases[i].from, cases[i].ip, auth_res_name(o[0].r.result),
		       auth_res_name(o[1].r.result), lk[0], lk[1]);
		/* 9x9x9 includes: the 10-term limit holds over the whole tree */
		if (strstr(cases[i].from, "tree"))
			for (int e = 0; e < 2; e++)
				CHECK(lk[e] <= 2 * LIM_SPF_DNS_TERMS + 2, "%s: %u lookups for the "
				      "include tree", spf_engine_name(e), lk[e]);
	}
	memdns_free(&m);
}

int main(void)
{
	test_parallel();
	test_speculation();
	test_deadline();
	test_builders();
	test_crash_cases();
	printf("%u checks, %u failures\n", checks, failures);
	return failures ? 1 : 0;
}
