/* One client connection: reads and frames requests (protocol/request),
 * keeps the pipeline of requests in order, writes replies, enforces the
 * idle and request timeouts and the back-pressure limits; on listen_tcp
 * with TLS, moves ciphertext through server/tls. Loop thread. */
#include "server/http.h"
#include "server/log.h"
#include "server/scan.h"
#include "server/sign.h"
#include "server/srv.h"
#include "server/stats.h"
#include "server/tls.h"
#include "common/buf.h"
#include "common/limits.h"
#include "protocol/reply.h"
#include "protocol/request.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>

struct preq {                    /* one request in the pipeline */
	struct preq *next;
	struct conn *conn;           /* NULL once the connection is gone */
	enum proto_cmd cmd;
	enum proto_format format;
	int done;
	struct buf reply;
	struct scan *scan;           /* SCAN until it reports */
	struct sign_req *sign;       /* SIGN until it reports */
};

struct conn {
	union {                      /* first: the stream handle */
		uv_handle_t h;
		uv_stream_t st;
		uv_pipe_t pipe;          /* the UNIX socket */
		uv_tcp_t tcp;            /* listen_tcp */
	} u;
	int tcp;
	uv_timer_t timer;
	struct srv *srv;
	struct conn *prev, *next;
	uint64_t id;
	struct proto_parser *parser;
	struct preq *head, *tail;    /* pipeline, oldest first */
	size_t n_pending;
	struct preq *cur;            /* SCAN whose body is being read */
	struct buf held;             /* bytes read but not yet parsed (paused) */
	uint64_t request_start;      /* loop time the current request began */
	uint64_t idle_since;         /* loop time the connection last became idle */
	struct buf out;              /* finished replies, coalesced, not yet handed to the socket */
	struct wreq *wr;             /* the one write in flight, or NULL */
	size_t write_backlog;        /* heap held by unwritten replies: out + the write in flight */
	int reading;
	int eof;                     /* no more requests will be read */
	int closing;
	int lingering;               /* eof: the close-anyway timer runs */
	int handles_open;
	struct tls_conn *tls;        /* listen_tcp with TLS, else NULL */
	int tls_ready;               /* handshake done: requests may be read */
	int tls_shut;                /* close_notify queued (or not to be sent) */
};

struct wreq {                    /* one uv_write of coalesced replies */
	uv_write_t w;
	struct conn *conn;
	char *data;
	size_t len;
	size_t mem;                  /* what it holds on the heap */
};

static void conn_process(struct conn *c, const char *data, size_t len);
static void conn_flush(struct conn *c);
static void conn_arm_timer(struct conn *c);
static void conn_update_reading(struct conn *c);

static void on_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	if (--c->handles_open > 0)
		return;
	struct srv *s = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_conns--;
	proto_parser_free(&c->parser);
	tls_conn_free(&c->tls);
	buf_free(&c->held);
	buf_free(&c->out);
	free(c);
	srv_maybe_finish(s);
}

