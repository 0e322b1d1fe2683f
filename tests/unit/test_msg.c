/* The message header splitter: fields, folding, body start, limits. */
#include "checks/msg.h"
#include "common/limits.h"
#include "tests/unit/check.h"

#include <stdlib.h>

static void test_basic(void)
{
	const char m[] = "From: a@example.com\r\nSubject: hello\r\n world\r\nDKIM-Signature: v=1;\r\n\td=example.com\r\n\r\nbody\r\n";
	struct msg p;
	CHECK(msg_parse(m, sizeof(m) - 1, &p) == MSG_OK);
	CHECK(p.n_fields == 3);
	CHECK(p.crlf == 1);
	CHECK(msg_count(&p, "subject") == 1);
	const struct msg_field *s = msg_get(&p, "SUBJECT", 0);
	CHECK(s != NULL);
	char out[64];
	CHECK(msg_unfold(s->value, s->value_len, out, sizeof(out)) == 11);
	CHECK_STR(out, "hello world");
	CHECK(p.body_len == 6 && memcmp(p.body, "body\r\n", 6) == 0);
	CHECK(msg_header_end(m, sizeof(m) - 1) == (size_t)(p.body - m));
	const struct msg_field *d = msg_get(&p, "dkim-signature", 0);
	CHECK(d && msg_unfold(d->value, d->value_len, out, sizeof(out)) != (size_t)-1);
	CHECK_STR(out, "v=1;\td=example.com");
	msg_free(&p);
}

static void test_lf_and_odd(void)
{
	const char m[] = "Received: x\nreceived: y\nX-8bit: caf\xc3\xa9\n\nbody";
	struct msg p;
	CHECK(msg_parse(m, sizeof(m) - 1, &p) == MSG_OK);
	CHECK(p.n_fields == 3 && p.crlf == 0 && p.has_8bit == 1);
	CHECK(msg_count(&p, "Received") == 2);
	CHECK(msg_get(&p, "received", 1) && msg_get(&p, "received", 1)->value[1] == 'y');
	CHECK(msg_get(&p, "received", 2) == NULL);
	msg_free(&p);
	/* no blank line: everything is header */
	const char h[] = "From: a@b\nTo: c@d";
	CHECK(msg_parse(h, sizeof(h) - 1, &p) == MSG_OK);
	CHECK(p.n_fields == 2 && p.body_len == 0);
	msg_free(&p);
	/* a non-header line ends the header section */
	const char nh[] = "From: a@b\nthis is not a header\nTo: c@d\n";
	CHECK(msg_parse(nh, sizeof(nh) - 1, &p) == MSG_OK);
	CHECK(p.n_fields == 1);
	msg_free(&p);
	/* empty first line: no headers */
	CHECK(msg_header_end("\r\nbody", 6) == 2);
	CHECK(msg_header_end("\nbody", 5) == 1);
	CHECK(msg_header_end("A: b\r\n", 6) == 0);
	CHECK(msg_header_end("A: b\n\n", 6) == 6);
}

static void test_limits(void)
{
	size_t n = LIM_MAX_HEADERS + 1;
	char *m = malloc(n * 6 + 2);
	for (size_t i = 0; i < n; i++)
		memcpy(m + i * 6, "X: 1\r\n", 6);
	memcpy(m + n * 6, "\r\n", 2);
	struct msg p;
	CHECK(msg_parse(m, n * 6 + 2, &p) == MSG_E_TOO_MANY);
	free(m);
	size_t big = LIM_MAX_HEADER_LINE + 10;
	m = malloc(big + 8);
	memcpy(m, "X: ", 3);
	memset(m + 3, 'a', big);
	memcpy(m + 3 + big, "\n\n", 2);
	CHECK(msg_parse(m, big + 5, &p) == MSG_E_LINE);
	free(m);
	char out[4];
	CHECK(msg_unfold("abcdef", 6, out, sizeof(out)) == (size_t)-1);
}

int main(void)
{
	test_basic();
	test_lf_and_odd();
	test_limits();
	return check_done("test_msg");
}
