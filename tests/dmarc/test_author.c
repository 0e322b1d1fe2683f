/* From-field extraction: hostile and odd values, one table. */
#include "checks/dmarc/dmarc.h"
#include "tests/dmarc/dmtest.h"

#define OK   DMARC_AUTHOR_OK
#define MD   DMARC_AUTHOR_MULTI_DOMAIN
#define MF   DMARC_AUTHOR_MULTI_FIELD
#define NF   DMARC_AUTHOR_NO_FROM
#define SY   DMARC_AUTHOR_SYNTAX
#define ND   DMARC_AUTHOR_NO_DOMAIN
#define TM   DMARC_AUTHOR_TOO_MANY

struct acase {
	const char *value;
	enum dmarc_author_status st;
	const char *d0, *d1;      /* expected domains (NULL: none) */
	const char *display;      /* expected display name, or NULL: unchecked */
};

static const struct acase cases[] = {
	{ "user@example.com", OK, "example.com", NULL, NULL },
	{ "User@EXAMPLE.Com", OK, "example.com", NULL, NULL },
	{ "Joe Q. Public <john.q.public@example.com>", OK, "example.com", NULL, "Joe Q. Public" },
	{ "\"Joe Q. Public\" <john.q.public@example.com>", OK, "example.com", NULL, "Joe Q. Public" },
	{ "\"bank.example <ceo@bank.example>\" <x@evil.example>", OK, "evil.example", NULL, NULL },
	{ "\"a@bank.example\" <x@evil.example>", OK, "evil.example", NULL, NULL },
	{ "x@evil.example (via a@bank.example)", OK, "evil.example", NULL, NULL },
	{ "(comment (nested (deep)) with \\) escapes) user@example.org", OK, "example.org", NULL, NULL },
	{ "user(c1)@(c2)example(c3).(c4)org(c5)", OK, "example.org", NULL, NULL },
	{ "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", OK, "silly.test", NULL, NULL },
	{ "<user@example.com>", OK, "example.com", NULL, NULL },
	{ "  <user@example.com>  ", OK, "example.com", NULL, NULL },
	{ "<@relay1.example,@relay2.example:user@example.com>", OK, "example.com", NULL, NULL },
	{ "\"quoted local\"@example.com", OK, "example.com", NULL, NULL },
	{ "\"odd\\\"quote\" <\"a\\\"b\"@example.com>", OK, "example.com", NULL, NULL },
	{ "user@example.com.", OK, "example.com", NULL, NULL },
	{ "user@example.com..", SY, NULL, NULL, NULL },
	{ "a@example.com, b@example.com", OK, "example.com", NULL, NULL },
	{ "a@example.com, b@other.example", MD, "example.com", "other.example", NULL },
	{ "a@example.com,, ,b@EXAMPLE.com", OK, "example.com", NULL, NULL },
	{ "Friends: a@example.com, b@example.com;", OK, "example.com", NULL, NULL },
	{ "Friends: a@example.com, b@evil.example;", MD, "example.com", "evil.example", NULL },
	{ "undisclosed-recipients:;", ND, NULL, NULL, NULL },
	{ "Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>", MD, "x.test", "example.org", NULL },
	{ "John Doe. Jr <jdoe@example.net>", OK, "example.net", NULL, NULL },
	{ "=?UTF-8?B?SsO2cmc=?= <joerg@example.de>", OK, "example.de", NULL, "J??rg" },
	{ "=?iso-8859-1?q?Andr=E9?= =?iso-8859-1?q?_Pirard?= <PIRARD@vm1.ulg.ac.be>", OK, "vm1.ulg.ac.be", NULL, "Andr? Pirard" },
	{ "user@b\xc3\xbc" "cher.example", OK, "xn--bcher-kva.example", NULL, NULL },
	{ "user@XN--BCHER-KVA.example", OK, "xn--bcher-kva.example", NULL, NULL },
	{ "user@xn--zz-invalid.example", ND, NULL, NULL, NULL },
	{ "user@b\xfc" "cher.example", ND, NULL, NULL, NULL },
	{ "user@[192.0.2.1]", ND, NULL, NULL, NULL },
	{ "user@", ND, NULL, NULL, NULL },
	{ "<user@>", ND, NULL, NULL, NULL },
	{ "user", SY, NULL, NULL, NULL },
	{ "", ND, NULL, NULL, NULL },
	{ "   ", ND, NULL, NULL, NULL },
	{ "<>", SY, NULL, NULL, NULL },
	{ "Joe <user@example.com", SY, NULL, NULL, NULL },
	{ "Joe user@example.com>", SY, NULL, NULL, NULL },
	{ "(unterminated comment user@example.com", SY, NULL, NULL, NULL },
	{ "\"unterminated quote <user@example.com>", SY, NULL, NULL, NULL },
	{ "user@exa mple.com", SY, NULL, NULL, NULL },
	{ "user@example.com; other@example.org", SY, NULL, NULL, NULL },
	{ "a@@example.com", SY, NULL, NULL, NULL },
	{ "user@-_-.example", OK, "-_-.example", NULL, NULL },
	{ "user@exa%mple.com", ND, NULL, NULL, NULL },
	{ "user@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example", ND, NULL, NULL, NULL },
	{ "a@one.example, b@two.example, c@three.example, d@four.example, e@five.example", TM, NULL, NULL, NULL },
	{ "Group: a@x.example, Inner: b@y.example;;", SY, NULL, NULL, NULL },
	{ "\xff\xfe <user@example.com>", OK, "example.com", NULL, NULL },
	{ "user@example.com\r\n (folded comment)", OK, "example.com", NULL, NULL },
	{ "Joe\r\n <user@example.com>", OK, "example.com", NULL, NULL },
};

