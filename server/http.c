/* The rspamd-compatible HTTP endpoint: a small strict HTTP/1.x request
 * reader (bounded head, Content-Length required, body at most
 * max_message_size, keep-alive), scans through server/scan.h, and replies
 * as rspamd does: JSON for HTTP requests, the legacy RSPAMD/1.3 text for
 * RSPAMC requests (what Exim's variant=rspamd sends). Loop thread.
 * Security stance: no authentication, so loopback or a UNIX socket only,
 * unless http_allow_remote says otherwise. */
#include "server/http.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/scan.h"
#include "server/srv.h"
#include "server/stats.h"
#include "common/buf.h"
#include "common/limits.h"
#include "protocol/http_req.h"
#include "protocol/reply.h"
#include "protocol/request.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* H_PEEK: the first body line is held back to drop an mbox "From " line
 * (Exim's spool_mbox writes one) before the scan starts. */
#define PEEK_MAX 1024
enum hstate { H_HEAD = 0, H_PEEK, H_BODY, H_WAIT, H_DONE };

struct http_srv;

struct hconn {
	union {                       /* first: the stream handle */
		uv_handle_t h;
		uv_stream_t st;
		uv_pipe_t pipe;
		uv_tcp_t tcp;
	} u;
	uv_timer_t timer;
	struct http_srv *hs;
	struct hconn *prev, *next;
	enum hstate st;
	struct buf in;                /* head bytes; later, bytes of the next request */
	size_t head_pos;              /* http_head_end's resume point in in */
	uint64_t body_left;
	struct scan *sc;
	struct proto_request req;     /* H_PEEK: the request, until the scan takes it */
	struct buf peek;
	uint64_t request_start;       /* loop time of the current request's first byte; 0: none */
	uint64_t idle_since;          /* loop time it last began to wait for a request */
	int legacy;                   /* RSPAMC/1.x request: legacy text reply, then close */
	int keep_alive;
	int reading;
	int closing;
	int handles_open;
};

struct http_srv {
	struct srv *srv;
	union {
		uv_handle_t h;
		uv_stream_t st;
		uv_pipe_t pipe;
		uv_tcp_t tcp;
	} l;
	int listening;
	int stopping;
	char *unix_path;
	struct hconn *conns;
};

struct hwrite {
	uv_write_t w;
	struct hconn *c;
	char *data;
	int close_after;
};

static void hc_process(struct hconn *c, const char *data, size_t len);
static void hc_arm_timer(struct hconn *c);
static void resume_reading(struct hconn *c);
static void hs_maybe_free(struct http_srv *hs);
static void on_timer(uv_timer_t *t);
static void on_listener_closed(uv_handle_t *h);

/* ------------------------------------------------------------ lifetime */

static void on_hc_closed(uv_handle_t *h)
{
	struct hconn *c = h->data;
	if (--c->handles_open > 0)
		return;
	struct http_srv *hs = c->hs;
	if (c->prev)
		c->prev->next = c->next;
	else
		hs->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	struct srv *s = hs->srv;
	s->n_conns--;
	buf_free(&c->in);
	buf_free(&c->peek);
	proto_request_clear(&c->req);
	free(c);
	hs_maybe_free(hs);
	srv_maybe_finish(s);
}

static void hc_close(struct hconn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	if (c->sc) {
		scan_abandon(c->sc);
		c->sc = NULL;
		c->hs->srv->stats.scans_abandoned++;
	}
	uv_close(&c->u.h, on_hc_closed);
	uv_close((uv_handle_t *)&c->timer, on_hc_closed);
}

static void on_write(uv_write_t *w, int status)
{
	struct hwrite *hw = (struct hwrite *)w;
	struct hconn *c = hw->c;
	int close_after = hw->close_after;
	free(hw->data);
	free(hw);
	if (c->closing)
		return;
	if (status < 0 || close_after || c->hs->stopping) {
		hc_close(c);
		return;
	}
	/* keep-alive: the next request may already be waiting in c->in */
	c->st = H_HEAD;
	size_t n = c->in.len;
	char *held = buf_steal(&c->in, &n);
	buf_init(&c->in, c->hs->srv->cfg->max_request_header);
	c->head_pos = 0;
	c->request_start = 0;
	if (held && n)
		c->request_start = uv_now(c->hs->srv->loop) ? uv_now(c->hs->srv->loop) : 1;
	hc_arm_timer(c);
	if (held && n)
		hc_process(c, held, n);
	free(held);
	if (!c->closing && c->st == H_HEAD)
		resume_reading(c);
}

static void hc_send(struct hconn *c, struct buf *out, int close_after)
{
	struct hwrite *hw = calloc(1, sizeof(*hw));
	size_t len;
	char *data = buf_steal(out, &len);
	if (!hw || !data || out->failed) {
		free(hw);
		free(data);
		hc_close(c);
		return;
	}
	hw->c = c;
	hw->data = data;
	hw->close_after = close_after || !c->keep_alive || c->legacy;
	c->st = H_DONE;
	/* a client that does not read its reply is dropped after request_timeout */
	uv_timer_start(&c->timer, on_timer, c->hs->srv->cfg->request_timeout, 0);
	uv_buf_t b = uv_buf_init(data, (unsigned)len);
	if (uv_write(&hw->w, &c->u.st, &b, 1, on_write) < 0) {
		free(data);
		free(hw);
		hc_close(c);
	}
}

static void hc_error(struct hconn *c, int status, const char *reason)
{
	struct srv *s = c->hs->srv;
	if (status >= 500)
		s->stats.errors_5xx++;
	else
		s->stats.errors_4xx++;
	struct buf out;
	buf_init(&out, 64 * 1024);
	if (c->legacy) {
		buf_printf(&out, "RSPAMD/1.3 %d EX_ERROR\r\nError: %s\r\n\r\n", status, reason);
	} else {
		char body[512];
		json_t *o = json_pack("{s:s}", "error", reason);
		char *j = o ? json_dumps(o, JSON_COMPACT) : NULL;
		snprintf(body, sizeof(body), "%s\n", j ? j : "{}");
		free(j);
		json_decref(o);
		buf_printf(&out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
		           "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
		           status, reason, strlen(body), body);
	}
	/* framing is lost after a bad head: always close */
	if (c->reading) {
		uv_read_stop(&c->u.st);
		c->reading = 0;
	}
	hc_send(c, &out, 1);
}

/* ------------------------------------------------------------ replies */

/* rspamd's action names for ours. */
static const char *rspamd_action(const char *a)
{
	if (strcmp(a, "reject") == 0)
		return "reject";
	if (strcmp(a, "quarantine") == 0)
		return "add header";
	if (strcmp(a, "tempfail") == 0)
		return "soft reject";
	return "no action";
}

static char *encode_json(const struct proto_result *r, const struct srv_config *cfg)
{
	json_t *o = json_object();
	json_t *syms = json_object();
	json_t *hdrs = json_object();
	json_t *milter = json_object();
	json_t *own = json_object();
	if (!o || !syms || !hdrs || !milter || !own)
		goto fail;
	json_object_set_new(o, "is_skipped", json_false());
	json_object_set_new(o, "score", json_real(r->score));
	json_object_set_new(o, "required_score", json_real(cfg->quarantine_score));
	json_object_set_new(o, "action", json_string(rspamd_action(r->action)));
	for (size_t i = 0; i < r->n_symbols; i++) {
		const struct proto_symbol *sy = &r->symbols[i];
		json_t *e = json_object_get(syms, sy->name);
		if (!e) {
			e = json_pack("{s:s,s:f,s:[]}", "name", sy->name, "score", sy->score, "options");
			if (!e || json_object_set_new(syms, sy->name, e) < 0)
				goto fail;
		} else {
			/* a symbol given twice (two signatures): one entry, scores add */
			json_t *sc = json_object_get(e, "score");
			json_real_set(sc, json_real_value(sc) + sy->score);
		}
		if (sy->detail && *sy->detail)
			json_array_append_new(json_object_get(e, "options"), json_string(sy->detail));
	}
	json_object_set_new(o, "symbols", syms);
	syms = NULL;
	if (r->smtp_reply)
		json_object_set_new(o, "messages", json_pack("{s:s}", "smtp_message", r->smtp_reply));
	if (r->auth_results)
		json_object_set_new(hdrs, "Authentication-Results",
		                    json_pack("{s:s,s:i}", "value", r->auth_results, "order", 0));
	for (size_t i = 0; i < r->n_add_headers; i++) {
		const char *h = r->add_headers[i];
		const char *colon = strchr(h, ':');
		if (!colon || colon == h)
			continue;
		const char *v = colon + 1;
		while (*v == ' ')
			v++;
		char *name = strndup(h, (size_t)(colon - h));
		if (!name)
			goto fail;
		json_object_set_new(hdrs, name, json_pack("{s:s,s:i}", "value", v, "order", 1));
		free(name);
	}
	json_object_set_new(milter, "add_headers", hdrs);
	hdrs = NULL;
	json_object_set_new(milter, "remove_headers", json_object());
	json_object_set_new(o, "milter", milter);
	milter = NULL;
	/* our own fields, unambiguous for clients that know alignd */
	json_object_set_new(own, "action", json_string(r->action));
	if (r->smtp_reply)
		json_object_set_new(own, "smtp_reply", json_string(r->smtp_reply));
	if (r->auth_results)
		json_object_set_new(own, "authentication_results", json_string(r->auth_results));
	if (r->queue_id)
		json_object_set_new(own, "queue_id", json_string(r->queue_id));
	json_object_set_new(o, "alignd", own);
	own = NULL;
	char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
	json_decref(o);
	return s;
fail:
	json_decref(o);
	json_decref(syms);
	json_decref(hdrs);
	json_decref(milter);
	json_decref(own);
	return NULL;
}

/* Exim's parser wants "RSPAMD/<v> 0 EX_OK", then "Metric: default; <bool>
 * <score> / <required> / <reject>", then the report, "Action:" first;
 * the report (our lines below) becomes $spam_report. */
static int encode_legacy(struct buf *out, const struct proto_result *r,
                         const struct srv_config *cfg)
{
	int spam = strcmp(r->action, "accept") != 0;
	buf_printf(out, "RSPAMD/1.3 0 EX_OK\r\nMetric: default; %s; %.2f / %.2f / %.2f\r\n",
	           spam ? "True" : "False", r->score, cfg->quarantine_score, cfg->reject_score);
	buf_printf(out, "Action: %s\r\n", rspamd_action(r->action));
	buf_printf(out, "Alignd-Action: %s\r\n", r->action);
	if (r->smtp_reply)
		buf_printf(out, "SMTP-Reply: %s\r\n", r->smtp_reply);
	if (r->auth_results)
		buf_printf(out, "Authentication-Results: %s\r\n", r->auth_results);
	for (size_t i = 0; i < r->n_add_headers; i++)
		buf_printf(out, "Add-Header: %s\r\n", r->add_headers[i]);
	for (size_t i = 0; i < r->n_symbols; i++)
		buf_printf(out, "Symbol: %s(%.2f)\r\n", r->symbols[i].name, r->symbols[i].score);
	return buf_adds(out, "\r\n");
}

static void on_scan_done(void *arg, const struct proto_result *r)
{
	struct hconn *c = arg;
	c->sc = NULL;
	if (c->closing)
		return;
	if (!r) {
		hc_error(c, 500, "scan failed");
		return;
	}
	const struct srv_config *cfg = c->hs->srv->cfg;
	struct buf out;
	buf_init(&out, 0);
	if (c->legacy) {
		encode_legacy(&out, r, cfg);
	} else {
		char *j = encode_json(r, cfg);
		if (!j) {
			buf_free(&out);
			hc_error(c, 500, "out of memory");
			return;
		}
		buf_printf(&out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		           "Content-Length: %zu\r\nConnection: %s\r\n\r\n%s",
		           strlen(j), c->keep_alive ? "keep-alive" : "close", j);
		free(j);
	}
	hc_send(c, &out, 0);
}

/* ------------------------------------------------------------ requests */

static void pause_reading(struct hconn *c)
{
	if (c->reading) {
		uv_read_stop(&c->u.st);
		c->reading = 0;
	}
}

static void serve_metrics(struct hconn *c)
{
	struct metrics_snapshot m;
	stats_snapshot(c->hs->srv, &m);
	struct buf body, out;
	buf_init(&body, 0);
	metrics_write(&m, &body);
	buf_init(&out, 0);
	buf_printf(&out, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	           "Connection: %s\r\n\r\n", METRICS_CONTENT_TYPE, body.len,
	           c->keep_alive ? "keep-alive" : "close");
	if (body.len)
		buf_add(&out, body.data, body.len);
	int failed = body.failed;
	buf_free(&body);
	if (failed) {
		buf_free(&out);
		hc_error(c, 500, "out of memory");
		return;
	}
	pause_reading(c);
	hc_send(c, &out, 0);
}

static void start_request(struct hconn *c, size_t hl)
{
	struct srv *s = c->hs->srv;
	struct proto_request req;
	const char *why = "bad request";
	s->stats.requests_total++;
	struct http_head h;
	int status = http_parse_head(c->in.data, hl, s->cfg->max_message_size, &h, &req, &why);
	c->keep_alive = h.keep_alive;
	c->legacy = h.legacy;
	int ping = h.target == HTTP_T_PING ? 1 : h.target == HTTP_T_METRICS ? 2 : 0;
	buf_consume(&c->in, hl);
	c->head_pos = 0;
	if (status) {
		proto_request_clear(&req);
		hc_error(c, status, why);
		return;
	}
	if (ping == 1) {
		proto_request_clear(&req);
		struct buf out;
		buf_init(&out, 0);
		buf_printf(&out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
		           "Connection: %s\r\n\r\npong\n", c->keep_alive ? "keep-alive" : "close");
		pause_reading(c);
		hc_send(c, &out, 0);
		return;
	}
	if (ping == 2) {
		proto_request_clear(&req);
		serve_metrics(c);
		return;
	}
	c->body_left = req.content_length;
	c->req = req;
	buf_free(&c->peek);
	buf_init(&c->peek, PEEK_MAX);
	c->st = H_PEEK;
}

/* Enough of the body is held to see its first line: start the scan. */
static void start_scan(struct hconn *c)
{
	struct srv *s = c->hs->srv;
	size_t skip = 0;
	const char *nl = c->peek.len ? memchr(c->peek.data, '\n', c->peek.len) : NULL;
	if (nl && c->peek.len >= 5 && memcmp(c->peek.data, "From ", 5) == 0)
		skip = (size_t)(nl - c->peek.data) + 1;
	c->req.content_length -= skip;
	if (!srv_msg_bytes_fit(s, c->req.content_length)) {
		s->stats.requests_busy++;
		log_msg(LOG_LVL_WARN, "http: %llu message bytes in flight, %llu more would pass "
		        "max_inflight_bytes: refused with 503", (unsigned long long)s->msg_bytes,
		        (unsigned long long)c->req.content_length);
		proto_request_clear(&c->req);
		hc_error(c, 503, SRV_BUSY_REASON);
		return;
	}
	c->sc = scan_new(s, &c->req, on_scan_done, c);
	proto_request_clear(&c->req);
	if (!c->sc) {
		hc_error(c, 500, "out of memory");
		return;
	}
	c->st = H_BODY;
	if (c->peek.len > skip)
		scan_body(c->sc, c->peek.data + skip, c->peek.len - skip);
	buf_free(&c->peek);
}

/* Feeds bytes read from the socket; loops over pipelined requests. */
static void hc_process(struct hconn *c, const char *data, size_t len)
{
	while (!c->closing) {
		if (c->st == H_HEAD) {
			if (len && buf_add(&c->in, data, len) < 0) {
				hc_error(c, 431, "request head too large");
				return;
			}
			len = 0;
			size_t hl = http_head_end(c->in.data, c->in.len, &c->head_pos);
			if (!hl)
				return;
			start_request(c, hl);
			if (c->st != H_PEEK)
				return;
			/* body bytes that came with the head */
			size_t n = c->in.len;
			char *rest = buf_steal(&c->in, &n);
			buf_init(&c->in, c->hs->srv->cfg->max_request_header);
			c->head_pos = 0;
			/* even with no bytes: an empty body completes the request now */
			hc_process(c, rest ? rest : "", rest ? n : 0);
			free(rest);
			return;
		}
		if (c->st == H_PEEK) {
			size_t room = PEEK_MAX - c->peek.len - 1;
			size_t take = len < c->body_left ? len : (size_t)c->body_left;
			if (take > room)
				take = room;
			buf_add(&c->peek, data, take);
			c->body_left -= take;
			data += take;
			len -= take;
			if (c->body_left > 0 && c->peek.len < PEEK_MAX - 1 &&
			    !memchr(c->peek.data, '\n', c->peek.len))
				return;
			start_scan(c);
			if (c->st != H_BODY)
				return;
		}
		if (c->st == H_BODY) {
			size_t take = len < c->body_left ? len : (size_t)c->body_left;
			if (take)
				scan_body(c->sc, data, take);
			c->body_left -= take;
			data += take;
			len -= take;
			if (c->body_left == 0) {
				c->st = H_WAIT;
				uv_timer_stop(&c->timer);
				pause_reading(c);
				scan_end(c->sc);
			}
		}
		/* H_WAIT, H_DONE: keep what follows for after the reply */
		if (len) {
			if (c->legacy || buf_add(&c->in, data, len) < 0) {
				if (c->st == H_WAIT || c->st == H_DONE)
					pause_reading(c);
				if (c->in.failed)
					hc_close(c);
			}
		}
		return;
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct hconn *c = h->data;
	struct srv *s = c->hs->srv;
	b->base = s->readbuf;
	b->len = sizeof(s->readbuf);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct hconn *c = st->data;
	if (n == UV_EOF) {
		/* a client that half-closes after its request still gets the reply */
		pause_reading(c);
		if (c->st == H_HEAD || c->st == H_PEEK || c->st == H_BODY)
			hc_close(c);
		return;
	}
	if (n < 0) {
		hc_close(c);
		return;
	}
	if (n == 0)
		return;
	c->hs->srv->stats.bytes_in += (uint64_t)n;
	if (c->st == H_HEAD && c->request_start == 0) {
		/* a request's first byte: its whole deadline starts now */
		uint64_t now = uv_now(c->hs->srv->loop);
		c->request_start = now ? now : 1;
		hc_arm_timer(c);
	}
	hc_process(c, b->base, (size_t)n);
}

static void resume_reading(struct hconn *c)
{
	if (!c->reading && !c->closing) {
		uv_read_start(&c->u.st, on_alloc, on_read);
		c->reading = 1;
	}
}

static void on_timer(uv_timer_t *t)
{
	struct hconn *c = t->data;
	c->hs->srv->stats.timeouts++;
	if (c->st == H_DONE || (c->st == H_HEAD && c->request_start == 0)) {
		hc_close(c);        /* idle keep-alive connection */
		return;
	}
	if (c->sc) {
		scan_abandon(c->sc);
		c->sc = NULL;
		c->hs->srv->stats.scans_abandoned++;
	}
	hc_error(c, 408, "request timeout");
}

/* Between requests: idle_timeout. In a request: request_timeout from its
 * first byte, which bytes trickling in do not extend (slowloris), as on
 * the line protocol. */
static void hc_arm_timer(struct hconn *c)
{
	const struct srv_config *cfg = c->hs->srv->cfg;
	if (c->request_start == 0) {
		uint64_t now = uv_now(c->hs->srv->loop);
		c->idle_since = now ? now : 1;
		uv_timer_start(&c->timer, on_timer, cfg->idle_timeout, 0);
		return;
	}
	uint64_t now = uv_now(c->hs->srv->loop);
	uint64_t end = c->request_start + cfg->request_timeout;
	uv_timer_start(&c->timer, on_timer, end > now ? end - now : 0, 0);
}

/* ------------------------------------------------------------ listener */

/* The same peer rules as the line protocol: SO_PEERCRED against
 * allowed_peers on a UNIX socket, the address against allowed_networks
 * over TCP. who names the peer for the log. */
static int peer_allowed(struct hconn *c, char *who, size_t wlen)
{
	const struct srv_config *cfg = c->hs->srv->cfg;
	uv_os_fd_t fd;
	snprintf(who, wlen, "(unknown)");
	if (uv_fileno(&c->u.h, &fd) < 0)
		return 0;
	if (c->hs->unix_path) {
		if (cfg->n_allowed == 0)
			return 1;
		struct ucred cr;
		socklen_t cl = sizeof cr;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 || cl != sizeof cr)
			return 0;
		snprintf(who, wlen, "uid %ld pid %ld", (long)cr.uid, (long)cr.pid);
		return cfg_peer_allowed(cfg, (unsigned)cr.uid);
	}
	return srv_tcp_peer_allowed(cfg, &c->u.tcp, who, wlen);
}

static void on_connection(uv_stream_t *l, int status)
{
	struct http_srv *hs = l->data;
	struct srv *s = hs->srv;
	if (status < 0) {
		log_msg(LOG_LVL_WARN, "http accept: %s", uv_strerror(status));
		return;
	}
	struct hconn *c = calloc(1, sizeof(*c));
	if (!c) {
		srv_drop_unaccepted(s, l);
		return;
	}
	c->hs = hs;
	if (hs->unix_path)
		uv_pipe_init(s->loop, &c->u.pipe, 0);
	else
		uv_tcp_init(s->loop, &c->u.tcp);
	uv_timer_init(s->loop, &c->timer);
	c->u.h.data = c;
	c->timer.data = c;
	c->handles_open = 2;
	buf_init(&c->in, s->cfg->max_request_header);
	c->next = hs->conns;
	if (hs->conns)
		hs->conns->prev = c;
	hs->conns = c;
	s->n_conns++;
	s->stats.connections_total++;
	if (uv_accept(l, &c->u.st) < 0 || s->stopping) {
		hc_close(c);
		return;
	}
	/* the connection closed to make room counts until its handles close */
	if (s->n_conns > s->cfg->max_connections && srv_shed_idle(s) < 0) {
		s->stats.connections_rejected++;
		hc_close(c);
		return;
	}
	char who[INET6_ADDRSTRLEN + 48];
	if (!peer_allowed(c, who, sizeof who)) {
		s->stats.connections_rejected++;
		log_msg(LOG_LVL_WARN, "http: peer %s not allowed (%s), refused", who,
		        hs->unix_path ? "allowed_peers" : "allowed_networks");
		hc_error(c, 403, "peer not allowed");
		return;
	}
	hc_arm_timer(c);
	resume_reading(c);
}

static struct hconn *oldest_idle(struct http_srv *hs)
{
	struct hconn *best = NULL;
	for (struct hconn *c = hs ? hs->conns : NULL; c; c = c->next)
		if (!c->closing && c->st == H_HEAD && c->request_start == 0 && c->in.len == 0 &&
		    c->idle_since != 0 && (!best || c->idle_since <= best->idle_since))
			best = c;
	return best;
}

int http_oldest_idle(struct srv *s, uint64_t *since_r)
{
	struct hconn *c = oldest_idle(s->http);
	if (!c)
		return 0;
	*since_r = c->idle_since;
	return 1;
}

void http_shed_oldest_idle(struct srv *s)
{
	struct hconn *c = oldest_idle(s->http);
	if (c)
		hc_close(c);   /* an idle keep-alive connection: closing is its answer */
}

/* "unix:/path", "127.0.0.1:PORT", "[::1]:PORT". */
static int parse_listen(const char *v, int allow_remote, struct sockaddr_storage *sa,
                        char **path_r, char *err, size_t errlen)
{
	*path_r = NULL;
	if (strncmp(v, "unix:", 5) == 0) {
		struct sockaddr_un su;
		if (v[5] != '/' || strlen(v + 5) >= sizeof(su.sun_path)) {
			snprintf(err, errlen, "http_listen: want unix:/absolute/path (shorter than %zu)",
			         sizeof(su.sun_path));
			return -1;
		}
		*path_r = strdup(v + 5);
		return *path_r ? 0 : -1;
	}
	return srv_parse_tcp_listen("http_listen", v, allow_remote, sa, err, errlen);
}

int srv_parse_tcp_listen(const char *key, const char *v, int allow_remote,
                         struct sockaddr_storage *sa, char *err, size_t errlen)
{
	char host[64];
	const char *colon = strrchr(v, ':');
	if (!colon || (size_t)(colon - v) >= sizeof(host)) {
		snprintf(err, errlen, "%s: want %sADDRESS:PORT", key,
		         strcmp(key, "http_listen") == 0 ? "unix:/path or " : "");
		return -1;
	}
	memcpy(host, v, (size_t)(colon - v));
	host[colon - v] = '\0';
	char *h = host;
	size_t hl = strlen(h);
	if (hl > 2 && h[0] == '[' && h[hl - 1] == ']') {
		h[hl - 1] = '\0';
		h++;
	}
	char *end;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port == 0 || port > 65535) {
		snprintf(err, errlen, "%s: bad port in '%s'", key, v);
		return -1;
	}
	memset(sa, 0, sizeof(*sa));
	struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
	int loopback;
	if (inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		loopback = (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
	} else if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		loopback = IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
	} else {
		snprintf(err, errlen, "%s: '%s' is not an IP address", key, h);
		return -1;
	}
	if (!loopback && !allow_remote) {
		snprintf(err, errlen, "%s: %s is not a loopback address; the endpoint has no "
		         "authentication (set %s = yes to insist)", key, h,
		         strcmp(key, "http_listen") == 0 ? "http_allow_remote" : "tcp_allow_remote");
		return -1;
	}
	return 0;
}

