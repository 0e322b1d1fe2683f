/* Reply encoders (text, msgpack) and client-side reply framing. */
#include "protocol/reply.h"
#include "common/text.h"

#include <msgpack.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* A value written into a text reply must stay on its line. */
static int add_clean(struct buf *out, const char *s)
{
	size_t len = strlen(s);
	if (buf_reserve(out, len) < 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		out->data[out->len++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	out->data[out->len] = '\0';
	return 0;
}

int proto_reply_status(struct buf *out, int status, const char *reason)
{
	char clean[256];
	text_printable(clean, sizeof(clean), reason, strlen(reason));
	return buf_printf(out, "ALIGND/1 %03d %s\r\n\r\n", status, clean);
}

int proto_reply_result_text(struct buf *out, const struct proto_result *r)
{
	buf_adds(out, "ALIGND/1 200 OK\r\n");
	if (r->queue_id) {
		buf_adds(out, "Queue-Id: ");
		add_clean(out, r->queue_id);
		buf_adds(out, "\r\n");
	}
	buf_adds(out, "Action: ");
	add_clean(out, r->action);
	buf_printf(out, "\r\nScore: %.2f\r\n", r->score);
	if (r->smtp_reply) {
		buf_adds(out, "SMTP-Reply: ");
		add_clean(out, r->smtp_reply);
		buf_adds(out, "\r\n");
	}
	for (size_t i = 0; i < r->n_symbols; i++) {
		buf_adds(out, "Symbol: ");
		add_clean(out, r->symbols[i].name);
		buf_printf(out, " %.2f", r->symbols[i].score);
		if (r->symbols[i].detail && r->symbols[i].detail[0]) {
			buf_adds(out, " ");
			add_clean(out, r->symbols[i].detail);
		}
		buf_adds(out, "\r\n");
	}
	for (size_t i = 0; i < r->n_add_headers; i++) {
		buf_adds(out, "Add-Header: ");
		add_clean(out, r->add_headers[i]);
		buf_adds(out, "\r\n");
	}
	if (r->auth_results) {
		buf_adds(out, "Authentication-Results: ");
		add_clean(out, r->auth_results);
		buf_adds(out, "\r\n");
	}
	for (size_t i = 0; i < r->n_trace; i++) {
		const struct proto_trace_line *t = &r->trace[i];
		buf_printf(out, "Trace: +%llu.%03llums ",
		           (unsigned long long)(t->t_us / 1000),
		           (unsigned long long)(t->t_us % 1000));
		add_clean(out, t->area);
		buf_adds(out, ": ");
		add_clean(out, t->text);
		buf_adds(out, "\r\n");
	}
	if (r->trace_dropped)
		buf_printf(out, "Trace: (%zu more lines dropped)\r\n", r->trace_dropped);
	buf_adds(out, "\r\n");
	return out->failed ? -1 : 0;
}

static int mp_write(void *data, const char *buf, size_t len)
{
	return buf_add(data, buf, len);
}

static void pk_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

int proto_reply_result_msgpack(struct buf *out, const struct proto_result *r)
{
	struct buf body;
	buf_init(&body, out->max);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &body, mp_write);

	size_t n = 5 + (r->queue_id ? 1 : 0) + (r->smtp_reply ? 1 : 0) + (r->n_add_headers ? 1 : 0) +
	           (r->n_trace ? 1 : 0);
	msgpack_pack_map(&pk, n);
	pk_str(&pk, "status");
	msgpack_pack_int(&pk, 200);
	if (r->queue_id) {
		pk_str(&pk, "queue_id");
		pk_str(&pk, r->queue_id);
	}
	pk_str(&pk, "action");
	pk_str(&pk, r->action);
	pk_str(&pk, "score");
	msgpack_pack_double(&pk, r->score);
	if (r->smtp_reply) {
		pk_str(&pk, "smtp_reply");
		pk_str(&pk, r->smtp_reply);
	}
	pk_str(&pk, "symbols");
	msgpack_pack_array(&pk, r->n_symbols);
	for (size_t i = 0; i < r->n_symbols; i++) {
		msgpack_pack_map(&pk, 3);
		pk_str(&pk, "name");
		pk_str(&pk, r->symbols[i].name);
		pk_str(&pk, "score");
		msgpack_pack_double(&pk, r->symbols[i].score);
		pk_str(&pk, "detail");
		pk_str(&pk, r->symbols[i].detail ? r->symbols[i].detail : "");
	}
	if (r->n_add_headers) {
		pk_str(&pk, "add_headers");
		msgpack_pack_array(&pk, r->n_add_headers);
		for (size_t i = 0; i < r->n_add_headers; i++)
			pk_str(&pk, r->add_headers[i]);
	}
	pk_str(&pk, "authentication_results");
	pk_str(&pk, r->auth_results ? r->auth_results : "");
	if (r->n_trace) {
		pk_str(&pk, "trace");
		msgpack_pack_array(&pk, r->n_trace);
		for (size_t i = 0; i < r->n_trace; i++) {
			msgpack_pack_map(&pk, 3);
			pk_str(&pk, "t_us");
			msgpack_pack_uint64(&pk, r->trace[i].t_us);
			pk_str(&pk, "area");
			pk_str(&pk, r->trace[i].area);
			pk_str(&pk, "text");
			pk_str(&pk, r->trace[i].text);
		}
	}
	int rc = -1;
	if (!body.failed) {
		buf_printf(out, "ALIGND/1 200 OK\r\nContent-Type: application/msgpack\r\n"
		                "Content-Length: %zu\r\n\r\n", body.len);
		buf_add(out, body.data, body.len);
		rc = out->failed ? -1 : 0;
	}
	buf_free(&body);
	return rc;
}

int proto_reply_stats(struct buf *out, const char *const *names,
                      const uint64_t *values, size_t n)
{
	buf_adds(out, "ALIGND/1 200 OK\r\n");
	for (size_t i = 0; i < n; i++)
		buf_printf(out, "%s: %llu\r\n", names[i], (unsigned long long)values[i]);
	buf_adds(out, "\r\n");
	return out->failed ? -1 : 0;
}

/* Offset just past the blank line ending the reply head, or 0. */
static size_t head_end(const char *buf, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n')
			return i + 2;
		if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

int proto_reply_sign(struct buf *out, const char *domain,
                     const char *const *fields, size_t n)
{
	buf_adds(out, "ALIGND/1 200 OK\r\n");
	if (n > 0)
		buf_printf(out, "Sign-Domain: %s\r\n", domain);
	buf_printf(out, "Signatures: %zu\r\n", n);
	for (size_t i = 0; i < n; i++)
		buf_adds(out, fields[i]);
	buf_adds(out, "\r\n");
	return out->failed ? -1 : 0;
}

long proto_reply_length(const char *buf, size_t len)
{
	static const char magic[] = "ALIGND/1 ";
	size_t ml = sizeof(magic) - 1;
	if (memcmp(buf, magic, len < ml ? len : ml) != 0)
		return -1;
	size_t he = head_end(buf, len);
	if (he == 0)
		return 0;
	/* a Content-Length field in the head means a body follows */
	const char *p = buf;
	while (p < buf + he) {
		const char *nl = memchr(p, '\n', (size_t)(buf + he - p));
		if (!nl)
			break;
		size_t ll = (size_t)(nl - p);
		if (ll > 15 && strncasecmp(p, "Content-Length:", 15) == 0) {
			const char *v = p + 15;
			size_t vl = ll - 15;
			if (vl && v[vl - 1] == '\r')
				vl--;
			text_trim(&v, &vl);
			uint64_t cl;
			if (text_u64(v, vl, (uint64_t)1 << 40, &cl) < 0)
				return -1;
			if (len - he < cl)
				return 0;
			return (long)(he + cl);
		}
		p = nl + 1;
	}
	return (long)he;
}

int proto_reply_code(const char *buf, size_t len)
{
	if (len < 12 || memcmp(buf, "ALIGND/1 ", 9) != 0)
		return -1;
	int code = 0;
	for (int i = 9; i < 12; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			return -1;
		code = code * 10 + (buf[i] - '0');
	}
	return code;
}
