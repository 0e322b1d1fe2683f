/* DMARC discovery and evaluation over the in-memory DNS: tree walk (psd=,
 * long names, errors), RFC 7489 PSL mode, alignment, sp=/np=/t=/pct=,
 * several records, several author domains, abandon and deadline. */
#include "checks/dmarc/dmarc.h"
#include "tests/dmarc/dmtest.h"
#include "tests/lib/memdns.h"

static struct dmarc_psl *psl;

struct got {
	int calls;
	struct dmarc_result r;
};

static void on_done(void *arg, const struct dmarc_result *r)
{
	struct got *g = arg;
	g->calls++;
	g->r = *r;
}

static void loop(struct memdns *m)
{
	while (memdns_run(m) + dm_run_deferred() > 0)
		;
}

struct scen {
	enum dmarc_mode mode;
	int sequential;
	const char *from;              /* From field value */
	enum auth_res spf;
	const char *spf_domain;
	const char *dkim_d[3];
	enum auth_res dkim_res[3];
	const char *key;
	uint64_t deadline;             /* 0: far away */
};

static struct got run(struct memdns *m, const struct scen *s, struct trace *t)
{
	struct dmarc_opts o = { .mode = s->mode, .psl = psl, .defer = dm_defer,
	                        .walk_sequential = s->sequential };
	struct dmarc_author a;
	struct got g = { 0 };
	dmarc_author_value(s->from, strlen(s->from), &a);
	struct dmarc_eval *e = dmarc_start(memdns_dnsq(m), &o, &a,
		s->deadline ? s->deadline : trace_now_us() + 60000000u, t);
	struct dmarc_dkim_in dk[3];
	size_t nd = 0;
	for (; nd < 3 && s->dkim_d[nd]; nd++)
		dk[nd] = (struct dmarc_dkim_in){ s->dkim_res[nd] ? s->dkim_res[nd] : AUTH_PASS,
		                                 s->dkim_d[nd] };
	struct dmarc_inputs in = { .spf = s->spf, .spf_domain = s->spf_domain,
	                           .dkim = dk, .n_dkim = nd, .sample_key = s->key };
	dmarc_finish(e, &in, on_done, &g);
	CHECK(g.calls == 0, "done ran inside dmarc_finish");
	loop(m);
	CHECK(g.calls == 1, "done ran %d times", g.calls);
	return g;
}

static struct memdns *world(void)
{
	struct memdns *m = memdns_new();
	memdns_add_txt(m, "_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine; rua=mailto:r@example.com");
	memdns_add_a(m, "example.com", "192.0.2.1");
	memdns_add_a(m, "sub.example.com", "192.0.2.2");
	memdns_add_txt(m, "_dmarc.strict.example", "v=DMARC1; p=reject; aspf=s; adkim=s");
	memdns_add_a(m, "strict.example", "192.0.2.3");
	memdns_add_txt(m, "_dmarc.np.example", "v=DMARC1; p=quarantine; sp=none; np=reject");
	memdns_add_a(m, "np.example", "192.0.2.4");
	memdns_add_a(m, "exists.np.example", "192.0.2.5");
	memdns_add_txt(m, "_dmarc.test.example", "v=DMARC1; p=reject; t=y");
	memdns_add_txt(m, "_dmarc.testq.example", "v=DMARC1; p=quarantine; t=y");
	memdns_add_txt(m, "_dmarc.gov", "v=DMARC1; p=reject; psd=y");
	memdns_add_txt(m, "_dmarc.b.corp.example", "v=DMARC1; p=none; psd=n");
	memdns_add_txt(m, "_dmarc.corp.example", "v=DMARC1; p=reject");
	memdns_add_txt(m, "_dmarc.multi.example", "v=DMARC1; p=reject");
	memdns_add_txt(m, "_dmarc.multi.example", "v=DMARC1; p=none");
	memdns_add_txt(m, "_dmarc.multi.example", "v=spf1 -all");
	memdns_add_txt(m, "_dmarc.two.multi2.example", "v=DMARC1; p=none");
	memdns_add_txt(m, "_dmarc.two.multi2.example", "v=DMARC1; p=none");
	memdns_add_txt(m, "_dmarc.multi2.example", "v=DMARC1; p=reject; sp=quarantine");
	memdns_add_txt(m, "_dmarc.none.example", "v=DMARC1; p=none");
	memdns_add_txt(m, "_dmarc.example.co.uk", "v=DMARC1; p=reject; sp=quarantine; pct=50");
	memdns_add_txt(m, "_dmarc.pct0.example", "v=DMARC1; p=reject; pct=0");
	memdns_add_txt(m, "_dmarc.unusable.example", "v=DMARC1; p=bogus");
	memdns_add_txt(m, "_dmarc.org", "v=DMARC1; p=none");   /* a PSD without psd=y */
	return m;
}

