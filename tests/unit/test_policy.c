/* Indirect-flow evidence and override decisions (docs/policy.md). */
#include "checks/policy/policy.h"
#include "tests/unit/check.h"

#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>

static struct msg parse(const char *text)
{
	struct msg m;
	msg_parse(text, strlen(text), &m);
	return m;
}

static int spf_ok = 1;          /* SPF result the gathered facts claim */
static unsigned oldest_pass;

static void gather(const struct policy_conf *c, const struct msg *m, const char *ip,
                   const char *helo, const char *mf, const char *const *dk, size_t nd,
                   enum auth_res arc, const char *const *sealers, size_t ns,
                   const char *aar1, struct policy_evidence *ev)
{
	struct policy_facts f = {
		.m = m, .client_ip = ip, .helo = helo, .mail_from = mf,
		.spf_helo_pass = spf_ok, .spf_mfrom_pass = spf_ok,
		.dkim_pass = dk, .n_dkim_pass = nd, .arc = arc,
		.arc_sealers = sealers, .n_sealers = ns, .arc_oldest_pass = oldest_pass,
		.aar1 = aar1,
	};
	policy_gather(c, &f, ev);
}

static void decide(struct policy_conf *c, const struct policy_evidence *ev,
                   enum policy_disp want, const char *want_override)
{
	struct policy_decision d;
	policy_decide(c, "example.com", POLICY_DISP_REJECT, ev, &d);
	if (d.disp != want)
		fprintf(stderr, "  decision: disp %d override %s (%s)\n", d.disp,
		        d.override ? d.override : "-", d.why);
	CHECK(d.disp == want);
	if (want_override)
		CHECK_STR(d.override, want_override);
	else
		CHECK(d.override == NULL);
}

