/* Table-driven tests of the SPF record parser and the macro expander
 * (RFC 7208 4.6, 5, 6, 7; the expansion table is RFC 7208 7.4's). */
#include "checks/spf/spf_int.h"

#include <stdio.h>
#include <string.h>

static unsigned failures, checks;

#define CHECK(cond, ...) do { checks++; if (!(cond)) { failures++; \
	printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

struct rec_case {
	const char *rec;
	int ok;
	size_t nmech;       /* when ok */
	int redirect, exp, all;
	unsigned dns;
};

static const struct rec_case recs[] = {
	{ "v=spf1", 1, 0, 0, 0, 0, 0 },
	{ "V=SpF1 -ALL", 1, 1, 0, 0, 1, 0 },
	{ "v=spf1 a  -all ", 1, 2, 0, 0, 1, 1 },
	{ "v=spf1 +a -mx ~ptr ?exists:%{i}.x.example include:a.example ip4:1.2.3.4 ip6:::1 all",
	  1, 8, 0, 0, 1, 5 },
	{ "v=spf1 a/24//64 mx:foo.example//0 a:foo:bar/baz.example.com", 1, 3, 0, 0, 0, 3 },
	{ "v=spf1 ip4:0.0.0.0/0 ip6:::/0 -all", 1, 3, 0, 0, 1, 0 },
	{ "v=spf1 redirect=_spf.example.com exp=why.%{d}", 1, 0, 1, 1, 0, 0 },
	{ "v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all", 1, 2, 0, 0, 1, 0 },
	{ "v=spf1 default=+", 1, 0, 0, 0, 0, 0 },
	{ "v=spf1 a:%{d}", 1, 1, 0, 0, 0, 1 },
	{ "v=spf1 a:foo.example.xn--zckzah", 1, 1, 0, 0, 0, 1 },
	{ "v=spf1 a:macro%%percent%_%_space%-url-space.example.com", 1, 1, 0, 0, 0, 1 },
	/* errors */
	{ "v=spf10", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 -all moo", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 -all.", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 -all:foo", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 -all/8", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 ptr/0", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 ptr:", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 a:", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 a/33", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 a//129", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 a/24/64", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 a:111.222.33.44", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 a:museum", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 a:museum.", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 a:example.-com", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 a:example.com:8080", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 include", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 include:foo.example.com/24", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 exists", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 ip4", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 ip4:1.2.3", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 ip4:1.2.3.4/33", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 ip4:1.2.3.4/032", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 ip4:1.2.3.4//32", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 ip4:01.2.3.4", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 ip4:1.2.3.4:8080", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 ip6::CAFE::BABE", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 ip6:::1//33", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 ip6:::1/129", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 redirect:example.com", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 redirect=a.example redirect=b.example", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 exp=a.example exp=b.example", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 exp= -all", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 exp=-all", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 -all exp=%{r}.example.com", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 1up=foo", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 =all", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 moo.cow/far_out=man:dog/cat", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 foo=%abc", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 exists:%(ir).sbl.example.com", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 exists:foo%.sbl.example.com", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 a:%{a}.example.com", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 a:%{d0}.example.com", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 a:%{d", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 a:ctrl.example.com\rptr -all", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 ip4:192.0.2.5\n include:x.example", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 \x80" "a -all", 0, 0, 0, 0, 0, 0 },
	{ "v=spf1 foo", 0, 0, 0, 0, 0, 0 },
};

static void test_records(void)
{
	for (size_t i = 0; i < sizeof(recs) / sizeof(recs[0]); i++) {
		const struct rec_case *c = &recs[i];
		struct spf_record r;
		char err[200];
		int rc = spf_parse(c->rec, strlen(c->rec), &r, err, sizeof(err));
		CHECK((rc == 0) == c->ok, "parse \"%s\": rc %d (%s)", c->rec, rc, err);
		if (rc == 0 && c->ok) {
			CHECK(r.n == c->nmech, "\"%s\": %zu mechanisms, want %zu", c->rec, r.n, c->nmech);
			CHECK(r.has_redirect == c->redirect, "\"%s\": redirect", c->rec);
			CHECK((r.exp != NULL) == c->exp, "\"%s\": exp", c->rec);
			CHECK(r.has_all == c->all, "\"%s\": all", c->rec);
			CHECK(r.dns_mechs == c->dns, "\"%s\": %u DNS mechanisms, want %u",
			      c->rec, r.dns_mechs, c->dns);
		}
		if (rc == 0)
			spf_record_free(&r);
	}
	/* a NUL inside a record is an error, not an end */
	static const char nul[] = "v=spf1 a:foo.example.com\0";
	struct spf_record r;
	char err[200];
	CHECK(spf_parse(nul, sizeof(nul) - 1, &r, err, sizeof(err)) < 0, "NUL accepted");
	/* detailed fields */
	const char *d = "v=spf1 -a:Foo.example.com/24//64 ~ip4:10.1.0.0/16 ?ip6:2001:db8::/32";
	CHECK(spf_parse(d, strlen(d), &r, err, sizeof(err)) == 0, "parse detail: %s", err);
	CHECK(r.n == 3, "detail count");
	if (r.n == 3) {
		CHECK(r.mech[0].qual == '-' && r.mech[0].kind == SPF_M_A, "a qual/kind");
		CHECK(r.mech[0].spec_len == 15 && memcmp(r.mech[0].spec, "Foo.example.com", 15) == 0,
		      "a spec");
		CHECK(r.mech[0].cidr4 == 24 && r.mech[0].cidr6 == 64, "a cidrs %u %u",
		      r.mech[0].cidr4, r.mech[0].cidr6);
		CHECK(r.mech[1].qual == '~' && r.mech[1].cidr4 == 16 && r.mech[1].net[0] == 10 &&
		      r.mech[1].net[1] == 1, "ip4 detail");
		CHECK(r.mech[2].qual == '?' && r.mech[2].cidr6 == 32 && r.mech[2].net[0] == 0x20 &&
		      r.mech[2].net[1] == 0x01, "ip6 detail");
	}
	spf_record_free(&r);
}

struct mac_case {
	const char *in;
	int exp;            /* SPF_MS_EXP */
	const char *out;    /* NULL: syntax error */
};

/* RFC 7208 7.4: sender strong-bad@email.example.com, ip 192.0.2.3 */
static const struct mac_case macs4[] = {
	{ "%{s}", 0, "strong-bad@email.example.com" },
	{ "%{o}", 0, "email.example.com" },
	{ "%{d}", 0, "email.example.com" },
	{ "%{d4}", 0, "email.example.com" },
	{ "%{d3}", 0, "email.example.com" },
	{ "%{d2}", 0, "example.com" },
	{ "%{d1}", 0, "com" },
	{ "%{dr}", 0, "com.example.email" },
	{ "%{d2r}", 0, "example.email" },
	{ "%{l}", 0, "strong-bad" },
	{ "%{l-}", 0, "strong.bad" },
	{ "%{lr}", 0, "strong-bad" },
	{ "%{lr-}", 0, "bad.strong" },
	{ "%{l1r-}", 0, "strong" },
	{ "%{ir}.%{v}._spf.%{d2}", 0, "3.2.0.192.in-addr._spf.example.com" },
	{ "%{lr-}.lp._spf.%{d2}", 0, "bad.strong.lp._spf.example.com" },
	{ "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", 0, "bad.strong.lp.3.2.0.192.in-addr._spf.example.com" },
	{ "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", 0, "3.2.0.192.in-addr.strong.lp._spf.example.com" },
	{ "%{d2}.trusted-domains.example.net", 0, "example.com.trusted-domains.example.net" },
	{ "%%%_%-", 0, "% %20" },
	{ "%{S}", 0, "strong-bad%40email.example.com" },
	{ "%{L}", 0, "strong-bad" },
	{ "%{d100}", 0, "email.example.com" },
	{ "%{l+-}", 0, "strong.bad" },
	{ "%{h}", 0, "mx.example.org" },
	{ "%{p}", 0, "mail.example.com" },
	{ "%{c} %{r} %{t}", SPF_MS_EXP, "192.0.2.3 mx.example.net 1400000000" },
	{ "%{C}", SPF_MS_EXP, "192.0.2.3" },
	/* syntax errors */
	{ "%{c}", 0, NULL },
	{ "%{r}", 0, NULL },
	{ "%{t}", 0, NULL },
	{ "a b", 0, NULL },
	{ "%{x}", SPF_MS_EXP, NULL },
	{ "%{d0}", 0, NULL },
	{ "%{d", 0, NULL },
	{ "%", 0, NULL },
	{ "%a", 0, NULL },
	{ "%{d2r!}", 0, NULL },
	{ "\x7f", 0, NULL },
};

static const struct mac_case macs6[] = {
	{ "%{ir}.%{v}._spf.%{d2}", 0,
	  "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com" },
	{ "%{c}", SPF_MS_EXP, "2001:db8::cb01" },
	{ "%{v}", 0, "ip6" },
};

static void run_macros(const struct mac_case *t, size_t n, const char *ip)
{
	unsigned char a[16];
	int ip6;
	char dots[80];
	CHECK(spf_parse_ip(ip, a, &ip6) == 0, "ip %s", ip);
	spf_ip_dots(a, ip6, dots, sizeof(dots));
	struct spf_macro_ctx c = {
		.local = "strong-bad", .sender_dom = "email.example.com",
		.domain = "email.example.com", .helo = "mx.example.org",
		.ip_dots = dots, .ip_text = ip, .ip6 = ip6, .ptr = "mail.example.com",
		.receiver = "mx.example.net", .now = 1400000000,
	};
	for (size_t i = 0; i < n; i++) {
		char out[512];
		size_t len = strlen(t[i].in);
		int ok = spf_macro_check(t[i].in, len, t[i].exp, NULL) == 0;
		CHECK(ok == (t[i].out != NULL), "check \"%s\": %d", t[i].in, ok);
		if (!ok || !t[i].out)
			continue;
		int rc = spf_expand(&c, t[i].in, len, t[i].exp, out, sizeof(out), NULL);
		CHECK(rc == 0 && strcmp(out, t[i].out) == 0, "expand \"%s\" = \"%s\", want \"%s\"",
		      t[i].in, out, t[i].out);
	}
}

static void test_macros(void)
{
	run_macros(macs4, sizeof(macs4) / sizeof(macs4[0]), "192.0.2.3");
	run_macros(macs6, sizeof(macs6) / sizeof(macs6[0]), "2001:db8::cb01");

	/* uppercase macros are URL-escaped (RFC 7208 7.3) */
	struct spf_macro_ctx c = { .local = "~jack&jill=up-a_b3.c", .sender_dom = "e8.example.com",
	                           .domain = "e8.example.com", .ip_dots = "1.2.3.4",
	                           .ip_text = "1.2.3.4" };
	char out[300];
	CHECK(spf_expand(&c, "%{L}", 4, 0, out, sizeof(out), NULL) == 0 &&
	      strcmp(out, "~jack%26jill%3Dup-a_b3.c") == 0, "URL escape: %s", out);
	/* output bound is reported, never overrun */
	char small[8];
	CHECK(spf_expand(&c, "%{o}", 4, 0, small, sizeof(small), NULL) < 0, "overflow not seen");

	/* a domain over 253 characters loses whole labels on the left */
	char longd[300];
	snprintf(longd, sizeof(longd), "%s", "somewhat.long.exp.example.com");
	c.sender_dom = longd;
	const char *spec = "foobar.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.example.com.";
	CHECK(spf_expand_domain(&c, spec, strlen(spec), out, sizeof(out)) == 0, "truncate");
	CHECK(strlen(out) <= 253 && strncmp(out, "somewhat.", 9) == 0 &&
	      strcmp(out + strlen(out) - 12, ".example.com") == 0, "truncated to \"%s\"", out);

	/* domain-spec endings (RFC 7208 7.1) */
	static const struct { const char *s; int ok; } ds[] = {
		{ "example.com", 1 }, { "example.com.", 1 }, { "%{d}", 1 }, { "%{d}.com", 1 },
		{ "x.%{d}", 1 }, { "museum", 0 }, { "%{d}.", 0 }, { "foo.123", 0 },
		{ "foo.1-2", 1 }, { "foo.-ab", 0 }, { "foo.ab-", 0 }, { "", 0 },
		{ "foo:bar/baz.example.com", 1 }, { "%{d}com", 0 },
	};
	for (size_t i = 0; i < sizeof(ds) / sizeof(ds[0]); i++)
		CHECK((spf_domain_spec_check(ds[i].s, strlen(ds[i].s), NULL) == 0) == ds[i].ok,
		      "domain-spec \"%s\"", ds[i].s);

	static const struct { const char *s; int ok; } names[] = {
		{ "a.b", 1 }, { "a..b", 0 }, { "", 0 }, { ".a", 0 },
		{ "a123456789012345678901234567890123456789012345678901234567890123.com", 0 },
		{ "a12345678901234567890123456789012345678901234567890123456789012.com", 1 },
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		CHECK(spf_name_ok(names[i].s) == names[i].ok, "name \"%s\"", names[i].s);
}

static void test_addresses(void)
{
	unsigned char a[16], n[16];
	int ip6;
	CHECK(spf_parse_ip("::ffff:1.2.3.4", a, &ip6) == 0 && !ip6 && a[0] == 1 && a[3] == 4,
	      "mapped IPv4 becomes IPv4");
	CHECK(spf_parse_ip("::FFFF:1.2.3.4", a, &ip6) == 0 && !ip6, "mapped upper case");
	CHECK(spf_parse_ip("2001:db8::1", a, &ip6) == 0 && ip6, "IPv6");
	CHECK(spf_parse_ip("1.2.3", a, &ip6) < 0, "bad address accepted");
	CHECK(spf_parse_ip("1.2.3.4", a, &ip6) == 0, "v4");
	memcpy(n, "\x01\x02\x00\x00", 4);
	CHECK(spf_cidr_match(a, n, 16, 0) && !spf_cidr_match(a, n, 17 + 7, 0), "cidr4");
	CHECK(spf_cidr_match(a, n, 0, 0), "/0 matches all");
	char rev[80];
	spf_reverse_name(a, 0, rev, sizeof(rev));
	CHECK(strcmp(rev, "4.3.2.1.in-addr.arpa") == 0, "reverse4 %s", rev);
	spf_parse_ip("2001:db8::1", a, &ip6);
	spf_reverse_name(a, 1, rev, sizeof(rev));
	CHECK(strcmp(rev, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa") == 0,
	      "reverse6 %s", rev);
}

int main(void)
{
	test_records();
	test_macros();
	test_addresses();
	printf("%u checks, %u failures\n", checks, failures);
	return failures ? 1 : 0;
}
