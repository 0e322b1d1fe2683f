/* Fuzz target: the in-process scan path of one message over an in-memory
 * DNS (tests/lib/memdns.h): SPF check_host (both engines), DMARC discovery
 * and evaluation, DKIM key lookups and verification, and the verdict.
 * The zone is small and fixed, except three records the input supplies
 * (the SPF and DMARC records of fuzz.example, a DKIM key of it). Each
 * callback must run exactly once and never from inside its starter; the
 * verdict must be well formed. Keys: RFC 8463 Appendix A (see
 * tests/fuzz/README.md). */
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/archeck.h"
#include "checks/dkim/dkv.h"
#include "checks/dmarc/dmarc.h"
#include "checks/msg.h"
#include "checks/spf/spf.h"
#include "checks/verdict/verdict.h"
#include "tests/lib/memdns.h"

#include <errno.h>

static struct dkv_lib *lib;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char err[256];
	/* a fixed clock: t= and x= of the seed signatures stay in the past */
	struct dkv_opts o = { .fixed_time = 1600000000u };
	lib = dkv_lib_new(&o, err, sizeof(err));
	if (!lib) {
		fprintf(stderr, "dkv_lib_new: %s\n", err);
		abort();
	}
	return 0;
}

/* the loop's deferred calls */
static struct { void (*fn)(void *); void *arg; } dq_calls[64];
static size_t n_deferred;
static int in_starter;

static void defer(void *loop, void (*fn)(void *), void *arg)
{
	(void)loop;
	FUZZ_ASSERT(n_deferred < sizeof(dq_calls) / sizeof(dq_calls[0]));
	dq_calls[n_deferred].fn = fn;
	dq_calls[n_deferred].arg = arg;
	n_deferred++;
}

static size_t run_deferred(void)
{
	size_t ran = 0;
	while (n_deferred > 0) {
		void (*fn)(void *) = dq_calls[0].fn;
		void *arg = dq_calls[0].arg;
		memmove(dq_calls, dq_calls + 1, (n_deferred - 1) * sizeof(dq_calls[0]));
		n_deferred--;
		fn(arg);
		ran++;
	}
	return ran;
}

static void loop(struct memdns *m)
{
	unsigned rounds = 0;
	while (memdns_run(m) + run_deferred() > 0)
		FUZZ_ASSERT(++rounds < 10000);
}

struct spf_got { int calls; struct spf_result r; };
static void spf_done(void *arg, const struct spf_result *r)
{
	FUZZ_ASSERT(!in_starter);
	struct spf_got *g = arg;
	g->calls++;
	g->r = *r;
}

struct dm_got { int calls; struct dmarc_result r; };
static void dmarc_done(void *arg, const struct dmarc_result *r)
{
	FUZZ_ASSERT(!in_starter);
	struct dm_got *g = arg;
	g->calls++;
	g->r = *r;
}

struct key_q { struct dkv_keyset *ks; const char *qname; int calls; };
static void key_done(void *arg, const struct dnsq_answer *a)
{
	FUZZ_ASSERT(!in_starter);
	struct key_q *q = arg;
	q->calls++;
	int rc = dkv_keyset_put(q->ks, q->qname, a);
	FUZZ_ASSERT(rc == 0 || rc == -ENOMEM || rc == -EINVAL);
}