int http_start(struct srv *s, char *err, size_t errlen)
{
	const struct srv_config *cfg = s->cfg;
	if (!cfg->http_listen || !*cfg->http_listen)
		return 0;
	struct http_srv *hs = calloc(1, sizeof(*hs));
	if (!hs) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	hs->srv = s;
	struct sockaddr_storage sa;
	if (parse_listen(cfg->http_listen, cfg->http_allow_remote, &sa, &hs->unix_path,
	                 err, errlen) < 0) {
		free(hs);
		return -1;
	}
	int rc;
	if (hs->unix_path) {
		struct stat st;
		/* a stale socket of ours from a crash: only a socket is removed */
		if (lstat(hs->unix_path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(hs->unix_path);
		uv_pipe_init(s->loop, &hs->l.pipe, 0);
		mode_t old = umask(0177);
		rc = uv_pipe_bind(&hs->l.pipe, hs->unix_path);
		umask(old);
		if (rc == 0 && chmod(hs->unix_path, cfg->socket_mode) < 0)
			rc = uv_translate_sys_error(errno);
		if (rc == 0 && srv_socket_group(cfg, hs->unix_path, err, errlen) < 0) {
			unlink(hs->unix_path);
			hs->stopping = 1;
			hs->listening = 1;
			uv_close(&hs->l.h, on_listener_closed);
			return -1;
		}
	} else {
		uv_tcp_init(s->loop, &hs->l.tcp);
		rc = uv_tcp_bind(&hs->l.tcp, (const struct sockaddr *)&sa, 0);
	}
	hs->l.h.data = hs;
	if (rc == 0)
		rc = uv_listen(&hs->l.st, 128, on_connection);
	if (rc < 0) {
		snprintf(err, errlen, "http_listen %s: %s", cfg->http_listen, uv_strerror(rc));
		/* freed by the close callback if the loop still runs */
		hs->stopping = 1;
		hs->listening = 1;
		uv_close(&hs->l.h, on_listener_closed);
		return -1;
	}
	hs->listening = 1;
	s->http = hs;
	log_msg(LOG_LVL_INFO, "rspamd-compatible HTTP endpoint on %s", cfg->http_listen);
	return 0;
}

/* After shutdown, once the listener and every connection are closed. */
static void hs_maybe_free(struct http_srv *hs)
{
	if (!hs->stopping || hs->listening || hs->conns)
		return;
	if (hs->srv->http == hs)
		hs->srv->http = NULL;
	free(hs->unix_path);
	free(hs);
}

static void on_listener_closed(uv_handle_t *h)
{
	struct http_srv *hs = h->data;
	hs->listening = 0;
	hs_maybe_free(hs);
}

void http_shutdown(struct srv *s)
{
	struct http_srv *hs = s->http;
	if (!hs || hs->stopping)
		return;
	hs->stopping = 1;
	if (hs->unix_path)
		unlink(hs->unix_path);
	uv_close(&hs->l.h, on_listener_closed);
	for (struct hconn *c = hs->conns, *next; c; c = next) {
		next = c->next;
		/* answer what was fully received; drop the rest */
		if (c->st == H_HEAD || c->st == H_PEEK || c->st == H_BODY)
			hc_close(c);
		else
			pause_reading(c);
	}
}
