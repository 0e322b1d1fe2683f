/* Table-driven tests of the DMARC policy record parser. */
#include "checks/dmarc/dmarc.h"
#include "tests/dmarc/dmtest.h"

#define N9 DMARC_MODE_RFC9989
#define N7 DMARC_MODE_RFC7489
#define NOT DMARC_REC_NOT_DMARC
#define OK DMARC_REC_VALID
#define BAD DMARC_REC_UNUSABLE
#define U DMARC_POLICY_UNSET
#define NO DMARC_POLICY_NONE
#define QU DMARC_POLICY_QUARANTINE
#define RE DMARC_POLICY_REJECT
#define IN DMARC_POLICY_INVALID

struct rcase {
	const char *txt;
	enum dmarc_mode mode;
	int status;
	enum dmarc_policy p, sp, np;
	int psd;             /* 0 u, 1 y, 2 n */
	int t, adkim_s, aspf_s;
	unsigned pct;
	int forced_none;
	unsigned rua;
};

static const struct rcase cases[] = {
	/* basics */
	{ "v=DMARC1; p=reject", N9, OK, RE, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1;p=none", N9, OK, NO, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1; p=quarantine;", N9, OK, QU, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "  v = DMARC1 ;  p = reject ; sp = none  ", N9, OK, RE, NO, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1;\tp=Reject;\tSP=Quarantine", N9, OK, RE, QU, U, 0, 0, 0, 0, 100, 0, 0 },
	/* v= must be first and exactly DMARC1 (case-sensitive) */
	{ "p=reject; v=DMARC1", N9, NOT, U, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=dmarc1; p=reject", N9, NOT, U, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC10; p=reject", N9, NOT, U, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1 p=reject", N9, NOT, U, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=spf1 -all", N9, NOT, U, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "", N9, NOT, U, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "; v=DMARC1; p=reject", N9, NOT, U, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "V=DMARC1; p=reject", N9, OK, RE, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1", N9, OK, NO, U, U, 0, 0, 0, 0, 100, 0, 0 },
	/* RFC 7489: missing p and no rua: no processing; with rua: p=none */
	{ "v=DMARC1", N7, BAD, U, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1; rua=mailto:d@example.com", N7, OK, NO, U, U, 0, 0, 0, 0, 100, 1, 1 },
	/* invalid p with a valid rua: p=none; without: unusable */
	{ "v=DMARC1; p=bogus; rua=mailto:a@example.com", N9, OK, NO, U, U, 0, 0, 0, 0, 100, 1, 1 },
	{ "v=DMARC1; p=bogus", N9, BAD, IN, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1; p=reject; sp=maybe", N9, BAD, RE, IN, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1; p=reject; sp=maybe; rua=mailto:x@example.com!10m", N9, OK, NO, U, U, 0, 0, 0, 0, 100, 1, 1 },
	{ "v=DMARC1; p=reject; np=maybe; rua=notauri", N9, BAD, RE, U, IN, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1; p=; rua=mailto:a@x.example, mailto:b@y.example", N9, OK, NO, U, U, 0, 0, 0, 0, 100, 1, 2 },
	/* duplicate tags: the tag list is invalid (RFC 6376 3.2) */
	{ "v=DMARC1; p=none; p=reject", N9, BAD, NO, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1; p=reject; v=DMARC1", N9, BAD, RE, U, U, 0, 0, 0, 0, 100, 0, 0 },
	/* RFC 9989 tags */
	{ "v=DMARC1; p=reject; np=quarantine; psd=y; t=y", N9, OK, RE, U, QU, 1, 1, 0, 0, 100, 0, 0 },
	{ "v=DMARC1; p=reject; psd=n", N9, OK, RE, U, U, 2, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1; p=reject; psd=x; t=maybe", N9, OK, RE, U, U, 0, 0, 0, 0, 100, 0, 0 },
	/* ... which RFC 7489 mode does not know */
	{ "v=DMARC1; p=reject; np=quarantine; psd=y; t=y", N7, OK, RE, U, QU, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1; p=reject; np=maybe", N7, OK, RE, U, U, 0, 0, 0, 0, 100, 0, 0 },
	/* alignment modes */
	{ "v=DMARC1; p=none; adkim=s; aspf=s", N9, OK, NO, U, U, 0, 0, 1, 1, 100, 0, 0 },
	{ "v=DMARC1; p=none; adkim=r; aspf=x", N9, OK, NO, U, U, 0, 0, 0, 0, 100, 0, 0 },
	/* pct */
	{ "v=DMARC1; p=reject; pct=20", N7, OK, RE, U, U, 0, 0, 0, 0, 20, 0, 0 },
	{ "v=DMARC1; p=reject; pct=0", N7, OK, RE, U, U, 0, 0, 0, 0, 0, 0, 0 },
	{ "v=DMARC1; p=reject; pct=101", N7, OK, RE, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1; p=reject; pct=-5", N7, OK, RE, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1; p=reject; pct=5x", N7, OK, RE, U, U, 0, 0, 0, 0, 100, 0, 0 },
	/* unknown and malformed tags are ignored */
	{ "v=DMARC1; p=reject; foo=bar; x-y=1; =z; ri=86400; rf=afrf; fo=1:d", N9, OK, RE, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1; p=reject;;; ", N9, OK, RE, U, U, 0, 0, 0, 0, 100, 0, 0 },
	{ "v=DMARC1; p=reject; rua=", N9, OK, RE, U, U, 0, 0, 0, 0, 100, 0, 0 },
	/* the authentication_milter zone's records */
	{ "v=DMARC1; p=reject; rua=mailto:dmarc.reports@ops.twofiftyeight.ltd.uk; rf=afrf; pct=100;",
	  N9, OK, RE, U, U, 0, 0, 0, 0, 100, 0, 1 },
};

static void test_table(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct rcase *c = &cases[i];
		struct dmarc_record r;
		int st = dmarc_record_parse(c->txt, strlen(c->txt), c->mode, &r);
		CHECK(st == c->status && (int)r.status == st, "[%s] status %d want %d", c->txt, st, c->status);
		if (c->status == NOT)
			continue;
		CHECK(r.p == c->p, "[%s] p=%s want %s", c->txt, dmarc_policy_name(r.p), dmarc_policy_name(c->p));
		CHECK(r.sp == c->sp, "[%s] sp=%s want %s", c->txt, dmarc_policy_name(r.sp), dmarc_policy_name(c->sp));
		CHECK(r.np == c->np, "[%s] np=%s want %s", c->txt, dmarc_policy_name(r.np), dmarc_policy_name(c->np));
		CHECK((int)r.psd == c->psd, "[%s] psd=%d want %d", c->txt, (int)r.psd, c->psd);
		CHECK(r.t == c->t, "[%s] t=%d", c->txt, r.t);
		CHECK(r.adkim_strict == c->adkim_s && r.aspf_strict == c->aspf_s, "[%s] alignment modes", c->txt);
		CHECK(r.pct == c->pct, "[%s] pct=%u want %u", c->txt, r.pct, c->pct);
		CHECK(r.forced_none == c->forced_none, "[%s] forced_none=%d", c->txt, r.forced_none);
		CHECK(r.rua_valid == c->rua, "[%s] rua_valid=%u want %u", c->txt, r.rua_valid, c->rua);
	}
}

static void test_misc(void)
{
	struct dmarc_record r;
	/* unknown tags counted, fo kept */
	dmarc_record_parse("v=DMARC1; p=none; fo=0:s; zz=1", 30, N9, &r);
	CHECK(r.unknown_tags == 1, "unknown %u", r.unknown_tags);
	CHECK_STR(r.fo, "0:s", "fo");
	dmarc_record_parse("v=DMARC1; p=none; fo=0:1", 24, N9, &r);
	CHECK(r.fo[0] == '\0' && r.bad_tags == 1, "fo=0:1 is invalid");
	/* counted length is honoured (no reading past len) */
	const char *s = "v=DMARC1; p=reject; p=none";
	CHECK(dmarc_record_parse(s, 19, N9, &r) == OK && r.p == RE, "prefix parse");
	/* NUL bytes and 8-bit inside a value make it invalid */
	const char bin[] = "v=DMARC1; p=re\0ject; rua=mailto:a@b.example";
	CHECK(dmarc_record_parse(bin, sizeof(bin) - 1, N9, &r) == OK && r.forced_none, "NUL in p");
	/* too long */
	char big[LIM_DMARC_RECORD + 64];
	memset(big, ' ', sizeof(big));
	memcpy(big, "v=DMARC1; p=reject;", 19);
	CHECK(dmarc_record_parse(big, sizeof(big), N9, &r) == NOT, "oversized record");
}

/* fo= (RFC 9991): which outcomes ask for a failure report */
static void test_fo(void)
{
	/* dkim_aligned, spf_aligned, dkim_failed, spf_failed */
	CHECK(dmarc_fo_wants(NULL, 0, 0, 0, 0) == 1, "default 0: both unaligned");
	CHECK(dmarc_fo_wants("", 1, 0, 1, 1) == 0, "default 0: DKIM aligned");
	CHECK(dmarc_fo_wants("0", 0, 1, 0, 0) == 0, "0: SPF aligned");
	CHECK(dmarc_fo_wants("1", 1, 0, 0, 0) == 1, "1: SPF unaligned");
	CHECK(dmarc_fo_wants("1", 1, 1, 1, 1) == 0, "1: both aligned");
	CHECK(dmarc_fo_wants("d", 1, 1, 1, 0) == 1, "d: a signature failed");
	CHECK(dmarc_fo_wants("d", 0, 0, 0, 1) == 0, "d: no signature failed");
	CHECK(dmarc_fo_wants("s", 1, 1, 0, 1) == 1, "s: SPF failed");
	CHECK(dmarc_fo_wants("s", 0, 0, 1, 0) == 0, "s: SPF did not fail");
	CHECK(dmarc_fo_wants("d:s", 1, 1, 0, 1) == 1, "d:s");
	CHECK(dmarc_fo_wants("0 : D", 1, 1, 1, 0) == 1, "spaces and case");
	CHECK(dmarc_fo_wants("1:d", 1, 1, 0, 0) == 0, "1:d, nothing failed");
}

int main(void)
{
	test_table();
	test_misc();
	test_fo();
	return dm_result("test_record");
}