static void test_modes(void)
{
	struct policy_conf c = { .mode = POLICY_RFC9989 };
	char err[256];
	CHECK(policy_add_sealers(&c, "arc.lists.example, fwd.example", err, sizeof(err)) == 0);
	CHECK(policy_add_forwarders(&c, "198.51.100.0/24 2001:db8:f::/48 helo:relay.example from:alumni.example",
	                            err, sizeof(err)) == 0);
	CHECK(policy_add_lists(&c, "lists.example", err, sizeof(err)) == 0);
	CHECK(policy_add_forwarders(&c, "300.1.1.1/8", err, sizeof(err)) < 0);
	CHECK(policy_add_forwarders(&c, "192.0.2.0/33", err, sizeof(err)) < 0);
	CHECK(policy_add_sealers(&c, "bad domain!", err, sizeof(err)) < 0);

	struct policy_evidence ev;
	/* direct forgery: no evidence */
	gather(&c, NULL, "203.0.113.9", "evil.example", "x@evil.example", NULL, 0,
	              AUTH_NONE, NULL, 0, NULL, &ev);
	decide(&c, &ev, POLICY_DISP_REJECT, NULL);
	/* trusted forwarder by address, by mapped address, by HELO, by sender domain */
	gather(&c, NULL, "198.51.100.7", "x", "a@b.example", NULL, 0, AUTH_NONE, NULL, 0, NULL, &ev);
	decide(&c, &ev, POLICY_DISP_NONE, "trusted_forwarder");
	gather(&c, NULL, "::ffff:198.51.100.8", "x", NULL, NULL, 0, AUTH_NONE, NULL, 0, NULL, &ev);
	CHECK(ev.forwarder == 1);
	gather(&c, NULL, "2001:db8:f:1::9", "x", NULL, NULL, 0, AUTH_NONE, NULL, 0, NULL, &ev);
	CHECK(ev.forwarder == 1);
	gather(&c, NULL, "2001:db8:e::9", "x", NULL, NULL, 0, AUTH_NONE, NULL, 0, NULL, &ev);
	CHECK(ev.forwarder == 0);
	gather(&c, NULL, "203.0.113.1", "RELAY.example", NULL, NULL, 0, AUTH_NONE, NULL, 0, NULL, &ev);
	CHECK(ev.forwarder == 1);
	gather(&c, NULL, "203.0.113.1", "x", "bounce@mail.alumni.example", NULL, 0, AUTH_NONE, NULL, 0, NULL, &ev);
	CHECK(ev.forwarder == 1);
	gather(&c, NULL, "203.0.113.1", "x", "bounce@notalumni.example", NULL, 0, AUTH_NONE, NULL, 0, NULL, &ev);
	CHECK(ev.forwarder == 0);

	/* ARC: trusted sealer that saw dmarc=pass at hop 1 -> accept */
	const char *sealers[] = { "arc.lists.example" };
	gather(&c, NULL, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_PASS, sealers, 1,
	              "i=1; mx.lists.example; spf=pass smtp.mailfrom=example.com; dmarc=pass header.from=example.com",
	              &ev);
	CHECK(ev.arc_trusted && ev.arc_aar1_dmarc_pass);
	decide(&c, &ev, POLICY_DISP_NONE, "trusted_forwarder");
	/* the trusted sealer saw a failure at hop 1: no override */
	gather(&c, NULL, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_PASS, sealers, 1,
	              "i=1; mx.lists.example; dmarc=fail header.from=example.com", &ev);
	decide(&c, &ev, POLICY_DISP_REJECT, NULL);
	/* a pass for another author domain is no evidence for this one */
	gather(&c, NULL, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_PASS, sealers, 1,
	              "mx.lists.example; dmarc=pass header.from=spoofer.example", &ev);
	CHECK(ev.arc_aar1_dmarc_pass == 1);
	CHECK_STR(ev.arc_aar1_from, "spoofer.example");
	decide(&c, &ev, POLICY_DISP_REJECT, NULL);
	/* a pass without header.from names no domain */
	gather(&c, NULL, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_PASS, sealers, 1,
	              "mx.lists.example; dmarc=pass", &ev);
	decide(&c, &ev, POLICY_DISP_REJECT, NULL);
	/* RFC 8601: ';' inside a quoted local part or a comment does not start
	 * a result: a MAIL FROM "ceo; dmarc=pass header.from=example.com"@x
	 * recorded by the trusted list is not an upstream pass */
	gather(&c, NULL, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_PASS, sealers, 1,
	              "mx.lists.example; spf=pass smtp.mailfrom=\"ceo; dmarc=pass "
	              "header.from=example.com\"@evil.example; dmarc=fail header.from=example.com",
	              &ev);
	CHECK(ev.arc_aar1_dmarc_pass == 0);
	decide(&c, &ev, POLICY_DISP_REJECT, NULL);
	gather(&c, NULL, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_PASS, sealers, 1,
	              "mx.lists.example; spf=pass (x; dmarc=pass header.from=example.com) "
	              "smtp.mailfrom=evil.example; dmarc=fail header.from=example.com", &ev);
	CHECK(ev.arc_aar1_dmarc_pass == 0);
	/* header.from inside a comment does not count either */
	gather(&c, NULL, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_PASS, sealers, 1,
	              "mx.lists.example; dmarc=pass (header.from=example.com) header.from=evil.example",
	              &ev);
	CHECK_STR(ev.arc_aar1_from, "evil.example");
	decide(&c, &ev, POLICY_DISP_REJECT, NULL);
	/* case does not matter */
	gather(&c, NULL, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_PASS, sealers, 1,
	              "mx.lists.example; DMARC=Pass Header.From=EXAMPLE.com", &ev);
	decide(&c, &ev, POLICY_DISP_NONE, "trusted_forwarder");
	/* "dmarc=passed" is not "dmarc=pass" */
	gather(&c, NULL, NULL, NULL, NULL, NULL, 0, AUTH_PASS, sealers, 1, "x; dmarc=passed", &ev);
	CHECK(ev.arc_aar1_dmarc_pass == 0);
	/* untrusted sealer: recorded, no override by default (anyone can
	 * seal); quarantine, forwarded, with untrusted_arc = quarantine */
	const char *other[] = { "someone.example" };
	gather(&c, NULL, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_PASS, other, 1,
	              "i=1; a; dmarc=pass header.from=example.com", &ev);
	decide(&c, &ev, POLICY_DISP_REJECT, NULL);
	c.untrusted_arc_lowers = 1;
	decide(&c, &ev, POLICY_DISP_QUARANTINE, "forwarded");
	c.untrusted_arc_lowers = 0;
	/* a failing (forged) chain is no evidence */
	gather(&c, NULL, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_FAIL, sealers, 1,
	              "i=1; a; dmarc=pass", &ev);
	decide(&c, &ev, POLICY_DISP_REJECT, NULL);

	/* mailing lists */
	struct msg m = parse("List-Id: Talk <talk.lists.example>\r\nFrom: a@example.com\r\n\r\n");
	const char *pass_list[] = { "lists.example" };
	gather(&c, &m, "203.0.113.9", NULL, NULL, pass_list, 1, AUTH_NONE, NULL, 0, NULL, &ev);
	CHECK_STR(ev.list_domain, "lists.example");
	CHECK(ev.list_signed && ev.list_trusted);
	decide(&c, &ev, POLICY_DISP_NONE, "mailing_list");
	/* bare list headers (anyone can add them) are no evidence */
	gather(&c, &m, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_NONE, NULL, 0, NULL, &ev);
	decide(&c, &ev, POLICY_DISP_REJECT, NULL);
	msg_free(&m);
	m = parse("List-Id: <talk.other-list.example>\r\n\r\n");
	const char *pass_other[] = { "other-list.example" };
	gather(&c, &m, "203.0.113.9", NULL, NULL, pass_other, 1, AUTH_NONE, NULL, 0, NULL, &ev);
	CHECK(ev.list_signed && !ev.list_trusted);
	decide(&c, &ev, POLICY_DISP_QUARANTINE, "forwarded");
	msg_free(&m);
	m = parse("List-Post: <mailto:talk@lists.example>\r\n\r\n");
	gather(&c, &m, NULL, NULL, NULL, pass_list, 1, AUTH_NONE, NULL, 0, NULL, &ev);
	CHECK_STR(ev.list_domain, "lists.example");
	msg_free(&m);

	/* a HELO or envelope domain is only a claim: SPF must pass for it */
	spf_ok = 0;
	gather(&c, NULL, "203.0.113.1", "relay.example", NULL, NULL, 0, AUTH_NONE, NULL, 0, NULL, &ev);
	CHECK(ev.forwarder == 0);
	gather(&c, NULL, "203.0.113.1", "x", "bounce@alumni.example", NULL, 0, AUTH_NONE, NULL, 0, NULL, &ev);
	CHECK(ev.forwarder == 0);
	decide(&c, &ev, POLICY_DISP_REJECT, NULL);
	spf_ok = 1;
	/* ARC: an untrusted first hop's AAR is not the trusted sealer's finding */
	const char *mixed[] = { "attacker.example", "arc.lists.example" };
	gather(&c, NULL, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_PASS, mixed, 2,
	       "i=1; attacker.example; dmarc=pass", &ev);
	CHECK(ev.arc_trusted == 0);
	/* named for what it is: the untrusted first sealer, the trusted
	 * second one called trusted */
	CHECK_STR(ev.arc_sealer, "attacker.example");
	CHECK_STR(ev.arc_desc, "untrusted sealer attacker.example at i=1, "
	          "then trusted arc.lists.example at i=2");
	decide(&c, &ev, POLICY_DISP_REJECT, NULL);
	c.untrusted_arc_lowers = 1;
	decide(&c, &ev, POLICY_DISP_QUARANTINE, "forwarded");
	c.untrusted_arc_lowers = 0;
	/* a trusted first hop whose sealed content a later hop changed */
	const char *later[] = { "arc.lists.example", "attacker.example" };
	oldest_pass = 2;
	gather(&c, NULL, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_PASS, later, 2,
	       "i=1; arc.lists.example; dmarc=pass header.from=example.com", &ev);
	CHECK(ev.arc_trusted == 0);
	CHECK_STR(ev.arc_sealer, "attacker.example");
	CHECK_STR(ev.arc_desc, "trusted sealer arc.lists.example at i=1, then untrusted "
	          "attacker.example at i=2; content changed after i=1 by attacker.example "
	          "(oldest-pass=2)");
	decide(&c, &ev, POLICY_DISP_REJECT, NULL);
	c.untrusted_arc_lowers = 1;
	decide(&c, &ev, POLICY_DISP_QUARANTINE, "forwarded");
	c.untrusted_arc_lowers = 0;
	oldest_pass = 1;
	gather(&c, NULL, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_PASS, later, 2,
	       "i=1; arc.lists.example; dmarc=pass header.from=example.com", &ev);
	decide(&c, &ev, POLICY_DISP_NONE, "trusted_forwarder");
	/* ... but a change made by a trusted second sealer is fine */
	const char *both[] = { "arc.lists.example", "fwd.example" };
	oldest_pass = 2;
	gather(&c, NULL, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_PASS, both, 2,
	       "i=1; arc.lists.example; dmarc=pass header.from=example.com", &ev);
	decide(&c, &ev, POLICY_DISP_NONE, "trusted_forwarder");
	oldest_pass = 0;

	/* other modes */
	gather(&c, NULL, "198.51.100.7", NULL, NULL, NULL, 0, AUTH_NONE, NULL, 0, NULL, &ev);
	c.mode = POLICY_STRICT;
	decide(&c, &ev, POLICY_DISP_REJECT, NULL);
	c.mode = POLICY_QUARANTINE_ONLY;
	decide(&c, &ev, POLICY_DISP_NONE, "trusted_forwarder");   /* trusted evidence still accepts */
	gather(&c, NULL, "203.0.113.9", NULL, NULL, NULL, 0, AUTH_NONE, NULL, 0, NULL, &ev);
	decide(&c, &ev, POLICY_DISP_QUARANTINE, "local_policy");
	/* quarantine is never changed */
	struct policy_decision d;
	policy_decide(&c, "example.com", POLICY_DISP_QUARANTINE, &ev, &d);
	CHECK(d.disp == POLICY_DISP_QUARANTINE && d.override == NULL);
	policy_conf_free(&c);
}

