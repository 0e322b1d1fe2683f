/* The verdict: actions, symbols, SMTP replies and the RFC 8601 header,
 * including hostile values that must not break the header. */
#include "checks/verdict/verdict.h"
#include "tests/unit/check.h"

#include <stdlib.h>

static struct spf_result spf(enum auth_res r, const char *domain)
{
	struct spf_result s;
	memset(&s, 0, sizeof(s));
	s.result = r;
	snprintf(s.domain, sizeof(s.domain), "%s", domain);
	snprintf(s.mechanism, sizeof(s.mechanism), "%s", r == AUTH_PASS ? "ip4:192.0.2.0/24" : "-all");
	return s;
}

static struct dmarc_result dmarc(enum dmarc_res r, enum dmarc_policy p, enum dmarc_disp d,
                                 const char *domain)
{
	struct dmarc_result x;
	memset(&x, 0, sizeof(x));
	x.res = r;
	x.policy = p;
	x.rec.p = p;
	x.disp = d;
	snprintf(x.domain, sizeof(x.domain), "%s", domain);
	return x;
}

static int has_sym(const struct verdict *v, const char *name)
{
	for (size_t i = 0; i < v->n_syms; i++)
		if (strcmp(v->syms[i].name, name) == 0)
			return 1;
	return 0;
}

static void test_spoof_reject(void)
{
	struct verdict_opts o;
	verdict_opts_default(&o);
	struct spf_result s = spf(AUTH_FAIL, "example.com");
	struct dmarc_result d = dmarc(DMARC_RES_FAIL, DMARC_POLICY_REJECT, DMARC_DISP_REJECT, "example.com");
	struct verdict_in in = { .authserv_id = "mx.example.net", .spf = &s,
	                         .mail_from = "ceo@example.com", .dmarc = &d };
	struct verdict v;
	verdict_build(&in, &o, &v, NULL);
	CHECK(v.action == VERDICT_REJECT);
	CHECK(strncmp(v.smtp_reply, "550 5.7.1 ", 10) == 0);
	CHECK(strstr(v.smtp_reply, "example.com") != NULL);
	CHECK(has_sym(&v, "DMARC_POLICY_REJECT") && has_sym(&v, "SPF_FAIL") && has_sym(&v, "DKIM_NONE"));
	CHECK(v.score == 13.0);
	CHECK_STR(v.ar.data, "mx.example.net; spf=fail (does not designate client: -all) "
	          "smtp.mailfrom=example.com; dkim=none; dmarc=fail (p=reject dis=reject) header.from=example.com");
	verdict_free(&v);
}

static void test_overrides_and_modes(void)
{
	struct verdict_opts o;
	verdict_opts_default(&o);
	struct dmarc_result d = dmarc(DMARC_RES_FAIL, DMARC_POLICY_REJECT, DMARC_DISP_REJECT, "example.com");
	struct policy_decision pd = { .disp = POLICY_DISP_QUARANTINE, .override = "forwarded",
	                              .why = "arc=pass from untrusted sealer x.example" };
	struct verdict_in in = { .authserv_id = "mx", .dmarc = &d, .policy = &pd,
	                         .arc = AUTH_PASS, .arc_comment = "untrusted sealer x.example" };
	struct verdict v;
	verdict_build(&in, &o, &v, NULL);
	CHECK(v.action == VERDICT_QUARANTINE);
	CHECK(v.smtp_reply[0] == '\0');
	CHECK_STR(v.override, "forwarded");
	CHECK(has_sym(&v, "DMARC_OVERRIDE"));
	CHECK(strstr(v.ar.data, "; arc=pass (untrusted sealer x.example)") != NULL);
	CHECK(strstr(v.ar.data, "dmarc=fail (p=reject dis=quarantine override=forwarded)") != NULL);
	verdict_free(&v);

	/* comment text: parentheses become brackets, a backslash and control
	 * bytes a space, no double, leading or trailing spaces */
	in.arc_comment = " a (oldest-pass=2)  b\\c\t(x) ";
	verdict_build(&in, &o, &v, NULL);
	CHECK(strstr(v.ar.data, "; arc=pass (a [oldest-pass=2] b c [x])") != NULL);
	CHECK(strstr(v.ar.data, "  ") == NULL);
	verdict_free(&v);
	in.arc_comment = "untrusted sealer x.example";

	pd.disp = POLICY_DISP_NONE;
	pd.override = "mailing_list";
	verdict_build(&in, &o, &v, NULL);
	CHECK(v.action == VERDICT_ACCEPT);
	CHECK(strstr(v.ar.data, "dis=none override=mailing_list") != NULL);
	verdict_free(&v);

	/* a decision without override keeps the reject */
	struct policy_decision keep = { .disp = POLICY_DISP_REJECT, .why = "direct failure" };
	in.policy = &keep;
	verdict_build(&in, &o, &v, NULL);
	CHECK(v.action == VERDICT_REJECT);
	verdict_free(&v);
}

