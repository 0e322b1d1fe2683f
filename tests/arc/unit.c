/* Table-driven tests of the ARC parts that need no key: canonicalisation
 * (RFC 6376 3.4), base64, the structure rules of RFC 8617 5.2 steps 1-3 as
 * arc_list and arc_verify see them, and the first hop's AAR parsing. */
#include "checks/arc/arc_int.h"
#include "checks/dkim/dkv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks, bad;

#define CHECK(cond) do { checks++; if (!(cond)) { bad++; \
	printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } } while (0)

static void sha(const char *s, size_t len, unsigned char out[32])
{
	struct dkc_hash *h = dkc_hash_new();
	CHECK(h != NULL);
	CHECK(dkc_hash_update(h, s, len) == 0);
	CHECK(dkc_hash_final(h, out) == 0);
	dkc_hash_free(&h);
}

/* body canonicalisation: the canonical text we expect, hashed, against
 * dkc_body_hash of the raw body */
static const struct {
	const char *raw;
	int relaxed;
	int64_t limit;
	const char *canon;
} bodies[] = {
	{ "", 0, -1, "\r\n" },                       /* RFC 6376 3.4.3 */
	{ "", 1, -1, "" },                           /* 3.4.4, errata 1384 */
	{ "\r\n\r\n", 0, -1, "\r\n" },
	{ "\r\n\r\n", 1, -1, "" },
	{ "a  b \t\r\n\r\n \r\n", 1, -1, "a b\r\n" },
	{ "a  b \t\r\n\r\n \r\n", 0, -1, "a  b \t\r\n\r\n \r\n" },
	{ " C \r\nD \t E\r\n\r\n\r\n", 1, -1, " C\r\nD E\r\n" },   /* RFC 6376 3.4.6 */
	{ " C \r\nD \t E\r\n\r\n\r\n", 0, -1, " C \r\nD \t E\r\n" },
	{ "x\ny\n", 0, -1, "x\r\ny\r\n" },            /* bare LF read as CRLF */
	{ "no final eol", 0, -1, "no final eol\r\n" },
	{ "a\r\n\r\nb\r\n", 1, -1, "a\r\n\r\nb\r\n" },
	{ "lone\rcr\r\n", 0, -1, "lone\rcr\r\n" },
	{ "abcdef\r\n", 0, 3, "abc" },                /* l=3 */
	{ "abcdef\r\n", 1, 0, "" },
	{ "a \r\n\r\n\tb  c\r\r\n", 1, -1, "a\r\n\r\n b c\r\r\n" },   /* CR before CRLF is content */
	{ "a\r", 0, -1, "a\r\r\n" },                /* a CR at the very end */
	{ "a \r\n", 1, -1, "a\r\n" },
	{ "a b\r\nc  d\n\n", 1, -1, "a b\r\nc d\r\n" },
	{ "  \r\n\r\n", 1, -1, "" },                 /* only blank lines */
	{ "  \r\n\r\nx", 0, -1, "  \r\n\r\nx\r\n" },
};

static void test_bodies(void)
{
	for (size_t k = 0; k < sizeof bodies / sizeof bodies[0]; k++) {
		unsigned char want[32], got[32];
		uint64_t clen = 0;
		sha(bodies[k].canon, strlen(bodies[k].canon), want);
		CHECK(dkc_body_hash(bodies[k].raw, strlen(bodies[k].raw),
		                    bodies[k].relaxed, bodies[k].limit, got, &clen) == 0);
		if (memcmp(want, got, 32) != 0) {
			bad++;
			printf("FAIL body case %zu\n", k);
		}
		checks++;
		if (bodies[k].limit < 0)
			CHECK(clen == strlen(bodies[k].canon));
		/* the streaming form, fed in every chunk size up to the length:
		 * the same digest (a CR, a WSP run or a blank line may end one
		 * chunk and be decided by the next) */
		size_t len = strlen(bodies[k].raw);
		for (size_t chunk = 1; chunk <= len; chunk++) {
			struct dkc_body *b = dkc_body_new();
			int idx = b ? dkc_body_want(b, bodies[k].relaxed, bodies[k].limit) : -1;
			CHECK(idx >= 0);
			if (idx < 0) {
				dkc_body_free(&b);
				continue;
			}
			for (size_t off = 0; off < len; off += chunk)
				CHECK(dkc_body_feed(b, bodies[k].raw + off,
				                    len - off < chunk ? len - off : chunk) == 0);
			CHECK(dkc_body_end(b) == 0);
			checks++;
			if (memcmp(dkc_body_digest(b, idx), want, 32) != 0) {
				bad++;
				printf("FAIL body case %zu in chunks of %zu\n", k, chunk);
			}
			dkc_body_free(&b);
		}
	}
}