static void zone(struct memdns *m, const char *spf, const char *dmarc, const char *key)
{
	memdns_add_txt(m, "football.example.com", "v=spf1 ip4:192.0.2.0/28 include:_spf.example.net ~all");
	memdns_add_txt(m, "_spf.example.net", "v=spf1 a mx ptr exists:%{i}.x.example.net -all");
	memdns_add_a(m, "example.net", "192.0.2.20");
	memdns_add_mx(m, "example.net", 10, "mx.example.net");
	memdns_add_a(m, "mx.example.net", "192.0.2.21");
	memdns_add_aaaa(m, "mx.example.net", "2001:db8::21");
	memdns_add_ptr(m, "22.2.0.192.in-addr.arpa", "mx.example.net");
	memdns_add_txt(m, "_dmarc.football.example.com", "v=DMARC1; p=reject; rua=mailto:d@football.example.com");
	memdns_add_txt(m, "brisbane._domainkey.football.example.com",
		"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
	memdns_add_txt(m, "test._domainkey.football.example.com",
		"v=DKIM1; g=*; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6w"
		"y5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9Pzo"
		"xZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB");
	memdns_add_txt(m, "_dmarc.example.org", "v=DMARC1; p=quarantine; sp=none; np=reject; adkim=s; aspf=s");
	memdns_add_a(m, "example.org", "192.0.2.30");
	memdns_set_status(m, "temp.example", 0, DNSQ_TEMPFAIL);
	memdns_set_status(m, "_dmarc.temp.example", 0, DNSQ_TIMEOUT);
	memdns_set_status(m, "bogus.example", 0, DNSQ_BOGUS);
	memdns_set_sec(m, "bogus.example", DNSQ_SEC_BOGUS);
	memdns_add_cname(m, "loop.example", "loop2.example");
	memdns_add_cname(m, "loop2.example", "loop.example");
	/* the records the input writes */
	memdns_add_txt(m, "fuzz.example", spf);
	memdns_add_txt(m, "_dmarc.fuzz.example", dmarc);
	memdns_add_txt(m, "sel._domainkey.fuzz.example", key);
	memdns_add_a(m, "fuzz.example", "192.0.2.40");
	memdns_add_mx(m, "fuzz.example", 0, "fuzz.example");
}

/* Known bugs (README.md, Findings): a NUL byte in the header section, or
 * line ends that change from CRLF to LF, or a line that is no header
 * field before the blank line. With ALIGND_FUZZ_SKIP_KNOWN set
 * in the environment such messages skip DKIM verification, so that a
 * long run can look for other bugs; the replay tests never set it. */
static int known_bug(const char *m, size_t len, size_t hlen, int crlf)
{
	static int skip = -1;
	if (skip < 0)
		skip = getenv("ALIGND_FUZZ_SKIP_KNOWN") != NULL;
	if (!skip)
		return 0;
	if (memchr(m, 0, hlen))
		return 1;
	/* an empty header section: libopendkim asserts in dkim_header() */
	if (len > 0 && (m[0] == '\n' || m[0] == '\r'))
		return 1;
	/* a line that is no header field ends msg_parse's header section */
	size_t he = msg_header_end(m, len);
	if ((he ? he : len) != hlen)
		return 1;
	for (size_t i = 0; i < hlen; i++)
		if (m[i] == '\n' && (i > 0 && m[i - 1] == '\r') != crlf)
			return 1;
	return 0;
}

static const char *const ips[] = {
	"192.0.2.3", "192.0.2.22", "192.0.2.40", "2001:db8::21", "::ffff:192.0.2.21",
	"198.51.100.1", "not-an-ip", "",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f;
	fz_init(&f, data, size);
	unsigned sel = fz_u16(&f);
	char *spf_txt = fz_str(&f, 700), *dmarc_txt = fz_str(&f, 300), *key_txt = fz_str(&f, 500);
	char *mail_from = fz_str(&f, 300), *helo = fz_str(&f, 100);
	size_t mlen;
	const uint8_t *mb = fz_bytes(&f, f.len, &mlen);
	char *msgbuf = fz_dup(mb, mlen);

	struct memdns *m = memdns_new();
	zone(m, spf_txt, dmarc_txt, key_txt);
	struct dnsq *dq = memdns_dnsq(m);
	uint64_t deadline = trace_now_us() + 30000000u;
	struct trace tr;
	trace_init(&tr, trace_now_us(), (sel >> 15) & 1);

	/* SPF for MAIL FROM, started at envelope time */
	struct spf_request rq;
	spf_request_mailfrom(&rq, ips[sel % 8], (sel & 8) ? NULL : mail_from, helo);
	rq.engine = (sel & 16) ? SPF_ENGINE_LIBSPF2 : SPF_ENGINE_NATIVE;
	rq.receiver = "mx.test.example";
	rq.default_explanation = "see %{d} for %{i}";
	rq.deadline_us = deadline;
	struct spf_got sg = { 0 };
	in_starter = 1;
	FUZZ_ASSERT(spf_check_host(dq, &rq, &tr, spf_done, &sg) == 0);
	in_starter = 0;
	FUZZ_ASSERT(sg.calls == 0);

	struct msg msg;
	int mrc = msg_parse(msgbuf, mlen, &msg);
	struct dm_got dg = { 0 };
	struct dkv_result dres;
	memset(&dres, 0, sizeof(dres));
	int have_dkim = 0;
	if (mrc == MSG_OK) {
		/* header time: DMARC discovery and the DKIM keys */
		struct dmarc_author a;
		dmarc_author(&msg, &a);
		struct dmarc_opts o = { .mode = DMARC_MODE_RFC9989, .defer = defer,
		                        .walk_sequential = (sel >> 5) & 1 };
		in_starter = 1;
		struct dmarc_eval *e = dmarc_start(dq, &o, &a, deadline, &tr);
		in_starter = 0;
		FUZZ_ASSERT(e != NULL);

		struct dkv_sigref refs[LIM_DKIM_MAX_SIGNATURES];
		size_t nref = dkv_list(&msg, refs, dkv_lib_max_signatures(lib), NULL);
		struct dkv_keyset *ks = dkv_keyset_new();
		FUZZ_ASSERT(ks != NULL);
		struct key_q kq[LIM_DKIM_MAX_SIGNATURES];
		size_t nkq = 0;
		for (size_t i = 0; i < nref; i++) {
			if (!refs[i].qname[0] || refs[i].dup)
				continue;
			kq[nkq] = (struct key_q){ ks, refs[i].qname, 0 };
			in_starter = 1;
			dnsq_lookup(dq, refs[i].qname, DNSQ_T_TXT, key_done, &kq[nkq]);
			in_starter = 0;
			nkq++;
		}
		loop(m);
		FUZZ_ASSERT(sg.calls == 1);
		for (size_t i = 0; i < nkq; i++)
			FUZZ_ASSERT(kq[i].calls == 1);

		/* the worker's part */
		if (known_bug(msgbuf, mlen, msg.header_len, msg.crlf)) {
			dkv_keyset_free(&ks);
			goto no_dkim;
		}
		int vrc = dkv_verify(lib, msgbuf, mlen, ks, &dres, &tr);
		FUZZ_ASSERT(vrc == 0 || vrc == -ENOMEM || vrc == -EIO);
		have_dkim = 1;
		FUZZ_ASSERT(dres.n <= dkv_lib_max_signatures(lib));
		FUZZ_ASSERT(dres.n == nref);
		for (size_t i = 0; i < dres.n; i++) {
			const struct dkv_sig *s = &dres.sigs[i];
			one_line(s->reason, sizeof(s->reason));
			one_line(s->d, sizeof(s->d));
			one_line(s->s, sizeof(s->s));
			one_line(s->i, sizeof(s->i));
			one_line(s->a, sizeof(s->a));
			one_line(s->b_prefix, sizeof(s->b_prefix));
			/* a pass needs a key the zone really has */
			if (s->res == AUTH_PASS)
				FUZZ_ASSERT(s->key_found && s->bh_ok == 1 && s->sig_ok == 1);
		}
		dkv_keyset_free(&ks);
	no_dkim:;
		struct dmarc_dkim_in dk[LIM_DKIM_MAX_SIGNATURES];
		size_t ndk = 0;
		for (size_t i = 0; i < dres.n && ndk < LIM_DKIM_MAX_SIGNATURES; i++)
			dk[ndk++] = (struct dmarc_dkim_in){ dres.sigs[i].res, dres.sigs[i].d };
		struct dmarc_inputs in = { .spf = sg.r.result, .spf_domain = sg.r.domain,
		                           .mail_from_null = (sel & 8) != 0, .helo = helo,
		                           .dkim = dk, .n_dkim = ndk };
		in_starter = 1;
		dmarc_finish(e, &in, dmarc_done, &dg);
		in_starter = 0;
		FUZZ_ASSERT(dg.calls == 0);
		loop(m);
		FUZZ_ASSERT(dg.calls == 1);
		FUZZ_ASSERT(dg.r.res <= DMARC_RES_PERMERROR);
		one_line(dg.r.domain, sizeof(dg.r.domain));
		if (dg.r.res == DMARC_RES_PASS)
			FUZZ_ASSERT(dg.r.spf_aligned == 1 || dg.r.dkim_aligned == 1);
	} else {
		loop(m);
	}
	FUZZ_ASSERT(sg.calls == 1);
	FUZZ_ASSERT(sg.r.dns_terms <= LIM_SPF_DNS_TERMS + 1);
	FUZZ_ASSERT(sg.r.result <= AUTH_POLICY);
	one_line(sg.r.explanation, sizeof(sg.r.explanation));
	FUZZ_ASSERT(memchr(sg.r.problem, 0, sizeof(sg.r.problem)) != NULL);
	FUZZ_ASSERT(memchr(sg.r.mechanism, 0, sizeof(sg.r.mechanism)) != NULL);
	FUZZ_ASSERT(memdns_lookups(m) < 2000);

	/* the verdict, with Authentication-Results */
	struct verdict_in vin = {
		.authserv_id = "mx.test.example",
		.spf = &sg.r, .mail_from = (sel & 8) ? "" : mail_from, .helo = helo,
		.dkim = have_dkim ? &dres : NULL,
		.dmarc = dg.calls ? &dg.r : NULL,
	};
	struct verdict_opts vo;
	verdict_opts_default(&vo);
	struct verdict v;
	verdict_build(&vin, &vo, &v, &tr);
	FUZZ_ASSERT(!v.ar.failed);
	check_ar(v.ar.data, v.ar.len);
	one_line(v.smtp_reply, sizeof(v.smtp_reply));
	one_line(v.summary, sizeof(v.summary));
	if (v.action == VERDICT_REJECT)
		FUZZ_ASSERT(strncmp(v.smtp_reply, "550 ", 4) == 0);
	verdict_free(&v);
	for (size_t i = 0; i < tr.n; i++)
		one_line(tr.lines[i].text, strlen(tr.lines[i].text) + 1);

	dkv_result_free(&dres);
	msg_free(&msg);
	trace_free(&tr);
	memdns_free(&m);
	free(msgbuf);
	free(spf_txt); free(dmarc_txt); free(key_txt); free(mail_from); free(helo);
	return 0;
}
