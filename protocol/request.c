/* Incremental parser for alignd requests (command line, fields, blank
 * line, Content-Length body). Bounded: every line, the head, the field
 * count and the body length have limits. No I/O; one parser per connection. */
#include "protocol/request.h"
#include "common/limits.h"
#include "common/text.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum state {
	ST_CMD = 0,     /* waiting for the command line */
	ST_FIELDS,      /* reading fields up to the blank line */
	ST_BODY,        /* passing body bytes on */
	ST_SKIP,        /* discarding the body of a bad request */
	ST_DEAD,        /* fatal error reported */
};

struct proto_parser {
	struct proto_limits lim;
	enum state st;
	char *line;               /* current line, lim.max_line + 2 bytes */
	size_t line_len;
	size_t head_bytes;
	size_t n_fields;
	uint64_t body_left;
	struct proto_request req;
	int req_valid;            /* req holds a request to free on reset */
	/* first problem seen in this request; reported at its end */
	int err_status;
	const char *err_reason;
	int dup_length;
};

void proto_limits_default(struct proto_limits *l)
{
	l->max_line = LIM_MAX_REQUEST_LINE;
	l->max_head = LIM_MAX_REQUEST_HEADER;
	l->max_fields = LIM_MAX_REQUEST_FIELDS;
	l->max_body = LIM_MAX_MESSAGE_SIZE;
}

static void req_clear(struct proto_request *r)
{
	free(r->client_ip);
	free(r->helo);
	free(r->mail_from);
	for (size_t i = 0; i < r->n_rcpt; i++)
		free(r->rcpt[i]);
	free(r->rcpt);
	free(r->queue_id);
	memset(r, 0, sizeof(*r));
}

static void reset(struct proto_parser *p)
{
	req_clear(&p->req);
	p->st = ST_CMD;
	p->line_len = 0;
	p->head_bytes = 0;
	p->n_fields = 0;
	p->body_left = 0;
	p->err_status = 0;
	p->err_reason = NULL;
	p->dup_length = 0;
}

struct proto_parser *proto_parser_new(const struct proto_limits *lim)
{
	struct proto_parser *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	if (lim)
		p->lim = *lim;
	else
		proto_limits_default(&p->lim);
	p->line = malloc(p->lim.max_line + 2);
	if (!p->line) {
		free(p);
		return NULL;
	}
	reset(p);
	return p;
}

void proto_parser_free(struct proto_parser **pp)
{
	struct proto_parser *p = *pp;
	if (!p)
		return;
	req_clear(&p->req);
	free(p->line);
	free(p);
	*pp = NULL;
}

int proto_in_request(const struct proto_parser *p)
{
	return p->st != ST_CMD || p->line_len > 0;
}

const char *proto_cmd_name(enum proto_cmd c)
{
	switch (c) {
	case PROTO_CMD_SCAN:  return "SCAN";
	case PROTO_CMD_SIGN:  return "SIGN";
	case PROTO_CMD_PING:  return "PING";
	case PROTO_CMD_STATS: return "STATS";
	case PROTO_CMD_QUIT:  return "QUIT";
	case PROTO_CMD_NONE:  break;
	}
	return "?";
}

static void note_error(struct proto_parser *p, int status, const char *reason)
{
	if (!p->err_status) {
		p->err_status = status;
		p->err_reason = reason;
	}
}

static int fatal(struct proto_parser *p, struct proto_event *ev, int status,
                 const char *reason)
{
	p->st = ST_DEAD;
	p->err_status = status;
	p->err_reason = reason;
	ev->type = PROTO_EV_ERROR;
	ev->status = status;
	ev->reason = reason;
	ev->fatal = 1;
	return 0;
}

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* The command line: "CMD" or "CMD ALIGND/1". */
static void parse_cmd(struct proto_parser *p, const char *s, size_t n)
{
	const char *sp = memchr(s, ' ', n);
	size_t cl = sp ? (size_t)(sp - s) : n;
	if (text_ieq(s, cl, "SCAN"))
		p->req.cmd = PROTO_CMD_SCAN;
	else if (text_ieq(s, cl, "SIGN"))
		p->req.cmd = PROTO_CMD_SIGN;
	else if (text_ieq(s, cl, "PING"))
		p->req.cmd = PROTO_CMD_PING;
	else if (text_ieq(s, cl, "STATS"))
		p->req.cmd = PROTO_CMD_STATS;
	else if (text_ieq(s, cl, "QUIT"))
		p->req.cmd = PROTO_CMD_QUIT;
	else {
		note_error(p, 405, "unknown command");
		return;
	}
	if (sp) {
		const char *v = sp + 1;
		size_t vl = n - cl - 1;
		text_trim(&v, &vl);
		if (!text_ieq(v, vl, "ALIGND/1"))
			note_error(p, 400, "unsupported protocol version (want ALIGND/1)");
	}
}