static void test_values(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct acase *c = &cases[i];
		struct dmarc_author a;
		int rc = dmarc_author_value(c->value, strlen(c->value), &a);
		int want_rc = (c->st == OK || c->st == MD || c->st == MF) ? 0 : -1;
		CHECK(a.status == c->st, "[%s] status %s want %s", c->value,
		      dmarc_author_status_name(a.status), dmarc_author_status_name(c->st));
		CHECK(rc == want_rc, "[%s] rc %d", c->value, rc);
		if (c->d0) {
			CHECK(a.n_domains >= 1, "[%s] no domain", c->value);
			if (a.n_domains >= 1)
				CHECK_STR(a.domains[0], c->d0, c->value);
		}
		if (c->d1) {
			CHECK(a.n_domains >= 2, "[%s] one domain", c->value);
			if (a.n_domains >= 2)
				CHECK_STR(a.domains[1], c->d1, c->value);
		}
		if (!c->d0)
			CHECK(a.n_domains == 0, "[%s] %zu domains", c->value, a.n_domains);
		if (c->display)
			CHECK_STR(a.display, c->display, c->value);
	}
}

/* Whole header sections through msg_parse. */
static void test_messages(void)
{
	static const struct { const char *msg; enum dmarc_author_status st; size_t nd; } m[] = {
		{ "To: a@example.com\r\nSubject: x\r\n\r\nbody\r\n", NF, 0 },
		{ "From: a@example.com\r\nFrom: b@example.com\r\n\r\n", MF, 1 },
		{ "From: a@example.com\r\nfrom: b@evil.example\r\n\r\n", MF, 2 },
		{ "From: a@example.com\r\nFROM: broken <\r\n\r\n", SY, 0 },
		{ "Subject: x\nFrom: Someone\n <someone@Example.COM.>\n\nbody\n", OK, 1 },
		{ "From:\r\n\r\n", ND, 0 },
	};
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		struct msg pm;
		struct dmarc_author a;
		CHECK(msg_parse(m[i].msg, strlen(m[i].msg), &pm) == 0, "msg_parse %zu", i);
		dmarc_author(&pm, &a);
		CHECK(a.status == m[i].st, "msg %zu: status %s want %s", i,
		      dmarc_author_status_name(a.status), dmarc_author_status_name(m[i].st));
		CHECK(a.n_domains == m[i].nd, "msg %zu: %zu domains", i, a.n_domains);
		msg_free(&pm);
	}
	struct msg pm;
	struct dmarc_author a;
	const char *s = "Subject: x\nFrom: Someone\n <someone@Example.COM.>\n\nbody\n";
	msg_parse(s, strlen(s), &pm);
	dmarc_author(&pm, &a);
	CHECK_STR(a.domains[0], "example.com", "folded From");
	msg_free(&pm);
}

static void test_norm(void)
{
	char out[DMARC_DOMAIN_MAX];
	CHECK(dmarc_domain_norm("Mail.Example.COM.", 17, out) == 0, "norm");
	CHECK_STR(out, "mail.example.com", "norm");
	CHECK(dmarc_domain_norm("", 0, out) < 0, "empty");
	CHECK(dmarc_domain_norm(".", 1, out) < 0, "root");
	CHECK(dmarc_domain_norm("a..b", 4, out) < 0, "empty label");
	CHECK(dmarc_domain_norm("example.com(x", 13, out) < 0, "paren");
	CHECK(dmarc_domain_norm("\xe4\xbe\x8b\xe5\xad\x90.\xe6\xb5\x8b\xe8\xaf\x95", 13, out) == 0, "IDN");
	CHECK_STR(out, "xn--fsqu00a.xn--0zwm56d", "IDN");
	CHECK(dmarc_domain_norm("B\xc3\x9c" "CHER.example", 15, out) == 0, "upper-case U-label");
	CHECK_STR(out, "xn--bcher-kva.example", "upper-case U-label");
}

int main(void)
{
	test_values();
	test_messages();
	test_norm();
	printf("%zu From values tested\n", sizeof(cases) / sizeof(cases[0]));
	return dm_result("test_author");
}