#define FROM(d) "Someone <someone@" d ">"

static void test_alignment(void)
{
	struct memdns *m = world();
	struct got g;
	/* relaxed SPF: bounce.example.com and example.com share example.com */
	g = run(m, &(struct scen){ .from = FROM("example.com"), .spf = AUTH_PASS,
	        .spf_domain = "bounce.example.com" }, NULL);
	CHECK(g.r.res == DMARC_RES_PASS && g.r.spf_aligned == 1, "relaxed SPF: %s", dmarc_res_name(g.r.res));
	CHECK_STR(g.r.org_domain, "example.com", "org");
	CHECK(g.r.where == DMARC_AT_AUTHOR && g.r.walk_step == 1, "where %d", g.r.where);
	/* relaxed DKIM */
	g = run(m, &(struct scen){ .from = FROM("example.com"), .spf = AUTH_FAIL,
	        .spf_domain = "example.com", .dkim_d = { "evil.example", "Mail.Example.COM" } }, NULL);
	CHECK(g.r.res == DMARC_RES_PASS && g.r.dkim_aligned == 1 && g.r.spf_aligned == 0, "relaxed DKIM");
	CHECK_STR(g.r.dkim_domain, "mail.example.com", "aligned d=");
	/* unrelated passes do not help */
	g = run(m, &(struct scen){ .from = FROM("example.com"), .spf = AUTH_PASS,
	        .spf_domain = "evil.example", .dkim_d = { "evil.example" } }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL && g.r.disp == DMARC_DISP_REJECT, "spoof: %s", dmarc_res_name(g.r.res));
	CHECK(g.r.policy == DMARC_POLICY_REJECT && strcmp(g.r.policy_tag, "p") == 0, "policy p");
	/* a failing DKIM signature never aligns */
	g = run(m, &(struct scen){ .from = FROM("example.com"), .spf = AUTH_NONE,
	        .dkim_d = { "example.com" }, .dkim_res = { AUTH_FAIL } }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL, "failed DKIM");
	/* strict: only identical domains */
	g = run(m, &(struct scen){ .from = FROM("strict.example"), .spf = AUTH_PASS,
	        .spf_domain = "bounce.strict.example", .dkim_d = { "mail.strict.example" } }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL && g.r.disp == DMARC_DISP_REJECT, "strict fail");
	g = run(m, &(struct scen){ .from = FROM("strict.example"), .spf = AUTH_NONE,
	        .dkim_d = { "STRICT.example." } }, NULL);
	CHECK(g.r.res == DMARC_RES_PASS, "strict identical");
	/* the d=com case of RFC 9989 4.4: never aligned */
	g = run(m, &(struct scen){ .from = FROM("example.com"), .dkim_d = { "com" } }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL, "d=com");
	/* a malformed MAIL FROM domain cannot align */
	g = run(m, &(struct scen){ .from = FROM("example.com"), .spf = AUTH_PASS,
	        .spf_domain = "example.com(example.com" }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL, "bad SPF domain");
	/* no record: none; unusable record: none */
	g = run(m, &(struct scen){ .from = FROM("nothing.example"), .spf = AUTH_PASS,
	        .spf_domain = "nothing.example" }, NULL);
	CHECK(g.r.res == DMARC_RES_NONE && g.r.where == DMARC_AT_NONE, "no record");
	char big[LIM_DMARC_RECORD + 100];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "v=DMARC1; p=reject; x=", 22);
	memdns_add_txt(m, "_dmarc.huge.example", big);
	g = run(m, &(struct scen){ .from = FROM("huge.example") }, NULL);
	CHECK(g.r.res == DMARC_RES_NONE && g.r.where == DMARC_AT_AUTHOR, "oversized record: %s",
	      dmarc_res_name(g.r.res));
	g = run(m, &(struct scen){ .from = FROM("unusable.example") }, NULL);
	CHECK(g.r.res == DMARC_RES_NONE && g.r.where == DMARC_AT_AUTHOR, "unusable record");
	memdns_free(&m);
}