static int set_once(struct proto_parser *p, char **slot, const char *v,
                    size_t vl, const char *dup_reason)
{
	if (*slot) {
		note_error(p, 400, dup_reason);
		return 0;
	}
	*slot = dup_n(v, vl);
	if (!*slot)
		note_error(p, 500, "out of memory");
	return 0;
}

static void parse_field(struct proto_parser *p, const char *s, size_t n)
{
	const char *colon = memchr(s, ':', n);
	if (!colon || colon == s) {
		note_error(p, 400, "malformed field line (want 'Name: value')");
		return;
	}
	size_t nl = (size_t)(colon - s);
	for (size_t i = 0; i < nl; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 32 || c >= 127) {
			note_error(p, 400, "malformed field name");
			return;
		}
	}
	const char *v = colon + 1;
	size_t vl = n - nl - 1;
	text_trim(&v, &vl);
	for (size_t i = 0; i < vl; i++)
		if ((unsigned char)v[i] < 32 && v[i] != '\t') {
			note_error(p, 400, "control character in field value");
			return;
		}
	struct proto_request *r = &p->req;
	if (text_ieq(s, nl, "Content-Length")) {
		uint64_t cl;
		if (p->req.has_length) {
			p->dup_length = 1;
			return;
		}
		if (text_u64(v, vl, UINT64_MAX / 2, &cl) < 0) {
			p->req.has_length = -1;   /* present but unusable */
			return;
		}
		r->content_length = cl;
		r->has_length = 1;
	} else if (text_ieq(s, nl, "Client-IP")) {
		unsigned char tmp[16];
		char ip[64];
		if (vl == 0 || vl >= sizeof(ip)) {
			note_error(p, 400, "bad Client-IP");
			return;
		}
		memcpy(ip, v, vl);
		ip[vl] = '\0';
		/* accept the [brackets] and IPv6: prefix some MTAs use */
		char *a = ip;
		size_t al = vl;
		if (al > 2 && a[0] == '[' && a[al - 1] == ']') {
			a[al - 1] = '\0';
			a++;
			al -= 2;
		}
		if (al > 5 && strncasecmp(a, "IPv6:", 5) == 0)
			a += 5;
		if (inet_pton(AF_INET, a, tmp) != 1 && inet_pton(AF_INET6, a, tmp) != 1) {
			note_error(p, 400, "bad Client-IP (want an IPv4 or IPv6 address)");
			return;
		}
		set_once(p, &r->client_ip, a, strlen(a), "duplicate Client-IP");
	} else if (text_ieq(s, nl, "Helo")) {
		if (vl > 0)
			set_once(p, &r->helo, v, vl, "duplicate Helo");
	} else if (text_ieq(s, nl, "Mail-From")) {
		/* "<>" and "" are the null sender; <addr> loses its brackets */
		if (vl >= 2 && v[0] == '<' && v[vl - 1] == '>') {
			v++;
			vl -= 2;
		}
		set_once(p, &r->mail_from, v, vl, "duplicate Mail-From");
	} else if (text_ieq(s, nl, "Rcpt-To")) {
		if (vl >= 2 && v[0] == '<' && v[vl - 1] == '>') {
			v++;
			vl -= 2;
		}
		char **nr = realloc(r->rcpt, (r->n_rcpt + 1) * sizeof(*nr));
		if (!nr) {
			note_error(p, 500, "out of memory");
			return;
		}
		r->rcpt = nr;
		r->rcpt[r->n_rcpt] = dup_n(v, vl);
		if (!r->rcpt[r->n_rcpt]) {
			note_error(p, 500, "out of memory");
			return;
		}
		r->n_rcpt++;
	} else if (text_ieq(s, nl, "Queue-Id")) {
		set_once(p, &r->queue_id, v, vl, "duplicate Queue-Id");
	} else if (text_ieq(s, nl, "Format")) {
		if (text_ieq(v, vl, "text"))
			r->format = PROTO_FMT_TEXT;
		else if (text_ieq(v, vl, "msgpack"))
			r->format = PROTO_FMT_MSGPACK;
		else
			note_error(p, 400, "bad Format (want text or msgpack)");
	} else if (text_ieq(s, nl, "Explain")) {
		if (text_ieq(v, vl, "yes") || text_ieq(v, vl, "1") || text_ieq(v, vl, "true"))
			r->explain = 1;
		else if (text_ieq(v, vl, "no") || text_ieq(v, vl, "0") || text_ieq(v, vl, "false"))
			r->explain = 0;
		else
			note_error(p, 400, "bad Explain (want yes or no)");
	}
	/* other fields are ignored: the protocol may grow */
}