static void free_preq(struct preq *r)
{
	buf_free(&r->reply);
	free(r);
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	/* scans still running lose their connection but finish on their own */
	struct preq *r = c->head;
	while (r) {
		struct preq *next = r->next;
		if (r->scan) {
			scan_abandon(r->scan);
			r->scan = NULL;
			c->srv->stats.scans_abandoned++;
		}
		if (r->sign) {
			sign_abandon(r->sign);
			r->sign = NULL;
		}
		free_preq(r);
		r = next;
	}
	c->head = c->tail = c->cur = NULL;
	c->n_pending = 0;
	uv_close(&c->u.h, on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static struct preq *preq_push(struct conn *c, enum proto_cmd cmd)
{
	struct preq *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->conn = c;
	r->cmd = cmd;
	buf_init(&r->reply, 0);
	if (c->tail)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	c->n_pending++;
	c->srv->stats.requests_total++;
	return r;
}

/* A reply that needs no further work (status lines, PONG, STATS). */
static void reply_now(struct conn *c, enum proto_cmd cmd, int status,
                      const char *reason)
{
	struct preq *r = preq_push(c, cmd);
	if (!r) {
		conn_close(c);
		return;
	}
	proto_reply_status(&r->reply, status, reason);
	r->done = 1;
	if (status >= 400 && status < 500)
		c->srv->stats.errors_4xx++;
	else if (status >= 500)
		c->srv->stats.errors_5xx++;
}

/* Memory the connection's unwritten replies hold: what reading pauses on. */
static void conn_count_backlog(struct conn *c)
{
	c->write_backlog = c->out.cap + (c->wr ? c->wr->mem + sizeof(*c->wr) : 0) +
	                   (c->tls ? tls_conn_pending(c->tls) : 0);
}

static void on_write(uv_write_t *w, int status)
{
	struct wreq *wr = (struct wreq *)w;
	struct conn *c = wr->conn;
	c->wr = NULL;
	free(wr->data);
	free(wr);
	conn_count_backlog(c);
	if (c->closing)
		return;
	if (status < 0) {
		log_msg(LOG_LVL_INFO, "conn %llu: write failed: %s",
		        (unsigned long long)c->id, uv_strerror(status));
		conn_close(c);
		return;
	}
	conn_flush(c);
}

/* Hands the coalesced replies to the socket: one write at a time, so a
 * client that does not read costs one buffer, not one per reply. */
static int conn_start_write(struct conn *c)
{
	if (c->wr)
		return 0;
	struct wreq *wr;
	if (c->tls) {
		/* the replies become records now, and their plaintext is freed:
		 * what waits is one buffer of ciphertext, as without TLS */
		if (c->out.len > 0 && c->tls_ready) {
			if (tls_conn_write(c->tls, c->out.data, c->out.len) < 0)
				return -1;
			buf_free(&c->out);
			buf_init(&c->out, 0);
		}
		size_t n = tls_conn_pending(c->tls);
		if (n == 0)
			return 0;
		wr = calloc(1, sizeof(*wr));
		if (!wr)
			return -1;
		wr->data = malloc(n);
		if (!wr->data) {
			free(wr);
			return -1;
		}
		wr->conn = c;
		wr->mem = n;
		wr->len = tls_conn_take(c->tls, wr->data, n);
	} else {
		if (c->out.len == 0)
			return 0;
		wr = calloc(1, sizeof(*wr));
		if (!wr)
			return -1;
		wr->conn = c;
		wr->mem = c->out.cap;
		wr->data = buf_steal(&c->out, &wr->len);
		buf_init(&c->out, 0);
		if (!wr->data) {
			free(wr);
			return -1;
		}
	}
	uv_buf_t b = uv_buf_init(wr->data, (unsigned)wr->len);
	int rc = uv_write(&wr->w, &c->u.st, &b, 1, on_write);
	if (rc < 0) {
		free(wr->data);
		free(wr);
		return -1;
	}
	c->wr = wr;
	return 0;
}

/* Moves every finished reply at the head of the pipeline, in order, to
 * the output buffer and writes it. */
static void conn_flush(struct conn *c)
{
	if (c->closing)
		return;
	while (c->head && c->head->done) {
		struct preq *r = c->head;
		c->head = r->next;
		if (!c->head)
			c->tail = NULL;
		c->n_pending--;
		int quit = r->cmd == PROTO_CMD_QUIT;
		if (r->reply.failed || r->reply.len == 0) {
			/* building the reply ran out of memory: a truncated one would
			 * leave the client waiting for its end */
			buf_free(&r->reply);
			buf_init(&r->reply, 0);
			proto_reply_status(&r->reply, 500, "out of memory");
			c->srv->stats.errors_5xx++;
		}
		int rc = r->reply.failed || r->reply.len == 0
		         ? -1 : buf_add(&c->out, r->reply.data, r->reply.len);
		free_preq(r);
		if (rc < 0) {
			log_msg(LOG_LVL_WARN, "conn %llu: out of memory for a reply, closing",
			        (unsigned long long)c->id);
			conn_close(c);
			return;
		}
		if (quit)
			c->eof = 1;
	}
	if (conn_start_write(c) < 0) {
		log_msg(LOG_LVL_WARN, "conn %llu: cannot write a reply, closing",
		        (unsigned long long)c->id);
		conn_close(c);
		return;
	}
	conn_count_backlog(c);
	if (c->eof && !c->head && !c->wr && c->out.len == 0) {
		if (c->tls && !c->tls_shut) {
			/* a TLS peer learns the end was meant: close_notify first */
			c->tls_shut = 1;
			if (c->tls_ready)
				tls_conn_shutdown(c->tls);
			if (conn_start_write(c) == 0 && c->wr) {
				conn_count_backlog(c);
				conn_arm_timer(c);
				return;
			}
		}
		/* everything answered and written */
		conn_close(c);
		return;
	}
	conn_update_reading(c);
	conn_arm_timer(c);
}

static void on_scan_done(void *arg, const struct proto_result *res)
{
	struct preq *r = arg;
	struct srv *s = r->conn->srv;
	r->scan = NULL;
	int rc = -1;
	if (res)
		rc = r->format == PROTO_FMT_MSGPACK ? proto_reply_result_msgpack(&r->reply, res)
		                                    : proto_reply_result_text(&r->reply, res);
	if (rc < 0) {
		buf_free(&r->reply);
		buf_init(&r->reply, 0);
		proto_reply_status(&r->reply, 500, "internal error while scanning");
		s->stats.errors_5xx++;
	}
	r->done = 1;
	conn_flush(r->conn);
}

static void on_sign_done(void *arg, const char *reply, size_t len, int status)
{
	struct preq *r = arg;
	(void)status;
	r->sign = NULL;
	if (buf_add(&r->reply, reply, len) < 0) {
		buf_free(&r->reply);
		buf_init(&r->reply, 0);
		proto_reply_status(&r->reply, 500, "out of memory");
	}
	r->done = 1;
	conn_flush(r->conn);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct conn *c = h->data;
	(void)suggested;
	b->base = c->srv->readbuf;
	b->len = sizeof(c->srv->readbuf);
}

/* The client sent its last byte (UV_EOF, or a TLS close_notify) or the
 * read failed. */
static void conn_read_ended(struct conn *c, ssize_t n)
{
	if (c->tls && !c->tls_ready)
		log_msg(LOG_LVL_INFO, "conn %llu: client left during the TLS handshake",
		        (unsigned long long)c->id);
	else if (c->cur)
		log_msg(LOG_LVL_INFO, "conn %llu: client disconnected in the middle of a message",
		        (unsigned long long)c->id);
	else if (n != UV_EOF)
		log_msg(LOG_LVL_INFO, "conn %llu: read error: %s",
		        (unsigned long long)c->id, uv_strerror((int)n));
	if (c->cur || n != UV_EOF || !c->head) {
		conn_close(c);
		return;
	}
	/* EOF after complete requests: answer them, then close */
	c->eof = 1;
	uv_read_stop(&c->u.st);
	c->reading = 0;
	conn_flush(c);
}

static void conn_tls_failed(struct conn *c, const char *why)
{
	struct srv *s = c->srv;
	s->stats.tls_handshake_failures++;
	log_msg(LOG_LVL_WARN, "conn %llu: TLS handshake failed: %s", (unsigned long long)c->id,
	        log_clean(why));
	/* the alert OpenSSL queued goes out, then the connection closes; no
	 * close_notify after a fatal error */
	c->eof = 1;
	c->tls_shut = 1;
	if (c->reading) {
		uv_read_stop(&c->u.st);
		c->reading = 0;
	}
	conn_flush(c);
}

/* Ciphertext from a TLS client: the handshake first, then its plaintext
 * goes where a plain client's bytes go. data is the shared read buffer,
 * which is free again once the bytes are in the TLS input. */
static void conn_tls_read(struct conn *c, const char *data, size_t n)
{
	struct srv *s = c->srv;
	char err[256];
	if (tls_conn_feed(c->tls, data, n) < 0) {
		log_msg(LOG_LVL_WARN, "conn %llu: out of memory for TLS input, closing",
		        (unsigned long long)c->id);
		conn_close(c);
		return;
	}
	if (!c->tls_ready) {
		int rc = tls_conn_handshake(c->tls, err, sizeof err);
		if (rc < 0) {
			conn_tls_failed(c, err);
			return;
		}
		if (rc == 0) {
			/* our part of the handshake goes out; the deadline stays */
			if (conn_start_write(c) < 0)
				conn_close(c);
			else
				conn_count_backlog(c);
			return;
		}
		c->tls_ready = 1;
		s->stats.tls_handshakes++;
		uv_timer_stop(&c->timer);
		char proto[128], cn[LIM_LOG_FIELD], who[INET6_ADDRSTRLEN + 8];
		tls_conn_describe(c->tls, proto, sizeof proto, cn, sizeof cn);
		srv_tcp_peer_allowed(s->cfg, &c->u.tcp, who, sizeof who);
		if (cn[0])
			log_msg(LOG_LVL_INFO, "conn %llu: TLS from %s, %s, client certificate CN=%s",
			        (unsigned long long)c->id, who, proto, log_clean(cn));
		else
			log_msg(LOG_LVL_INFO, "conn %llu: TLS from %s, %s, no client certificate",
			        (unsigned long long)c->id, who, proto);
	}
	while (!c->closing && !c->eof) {
		long got = tls_conn_read(c->tls, s->readbuf, sizeof s->readbuf, err, sizeof err);
		if (got == 0)
			break;
		if (got == TLS_CONN_EOF) {
			conn_read_ended(c, UV_EOF);
			return;
		}
		if (got < 0) {
			log_msg(LOG_LVL_INFO, "conn %llu: TLS read error: %s, closing",
			        (unsigned long long)c->id, log_clean(err));
			conn_close(c);
			return;
		}
		conn_process(c, s->readbuf, (size_t)got);
	}
	conn_flush(c);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = st->data;
	if (n == 0 || c->closing)
		return;
	if (n < 0) {
		conn_read_ended(c, n);
		return;
	}
	c->srv->stats.bytes_in += (uint64_t)n;
	if (c->tls)
		conn_tls_read(c, b->base, (size_t)n);
	else
		conn_process(c, b->base, (size_t)n);
}

/* Whether we may accept more request bytes now. */
static int conn_may_read(const struct conn *c)
{
	return !c->closing && !c->eof && c->n_pending < LIM_MAX_PIPELINE &&
	       c->write_backlog < LIM_MAX_WRITE_BACKLOG;
}

static void conn_update_reading(struct conn *c)
{
	if (c->closing)
		return;
	if (conn_may_read(c)) {
		if (c->held.len > 0) {
			/* bytes read before a pause come first */
			struct buf held = c->held;
			buf_init(&c->held, 0);
			conn_process(c, held.data, held.len);
			buf_free(&held);
			if (c->closing || !conn_may_read(c))
				return;
		}
		if (!c->reading) {
			if (uv_read_start(&c->u.st, on_alloc, on_read) == 0)
				c->reading = 1;
		}
	} else if (c->reading) {
		uv_read_stop(&c->u.st);
		c->reading = 0;
	}
}

/* The SCAN whose body is still arriving will not complete: its scan is
 * abandoned and its place in the pipeline gets this status reply. */
static void end_partial(struct conn *c, int status, const char *reason)
{
	struct preq *r = c->cur;
	if (r->scan) {
		scan_abandon(r->scan);
		r->scan = NULL;
		c->srv->stats.scans_abandoned++;
	}
	if (r->sign) {
		sign_abandon(r->sign);
		r->sign = NULL;
	}
	buf_free(&r->reply);
	buf_init(&r->reply, 0);
	proto_reply_status(&r->reply, status, reason);
	r->done = 1;
	c->cur = NULL;
}

static void on_timer(uv_timer_t *t)
{
	struct conn *c = t->data;
	struct srv *s = c->srv;
	s->stats.timeouts++;
	int in_req = proto_in_request(c->parser) || c->cur;
	log_msg(LOG_LVL_INFO, "conn %llu: %s timeout, closing",
	        (unsigned long long)c->id, in_req ? "request" : "idle");
	/* the connection is useless now: answer in order, then close */
	if (c->cur) {
		/* a SCAN whose body never completed: it cannot be answered */
		end_partial(c, 408, "request timeout");
	} else {
		reply_now(c, PROTO_CMD_NONE, 408, in_req ? "request timeout" : "idle timeout");
	}
	s->stats.errors_4xx++;
	c->eof = 1;
	if (c->reading) {
		uv_read_stop(&c->u.st);
		c->reading = 0;
	}
	conn_flush(c);
}

static void on_linger(uv_timer_t *t)
{
	struct conn *c = t->data;
	log_msg(LOG_LVL_INFO, "conn %llu: replies not read in time, closing",
	        (unsigned long long)c->id);
	conn_close(c);
}

static void on_tls_timeout(uv_timer_t *t)
{
	struct conn *c = t->data;
	c->srv->stats.timeouts++;
	c->srv->stats.tls_handshake_failures++;
	log_msg(LOG_LVL_INFO, "conn %llu: TLS handshake not finished within %llums, closing",
	        (unsigned long long)c->id, (unsigned long long)c->srv->cfg->tls_handshake_timeout);
	conn_close(c);
}

static void conn_arm_timer(struct conn *c)
{
	if (c->closing)
		return;
	struct srv *s = c->srv;
	uint64_t now = uv_now(s->loop);
	if (c->tls && !c->tls_ready && !c->eof)
		return;                /* the handshake deadline set at accept runs */
	if (c->eof) {
		/* nothing more is read; the last replies are being written. A
		 * client that never reads them does not keep us forever. */
		if (!c->lingering) {
			c->lingering = 1;
			uv_timer_start(&c->timer, on_linger, s->cfg->idle_timeout, 0);
		}
		return;
	}
	if (proto_in_request(c->parser) || c->cur) {
		/* the whole request must arrive in time: bytes trickling in do not
		 * extend it (slowloris) */
		if (c->request_start == 0)
			c->request_start = now ? now : 1;
		uint64_t end = c->request_start + s->cfg->request_timeout;
		uv_timer_start(&c->timer, on_timer, end > now ? end - now : 0, 0);
	} else if (c->n_pending == 0 && !c->eof) {
		c->request_start = 0;
		c->idle_since = now ? now : 1;
		uv_timer_start(&c->timer, on_timer, s->cfg->idle_timeout, 0);
	} else {
		/* waiting for our own scans: their deadline applies */
		c->request_start = 0;
		uv_timer_stop(&c->timer);
	}
}

static void conn_process(struct conn *c, const char *data, size_t len)
{
	struct srv *s = c->srv;
	size_t off = 0;
	while (!c->closing) {
		if (c->eof)
			break;            /* nothing after QUIT or a fatal error is read */
		/* back-pressure applies between requests only: a request already
		 * begun is read to its end, so its scan can start */
		int between = !c->cur && !proto_in_request(c->parser);
		if (between && !conn_may_read(c)) {
			if (off < len && buf_add(&c->held, data + off, len - off) < 0)
				conn_close(c);
			break;
		}
		struct proto_event ev;
		size_t used = 0;
		if (!proto_in_request(c->parser) && !c->cur)
			c->request_start = uv_now(s->loop) ? uv_now(s->loop) : 1;
		proto_feed(c->parser, data + off, len - off, &used, &ev);
		off += used;
		switch (ev.type) {
		case PROTO_EV_MORE:
			break;
		case PROTO_EV_HEAD: {
			struct preq *r = preq_push(c, PROTO_CMD_SCAN);
			if (!r) {
				conn_close(c);
				return;
			}
			struct proto_request req;
			proto_take_request(c->parser, &req);
			r->format = req.format;
			int busy = !srv_msg_bytes_fit(s, req.content_length);
			if (busy) {
				s->stats.requests_busy++;
				log_msg(LOG_LVL_WARN, "conn %llu: %llu message bytes in flight, %llu more "
				        "would pass max_inflight_bytes: refused with 503",
				        (unsigned long long)c->id, (unsigned long long)s->msg_bytes,
				        (unsigned long long)req.content_length);
				proto_reply_status(&r->reply, 503, SRV_BUSY_REASON);
				r->done = 1;
				s->stats.errors_5xx++;
			} else if (req.cmd == PROTO_CMD_SIGN) {
				r->sign = sign_new(s, &req, on_sign_done, r);
			} else {
				r->scan = scan_new(s, &req, on_scan_done, r);
			}
			proto_request_clear(&req);
			if (!busy && !r->scan && !r->sign) {
				proto_reply_status(&r->reply, 500, "out of memory");
				r->done = 1;
				s->stats.errors_5xx++;
				/* the body still arrives: cur stays NULL, bytes are dropped below */
			}
			c->cur = r;
			break;
		}
		case PROTO_EV_BODY:
			if (c->cur && c->cur->scan)
				scan_body(c->cur->scan, ev.data, ev.len);
			else if (c->cur && c->cur->sign)
				sign_body(c->cur->sign, ev.data, ev.len);
			break;
		case PROTO_EV_END: {
			if (ev.req->cmd == PROTO_CMD_SCAN || ev.req->cmd == PROTO_CMD_SIGN) {
				struct preq *r = c->cur;
				c->cur = NULL;
				c->request_start = 0;
				if (r && r->scan)
					scan_end(r->scan);
				else if (r && r->sign)
					sign_end(r->sign);
				break;
			}
			c->request_start = 0;
			if (ev.req->cmd == PROTO_CMD_PING) {
				reply_now(c, PROTO_CMD_PING, 200, "PONG");
			} else if (ev.req->cmd == PROTO_CMD_STATS) {
				struct preq *r = preq_push(c, PROTO_CMD_STATS);
				if (!r) {
					conn_close(c);
					return;
				}
				stats_reply(s, &r->reply);
				r->done = 1;
			} else if (ev.req->cmd == PROTO_CMD_QUIT) {
				reply_now(c, PROTO_CMD_QUIT, 200, "BYE");
				c->eof = 1;
			}
			break;
		}
		case PROTO_EV_ERROR:
			c->request_start = 0;
			log_msg(LOG_LVL_INFO, "conn %llu: bad request: %d %s%s",
			        (unsigned long long)c->id, ev.status, ev.reason,
			        ev.fatal ? " (closing)" : "");
			reply_now(c, PROTO_CMD_NONE, ev.status, ev.reason);
			if (ev.fatal) {
				c->eof = 1;
				off = len;
			}
			break;
		}
		if (ev.type == PROTO_EV_MORE)
			break;
	}
	conn_flush(c);
}

int srv_tcp_peer_allowed(const struct srv_config *cfg, const uv_tcp_t *t, char *who,
                         size_t wlen)
{
	struct sockaddr_storage sa;
	int sl = sizeof sa;
	snprintf(who, wlen, "(unknown)");
	if (uv_tcp_getpeername(t, (struct sockaddr *)&sa, &sl) < 0)
		return 0;
	if (sa.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&sa;
		inet_ntop(AF_INET, &a->sin_addr, who, (socklen_t)wlen);
		return cfg_addr_allowed(cfg, 4, (const unsigned char *)&a->sin_addr);
	}
	if (sa.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&sa;
		inet_ntop(AF_INET6, &a->sin6_addr, who, (socklen_t)wlen);
		return cfg_addr_allowed(cfg, 6, a->sin6_addr.s6_addr);
	}
	return 0;
}

static void on_drop_closed(uv_handle_t *h)
{
	struct srv *s = h->data;
	s->drop_busy = 0;
	s->stats.connections_rejected++;
	/* a listener that had a client while the handle was in use resumes
	 * through its own callback, memory permitting a real connection */
	for (size_t i = 0; i < SRV_LISTENERS; i++) {
		uv_stream_t *l = s->drop_waiting[i];
		if (l) {
			s->drop_waiting[i] = NULL;
			l->connection_cb(l, 0);
			return;
		}
	}
}

void srv_drop_unaccepted(struct srv *s, uv_stream_t *listener)
{
	if (s->drop_busy) {
		for (size_t i = 0; i < SRV_LISTENERS; i++)
			if (!s->drop_waiting[i] || s->drop_waiting[i] == listener) {
				s->drop_waiting[i] = listener;
				break;
			}
		return;
	}
	if (listener->type == UV_TCP)
		uv_tcp_init(s->loop, &s->drop.tcp);
	else
		uv_pipe_init(s->loop, &s->drop.pipe, 0);
	s->drop.h.data = s;
	s->drop_busy = 1;
	if (uv_accept(listener, &s->drop.st) == 0)
		log_msg(LOG_LVL_WARN, "out of memory for a new connection: closed at once");
	uv_close(&s->drop.h, on_drop_closed);
}

void conn_accept(struct srv *s, uv_stream_t *listener, int tcp)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		srv_drop_unaccepted(s, listener);
		return;
	}
	c->srv = s;
	c->id = ++s->next_conn_id;
	buf_init(&c->held, 0);
	c->tcp = tcp;
	if (tcp)
		uv_tcp_init(s->loop, &c->u.tcp);
	else
		uv_pipe_init(s->loop, &c->u.pipe, 0);
	uv_timer_init(s->loop, &c->timer);
	c->u.h.data = c;
	c->timer.data = c;
	c->handles_open = 2;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	if (uv_accept(listener, &c->u.st) < 0) {
		conn_close(c);
		return;
	}
	s->stats.connections_total++;
	struct proto_limits lim = {
		.max_line = s->cfg->max_line_length,
		.max_head = s->cfg->max_request_header,
		.max_fields = LIM_MAX_REQUEST_FIELDS,
		.max_body = s->cfg->max_message_size,
	};
	c->parser = proto_parser_new(&lim);
	if (!c->parser) {
		conn_close(c);
		return;
	}
	char who[INET6_ADDRSTRLEN + 8];
	/* on a TLS listener a refusal is a closed connection: a plain-text
	 * status line would reach the client as a broken handshake anyway */
	struct srv_tls *tls = tcp ? s->cfg->tls : NULL;
	if (tcp && !srv_tcp_peer_allowed(s->cfg, &c->u.tcp, who, sizeof who)) {
		s->stats.connections_rejected++;
		log_msg(LOG_LVL_WARN, "conn %llu: peer %s not in allowed_networks, refused",
		        (unsigned long long)c->id, who);
		if (tls) {
			conn_close(c);
			return;
		}
		reply_now(c, PROTO_CMD_NONE, 403, "peer not allowed");
		c->eof = 1;
		conn_flush(c);
		return;
	}
	if (!tcp && s->cfg->n_allowed) {
		/* SO_PEERCRED: the kernel's word for who connected */
		uv_os_fd_t fd;
		struct ucred cr;
		socklen_t cl = sizeof(cr);
		if (uv_fileno(&c->u.h, &fd) < 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 ||
		    !cfg_peer_allowed(s->cfg, (unsigned)cr.uid)) {
			s->stats.connections_rejected++;
			log_msg(LOG_LVL_WARN, "conn %llu: peer uid %ld pid %ld not in allowed_peers, refused",
			        (unsigned long long)c->id, cl == sizeof(cr) ? (long)cr.uid : -1L,
			        cl == sizeof(cr) ? (long)cr.pid : -1L);
			reply_now(c, PROTO_CMD_NONE, 403, "peer not allowed");
			c->eof = 1;
			conn_flush(c);
			return;
		}
	}
	/* the connection closed to make room counts until its handles close */
	int made_room = s->n_conns > s->cfg->max_connections && !s->stopping &&
	                srv_shed_idle(s) == 0;
	if (made_room)
		log_msg(LOG_LVL_INFO, "conn %llu: at max_connections, the longest idle connection was "
		        "closed to admit it", (unsigned long long)c->id);
	if ((s->n_conns > s->cfg->max_connections && !made_room) || s->stopping) {
		s->stats.connections_rejected++;
		log_msg(LOG_LVL_WARN, "conn %llu: %s, refused", (unsigned long long)c->id,
		        s->stopping ? "shutting down" : "too many connections");
		if (tls) {
			conn_close(c);
			return;
		}
		reply_now(c, PROTO_CMD_NONE, 421, s->stopping ? "shutting down"
		                                               : "too many connections, try again later");
		c->eof = 1;
		conn_flush(c);
		return;
	}
	if (tls) {
		c->tls = tls_conn_new(tls);
		if (!c->tls) {
			log_msg(LOG_LVL_WARN, "conn %llu: out of memory for TLS, closing",
			        (unsigned long long)c->id);
			conn_close(c);
			return;
		}
		/* a client that never finishes the handshake is not kept */
		uv_timer_start(&c->timer, on_tls_timeout, s->cfg->tls_handshake_timeout, 0);
	}
	conn_update_reading(c);
	conn_arm_timer(c);
}