static void test_null_sender(void)
{
	struct memdns *m = world();
	struct dmarc_opts o = { .defer = dm_defer };
	struct dmarc_author a;
	struct got g = { 0 };
	dmarc_author_value("x@example.com", 13, &a);
	struct dmarc_eval *e = dmarc_start(memdns_dnsq(m), &o, &a, trace_now_us() + 10000000, NULL);
	/* RFC 7208 2.4: with <> the MAIL FROM identity is postmaster@HELO */
	struct dmarc_inputs in = { .spf = AUTH_PASS, .mail_from_null = 1, .helo = "mx.example.com" };
	dmarc_finish(e, &in, on_done, &g);
	loop(m);
	CHECK(g.calls == 1 && g.r.res == DMARC_RES_PASS && g.r.spf_aligned == 1, "null sender via HELO");
	CHECK_STR(g.r.spf_domain, "mx.example.com", "HELO identity");
	memdns_free(&m);
}

static void test_policies(void)
{
	struct memdns *m = world();
	struct got g;
	/* sp= for an existing subdomain */
	g = run(m, &(struct scen){ .from = FROM("sub.example.com") }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL && g.r.where == DMARC_AT_ORG, "sp: where %d", g.r.where);
	CHECK(g.r.policy == DMARC_POLICY_QUARANTINE && strcmp(g.r.policy_tag, "sp") == 0, "sp applies");
	CHECK(g.r.disp == DMARC_DISP_QUARANTINE && g.r.walk_step == 2, "sp disposition");
	/* np= for a non-existent subdomain (NXDOMAIN), sp= for an existing one */
	g = run(m, &(struct scen){ .from = FROM("ghost.np.example") }, NULL);
	CHECK(g.r.policy == DMARC_POLICY_REJECT && strcmp(g.r.policy_tag, "np") == 0 &&
	      g.r.author_exists == 0, "np: %s %s", dmarc_policy_name(g.r.policy), g.r.policy_tag);
	g = run(m, &(struct scen){ .from = FROM("exists.np.example") }, NULL);
	CHECK(g.r.policy == DMARC_POLICY_NONE && strcmp(g.r.policy_tag, "sp") == 0 &&
	      g.r.author_exists == 1 && g.r.disp == DMARC_DISP_NONE, "sp for existing");
	/* p= at the author domain itself ignores sp/np */
	g = run(m, &(struct scen){ .from = FROM("np.example") }, NULL);
	CHECK(g.r.policy == DMARC_POLICY_QUARANTINE && strcmp(g.r.policy_tag, "p") == 0, "p at author");
	/* existence unknown (SERVFAIL) when np differs from sp: temperror */
	memdns_set_status(m, "broken.np.example", 0, DNSQ_TEMPFAIL);
	g = run(m, &(struct scen){ .from = FROM("broken.np.example") }, NULL);
	CHECK(g.r.res == DMARC_RES_TEMPERROR && g.r.author_exists == -1, "np existence unknown");
	/* t=y lowers the policy by one level */
	g = run(m, &(struct scen){ .from = FROM("test.example") }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL && g.r.policy == DMARC_POLICY_REJECT &&
	      g.r.applied == DMARC_POLICY_QUARANTINE && g.r.disp == DMARC_DISP_QUARANTINE &&
	      g.r.testing, "t=y reject");
	g = run(m, &(struct scen){ .from = FROM("testq.example") }, NULL);
	CHECK(g.r.applied == DMARC_POLICY_NONE && g.r.disp == DMARC_DISP_NONE, "t=y quarantine");
	/* p=none fails but dispose of nothing */
	g = run(m, &(struct scen){ .from = FROM("none.example") }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL && g.r.disp == DMARC_DISP_NONE, "p=none");
	memdns_free(&m);
}