static void test_exceptions(void)
{
	char path[] = "/tmp/alignd-exc-XXXXXX";
	int fd = mkstemp(path);
	const char *text = "# partners\nenforce example.com\nnever-reject newsletters.example.org\n"
	                   "never-reject example.net  # a whole domain\n";
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	struct policy_conf c = { .mode = POLICY_RFC9989 };
	char err[256];
	CHECK(policy_load_exceptions(&c, path, err, sizeof(err)) == 0);
	CHECK(c.n_exc == 3);
	CHECK(policy_exception_for(&c, "example.com") == POLICY_EXC_ENFORCE);
	CHECK(policy_exception_for(&c, "mail.example.com") == POLICY_EXC_ENFORCE);
	CHECK(policy_exception_for(&c, "notexample.com") == POLICY_EXC_NONE);
	CHECK(policy_exception_for(&c, "x.newsletters.example.org") == POLICY_EXC_NEVER_REJECT);
	/* enforce beats a trusted forwarder */
	const char *fw = "198.51.100.0/24";
	CHECK(policy_add_forwarders(&c, fw, err, sizeof(err)) == 0);
	struct policy_evidence ev;
	gather(&c, NULL, "198.51.100.1", NULL, NULL, NULL, 0, AUTH_NONE, NULL, 0, NULL, &ev);
	decide(&c, &ev, POLICY_DISP_REJECT, NULL);
	/* never-reject lowers even in rfc9989 mode without evidence */
	struct policy_decision d;
	gather(&c, NULL, "203.0.113.1", NULL, NULL, NULL, 0, AUTH_NONE, NULL, 0, NULL, &ev);
	policy_decide(&c, "example.net", POLICY_DISP_REJECT, &ev, &d);
	CHECK(d.disp == POLICY_DISP_QUARANTINE);
	CHECK_STR(d.override, "local_policy");
	/* but not in strict mode */
	c.mode = POLICY_STRICT;
	policy_decide(&c, "example.net", POLICY_DISP_REJECT, &ev, &d);
	CHECK(d.disp == POLICY_DISP_REJECT);
	policy_conf_free(&c);
	/* a bad line names file and line */
	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(write(fd, "enforce ok.example\nallow bad.example\n", 37) == 37);
	close(fd);
	struct policy_conf c2 = { 0 };
	CHECK(policy_load_exceptions(&c2, path, err, sizeof(err)) < 0);
	CHECK(strstr(err, ":2:") != NULL);
	policy_conf_free(&c2);
	unlink(path);
}

int main(void)
{
	test_modes();
	test_exceptions();
	return check_done("test_policy");
}
