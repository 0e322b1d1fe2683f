/* protocol/http_req.h: where a request head ends, found as bytes arrive,
 * and what its parse makes of good and bad heads. */
#include "tests/unit/check.h"
#include "protocol/http_req.h"
#include "common/limits.h"

#include <stdlib.h>

static int parse(const char *text, uint64_t max, struct http_head *h,
                 struct proto_request *r, const char **why)
{
	size_t n = strlen(text);
	char *d = malloc(n + 1);
	memcpy(d, text, n + 1);
	size_t end = http_head_end(d, n, NULL);
	*why = NULL;
	int st = end ? http_parse_head(d, end, max, h, r, why) : -1;
	free(d);
	return st;
}

static void test_head_end(void)
{
	static const char *const heads[] = {
		"GET /ping HTTP/1.1\r\n\r\n",
		"GET /ping HTTP/1.1\n\n",
		"POST /checkv2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
		"POST /checkv2 HTTP/1.1\nA: b\r\n\nabc",
	};
	for (size_t k = 0; k < sizeof heads / sizeof heads[0]; k++) {
		const char *d = heads[k];
		size_t n = strlen(d), whole = http_head_end(d, n, NULL);
		CHECK(whole > 0 && d[whole - 1] == '\n');
		/* byte by byte, resuming: the same end, found when it arrives */
		size_t resume = 0, got = 0, at = 0;
		for (size_t have = 1; have <= n && !got; have++) {
			got = http_head_end(d, have, &resume);
			at = have;
		}
		CHECK(got == whole);
		CHECK(at == whole);
	}
	/* a head that does not end: the resume point follows the bytes, so
	 * each call looks at what is new only (linear, not quadratic) */
	static char big[64 * 1024];
	memset(big, 'a', sizeof big);
	for (size_t i = 80; i < sizeof big; i += 81)
		big[i] = '\n';
	size_t resume = 0, found = 0;
	for (size_t have = 1; have <= sizeof big; have++)
		found |= http_head_end(big, have, &resume);
	CHECK(found == 0);
	CHECK(resume == sizeof big - 2);
	/* an LF at the end may still be followed by CRLF */
	resume = 0;
	CHECK(http_head_end("X\r\n", 3, &resume) == 0);
	CHECK(http_head_end("X\r\n\r\n", 5, &resume) == 5);
	/* nothing yet */
	resume = 0;
	CHECK(http_head_end("", 0, &resume) == 0 && resume == 0);
}

static void test_parse(void)
{
	struct http_head h;
	struct proto_request r;
	const char *why;

	CHECK(parse("POST /checkv2 HTTP/1.1\r\nIP: [IPv6:2001:db8::1]\r\nHelo: mx.example\r\n"
	            "From: <a@example.com>\r\nRcpt: <b@example.net>\r\nRcpt: c@example.net\r\n"
	            "Queue-Id: Q7\r\nContent-Length: 42\r\n\r\n", 100, &h, &r, &why) == 0);
	CHECK(h.target == HTTP_T_SCAN && h.keep_alive && !h.legacy);
	CHECK(r.cmd == PROTO_CMD_SCAN && r.has_length && r.content_length == 42);
	CHECK_STR(r.client_ip, "2001:db8::1");
	CHECK_STR(r.helo, "mx.example");
	CHECK_STR(r.mail_from, "a@example.com");
	CHECK(r.n_rcpt == 2);
	if (r.n_rcpt == 2) {
		CHECK_STR(r.rcpt[0], "b@example.net");
		CHECK_STR(r.rcpt[1], "c@example.net");
	}
	CHECK_STR(r.queue_id, "Q7");
	proto_request_clear(&r);

	CHECK(parse("GET /ping?x=1 HTTP/1.0\r\n\r\n", 100, &h, &r, &why) == 0);
	CHECK(h.target == HTTP_T_PING && !h.keep_alive);
	proto_request_clear(&r);
	CHECK(parse("GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", 100, &h, &r, &why) == 0);
	CHECK(h.target == HTTP_T_METRICS && !h.keep_alive);
	proto_request_clear(&r);
	/* Exim's legacy form */
	CHECK(parse("CHECK RSPAMC/1.3\r\nContent-length: 5\r\nConnection: keep-alive\r\n\r\n",
	            100, &h, &r, &why) == 0);
	CHECK(h.target == HTTP_T_SCAN && h.legacy && !h.keep_alive && r.content_length == 5);
	proto_request_clear(&r);

	static const struct { const char *head; int status; const char *why; } bad[] = {
		{ "POST /checkv2 HTTP/1.1\r\n\r\n", 411, "Content-Length required" },
		{ "POST /checkv2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411, NULL },
		{ "POST /checkv2 HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413, NULL },
		{ "POST /checkv2 HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400,
		  "bad Content-Length" },
		{ "POST /checkv2 HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400, "bad Content-Length" },
		{ "POST /checkv2 HTTP/1.1\r\nX: a\r\n b\r\nContent-Length: 1\r\n\r\n", 400, NULL },
		{ "POST /checkv2 HTTP/1.1\r\nX\x01: a\r\n\r\n", 400, NULL },
		{ "POST /checkv2 HTTP/1.1\r\nBad Name: a\r\n\r\n", 400, "bad header field name" },
		{ "POST /checkv2 HTTP/1.1\r\nFrom: a\r\nFrom: b\r\nContent-Length: 1\r\n\r\n", 400,
		  "duplicate header field" },
		{ "POST /checkv2 HTTP/1.1\r\nIP: 300.1.2.3\r\nContent-Length: 1\r\n\r\n", 400, "bad IP" },
		{ "POST /checkv2 HTTP/2\r\n\r\n", 505, NULL },
		{ "DELETE /checkv2 HTTP/1.1\r\n\r\n", 405, NULL },
		{ "POST /other HTTP/1.1\r\n\r\n", 404, NULL },
		{ "POST  /checkv2 HTTP/1.1\r\n\r\n", 400, "bad request line" },
		{ "\r\n\r\n", 400, "empty request" },
	};
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
		int st = parse(bad[k].head, 100, &h, &r, &why);
		if (st != bad[k].status)
			fprintf(stderr, "case %zu: status %d, want %d (%s)\n", k, st, bad[k].status,
			        why ? why : "");
		CHECK(st == bad[k].status);
		CHECK(why != NULL && why[0]);
		if (bad[k].why)
			CHECK_STR(why, bad[k].why);
		proto_request_clear(&r);
	}
	/* at most LIM_MAX_REQUEST_FIELDS fields */
	char many[LIM_MAX_REQUEST_FIELDS * 8 + 128];
	size_t at = (size_t)snprintf(many, sizeof many, "POST /checkv2 HTTP/1.1\r\n");
	for (unsigned i = 0; i <= LIM_MAX_REQUEST_FIELDS; i++)
		at += (size_t)snprintf(many + at, sizeof many - at, "X: a\r\n");
	snprintf(many + at, sizeof many - at, "\r\n");
	CHECK(parse(many, 100, &h, &r, &why) == 431);
	proto_request_clear(&r);
}

int main(void)
{
	test_head_end();
	test_parse();
	return check_done("test_http_req");
}