static void test_temperror_and_score(void)
{
	struct verdict_opts o;
	verdict_opts_default(&o);
	struct dmarc_result d = dmarc(DMARC_RES_TEMPERROR, DMARC_POLICY_UNSET, DMARC_DISP_NONE, "example.org");
	struct verdict_in in = { .authserv_id = "mx", .dmarc = &d };
	struct verdict v;
	verdict_build(&in, &o, &v, NULL);
	CHECK(v.action == VERDICT_TEMPFAIL);
	CHECK(strncmp(v.smtp_reply, "451 4.7.1 ", 10) == 0);
	verdict_free(&v);
	o.dmarc_temperror_tempfail = 0;
	verdict_build(&in, &o, &v, NULL);
	CHECK(v.action == VERDICT_ACCEPT);
	verdict_free(&v);
	/* DMARC unfinished at the deadline */
	o.dmarc_temperror_tempfail = 1;
	in.dmarc = NULL;
	in.timed_out = 1;
	verdict_build(&in, &o, &v, NULL);
	CHECK(v.action == VERDICT_TEMPFAIL);
	CHECK(has_sym(&v, "SCAN_TIMEOUT"));
	verdict_free(&v);
	/* score thresholds without DMARC */
	struct spf_result s = spf(AUTH_FAIL, "example.org");
	struct dmarc_result none = dmarc(DMARC_RES_NONE, DMARC_POLICY_UNSET, DMARC_DISP_NONE, "example.org");
	in = (struct verdict_in){ .authserv_id = "mx", .spf = &s, .mail_from = "a@example.org", .dmarc = &none };
	verdict_build(&in, &o, &v, NULL);
	CHECK(v.action == VERDICT_ACCEPT && v.score == 3.0);
	verdict_free(&v);
	CHECK(verdict_set_weight(&o, "SPF_FAIL", 7.0) == 0);
	CHECK(verdict_set_weight(&o, "NO_SUCH", 1.0) < 0);
	verdict_build(&in, &o, &v, NULL);
	CHECK(v.action == VERDICT_QUARANTINE);
	verdict_free(&v);
	o.reject_score = 7.0;
	verdict_build(&in, &o, &v, NULL);
	CHECK(v.action == VERDICT_REJECT && strncmp(v.smtp_reply, "550 5.7.1", 9) == 0);
	verdict_free(&v);
}

static void test_hostile_values(void)
{
	struct buf b;
	buf_init(&b, 0);
	verdict_ar_value(&b, "simple");
	buf_adds(&b, "|");
	verdict_ar_value(&b, "a\"b\\c;d\r\ne\x01" "f\xc3\xa9");
	CHECK_STR(b.data, "simple|\"a\\\"b\\\\c;d??e?f??\"");
	buf_free(&b);

	struct verdict_opts o;
	verdict_opts_default(&o);
	struct dkv_result dk;
	memset(&dk, 0, sizeof(dk));
	struct dkv_sig sig;
	memset(&sig, 0, sizeof(sig));
	sig.res = AUTH_FAIL;
	snprintf(sig.reason, sizeof(sig.reason), "bad \"sig\"; x=y");
	snprintf(sig.d, sizeof(sig.d), "ex;ample.com");
	snprintf(sig.s, sizeof(sig.s), "sel(1)");
	snprintf(sig.a, sizeof(sig.a), "rsa-sha256");
	snprintf(sig.b_prefix, sizeof(sig.b_prefix), "ab/+=cdefgh");
	dk.sigs = &sig;
	dk.n = 1;
	dk.best = AUTH_FAIL;
	struct dmarc_result d = dmarc(DMARC_RES_NONE, DMARC_POLICY_UNSET, DMARC_DISP_NONE, "example.com");
	struct verdict_in in = { .authserv_id = "mx", .dkim = &dk, .dmarc = &d };
	struct verdict v;
	verdict_build(&in, &o, &v, NULL);
	CHECK(strstr(v.ar.data, "dkim=fail reason=\"bad \\\"sig\\\"; x=y\" header.d=\"ex;ample.com\" "
	                        "header.s=\"sel(1)\" header.a=rsa-sha256 header.b=\"ab/+=cde\"") != NULL);
	CHECK(strpbrk(v.ar.data, "\r\n") == NULL);
	verdict_free(&v);
}

int main(void)
{
	test_spoof_reject();
	test_overrides_and_modes();
	test_temperror_and_score();
	test_hostile_values();
	return check_done("test_verdict");
}