static void test_tree_walk(void)
{
	struct memdns *m = world();
	struct got g;
	/* PSD: record only at _dmarc.gov with psd=y */
	g = run(m, &(struct scen){ .from = FROM("shop.example.gov"), .spf = AUTH_PASS,
	        .spf_domain = "mail.example.gov" }, NULL);
	CHECK(g.r.res == DMARC_RES_PASS && g.r.where == DMARC_AT_PSD, "psd pass: %s where %d",
	      dmarc_res_name(g.r.res), g.r.where);
	CHECK_STR(g.r.org_domain, "example.gov", "org below PSD");
	g = run(m, &(struct scen){ .from = FROM("shop.example.gov"), .spf = AUTH_PASS,
	        .spf_domain = "other.gov" }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL && g.r.disp == DMARC_DISP_REJECT &&
	      strcmp(g.r.policy_tag, "p") == 0 && g.r.where == DMARC_AT_PSD, "psd fail");
	CHECK_STR(g.r.policy_domain, "gov", "psd policy domain");
	/* psd=n: b.corp.example is its own organizational domain */
	g = run(m, &(struct scen){ .from = FROM("x.b.corp.example"), .dkim_d = { "c.corp.example" } }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL && g.r.disp == DMARC_DISP_NONE, "psd=n policy none");
	CHECK_STR(g.r.org_domain, "b.corp.example", "psd=n org");
	CHECK_STR(g.r.policy_domain, "b.corp.example", "psd=n policy");
	/* without psd=n, corp.example (fewest labels) is the org domain */
	g = run(m, &(struct scen){ .from = FROM("y.corp.example"), .dkim_d = { "z.corp.example" } }, NULL);
	CHECK(g.r.res == DMARC_RES_PASS, "relaxed via walk");
	/* a PSD that forgot psd=y: org is the PSD ("fewest labels") — RFC 9989
	 * 11.8 names this risk; two .org domains then align */
	g = run(m, &(struct scen){ .from = FROM("a.org"), .dkim_d = { "b.org" } }, NULL);
	CHECK(g.r.res == DMARC_RES_PASS && strcmp(g.r.org_domain, "org") == 0, "PSD without psd=y");
	memdns_free(&m);

	/* long name: exactly the eight queries of RFC 9989 4.10's example */
	m = memdns_new();
	memdns_add_txt(m, "_dmarc.example.com", "v=DMARC1; p=reject");
	memdns_add_txt(m, "_dmarc.b.c.d.e.f.g.h.i.j.mail.example.com", "v=DMARC1; p=none"); /* skipped */
	struct trace t;
	trace_init(&t, trace_now_us(), 1);
	g = run(m, &(struct scen){ .from = FROM("a.b.c.d.e.f.g.h.i.j.mail.example.com") }, &t);
	static const char *const want[] = {
		"_dmarc.a.b.c.d.e.f.g.h.i.j.mail.example.com", "_dmarc.g.h.i.j.mail.example.com",
		"_dmarc.h.i.j.mail.example.com", "_dmarc.i.j.mail.example.com",
		"_dmarc.j.mail.example.com", "_dmarc.mail.example.com", "_dmarc.example.com",
		"_dmarc.com" };
	unsigned txt = 0;
	for (size_t i = 0; i < t.n; i++)
		if (strncmp(t.lines[i].text, "query ", 6) == 0 && strstr(t.lines[i].text, " TXT")) {
			CHECK(txt < 8 && strncmp(t.lines[i].text + 6, want[txt], strlen(want[txt])) == 0 &&
			      t.lines[i].text[6 + strlen(want[txt])] == ' ', "query %u: %s", txt, t.lines[i].text);
			txt++;
		}
	CHECK(txt == LIM_DMARC_TREE_WALK, "%u TXT queries", txt);
	CHECK(memdns_lookups(m) == LIM_DMARC_TREE_WALK + 3, "%u lookups", memdns_lookups(m));
	CHECK(g.r.where == DMARC_AT_ORG && g.r.walk_step == 7 && g.r.disp == DMARC_DISP_REJECT,
	      "long name: where %d step %u", g.r.where, g.r.walk_step);
	/* parallel: all questions in flight at once (one round trip) */
	CHECK(memdns_max_pending(m) == LIM_DMARC_TREE_WALK + 3, "max pending %u", memdns_max_pending(m));
	trace_free(&t);
	memdns_free(&m);

	/* sequential mode stops at psd=n at the author domain: one TXT query */
	m = memdns_new();
	memdns_add_txt(m, "_dmarc.a.b.example", "v=DMARC1; p=reject; psd=n");
	g = run(m, &(struct scen){ .sequential = 1, .from = FROM("a.b.example") }, NULL);
	CHECK(g.r.disp == DMARC_DISP_REJECT && memdns_lookups(m) == 1 + 3, "sequential: %u lookups",
	      memdns_lookups(m));
	memdns_free(&m);
}