/* The blank line ended the head: decide what follows. */
static int end_of_head(struct proto_parser *p, struct proto_event *ev)
{
	struct proto_request *r = &p->req;
	if (p->req.has_length < 0 || p->dup_length)
		return fatal(p, ev, 400, p->dup_length ? "duplicate Content-Length"
		                                     : "bad Content-Length (want a decimal number)");
	int has_body = r->cmd == PROTO_CMD_SCAN || r->cmd == PROTO_CMD_SIGN;
	if (has_body && !r->has_length)
		return fatal(p, ev, 411, "Content-Length required");
	if (r->has_length && r->content_length > p->lim.max_body)
		return fatal(p, ev, 413, "message too large");
	if (!has_body && r->has_length && r->content_length > 0)
		note_error(p, 400, "this command takes no body");
	p->body_left = r->has_length ? r->content_length : 0;
	if (p->err_status) {
		p->st = ST_SKIP;
		return 1;   /* keep going: skip the body, then report */
	}
	if (has_body) {
		p->st = ST_BODY;
		ev->type = PROTO_EV_HEAD;
		ev->req = r;
		return 0;
	}
	p->st = ST_BODY;  /* zero-length body: END comes next */
	return 1;
}

/* One complete line (EOL stripped) in the head. Returns 0 when an event is
 * ready, 1 to continue. */
static int head_line(struct proto_parser *p, struct proto_event *ev)
{
	const char *s = p->line;
	size_t n = p->line_len;
	if (memchr(s, '\0', n)) {
		note_error(p, 400, "NUL byte in request head");
		if (p->st == ST_CMD)
			p->st = ST_FIELDS;
		return 1;
	}
	if (p->st == ST_CMD) {
		if (n == 0) {
			p->head_bytes = 0;   /* blank lines between requests are tolerated */
			return 1;
		}
		parse_cmd(p, s, n);
		p->st = ST_FIELDS;
		return 1;
	}
	if (n == 0)
		return end_of_head(p, ev);
	if (++p->n_fields > p->lim.max_fields)
		return fatal(p, ev, 431, "too many request fields");
	parse_field(p, s, n);
	return 1;
}

