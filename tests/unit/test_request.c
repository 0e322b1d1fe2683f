/* The request parser, fed whole and in every small chunk size: the same
 * events must come out, and every bad-input case gives its error. */
#include "protocol/request.h"
#include "tests/unit/check.h"
#include "common/buf.h"

#include <stdlib.h>
#include <string.h>

/* Runs the parser over input in chunks of `step` bytes (0 = whole) and
 * writes a transcript of the events; BODY events are summed. */
static void transcript(const char *in, size_t len, size_t step,
                       const struct proto_limits *lim, struct buf *out)
{
	struct proto_parser *p = proto_parser_new(lim);
	size_t off = 0, body = 0;
	int dead = 0;
	while (off < len && !dead) {
		size_t n = step ? (len - off < step ? len - off : step) : len - off;
		size_t pos = 0;
		/* feed until the parser asks for more: the END of a request whose
		 * last byte was in this chunk comes without further input */
		for (int more = 0; !more && !dead;) {
			struct proto_event ev;
			size_t used = 0;
			proto_feed(p, in + off + pos, n - pos, &used, &ev);
			pos += used;
			if (ev.type != PROTO_EV_BODY && ev.type != PROTO_EV_MORE && body) {
				buf_printf(out, "BODY %zu;", body);
				body = 0;
			}
			switch (ev.type) {
			case PROTO_EV_MORE:
				if (pos != n)
					buf_adds(out, "MORE-BUT-UNUSED;");
				more = 1;
				break;
			case PROTO_EV_HEAD:
				buf_printf(out, "HEAD %s cl=%llu ip=%s helo=%s from=%s rcpt=%zu qid=%s fmt=%d x=%d;",
				           proto_cmd_name(ev.req->cmd),
				           (unsigned long long)ev.req->content_length,
				           ev.req->client_ip ? ev.req->client_ip : "-",
				           ev.req->helo ? ev.req->helo : "-",
				           ev.req->mail_from ? (ev.req->mail_from[0] ? ev.req->mail_from : "<>") : "-",
				           ev.req->n_rcpt, ev.req->queue_id ? ev.req->queue_id : "-",
				           (int)ev.req->format, ev.req->explain);
				break;
			case PROTO_EV_BODY:
				body += ev.len;
				break;
			case PROTO_EV_END:
				buf_printf(out, "END %s;", proto_cmd_name(ev.req->cmd));
				break;
			case PROTO_EV_ERROR:
				buf_printf(out, "ERR %d%s;", ev.status, ev.fatal ? " fatal" : "");
				if (ev.fatal)
					dead = 1;
				break;
			}
		}
		off += n;
	}
	if (body)
		buf_printf(out, "BODY %zu;", body);
	proto_parser_free(&p);
}

struct tcase {
	const char *name;
	const char *in;
	size_t len;           /* inputs may contain NUL bytes */
	const char *want;
};

#define T(name, in, want) { name, in, sizeof(in) - 1, want }