static void test_errors(void)
{
	static const enum dnsq_status bad[] = { DNSQ_TEMPFAIL, DNSQ_TIMEOUT, DNSQ_BOGUS };
	for (size_t i = 0; i < 3; i++) {
		struct memdns *m = world();
		memdns_set_status(m, "_dmarc.example.com", DNSQ_T_TXT, bad[i]);
		struct got g = run(m, &(struct scen){ .from = FROM("example.com"), .spf = AUTH_PASS,
		                   .spf_domain = "example.com" }, NULL);
		CHECK(g.r.res == DMARC_RES_TEMPERROR, "%s -> %s", dnsq_status_name(bad[i]),
		      dmarc_res_name(g.r.res));
		/* an error at a subdomain's own name makes the walk undecidable */
		g = run(m, &(struct scen){ .from = FROM("sub.example.com") }, NULL);
		CHECK(g.r.res == DMARC_RES_TEMPERROR, "walk error");
		memdns_free(&m);
	}
	/* error above a record found at the author domain: identical
	 * identifiers still decide; relaxed ones cannot */
	struct memdns *m = world();
	memdns_set_status(m, "_dmarc.com", DNSQ_T_TXT, DNSQ_TIMEOUT);
	struct got g = run(m, &(struct scen){ .from = FROM("example.com"), .spf = AUTH_PASS,
	                   .spf_domain = "example.com" }, NULL);
	CHECK(g.r.res == DMARC_RES_PASS, "identical despite error above: %s", dmarc_res_name(g.r.res));
	g = run(m, &(struct scen){ .from = FROM("example.com"), .spf = AUTH_PASS,
	        .spf_domain = "bounce.example.com" }, NULL);
	CHECK(g.r.res == DMARC_RES_TEMPERROR, "relaxed with org unknown: %s", dmarc_res_name(g.r.res));
	memdns_free(&m);
	/* The walk of an identifier in a domain the sender controls fails:
	 * it cannot align with the author domain whatever its organizational
	 * domain turns out to be, so the spoof fails and is rejected (no DNS
	 * trouble of the attacker's choosing makes it temporary). */
	for (size_t i = 0; i < 3; i++) {
		static const char *const evil[] = { "evil.example", "mx.attacker.com",
		                                    "a.b.c.attacker.com" };
		for (size_t k = 0; k < 3; k++) {
			m = world();
			/* every name of the identifier's walk fails, but the
			 * shared "com" (the author's walk needs it) */
			for (const char *x = evil[k]; x; x = strchr(x, '.') ? strchr(x, '.') + 1 : NULL) {
				char n[300];
				snprintf(n, sizeof(n), "_dmarc.%s", x);
				if (strcmp(x, "com") != 0)
					memdns_set_status(m, n, 0, bad[i]);
			}
			memdns_set_status(m, evil[k], 0, bad[i]);
			g = run(m, &(struct scen){ .from = FROM("example.com"), .spf = AUTH_PASS,
			        .spf_domain = evil[k] }, NULL);
			CHECK(g.r.res == DMARC_RES_FAIL && g.r.disp == DMARC_DISP_REJECT,
			      "SPF pass for %s (%s walk): %s", evil[k], dnsq_status_name(bad[i]),
			      dmarc_res_name(g.r.res));
			g = run(m, &(struct scen){ .from = FROM("example.com"), .dkim_d = { evil[k] },
			        .dkim_res = { AUTH_PASS } }, NULL);
			CHECK(g.r.res == DMARC_RES_FAIL && g.r.disp == DMARC_DISP_REJECT,
			      "DKIM pass d=%s (%s walk): %s", evil[k], dnsq_status_name(bad[i]),
			      dmarc_res_name(g.r.res));
			g = run(m, &(struct scen){ .from = FROM("example.com"), .spf = AUTH_TEMPERROR,
			        .spf_domain = evil[k] }, NULL);
			CHECK(g.r.res == DMARC_RES_FAIL, "SPF temperror for %s: %s", evil[k],
			      dmarc_res_name(g.r.res));
			memdns_free(&m);
		}
	}
	/* the author's organizational domain is unknown (error above its
	 * record): an identifier sharing no label suffix with the author
	 * domain still cannot align */
	m = world();
	memdns_set_status(m, "_dmarc.com", DNSQ_T_TXT, DNSQ_TIMEOUT);
	g = run(m, &(struct scen){ .from = FROM("example.com"), .spf = AUTH_PASS,
	        .spf_domain = "evil.example" }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL && g.r.disp == DMARC_DISP_REJECT,
	      "org unknown, other TLD: %s", dmarc_res_name(g.r.res));
	memdns_free(&m);
	/* a DKIM temperror that would align: temperror, unrelated: fail */
	m = world();
	g = run(m, &(struct scen){ .from = FROM("example.com"), .dkim_d = { "example.com" },
	        .dkim_res = { AUTH_TEMPERROR } }, NULL);
	CHECK(g.r.res == DMARC_RES_TEMPERROR, "aligned DKIM temperror");
	g = run(m, &(struct scen){ .from = FROM("example.com"), .dkim_d = { "evil.example" },
	        .dkim_res = { AUTH_TEMPERROR } }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL, "unrelated DKIM temperror");
	/* several DMARC records at one name count as none */
	g = run(m, &(struct scen){ .from = FROM("multi.example") }, NULL);
	CHECK(g.r.res == DMARC_RES_NONE, "multiple records: %s", dmarc_res_name(g.r.res));
	/* ... and the walk goes on to the parent (RFC 9989 4.10 step 2) */
	g = run(m, &(struct scen){ .from = FROM("two.multi2.example") }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL && g.r.where == DMARC_AT_ORG &&
	      g.r.disp == DMARC_DISP_QUARANTINE, "multiple records then parent");
	/* deadline already past: no lookup, temperror */
	unsigned before = memdns_lookups(m);
	g = run(m, &(struct scen){ .from = FROM("example.com"), .deadline = 1 }, NULL);
	CHECK(g.r.res == DMARC_RES_TEMPERROR && memdns_lookups(m) == before, "deadline");
	memdns_free(&m);
}

