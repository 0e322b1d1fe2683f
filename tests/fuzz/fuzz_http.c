/* Fuzz target: the HTTP endpoint's request head (protocol/http_req.h) on
 * raw bytes. The end of the head found as the bytes arrive in pieces
 * (sizes from the input) must be the end found in one call, and lie
 * inside the bytes; the parse of a complete head must either succeed with
 * a usable request or name an HTTP error status with a reason, and never
 * leak what it copied. */
#include "tests/fuzz/fuzz.h"
#include "protocol/http_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f;
	fz_init(&f, data, size);
	unsigned step = fz_u8(&f) % 16 + 1;
	unsigned max_k = fz_u8(&f);
	size_t n;
	const uint8_t *raw = fz_bytes(&f, f.len, &n);
	const char *d = (const char *)raw;

	size_t whole = http_head_end(d, n, NULL);
	FUZZ_ASSERT(whole <= n);
	if (whole)
		FUZZ_ASSERT(d[whole - 1] == '\n');

	/* the same bytes in pieces of `step` bytes */
	size_t resume = 0, got = 0;
	for (size_t have = 0; have < n && !got;) {
		have = have + step < n ? have + step : n;
		got = http_head_end(d, have, &resume);
		FUZZ_ASSERT(resume <= have);
	}
	FUZZ_ASSERT(got == whole);

	if (whole) {
		char *head = malloc(whole);
		FUZZ_ASSERT(head != NULL);
		memcpy(head, d, whole);
		struct http_head h;
		struct proto_request req;
		const char *why = NULL;
		uint64_t max_body = (uint64_t)max_k << 16;
		int st = http_parse_head(head, whole, max_body, &h, &req, &why);
		if (st == 0) {
			FUZZ_ASSERT(h.target == HTTP_T_PING || h.target == HTTP_T_METRICS ||
			            h.target == HTTP_T_SCAN);
			if (h.target == HTTP_T_SCAN)
				FUZZ_ASSERT(req.has_length && req.content_length <= max_body);
			if (h.legacy)
				FUZZ_ASSERT(!h.keep_alive);
		} else {
			FUZZ_ASSERT(st >= 400 && st < 600);
			FUZZ_ASSERT(why != NULL && why[0] != '\0');
		}
		proto_request_clear(&req);
		free(head);
	}
	return 0;
}