/* header canonicalisation, on fields as msg_parse cuts them */
static const struct {
	const char *field;
	int relaxed, strip_b;
	const char *canon;
} headers[] = {
	{ "SubJect :  Hello \r\n  World  ", 1, 0, "subject:Hello World\r\n" },
	{ "Subject: Hello\r\n World", 0, 0, "Subject: Hello\r\n World\r\n" },
	{ "Subject: Hello\n World", 0, 0, "Subject: Hello\r\n World\r\n" },
	{ "ARC-Seal: i=1; a=rsa-sha256; b=abc\r\n def; d=x", 1, 1,
	  "arc-seal:i=1; a=rsa-sha256; b=; d=x" },
	{ "ARC-Seal: i=1; bh=keep; b = abc", 1, 1, "arc-seal:i=1; bh=keep; b =" },
	{ "ARC-Seal: i=1; b=abc ;d=x", 0, 1, "ARC-Seal: i=1; b=;d=x" },
};

static void test_headers(void)
{
	for (size_t k = 0; k < sizeof headers / sizeof headers[0]; k++) {
		char msg[512];
		snprintf(msg, sizeof msg, "%s\r\n\r\nbody\r\n", headers[k].field);
		struct msg m;
		CHECK(msg_parse(msg, strlen(msg), &m) == 0);
		CHECK(m.n_fields == 1);
		if (m.n_fields != 1)
			continue;
		unsigned char want[32], got[32];
		sha(headers[k].canon, strlen(headers[k].canon), want);
		struct dkc_hash *h = dkc_hash_new();
		CHECK(dkc_header(h, &m.fields[0], headers[k].relaxed,
		                       headers[k].strip_b) == 0);
		CHECK(dkc_hash_final(h, got) == 0);
		dkc_hash_free(&h);
		checks++;
		if (memcmp(want, got, 32) != 0) {
			bad++;
			printf("FAIL header case %zu\n", k);
		}
		msg_free(&m);
	}
}

static void test_b64(void)
{
	unsigned char out[16];
	size_t n = 0;
	CHECK(dkc_b64_decode("aGVs bG8=", 9, out, sizeof out, &n) == 0 && n == 5 &&
	      memcmp(out, "hello", 5) == 0);
	CHECK(dkc_b64_decode("aGVsbA==", 8, out, sizeof out, &n) == 0 && n == 4);
	CHECK(dkc_b64_decode("aGVsbA=", 7, out, sizeof out, &n) != 0);   /* short */
	CHECK(dkc_b64_decode("aGV=sbA=", 8, out, sizeof out, &n) != 0);  /* data after = */
	CHECK(dkc_b64_decode("aGVs*A==", 8, out, sizeof out, &n) != 0);
	CHECK(dkc_b64_decode("aGVsbB==", 8, out, sizeof out, &n) != 0);  /* stray bits */
	CHECK(dkc_b64_decode("aGVsbG8gd29ybGQgYWdhaW4=", 24, out, 4, &n) != 0);
	CHECK(dkc_b64_decode("", 0, out, sizeof out, &n) == 0 && n == 0);
}

/* Structure alone (no key is ever needed): fields are abbreviated, the
 * signatures are not real. */
#define AAR(i) "ARC-Authentication-Results: i=" #i "; mx.example; spf=pass\r\n"
#define AMS(i) "ARC-Message-Signature: i=" #i "; a=rsa-sha256; d=example.org;" \
               " s=arc; h=from; bh=AAAA; b=AAAA\r\n"
#define AS(i, cv) "ARC-Seal: i=" #i "; cv=" cv "; a=rsa-sha256; d=s" #i ".example;" \
                  " s=arc; b=AAAA\r\n"
#define TAIL "From: a@example.com\r\n\r\nbody\r\n"

