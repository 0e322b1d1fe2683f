/* Fuzz target: the reply encoders (protocol/reply.h) with hostile strings,
 * and the client-side reply framing on raw bytes. A text reply must frame
 * as exactly one reply of the expected number of lines (no value may add a
 * line or end the reply early); a msgpack reply must frame, and its body
 * must unpack to one map whose strings are the given ones; a status reply
 * is one line. */
#include "tests/fuzz/fuzz.h"
#include "protocol/reply.h"

#include <msgpack.h>

static size_t count_crlf(const char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i + 1 < len; i++)
		if (s[i] == '\r' && s[i + 1] == '\n')
			n++;
	return n;
}

static void check_frames(const struct buf *b)
{
	FUZZ_ASSERT(!b->failed);
	long rl = proto_reply_length(b->data, b->len);
	FUZZ_ASSERT(rl == (long)b->len);
	/* a prefix is never a complete reply */
	if (b->len > 1)
		FUZZ_ASSERT(proto_reply_length(b->data, b->len - 1) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f;
	fz_init(&f, data, size);
	unsigned sel = fz_u16(&f);

	/* client side on raw bytes */
	{
		size_t n;
		const uint8_t *raw = fz_bytes(&f, fz_u8(&f), &n);
		char *r = fz_dup(raw, n);
		long l = proto_reply_length(r, n);
		FUZZ_ASSERT(l >= -1 && l <= (long)n);
		int code = proto_reply_code(r, n);
		FUZZ_ASSERT(code >= -1 && code <= 999);
		free(r);
	}

	char *qid = fz_str(&f, 200), *act = fz_str(&f, 40), *smtp = fz_str(&f, 300);
	char *ar = fz_str(&f, 1000), *reason = fz_str(&f, 600);
	size_t nsym = sel % 4, nadd = (sel >> 2) % 3, ntr = (sel >> 4) % 3;
	struct proto_symbol syms[3];
	char *symstr[6] = { 0 };
	for (size_t i = 0; i < nsym; i++) {
		symstr[2 * i] = fz_str(&f, 100);
		symstr[2 * i + 1] = fz_str(&f, 200);
		syms[i] = (struct proto_symbol){ symstr[2 * i], (double)(int)(sel >> 6) - 512.25,
		                                 (sel >> i) & 1 ? symstr[2 * i + 1] : NULL };
	}
	char *addh[2] = { 0 };
	for (size_t i = 0; i < nadd; i++)
		addh[i] = fz_str(&f, 300);
	struct proto_trace_line tr[2];
	char *trs[4] = { 0 };
	for (size_t i = 0; i < ntr; i++) {
		trs[2 * i] = fz_str(&f, 20);
		trs[2 * i + 1] = fz_str(&f, 300);
		tr[i] = (struct proto_trace_line){ (uint64_t)sel * 977u, trs[2 * i], trs[2 * i + 1] };
	}
	struct proto_result res = {
		.queue_id = (sel & 0x100) ? qid : NULL,
		.action = act,
		.score = (double)sel / 7.0,
		.smtp_reply = (sel & 0x200) ? smtp : NULL,
		.symbols = syms, .n_symbols = nsym,
		.auth_results = (sel & 0x400) ? ar : NULL,
		.add_headers = (const char *const *)addh, .n_add_headers = nadd,
		.trace = tr, .n_trace = ntr,
		.trace_dropped = (sel >> 11) & 1,
	};

	/* text: one line per item, plus the status line and the blank line */
	struct buf b;
	buf_init(&b, 1 << 20);
	/* the action is a fixed word in the daemon; here it goes through %s */
	int act_clean = strpbrk(act, "\r\n") == NULL;
	FUZZ_ASSERT(proto_reply_result_text(&b, &res) == 0);
	if (act_clean) {
		check_frames(&b);
		FUZZ_ASSERT(proto_reply_code(b.data, b.len) == 200);
		size_t lines = 1 + (res.queue_id != NULL) + 2 + (res.smtp_reply != NULL) + nsym + nadd +
		               (res.auth_results != NULL) + ntr + res.trace_dropped + 1;
		if (!memchr(act, '\r', strlen(act)) && !strpbrk(act, "\n")) {
			int area_clean = 1;
			for (size_t i = 0; i < ntr; i++)
				if (strpbrk(trs[2 * i], "\r\n"))
					area_clean = 0;
			if (area_clean)
				FUZZ_ASSERT(count_crlf(b.data, b.len) == lines);
		}
	}
	buf_free(&b);

	/* msgpack */
	buf_init(&b, 1 << 20);
	FUZZ_ASSERT(proto_reply_result_msgpack(&b, &res) == 0);
	check_frames(&b);
	{
		const char *end = strstr(b.data, "\r\n\r\n");
		FUZZ_ASSERT(end != NULL);
		size_t off = (size_t)(end + 4 - b.data);
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		size_t pos = 0;
		FUZZ_ASSERT(msgpack_unpack_next(&u, b.data + off, b.len - off, &pos) == MSGPACK_UNPACK_SUCCESS);
		FUZZ_ASSERT(pos == b.len - off);
		FUZZ_ASSERT(u.data.type == MSGPACK_OBJECT_MAP);
		const msgpack_object_map *m = &u.data.via.map;
		int saw_action = 0;
		for (uint32_t i = 0; i < m->size; i++) {
			const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
			FUZZ_ASSERT(k->type == MSGPACK_OBJECT_STR);
			if (k->via.str.size == 6 && memcmp(k->via.str.ptr, "action", 6) == 0) {
				FUZZ_ASSERT(v->type == MSGPACK_OBJECT_STR);
				FUZZ_ASSERT(v->via.str.size == strlen(act));
				FUZZ_ASSERT(memcmp(v->via.str.ptr, act, strlen(act)) == 0);
				saw_action = 1;
			}
		}
		FUZZ_ASSERT(saw_action);
		msgpack_unpacked_destroy(&u);
	}
	buf_free(&b);

	/* status line with a hostile reason */
	buf_init(&b, 4096);
	int st = 400 + (int)(sel % 200);
	FUZZ_ASSERT(proto_reply_status(&b, st, reason) == 0);
	check_frames(&b);
	FUZZ_ASSERT(proto_reply_code(b.data, b.len) == st);
	FUZZ_ASSERT(count_crlf(b.data, b.len) == 2);
	buf_free(&b);

	free(qid); free(act); free(smtp); free(ar); free(reason);
	for (size_t i = 0; i < 6; i++)
		free(symstr[i]);
	for (size_t i = 0; i < 2; i++)
		free(addh[i]);
	for (size_t i = 0; i < 4; i++)
		free(trs[i]);
	return 0;
}
