/* Unit tests of the authserv-id reader of the MTA clients
 * (clients/dclient.c): which incoming Authentication-Results fields
 * claim our id (RFC 8601 2.2, 5). Each value is handed over in a heap
 * copy of exactly its length, not NUL-terminated, so that a read past
 * its end shows under AddressSanitizer. */
#include "clients/dclient.h"
#include "common/limits.h"
#include "tests/unit/check.h"

#include <stdlib.h>

static int parse(const char *v, char *id, size_t idlen)
{
	size_t n = strlen(v);
	char *copy = malloc(n ? n : 1);
	memcpy(copy, v, n);
	int rc = dclient_ar_authserv_id(copy, n, id, idlen);
	free(copy);
	return rc;
}

static int forged(const char *v, const char *ours)
{
	size_t n = strlen(v);
	char *copy = malloc(n ? n : 1);
	memcpy(copy, v, n);
	int rc = dclient_ar_forged(copy, n, ours);
	free(copy);
	return rc;
}

static const struct {
	const char *value;
	int rc;
	const char *id;
} cases[] = {
	{ " mx.test.example; dmarc=pass", 0, "mx.test.example" },
	{ "mx.test.example;dmarc=pass", 0, "mx.test.example" },
	{ "MX.Test.EXAMPLE; dmarc=pass", 0, "mx.test.example" },
	{ "mx.test.example.; dmarc=pass", 0, "mx.test.example" },
	{ " \"mx.test.example\"; dmarc=pass", 0, "mx.test.example" },
	{ " \"MX.test.example\" ; dmarc=pass", 0, "mx.test.example" },
	{ " \"mx.te\\st.example\"; dmarc=pass", 0, "mx.test.example" },
	{ " \" mx.test.example \"; dmarc=pass", 0, "mx.test.example" },
	{ " \"mx.test.\r\n example\"; dmarc=pass", -1, "" },
	{ " \"mx.test.\r\nexample\"; dmarc=pass", 0, "mx.test.example" },
	{ " (comment) mx.test.example; dmarc=pass", 0, "mx.test.example" },
	{ " (a (nested) comment) mx.test.example; dmarc=pass", 0, "mx.test.example" },
	{ " (a \\) quoted paren) mx.test.example; dmarc=pass", 0, "mx.test.example" },
	{ " (c1)(c2)\r\n\t(c3) \"mx.test.example\" (c4) ; dmarc=pass", 0, "mx.test.example" },
	{ "\r\n\tmx.test.example\r\n\t; dmarc=pass", 0, "mx.test.example" },
	{ " mx.test.example 1; dmarc=pass", 0, "mx.test.example" },
	{ " mx.test.example (v) 1 (x); none", 0, "mx.test.example" },
	{ " mx.test.example(c); dmarc=pass", 0, "mx.test.example" },
	{ " other.example; spf=pass smtp.mailfrom=mx.test.example", 0, "other.example" },
	/* the id alone: what -a takes */
	{ "mx.test.example", 1, "mx.test.example" },
	{ " mx.test.example (comment) ", 1, "mx.test.example" },
	{ "\"mx.test.example\"", 1, "mx.test.example" },
	/* unreadable */
	{ "", -1, "" },
	{ "   ", -1, "" },
	{ "; dmarc=pass", -1, "" },
	{ "\"\"; dmarc=pass", -1, "" },
	{ ".; dmarc=pass", -1, "" },
	{ " (unterminated mx.test.example; dmarc=pass", -1, "" },
	{ " (a\\) mx.test.example; dmarc=pass", -1, "" },
	{ " (escape at end\\", -1, "" },
	{ " \"mx.test.example; dmarc=pass", -1, "" },
	{ " \"mx.test.example\\", -1, "" },
	{ " \"mx test\"; dmarc=pass", -1, "" },
	{ " \"mx\x01test\"; dmarc=pass", -1, "" },
	{ " mx.test.example\"x\"; dmarc=pass", -1, "" },
	{ " mx.test.example/x; dmarc=pass", -1, "" },
	{ " mx.test.example dmarc=pass", -1, "" },
	{ " mx.test.example 1 2; dmarc=pass", -1, "" },
	{ " mx.test.example\x01; dmarc=pass", -1, "" },
};

