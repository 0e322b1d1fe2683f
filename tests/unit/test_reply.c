/* Reply encoders (text, msgpack) and the client-side reply framing. */
#include "protocol/reply.h"
#include "tests/unit/check.h"

#include <msgpack.h>
#include <stdlib.h>

static const struct proto_symbol syms[] = {
	{ "DMARC_POLICY_REJECT", 10.0, "example.com" },
	{ "SPF_FAIL", 3.0, "bad\r\ninjected: yes" },
	{ "DKIM_NONE", 0.0, NULL },
};

static const struct proto_result res = {
	.action = "reject", .score = 13.0,
	.smtp_reply = "550 5.7.1 Rejected: DMARC policy of example.com is reject",
	.symbols = syms, .n_symbols = 3,
	.auth_results = "mx.example.net; spf=fail smtp.mailfrom=example.org",
};

static void test_text(void)
{
	struct buf b;
	buf_init(&b, 0);
	CHECK(proto_reply_result_text(&b, &res) == 0);
	CHECK_STR(b.data,
	          "ALIGND/1 200 OK\r\nAction: reject\r\nScore: 13.00\r\n"
	          "SMTP-Reply: 550 5.7.1 Rejected: DMARC policy of example.com is reject\r\n"
	          "Symbol: DMARC_POLICY_REJECT 10.00 example.com\r\n"
	          "Symbol: SPF_FAIL 3.00 bad  injected: yes\r\n"
	          "Symbol: DKIM_NONE 0.00\r\n"
	          "Authentication-Results: mx.example.net; spf=fail smtp.mailfrom=example.org\r\n\r\n");
	CHECK(proto_reply_length(b.data, b.len) == (long)b.len);
	CHECK(proto_reply_length(b.data, b.len - 1) == 0);
	CHECK(proto_reply_code(b.data, b.len) == 200);
	buf_free(&b);
}

static const msgpack_object *get(const msgpack_object *map, const char *key)
{
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
		    memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0)
			return &kv->val;
	}
	return NULL;
}

static void test_msgpack(void)
{
	struct buf b;
	buf_init(&b, 0);
	CHECK(proto_reply_result_msgpack(&b, &res) == 0);
	long total = proto_reply_length(b.data, b.len);
	CHECK(total == (long)b.len);
	const char *body = strstr(b.data, "\r\n\r\n");
	CHECK(body != NULL);
	if (!body)
		return;
	body += 4;
	size_t blen = b.len - (size_t)(body - b.data);
	msgpack_unpacked up;
	msgpack_unpacked_init(&up);
	size_t off = 0;
	CHECK(msgpack_unpack_next(&up, body, blen, &off) == MSGPACK_UNPACK_SUCCESS);
	CHECK(off == blen);
	const msgpack_object *o = &up.data;
	CHECK(o->type == MSGPACK_OBJECT_MAP);
	const msgpack_object *a = get(o, "action");
	CHECK(a && a->type == MSGPACK_OBJECT_STR && a->via.str.size == 6 &&
	      memcmp(a->via.str.ptr, "reject", 6) == 0);
	const msgpack_object *s = get(o, "symbols");
	CHECK(s && s->type == MSGPACK_OBJECT_ARRAY && s->via.array.size == 3);
	const msgpack_object *sc = get(o, "score");
	CHECK(sc && sc->type == MSGPACK_OBJECT_FLOAT64 && sc->via.f64 == 13.0);
	const msgpack_object *st = get(o, "status");
	CHECK(st && st->type == MSGPACK_OBJECT_POSITIVE_INTEGER && st->via.u64 == 200);
	msgpack_unpacked_destroy(&up);
	buf_free(&b);
}

static void test_status_and_framing(void)
{
	struct buf b;
	buf_init(&b, 0);
	proto_reply_status(&b, 413, "message too large\r\nX: y");
	CHECK_STR(b.data, "ALIGND/1 413 message too large??X: y\r\n\r\n");
	CHECK(proto_reply_code(b.data, b.len) == 413);
	buf_free(&b);
	CHECK(proto_reply_length("HTTP/1.1 200 OK\r\n\r\n", 19) == -1);
	CHECK(proto_reply_length("ALIG", 4) == 0);
	const char two[] = "ALIGND/1 200 PONG\r\n\r\nALIGND/1 200 PONG\r\n\r\n";
	CHECK(proto_reply_length(two, sizeof(two) - 1) == 21);
	const char mp[] = "ALIGND/1 200 OK\r\nContent-Length: 3\r\n\r\nabcALIGND";
	CHECK(proto_reply_length(mp, sizeof(mp) - 1) == (long)sizeof(mp) - 1 - 6);
	CHECK(proto_reply_length(mp, 38) == 0);
}

int main(void)
{
	test_text();
	test_msgpack();
	test_status_and_framing();
	return check_done("test_reply");
}