static void test_rfc7489(void)
{
	struct memdns *m = world();
	struct got g;
	/* PSL: example.co.uk is the organizational domain of mail.example.co.uk */
	g = run(m, &(struct scen){ .mode = DMARC_MODE_RFC7489, .from = FROM("mail.example.co.uk"),
	        .spf = AUTH_PASS, .spf_domain = "bounce.example.co.uk" }, NULL);
	CHECK(g.r.res == DMARC_RES_PASS && g.r.where == DMARC_AT_ORG, "7489 pass");
	CHECK_STR(g.r.org_domain, "example.co.uk", "PSL org");
	unsigned before = memdns_lookups(m);
	g = run(m, &(struct scen){ .mode = DMARC_MODE_RFC7489, .from = FROM("example.co.uk"),
	        .spf = AUTH_PASS, .spf_domain = "other.co.uk" }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL, "7489 fail");
	CHECK(memdns_lookups(m) - before == 1, "7489: one query when from is the org domain");
	/* pct=50 sampling is deterministic: bucket = FNV-1a-64(key) % 100 */
	int in = 0, out = 0;
	for (int i = 0; i < 200; i++) {
		char key[32];
		snprintf(key, sizeof(key), "<msg%d@example.net>", i);
		g = run(m, &(struct scen){ .mode = DMARC_MODE_RFC7489, .from = FROM("sub.example.co.uk"),
		        .key = key }, NULL);
		unsigned b = dmarc_sample_bucket(key);
		CHECK(g.r.sample_bucket == b, "bucket");
		if (b < 50) {
			in++;
			CHECK(g.r.disp == DMARC_DISP_QUARANTINE && g.r.override == DMARC_OVR_NONE, "sampled in");
		} else {
			out++;
			CHECK(g.r.disp == DMARC_DISP_NONE && g.r.override == DMARC_OVR_SAMPLED_OUT, "sampled out");
		}
		struct got g2 = run(m, &(struct scen){ .mode = DMARC_MODE_RFC7489,
		        .from = FROM("sub.example.co.uk"), .key = key }, NULL);
		CHECK(g2.r.disp == g.r.disp, "same key, same outcome");
	}
	CHECK(in > 70 && out > 70, "sampling spread: %d in, %d out", in, out);
	/* documented values of the hash */
	CHECK(dmarc_sample_bucket("") == 14695981039346656037ull % 100, "empty key");
	CHECK(dmarc_sample_bucket("a") == 0xaf63dc4c8601ec8cull % 100, "FNV-1a of 'a'");
	/* pct=0: p=reject becomes quarantine for every key */
	g = run(m, &(struct scen){ .mode = DMARC_MODE_RFC7489, .from = FROM("pct0.example"), .key = "k" }, NULL);
	CHECK(g.r.disp == DMARC_DISP_QUARANTINE && g.r.override == DMARC_OVR_SAMPLED_OUT, "pct=0");
	/* pct is ignored in RFC 9989 mode */
	g = run(m, &(struct scen){ .from = FROM("pct0.example"), .key = "k" }, NULL);
	CHECK(g.r.disp == DMARC_DISP_REJECT, "pct ignored by 9989");
	/* several records at the From domain end discovery (RFC 7489 6.6.3) */
	g = run(m, &(struct scen){ .mode = DMARC_MODE_RFC7489, .from = FROM("two.multi2.example") }, NULL);
	CHECK(g.r.res == DMARC_RES_NONE, "7489 multiple records");
	/* t= and psd= mean nothing in RFC 7489 mode */
	g = run(m, &(struct scen){ .mode = DMARC_MODE_RFC7489, .from = FROM("test.example") }, NULL);
	CHECK(g.r.disp == DMARC_DISP_REJECT, "t=y ignored by 7489");
	/* np= (RFC 9091) applies in RFC 7489 mode too: a subdomain that does
	 * not exist gets np=reject, one that exists sp=none */
	g = run(m, &(struct scen){ .mode = DMARC_MODE_RFC7489, .from = FROM("ghost.np.example") }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL && g.r.disp == DMARC_DISP_REJECT && g.r.author_exists == 0 &&
	      strcmp(g.r.policy_tag, "np") == 0, "7489 np= for a non-existent subdomain: %s %s where %d exists %d org %s",
	      dmarc_res_name(g.r.res), dmarc_disp_name(g.r.disp), g.r.where, g.r.author_exists, g.r.org_domain);
	g = run(m, &(struct scen){ .mode = DMARC_MODE_RFC7489, .from = FROM("exists.np.example") }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL && g.r.disp == DMARC_DISP_NONE && g.r.author_exists == 1,
	      "7489 sp= for an existing subdomain: %s", dmarc_disp_name(g.r.disp));
	memdns_free(&m);
}