static const struct {
	const char *name;
	const char *msg;
	int decided;        /* arc_list: 1 when no key is needed */
	enum auth_res res;  /* chain result */
	unsigned n;
	const char *reason; /* part of the reason */
} chains[] = {
	{ "none", TAIL, 1, AUTH_NONE, 0, "no ARC" },
	{ "one set, not decided", AS(1, "none") AMS(1) AAR(1) TAIL, 0, AUTH_TEMPERROR, 1, "" },
	{ "two sets, not decided", AS(2, "pass") AMS(2) AAR(2) AS(1, "none") AMS(1) AAR(1) TAIL,
	  0, AUTH_TEMPERROR, 2, "" },
	{ "order does not matter", AAR(1) AS(2, "pass") AMS(1) AMS(2) AS(1, "none") AAR(2) TAIL,
	  0, AUTH_TEMPERROR, 2, "" },
	{ "newest cv=fail", AS(2, "fail") AMS(2) AAR(2) AS(1, "none") AMS(1) AAR(1) TAIL,
	  1, AUTH_FAIL, 2, "step 2" },
	{ "older cv=fail", AS(3, "pass") AMS(3) AAR(3) AS(2, "fail") AMS(2) AAR(2)
	  AS(1, "none") AMS(1) AAR(1) TAIL, 1, AUTH_FAIL, 3, "cv=fail" },
	{ "gap", AS(3, "pass") AMS(3) AAR(3) AS(1, "none") AMS(1) AAR(1) TAIL,
	  1, AUTH_FAIL, 3, "instance 2 is missing" },
	{ "duplicate AS", AS(1, "none") AS(1, "none") AMS(1) AAR(1) TAIL, 1, AUTH_FAIL, 1,
	  "more than once" },
	{ "duplicate AAR", AS(1, "none") AMS(1) AAR(1) AAR(1) TAIL, 1, AUTH_FAIL, 1,
	  "more than once" },
	{ "missing AAR", AS(1, "none") AMS(1) TAIL, 1, AUTH_FAIL, 1, "no ARC-Authentication" },
	{ "missing AMS", AS(1, "none") AAR(1) TAIL, 1, AUTH_FAIL, 1, "no ARC-Message" },
	{ "missing AS", AMS(1) AAR(1) TAIL, 1, AUTH_FAIL, 1, "no ARC-Seal" },
	{ "i=1 cv=pass", AS(1, "pass") AMS(1) AAR(1) TAIL, 1, AUTH_FAIL, 1, "cv=none" },
	{ "i=2 cv=none", AS(2, "none") AMS(2) AAR(2) AS(1, "none") AMS(1) AAR(1) TAIL,
	  1, AUTH_FAIL, 2, "cv=pass" },
	{ "cv=PASS is pass", AS(2, "PASS") AMS(2) AAR(2) AS(1, "None") AMS(1) AAR(1) TAIL,
	  0, AUTH_TEMPERROR, 2, "" },
	{ "i=51", AS(51, "pass") AMS(51) AAR(51) TAIL, 1, AUTH_FAIL, 0, "more than 50" },
	{ "i=0", AS(0, "none") AMS(1) AAR(1) TAIL, 1, AUTH_FAIL, 1, "no valid i=" },
	{ "i=x", "ARC-Seal: i=x; cv=none; a=rsa-sha256; d=a.example; s=arc; b=AA\r\n"
	  AMS(1) AAR(1) TAIL, 1, AUTH_FAIL, 1, "no valid i=" },
	{ "AAR without i=", AS(1, "none") AMS(1)
	  "ARC-Authentication-Results: mx.example; spf=pass\r\n" TAIL, 1, AUTH_FAIL, 1,
	  "no valid i=" },
	{ "duplicate tag", "ARC-Seal: i=1; i=1; cv=none; a=rsa-sha256; d=a.example; s=arc; b=AA\r\n"
	  AMS(1) AAR(1) TAIL, 1, AUTH_FAIL, 1, "no valid i=" },
};

static void test_chains(void)
{
	for (size_t k = 0; k < sizeof chains / sizeof chains[0]; k++) {
		const char *msg = chains[k].msg;
		struct msg m;
		CHECK(msg_parse(msg, strlen(msg), &m) == 0);
		struct arc_ref refs[ARC_MAX_REFS];
		struct arc_listing sum;
		size_t n = arc_list(&m, refs, ARC_MAX_REFS, &sum);
		msg_free(&m);
		(void)n;
		struct dkv_keyset *ks = dkv_keyset_new();   /* empty: temperror */
		struct arc_result r;
		CHECK(arc_verify(NULL, msg, strlen(msg), ks, &r, NULL) == 0);
		checks++;
		if (sum.decided != chains[k].decided || r.chain != chains[k].res ||
		    r.n_sets != chains[k].n || strstr(r.reason, chains[k].reason) == NULL ||
		    (sum.decided && sum.result != r.chain)) {
			bad++;
			printf("FAIL chain \"%s\": decided=%d chain=%s n=%u reason=%s\n",
			       chains[k].name, sum.decided, auth_res_name(r.chain),
			       r.n_sets, r.reason);
		}
		arc_result_free(&r);
		dkv_keyset_free(&ks);
	}
}