static int conn_is_idle(const struct conn *c)
{
	return !c->closing && !c->eof && !c->cur && c->n_pending == 0 && !c->wr &&
	       c->out.len == 0 && c->held.len == 0 && c->idle_since != 0 &&
	       !proto_in_request(c->parser);
}

int srv_shed_idle(struct srv *s)
{
	/* the list runs newest first: on a tie the later one is older */
	struct conn *best = NULL;
	for (struct conn *c = s->conns; c; c = c->next)
		if (conn_is_idle(c) && (!best || c->idle_since <= best->idle_since))
			best = c;
	uint64_t http_since = 0;
	int http = http_oldest_idle(s, &http_since);
	if (http && (!best || http_since <= best->idle_since)) {
		http_shed_oldest_idle(s);
	} else if (best) {
		/* a 421 tells a client that reads it why, as on connect */
		reply_now(best, PROTO_CMD_NONE, 421, "idle connection closed: too many connections");
		best->eof = 1;
		if (best->reading) {
			uv_read_stop(&best->u.st);
			best->reading = 0;
		}
		conn_flush(best);
		if (!best->closing && best->write_backlog == 0)
			conn_close(best);
	} else {
		return -1;
	}
	s->stats.connections_shed++;
	return 0;
}

void conn_shutdown_all(struct srv *s)
{
	struct conn *c = s->conns;
	while (c) {
		struct conn *next = c->next;
		if (!c->closing) {
			if (!c->head) {
				conn_close(c);     /* idle, or only a request head arriving */
			} else {
				/* answer what was fully received, then close. A message
				 * still arriving will not be waited for: it gets a 421 in
				 * its place so the client knows to send it again. */
				if (c->cur)
					end_partial(c, 421, "shutting down, send it again later");
				c->eof = 1;
				if (c->reading) {
					uv_read_stop(&c->u.st);
					c->reading = 0;
				}
				conn_flush(c);
			}
		}
		c = next;
	}
}

void conn_close_all(struct srv *s)
{
	for (struct conn *c = s->conns; c; c = c->next)
		conn_close(c);
}