static void test_authors(void)
{
	struct memdns *m = world();
	struct got g;
	/* two domains: one passes (p=none), one fails p=reject: strictest wins */
	g = run(m, &(struct scen){ .from = "a@none.example, b@example.com", .spf = AUTH_PASS,
	        .spf_domain = "none.example" }, NULL);
	CHECK(g.r.res == DMARC_RES_FAIL && g.r.disp == DMARC_DISP_REJECT && g.r.n_domains == 2 &&
	      g.r.author_status == DMARC_AUTHOR_MULTI_DOMAIN, "multi-domain strictest");
	CHECK_STR(g.r.domain, "example.com", "deciding domain");
	/* bad From: permerror with a disposition, never a silent pass */
	g = run(m, &(struct scen){ .from = "not an address", .spf = AUTH_PASS, .spf_domain = "example.com" }, NULL);
	CHECK(g.r.res == DMARC_RES_PERMERROR && g.r.disp == DMARC_DISP_QUARANTINE &&
	      g.r.author_status == DMARC_AUTHOR_SYNTAX, "bad From");
	memdns_free(&m);
	/* configured disposition for a bad author */
	m = world();
	struct dmarc_opts o = { .defer = dm_defer, .bad_author_disp = DMARC_DISP_REJECT,
	                        .bad_author_disp_set = 1 };
	struct dmarc_author a;
	struct msg pm;
	const char *msg = "Subject: no from\r\n\r\nbody\r\n";
	msg_parse(msg, strlen(msg), &pm);
	dmarc_author(&pm, &a);
	msg_free(&pm);
	g = (struct got){ 0 };
	struct dmarc_eval *e = dmarc_start(memdns_dnsq(m), &o, &a, trace_now_us() + 1000000, NULL);
	struct dmarc_inputs in = { .spf = AUTH_PASS, .spf_domain = "example.com" };
	dmarc_finish(e, &in, on_done, &g);
	CHECK(memdns_lookups(m) == 0, "no lookup for no From");
	loop(m);
	CHECK(g.calls == 1 && g.r.res == DMARC_RES_PERMERROR && g.r.disp == DMARC_DISP_REJECT &&
	      g.r.author_status == DMARC_AUTHOR_NO_FROM, "no From: reject as configured");
	memdns_free(&m);
}

