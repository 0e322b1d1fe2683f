/* rua= destinations and verification records (report/rua.c), table-driven;
 * each record is also fed one byte short to catch reads past the end. */
#include <stdio.h>
#include <string.h>

#include "report/report.h"

static int failures;

struct rua_case {
	const char *txt;
	int n;                      /* destinations, -1: no rua tag */
	unsigned skipped;
	const char *addr[3];
	unsigned long long size[3];
};

static const struct rua_case cases[] = {
	{ "v=DMARC1; p=reject; rua=mailto:dmarc@example.com", 1, 0, { "dmarc@example.com" }, { 0 } },
	{ "v=DMARC1; p=none", -1, 0, { NULL }, { 0 } },
	{ "v=DMARC1; RUA = MAILTO:A@Example.COM ; p=none", 1, 0, { "A@example.com" }, { 0 } },
	{ "v=DMARC1; rua=mailto:a@x.example!10m, mailto:b@y.example!512k,mailto:c@z.example!7", 3, 0,
	  { "a@x.example", "b@y.example", "c@z.example" }, { 10ull << 20, 512ull << 10, 7 } },
	/* other schemes and malformed URIs are skipped; a duplicate is merged */
	{ "v=DMARC1; rua=https://r.example/x, mailto:, mailto:@x.example, mailto:a@@x.example, mailto:a@x.example, mailto:a@x.example", 1, 4,
	  { "a@x.example" }, { 0 } },
	/* escapes are decoded (RFC 9989 4.8: '!' and ',' are escaped); a local
	 * part that would need quoting in RCPT TO (a ',') is not used */
	{ "v=DMARC1; rua=mailto:a%2Bb@x.example,mailto:c%21d@y.example!1g,mailto:e%2Cf@z.example", 2, 1,
	  { "a+b@x.example", "c!d@y.example" }, { 0, 1ull << 30 } },
	/* header or command injection through escapes */
	{ "v=DMARC1; rua=mailto:a%0d%0aRCPT%20TO:<v@x>@x.example, mailto:a%3e@x.example", 0, 2, { NULL }, { 0 } },
	/* a query part is dropped */
	{ "v=DMARC1; rua=mailto:r@q.example?subject=hello", 1, 0, { "r@q.example" }, { 0 } },
	/* bad sizes */
	{ "v=DMARC1; rua=mailto:a@x.example!0, mailto:b@x.example!10q, mailto:c@x.example!, mailto:d@x.example!99999999999999", 0, 4, { NULL }, { 0 } },
	/* domains with bad characters or empty labels */
	{ "v=DMARC1; rua=mailto:a@x..example, mailto:a@.x.example, mailto:a@x.example., mailto:a@x_y.example", 0, 4, { NULL }, { 0 } },
	/* the first rua= counts */
	{ "v=DMARC1; rua=mailto:one@x.example; rua=mailto:two@x.example", 1, 0, { "one@x.example" }, { 0 } },
	/* more than the cap */
	{ "v=DMARC1; rua=mailto:a@x.example,mailto:b@x.example,mailto:c@x.example,mailto:d@x.example", 3, 1,
	  { "a@x.example", "b@x.example", "c@x.example" }, { 0 } },
	{ "", -1, 0, { NULL }, { 0 } },
	{ "rua=", 0, 1, { NULL }, { 0 } },
};

static void run_case(const struct rua_case *c)
{
	struct rpt_dest d[3];
	unsigned sk = 99;
	int n = rpt_rua_parse(c->txt, strlen(c->txt), d, 3, &sk);
	int ok = n == c->n && sk == c->skipped;
	for (int i = 0; ok && i < n; i++)
		ok = strcmp(d[i].addr, c->addr[i]) == 0 && d[i].max_size == c->size[i] &&
		     d[i].domain == strchr(d[i].addr, '@') + 1;
	if (!ok) {
		fprintf(stderr, "rua case failed: %s (n=%d skipped=%u)\n", c->txt, n, sk);
		for (int i = 0; i < n; i++)
			fprintf(stderr, "  %s %llu\n", d[i].addr, (unsigned long long)d[i].max_size);
		failures++;
	}
	/* one byte short, from a buffer that ends there */
	size_t len = strlen(c->txt);
	if (len) {
		char cut[512];
		memcpy(cut, c->txt, len - 1);
		(void)rpt_rua_parse(cut, len - 1, d, 3, &sk);
	}
}

static const struct { const char *txt; int ok; } verify[] = {
	{ "v=DMARC1", 1 },
	{ "v=DMARC1;", 1 },
	{ "v=DMARC1 ; rua=mailto:x@y.example", 1 },
	{ "v=DMARC1p=reject", 0 },
	{ "v=dmarc1", 0 },          /* RFC 9989 4.7: v= is case-sensitive */
	{ " v=DMARC1", 0 },
	{ "v=spf1 -all", 0 },
	{ "", 0 },
};

/* ruf= is read by the same rules, and only ruf= */
static void test_ruf(void)
{
	struct rpt_dest d[3];
	unsigned sk;
	const char *t = "v=DMARC1; p=reject; rua=mailto:agg@x.example; ruf=mailto:f1@x.example,"
	                "mailto:f2@y.example!2k; fo=1";
	int n = rpt_ruf_parse(t, strlen(t), d, 3, &sk);
	if (n != 2 || strcmp(d[0].addr, "f1@x.example") != 0 || strcmp(d[1].addr, "f2@y.example") != 0 ||
	    d[1].max_size != 2048 || sk != 0) {
		fprintf(stderr, "ruf case failed (n=%d)\n", n);
		failures++;
	}
	n = rpt_rua_parse(t, strlen(t), d, 3, &sk);
	if (n != 1 || strcmp(d[0].addr, "agg@x.example") != 0) {
		fprintf(stderr, "rua beside ruf failed (n=%d)\n", n);
		failures++;
	}
	const char *none = "v=DMARC1; p=reject; rua=mailto:agg@x.example";
	if (rpt_ruf_parse(none, strlen(none), d, 3, &sk) != -1) {
		fprintf(stderr, "no ruf= tag: want -1\n");
		failures++;
	}
}

int main(void)
{
	test_ruf();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
	for (size_t i = 0; i < sizeof(verify) / sizeof(verify[0]); i++)
		if (rpt_verify_record(verify[i].txt, strlen(verify[i].txt)) != verify[i].ok) {
			fprintf(stderr, "verify case failed: \"%s\"\n", verify[i].txt);
			failures++;
		}
	if (failures)
		return 1;
	printf("rua: all cases passed\n");
	return 0;
}