static const struct tcase cases[] = {
	T("ping crlf", "PING\r\n\r\n", "END PING;" ),
	T("ping lf, versioned", "PING ALIGND/1\n\n", "END PING;" ),
	T("blank lines between requests", "\r\n\r\nPING\r\n\r\n", "END PING;" ),
	T("stats and quit", "STATS\r\n\r\nQUIT\r\n\r\n", "END STATS;END QUIT;" ),
	T("lower-case command", "ping\r\n\r\n", "END PING;" ),
	T("scan full",
	  "SCAN ALIGND/1\r\nClient-IP: 203.0.113.7\r\nHelo: mail.example.org\r\n"
	  "Mail-From: bounce@example.org\r\nRcpt-To: a@example.net\r\nRcpt-To: <b@example.net>\r\n"
	  "Queue-Id: 4FzX1\r\nFormat: msgpack\r\nExplain: yes\r\nContent-Length: 12\r\n\r\n"
	  "Subject: x\r\n",
	  "HEAD SCAN cl=12 ip=203.0.113.7 helo=mail.example.org from=bounce@example.org rcpt=2 qid=4FzX1 fmt=1 x=1;BODY 12;END SCAN;" ),
	T("scan null sender, ipv6 with prefix",
	  "SCAN\nClient-IP: [IPv6:2001:db8::1]\nMail-From: <>\nContent-Length: 0\n\n",
	  "HEAD SCAN cl=0 ip=2001:db8::1 helo=- from=<> rcpt=0 qid=- fmt=0 x=0;END SCAN;" ),
	T("empty Mail-From is the null sender",
	  "SCAN\nMail-From:\nContent-Length: 1\n\nx",
	  "HEAD SCAN cl=1 ip=- helo=- from=<> rcpt=0 qid=- fmt=0 x=0;BODY 1;END SCAN;" ),
	T("pipelined scans",
	  "SCAN\nContent-Length: 3\n\nabcSCAN\nContent-Length: 2\n\nxyPING\n\n",
	  "HEAD SCAN cl=3 ip=- helo=- from=- rcpt=0 qid=- fmt=0 x=0;BODY 3;END SCAN;"
	  "HEAD SCAN cl=2 ip=- helo=- from=- rcpt=0 qid=- fmt=0 x=0;BODY 2;END SCAN;END PING;" ),
	T("body may contain a blank line and NUL-free request lines",
	  "SCAN\nContent-Length: 8\n\nPING\n\n\n\n",
	  "HEAD SCAN cl=8 ip=- helo=- from=- rcpt=0 qid=- fmt=0 x=0;BODY 8;END SCAN;" ),
	T("unknown fields are ignored", "PING\nX-Future: 1\n\n", "END PING;" ),
	T("sign, then scan",
	  "SIGN ALIGND/1\r\nContent-Length: 3\r\n\r\nabcSCAN\nContent-Length: 1\n\nx",
	  "HEAD SIGN cl=3 ip=- helo=- from=- rcpt=0 qid=- fmt=0 x=0;BODY 3;END SIGN;"
	  "HEAD SCAN cl=1 ip=- helo=- from=- rcpt=0 qid=- fmt=0 x=0;BODY 1;END SCAN;" ),
	T("sign without Content-Length", "SIGN\n\n", "ERR 411 fatal;" ),
	/* errors that keep the connection usable */
	T("unknown command", "FROB\r\n\r\nPING\r\n\r\n", "ERR 405;END PING;" ),
	T("unknown command with body skipped", "FROB\nContent-Length: 5\n\nhelloPING\n\n", "ERR 405;END PING;" ),
	T("bad version", "PING ALIGND/2\n\nPING\n\n", "ERR 400;END PING;" ),
	T("malformed field line", "SCAN\nno colon here\nContent-Length: 2\n\nabPING\n\n", "ERR 400;END PING;" ),
	T("NUL in head", "SCAN\nHelo: a\0b\nContent-Length: 2\n\nabPING\n\n", "ERR 400;END PING;" ),
	T("bad client ip", "SCAN\nClient-IP: 999.1.1.1\nContent-Length: 1\n\naPING\n\n", "ERR 400;END PING;" ),
	T("duplicate Mail-From", "SCAN\nMail-From: a@b\nMail-From: c@d\nContent-Length: 1\n\naPING\n\n", "ERR 400;END PING;" ),
	T("bad Format", "SCAN\nFormat: xml\nContent-Length: 1\n\naPING\n\n", "ERR 400;END PING;" ),
	T("control character in value", "SCAN\nHelo: a\x01" "b\nContent-Length: 1\n\naPING\n\n", "ERR 400;END PING;" ),
	T("ping with a body", "PING\nContent-Length: 2\n\nabPING\n\n", "ERR 400;END PING;" ),
	/* errors that lose framing: fatal */
	T("missing Content-Length", "SCAN\nHelo: x\n\nwhatever", "ERR 411 fatal;" ),
	T("non-numeric Content-Length", "SCAN\nContent-Length: 12x\n\n", "ERR 400 fatal;" ),
	T("negative Content-Length", "SCAN\nContent-Length: -1\n\n", "ERR 400 fatal;" ),
	T("duplicate Content-Length", "SCAN\nContent-Length: 1\nContent-Length: 1\n\na", "ERR 400 fatal;" ),
	T("too large", "SCAN\nContent-Length: 999999999999\n\n", "ERR 413 fatal;" ),
};