static void test_lifecycle(void)
{
	struct memdns *m = world();
	struct dmarc_opts o = { .defer = dm_defer };
	struct dmarc_author a;
	struct got g = { 0 };
	dmarc_author_value("x@sub.example.com", 17, &a);
	/* abandoned before finish: lookups land later, nothing is called */
	struct dmarc_eval *e = dmarc_start(memdns_dnsq(m), &o, &a, trace_now_us() + 1000000, NULL);
	dmarc_abandon(e);
	loop(m);
	/* abandoned after finish, before the answers */
	e = dmarc_start(memdns_dnsq(m), &o, &a, trace_now_us() + 1000000, NULL);
	struct dmarc_inputs in = { .spf = AUTH_NONE };
	dmarc_finish(e, &in, on_done, &g);
	dmarc_abandon(e);
	loop(m);
	CHECK(g.calls == 0, "done after abandon");
	/* finish after discovery completed: still called later, once */
	e = dmarc_start(memdns_dnsq(m), &o, &a, trace_now_us() + 1000000, NULL);
	loop(m);
	dmarc_finish(e, &in, on_done, &g);
	CHECK(g.calls == 0, "done inside finish");
	loop(m);
	CHECK(g.calls == 1 && g.r.res == DMARC_RES_FAIL, "late finish");
	/* answers in the same evaluation are asked once: the DKIM walk of
	 * mail.example.com shares _dmarc.example.com and _dmarc.com */
	unsigned before = memdns_lookups(m);
	run(m, &(struct scen){ .from = FROM("example.com"), .dkim_d = { "mail.example.com" } }, NULL);
	CHECK(memdns_lookups(m) - before == 2 + 3 + 1, "cache: %u lookups", memdns_lookups(m) - before);
	memdns_free(&m);
}

static void test_trace(void)
{
	struct memdns *m = world();
	struct trace t;
	trace_init(&t, trace_now_us(), 1);
	run(m, &(struct scen){ .from = FROM("sub.example.com"), .spf = AUTH_PASS,
	    .spf_domain = "evil.example" }, &t);
	int found = 0, org = 0, why = 0, disp = 0;
	for (size_t i = 0; i < t.n; i++) {
		CHECK(strcmp(t.lines[i].area, "dmarc") == 0, "area");
		const char *s = t.lines[i].text;
		found |= strstr(s, "policy record at _dmarc.example.com (organizational domain, tree walk step 2)") != NULL;
		org |= strstr(s, "organizational domain example.com") != NULL;
		why |= strstr(s, "SPF not aligned evil.example") != NULL;
		disp |= strstr(s, "disposition quarantine") != NULL;
	}
	CHECK(found && org && why && disp, "trace: found %d org %d why %d disp %d", found, org, why, disp);
	trace_free(&t);
	memdns_free(&m);
}

int main(void)
{
	psl = dmarc_psl_open(NULL);
	CHECK(psl != NULL, "libpsl: no public suffix list");
	if (!psl)
		return 1;
	char org[DMARC_DOMAIN_MAX];
	CHECK(dmarc_psl_org(psl, "a.b.example.co.uk", org) == 0, "psl");
	CHECK_STR(org, "example.co.uk", "psl org");
	CHECK(dmarc_psl_org(psl, "co.uk", org) == 0, "psl");
	CHECK_STR(org, "co.uk", "public suffix is its own org");
	test_alignment();
	test_null_sender();
	test_policies();
	test_tree_walk();
	test_errors();
	test_rfc7489();
	test_authors();
	test_lifecycle();
	test_trace();
	dmarc_psl_close(&psl);
	CHECK(psl == NULL, "close clears");
	return dm_result("test_eval");
}
