/* Fuzz target: the protocol request parser (protocol/request.h), fed in
 * chunks whose sizes come from the input. Invariants checked: used <= len,
 * a MORE event used every byte, BODY data lies inside the fed chunk and
 * adds up to Content-Length, no endless run of events without progress,
 * after a fatal error only that error, request strings are terminated. */
#include "tests/fuzz/fuzz.h"
#include "protocol/request.h"

static void check_request(const struct proto_request *r)
{
	FUZZ_ASSERT(r != NULL);
	const char *s[] = { r->client_ip, r->helo, r->mail_from, r->queue_id };
	for (size_t i = 0; i < 4; i++)
		if (s[i])
			FUZZ_ASSERT(strlen(s[i]) < 1u << 20);
	for (size_t i = 0; i < r->n_rcpt; i++)
		FUZZ_ASSERT(r->rcpt[i] && strlen(r->rcpt[i]) < 1u << 20);
	FUZZ_ASSERT(r->cmd != PROTO_CMD_NONE);
	FUZZ_ASSERT(proto_cmd_name(r->cmd) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f;
	fz_init(&f, data, size);
	unsigned mode = fz_u8(&f);
	struct proto_limits lim;
	proto_limits_default(&lim);
	if (mode & 1) {
		/* small limits reach every limit path with short inputs */
		lim.max_line = 16 + (mode >> 4);
		lim.max_head = 64 + (mode & 0x0e) * 8;
		lim.max_fields = 1 + ((mode >> 1) & 7);
		lim.max_body = 32;
	}
	struct proto_parser *p = proto_parser_new(&lim);
	FUZZ_ASSERT(p != NULL);

	int dead = 0, dead_status = 0;
	int in_scan = 0;
	uint64_t body_seen = 0, body_expected = 0;
	unsigned stalls = 0;
	while (f.len > 0) {
		unsigned c = fz_u8(&f);
		size_t want = c == 0 ? f.len : (c < 200 ? c : (size_t)(c - 199) * 512);
		size_t n;
		const uint8_t *chunk = fz_bytes(&f, want, &n);
		char *buf = fz_dup(chunk, n);
		size_t off = 0;
		for (;;) {
			size_t used = (size_t)-1;
			struct proto_event ev;
			int rc = proto_feed(p, buf + off, n - off, &used, &ev);
			FUZZ_ASSERT(rc == 0);
			FUZZ_ASSERT(used <= n - off);
			if (dead) {
				FUZZ_ASSERT(ev.type == PROTO_EV_ERROR && ev.fatal);
				FUZZ_ASSERT(ev.status == dead_status);
				off += used;
				break;
			}
			if (ev.type == PROTO_EV_MORE) {
				FUZZ_ASSERT(used == n - off);
				off += used;
				break;
			}
			/* events without consumed bytes: END after the last body
			 * byte, a skipped request's ERROR; never many in a row */
			stalls = used == 0 ? stalls + 1 : 0;
			FUZZ_ASSERT(stalls < 4);
			switch (ev.type) {
			case PROTO_EV_HEAD:
				check_request(ev.req);
				FUZZ_ASSERT(ev.req->cmd == PROTO_CMD_SCAN ||
				            ev.req->cmd == PROTO_CMD_SIGN);
				FUZZ_ASSERT(ev.req->content_length <= lim.max_body);
				FUZZ_ASSERT(!in_scan);
				FUZZ_ASSERT(proto_in_request(p));
				in_scan = 1;
				body_seen = 0;
				body_expected = ev.req->content_length;
				break;
			case PROTO_EV_BODY:
				FUZZ_ASSERT(in_scan);
				FUZZ_ASSERT(ev.len > 0);
				FUZZ_ASSERT(ev.data >= buf + off && ev.data + ev.len <= buf + n);
				FUZZ_ASSERT(ev.len <= used);
				body_seen += ev.len;
				FUZZ_ASSERT(body_seen <= body_expected);
				break;
			case PROTO_EV_END:
				check_request(ev.req);
				if (ev.req->cmd == PROTO_CMD_SCAN ||
				    ev.req->cmd == PROTO_CMD_SIGN) {
					FUZZ_ASSERT(in_scan);
					FUZZ_ASSERT(body_seen == body_expected);
					FUZZ_ASSERT(ev.req->content_length == body_expected);
				} else {
					FUZZ_ASSERT(!in_scan);
				}
				in_scan = 0;
				if (c & 1) {
					/* the daemon takes the request over */
					struct proto_request r;
					proto_take_request(p, &r);
					check_request(&r);
					proto_request_clear(&r);
				}
				break;
			case PROTO_EV_ERROR:
				FUZZ_ASSERT(ev.status >= 400 && ev.status < 500);
				FUZZ_ASSERT(ev.reason != NULL && strlen(ev.reason) > 0);
				FUZZ_ASSERT(!strpbrk(ev.reason, "\r\n"));
				if (ev.fatal) {
					dead = 1;
					dead_status = ev.status;
				} else {
					/* a non-fatal error comes after the skipped body:
					 * no HEAD was reported for it */
					FUZZ_ASSERT(!in_scan);
				}
				in_scan = 0;
				break;
			default:
				FUZZ_ASSERT(0);
			}
			off += used;
		}
		free(buf);
	}
	/* drain: a zero-length feed must also end in MORE or the dead error */
	for (unsigned i = 0; i < 8; i++) {
		size_t used = 1;
		struct proto_event ev;
		proto_feed(p, "", 0, &used, &ev);
		FUZZ_ASSERT(used == 0);
		if (ev.type == PROTO_EV_MORE || (ev.type == PROTO_EV_ERROR && ev.fatal))
			break;
		FUZZ_ASSERT(i < 4);
	}
	proto_parser_free(&p);
	FUZZ_ASSERT(p == NULL);
	return 0;
}