static void test_table(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char id[LIM_AUTHSERV_ID];
		memset(id, 'Z', sizeof(id));
		int rc = parse(cases[i].value, id, sizeof(id));
		if (rc != cases[i].rc)
			fprintf(stderr, "case %zu: rc %d\n", i, rc);
		CHECK(rc == cases[i].rc);
		CHECK_STR(id, cases[i].id);
	}
}

static void test_forged(void)
{
	const char *ours = "mx.test.example";
	CHECK(forged(" mx.test.example; dmarc=pass", ours));
	CHECK(forged(" \"mx.test.example\"; dmarc=pass", ours));
	CHECK(forged(" (x) MX.TEST.EXAMPLE.; dmarc=pass", ours));
	CHECK(forged("\r\n\t\"mx.test.example\"\r\n\t; dmarc=pass", ours));
	/* unreadable ones go too: a lenient reader could take them for ours */
	CHECK(forged(" (a\\) mx.test.example; dmarc=pass", ours));
	CHECK(forged(" mx.test.example dmarc=pass", ours));
	CHECK(forged(" garbage", ours));
	CHECK(forged("", ours));
	/* the id alone is no result: not one of ours, but not well-formed */
	CHECK(forged(" mx.test.example", ours));
	/* others stay */
	CHECK(!forged(" other.example; spf=pass smtp.mailfrom=mx.test.example", ours));
	CHECK(!forged(" mx.test.example.other; dmarc=pass", ours));
	CHECK(!forged(" sub.mx.test.example; dmarc=pass", ours));
	CHECK(!forged(" \"other.example\"; dmarc=pass", ours));
	CHECK(!forged(" (mx.test.example) other.example; dmarc=pass", ours));
	/* our id unknown: every field goes */
	CHECK(forged(" other.example; spf=pass", ""));
	CHECK(forged(" other.example; spf=pass", NULL));
}

static void test_bounds(void)
{
	/* the id must fit with its NUL: one byte short is unreadable */
	char id[8];
	CHECK(parse("abcdefg; x=y", id, sizeof(id)) == 0);
	CHECK_STR(id, "abcdefg");
	CHECK(parse("abcdefgh; x=y", id, sizeof(id)) == -1);
	CHECK_STR(id, "");
	CHECK(parse("\"abcdefgh\"; x=y", id, sizeof(id)) == -1);
	CHECK(parse("a; x=y", id, 1) == -1);
	CHECK(parse("a; x=y", id, 2) == 0);
	CHECK_STR(id, "a");
	/* a longest id and one byte more */
	char v[LIM_AUTHSERV_ID + 8], big[LIM_AUTHSERV_ID];
	memset(v, 'a', LIM_AUTHSERV_ID - 1);
	memcpy(v + LIM_AUTHSERV_ID - 1, "; x=y", 6);
	CHECK(parse(v, big, sizeof(big)) == 0);
	CHECK(strlen(big) == LIM_AUTHSERV_ID - 1);
	memset(v, 'a', LIM_AUTHSERV_ID);
	memcpy(v + LIM_AUTHSERV_ID, "; x=y", 6);
	CHECK(parse(v, big, sizeof(big)) == -1);
	/* deep nesting costs no stack */
	size_t depth = 100000;
	char *deep = malloc(2 * depth + 32);
	memset(deep, '(', depth);
	memset(deep + depth, ')', depth);
	memcpy(deep + 2 * depth, " mx.test.example; x=y", 22);
	CHECK(parse(deep, big, sizeof(big)) == 0);
	CHECK_STR(big, "mx.test.example");
	free(deep);
}

int main(void)
{
	test_table();
	test_forged();
	test_bounds();
	return check_done("authserv");
}