int proto_feed(struct proto_parser *p, const char *buf, size_t len,
               size_t *used_r, struct proto_event *ev)
{
	size_t used = 0;
	memset(ev, 0, sizeof(*ev));
	if (p->st == ST_DEAD) {
		*used_r = len;
		ev->type = PROTO_EV_ERROR;
		ev->status = p->err_status;
		ev->reason = p->err_reason;
		ev->fatal = 1;
		return 0;
	}
	for (;;) {
		if (p->st == ST_BODY || p->st == ST_SKIP) {
			if (p->body_left > 0) {
				if (used == len)
					break;
				size_t n = len - used;
				if (n > p->body_left)
					n = (size_t)p->body_left;
				p->body_left -= n;
				if (p->st == ST_BODY) {
					ev->type = PROTO_EV_BODY;
					ev->data = buf + used;
					ev->len = n;
					*used_r = used + n;
					return 0;
				}
				used += n;
				continue;
			}
			/* body complete */
			*used_r = used;
			if (p->st == ST_SKIP) {
				ev->type = PROTO_EV_ERROR;
				ev->status = p->err_status;
				ev->reason = p->err_reason;
				ev->fatal = 0;
				reset(p);
				return 0;
			}
			ev->type = PROTO_EV_END;
			ev->req = &p->req;
			p->st = ST_CMD;   /* the request itself is cleared on the next feed */
			p->req_valid = 1;
			return 0;
		}
		if (p->req_valid) {
			/* the previous request was handed out with END: release it */
			p->req_valid = 0;
			reset(p);
		}
		if (used == len)
			break;
		/* head: collect one line */
		const char *nl = memchr(buf + used, '\n', len - used);
		size_t chunk = nl ? (size_t)(nl - (buf + used)) : len - used;
		size_t take = chunk + (nl ? 1 : 0);
		/* the line limit counts the CR of a CRLF as part of the line */
		if (p->lim.max_line + 1 - p->line_len < chunk) {
			*used_r = used + take;
			return fatal(p, ev, 414, "request line too long");
		}
		if (p->lim.max_head - p->head_bytes < take) {
			*used_r = used + take;
			return fatal(p, ev, 431, "request head too large");
		}
		p->head_bytes += take;
		memcpy(p->line + p->line_len, buf + used, chunk);
		p->line_len += chunk;
		used += take;
		if (!nl)
			break;
		if (p->line_len > 0 && p->line[p->line_len - 1] == '\r')
			p->line_len--;
		if (p->line_len > p->lim.max_line) {
			*used_r = used;
			return fatal(p, ev, 414, "request line too long");
		}
		int rc = head_line(p, ev);
		p->line_len = 0;
		if (rc == 0) {
			*used_r = used;
			return 0;
		}
	}
	*used_r = used;
	ev->type = PROTO_EV_MORE;
	return 0;
}

void proto_take_request(struct proto_parser *p, struct proto_request *dst)
{
	*dst = p->req;
	enum proto_cmd cmd = p->req.cmd;
	memset(&p->req, 0, sizeof(p->req));
	p->req.cmd = cmd;
	p->req.has_length = dst->has_length;
	p->req.content_length = dst->content_length;
}

void proto_request_clear(struct proto_request *r)
{
	req_clear(r);
}

static int value_ok(const char *v)
{
	return v && !strpbrk(v, "\r\n");
}

int proto_write_scan_head(const struct proto_envelope *e, uint64_t body_len,
                          char **out_r, size_t *len_r)
{
	const char *opt[] = { e->client_ip, e->helo, e->queue_id };
	for (size_t i = 0; i < 3; i++)
		if (opt[i] && !value_ok(opt[i]))
			return -1;
	if (e->mail_from && !value_ok(e->mail_from))
		return -1;
	size_t cap = 256;
	cap += e->client_ip ? strlen(e->client_ip) : 0;
	cap += e->helo ? strlen(e->helo) : 0;
	cap += e->mail_from ? strlen(e->mail_from) : 0;
	cap += e->queue_id ? strlen(e->queue_id) : 0;
	for (size_t i = 0; i < e->n_rcpt; i++) {
		if (!value_ok(e->rcpt[i]))
			return -1;
		cap += strlen(e->rcpt[i]) + 16;
	}
	char *out = malloc(cap);
	if (!out)
		return -1;
	size_t n = 0;
#define PUT(...) n += (size_t)snprintf(out + n, cap - n, __VA_ARGS__)
	PUT("%s ALIGND/1\r\n", e->sign ? "SIGN" : "SCAN");
	if (e->client_ip)
		PUT("Client-IP: %s\r\n", e->client_ip);
	if (e->helo)
		PUT("Helo: %s\r\n", e->helo);
	if (e->mail_from)
		PUT("Mail-From: <%s>\r\n", e->mail_from);
	for (size_t i = 0; i < e->n_rcpt; i++)
		PUT("Rcpt-To: <%s>\r\n", e->rcpt[i]);
	if (e->queue_id)
		PUT("Queue-Id: %s\r\n", e->queue_id);
	if (e->format == PROTO_FMT_MSGPACK)
		PUT("Format: msgpack\r\n");
	if (e->explain)
		PUT("Explain: yes\r\n");
	PUT("Content-Length: %llu\r\n\r\n", (unsigned long long)body_len);
#undef PUT
	*out_r = out;
	*len_r = n;
	return 0;
}