static const struct tcase small_cases[] = {
	/* with max_line 64, max_head 256, max_fields 4, max_body 100 */
	T("line too long", "PING\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\n", "ERR 414 fatal;" ),
	T("line too long without LF", "SCANaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ERR 414 fatal;" ),
	T("too many fields", "PING\nA: 1\nB: 2\nC: 3\nD: 4\nE: 5\n\n", "ERR 431 fatal;" ),
	T("head too large",
	  "SCAN\nX-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nX-B: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
	  "X-C: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nX-D: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
	  "X-E: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\n", "ERR 431 fatal;" ),
	T("body over the limit", "SCAN\nContent-Length: 101\n\n", "ERR 413 fatal;" ),
	T("body at the limit", "SCAN\nContent-Length: 100\n\n"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	  "HEAD SCAN cl=100 ip=- helo=- from=- rcpt=0 qid=- fmt=0 x=0;BODY 100;END SCAN;" ),
};

static void run(const struct tcase *c, size_t n, const struct proto_limits *lim)
{
	static const size_t steps[] = { 0, 1, 2, 3, 5, 7, 64 };
	for (size_t i = 0; i < n; i++) {
		size_t len = c[i].len;
		for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
			struct buf out;
			buf_init(&out, 0);
			transcript(c[i].in, len, steps[s], lim, &out);
			if (strcmp(out.data ? out.data : "", c[i].want) != 0)
				fprintf(stderr, "case '%s', step %zu:\n", c[i].name, steps[s]);
			CHECK_STR(out.data ? out.data : "", c[i].want);
			buf_free(&out);
		}
	}
}

static void test_writer(void)
{
	const char *rcpt[] = { "a@example.net", "b@example.net" };
	struct proto_envelope e = { .client_ip = "192.0.2.1", .helo = "h.example",
	                            .mail_from = "", .rcpt = rcpt, .n_rcpt = 2,
	                            .queue_id = "Q1", .explain = 1 };
	char *head;
	size_t hl;
	CHECK(proto_write_scan_head(&e, 5, &head, &hl) == 0);
	struct buf in;
	buf_init(&in, 0);
	buf_add(&in, head, hl);
	buf_adds(&in, "hello");
	free(head);
	struct buf out;
	buf_init(&out, 0);
	transcript(in.data, in.len, 1, NULL, &out);
	CHECK_STR(out.data, "HEAD SCAN cl=5 ip=192.0.2.1 helo=h.example from=<> rcpt=2 qid=Q1 fmt=0 x=1;BODY 5;END SCAN;");
	buf_free(&in);
	buf_free(&out);
	e.sign = 1;
	CHECK(proto_write_scan_head(&e, 0, &head, &hl) == 0);
	CHECK(hl > 14 && memcmp(head, "SIGN ALIGND/1\r\n", 15) == 0);
	free(head);
	e.helo = "bad\r\nSTATS";
	CHECK(proto_write_scan_head(&e, 5, &head, &hl) < 0);
}

int main(void)
{
	run(cases, sizeof(cases) / sizeof(cases[0]), NULL);
	struct proto_limits small = { .max_line = 64, .max_head = 256, .max_fields = 4, .max_body = 100 };
	run(small_cases, sizeof(small_cases) / sizeof(small_cases[0]), &small);
	test_writer();
	return check_done("test_request");
}