static void test_list(void)
{
	const char *msg = AS(2, "pass") AMS(2) AAR(2) AS(1, "none")
		"ARC-Message-Signature: i=1; a=rsa-sha256; d=Example.ORG; s=arc; h=from;"
		" bh=AAAA; b=AAAA\r\n" AAR(1)
		"ARC-Seal: i=3; cv=pass; a=rsa-sha256; d=bad..name; s=arc; b=AAAA\r\n" TAIL;
	struct msg m;
	CHECK(msg_parse(msg, strlen(msg), &m) == 0);
	struct arc_ref refs[ARC_MAX_REFS];
	struct arc_listing sum;
	size_t n = arc_list(&m, refs, ARC_MAX_REFS, &sum);
	CHECK(n == 5);
	CHECK(sum.n_fields == 7);
	CHECK(sum.n_sets == 3);
	CHECK(sum.decided == 1);   /* instance 3 has no AMS or AAR */
	CHECK(refs[0].seal == 1 && refs[0].instance == 2 && strcmp(refs[0].cv, "pass") == 0);
	CHECK(strcmp(refs[0].qname, "arc._domainkey.s2.example") == 0 && !refs[0].dup);
	CHECK(strcmp(refs[1].qname, "arc._domainkey.example.org") == 0 && !refs[1].dup);
	CHECK(strcmp(refs[3].qname, "arc._domainkey.example.org") == 0 && refs[3].dup);
	CHECK(strcmp(refs[3].d, "Example.ORG") == 0);
	CHECK(refs[4].qname[0] == '\0');
	msg_free(&m);
	/* limited by max */
	CHECK(msg_parse(msg, strlen(msg), &m) == 0);
	CHECK(arc_list(&m, refs, 2, NULL) == 2);
	msg_free(&m);
}

static void test_aar1(void)
{
	const char *msg = AS(1, "none") AMS(1)
		"ARC-Authentication-Results: i=1; lists.example.org 1;\r\n"
		"  spf=pass (sender ok; really) smtp.mailfrom=example.com;\r\n"
		"  dkim=FAIL header.d=\"ex;ample.com\"; dmarc=pass header.from=example.com;\r\n"
		"  arc=none\r\n" TAIL;
	struct dkv_keyset *ks = dkv_keyset_new();
	struct arc_result r;
	CHECK(arc_verify(NULL, msg, strlen(msg), ks, &r, NULL) == 0);
	CHECK(r.aar1 != NULL && strncmp(r.aar1, "lists.example.org 1; spf=pass", 29) == 0);
	CHECK(strcmp(r.aar1_authserv, "lists.example.org") == 0);
	CHECK(r.aar1_n == 4);
	const char *v = arc_aar1_result(&r, "spf");
	CHECK(v && strcmp(v, "pass") == 0);
	v = arc_aar1_result(&r, "dkim");
	CHECK(v && strcmp(v, "fail") == 0);
	CHECK(strcmp(r.aar1_res[1].props, "header.d=\"ex;ample.com\"") == 0);
	CHECK(strcmp(r.aar1_res[0].props, "(sender ok; really) smtp.mailfrom=example.com") == 0);
	v = arc_aar1_result(&r, "DMARC");
	CHECK(v && strcmp(v, "pass") == 0);
	CHECK(arc_aar1_result(&r, "iprev") == NULL);
	CHECK(r.n_sets == 1 && strcmp(r.sets[0].as.d, "s1.example") == 0);
	char ar[256];
	arc_ar_text(&r, ar, sizeof ar);
	CHECK(strncmp(ar, "temperror (", 11) == 0);
	arc_result_free(&r);
	dkv_keyset_free(&ks);
}

int main(void)
{
	test_bodies();
	test_headers();
	test_b64();
	test_chains();
	test_list();
	test_aar1();
	printf("%d checks, %d failed\n", checks, bad);
	return bad ? 1 : 0;
}
