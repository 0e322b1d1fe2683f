/* Load generator for alignd (ALIGND/1 over a UNIX socket) and, for the side
 * by side, rspamd (HTTP /checkv2 over 127.0.0.1). One libuv loop thread:
 * connections, pipelining, warm-up, latency histogram, daemon CPU and RSS
 * from /proc. Owns the corpus in memory and every connection it opens. */
#include "protocol/reply.h"
#include "protocol/request.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#define MAX_PIDS 16
#define CONNECT_RETRIES 200

enum lg_proto { LG_ALIGND = 0, LG_HTTP };

struct item {
	char *name;
	char *req;          /* request head + body, contiguous, read-only */
	size_t req_len;
	size_t body_len;
	int dumped;         /* verdict written already */
};

struct pending {
	size_t item;
	uint64_t t_start;   /* ns */
	int measured;       /* issued after the warm-up */
};

struct lconn {
	union {
		uv_handle_t h;
		uv_stream_t s;
		uv_pipe_t p;
		uv_tcp_t t;
	} u;
	uv_connect_t creq;
	uv_timer_t retry;
	struct lg *lg;
	size_t slot;
	int connected, closing, open_handles, retries, retry_restart;
	int peer_closed;    /* the server closed after a reply (HTTP Connection: close) */
	struct pending *q;  /* ring of depth entries */
	size_t qhead, qn;
	size_t served;      /* replies on this connection */
	char *rbuf;
	size_t rlen, rcap;
};

struct proc_sample { uint64_t ticks; };

struct lg {
	uv_loop_t *loop;
	/* options */
	const char *socket;
	const char *host;
	int port;
	enum lg_proto proto;
	size_t n_conns, depth;
	int reuse;
	uint64_t count, warmup_count;
	double duration_s, warmup_s;
	pid_t pids[MAX_PIDS];
	size_t n_pids;
	const char *json_path, *label, *verdicts_path;
	size_t idle;        /* idle-connection mode: open this many, PING, hold */
	double hold_s;
	int quiet;
	/* corpus */
	struct item *items;
	size_t n_items;
	uint64_t corpus_bytes;
	/* state */
	struct lconn **conns;
	uint64_t next_item;
	uint64_t issued, completed;
	uint64_t measured_done, measured_bytes;
	uint64_t errors_reply, errors_conn, errors_proto;
	uint64_t actions[5];   /* accept quarantine reject tempfail other */
	uint64_t t_begin, t_measure, t_end_issue, t_last;
	int measuring, stop_issue, finished;
	uint32_t *lat;      /* microseconds, measured requests */
	size_t n_lat, cap_lat;
	uint64_t lat_max_ns;
	uint64_t cpu0, cpu1;
	uv_timer_t tick;
	FILE *verdicts;
	size_t idle_open, idle_ok;
	uint64_t idle_rss_kb;   /* daemon RSS with every idle connection open */
};

static const char *action_names[5] = { "accept", "quarantine", "reject", "tempfail", "other" };

static void conn_start(struct lg *g, size_t slot);
static void conn_pump(struct lconn *c);
static void lg_check_done(struct lg *g);

static void die(const char *what)
{
	fprintf(stderr, "loadgen: %s\n", what);
	exit(2);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

/* ---- daemon accounting from /proc ---- */

static uint64_t proc_ticks(pid_t pid)
{
	char path[64], buf[2048];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the command name may hold spaces: fields start after the last ')' */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	p += 2;
	unsigned long long ut = 0, st = 0;
	/* fields 3..15: state ppid pgrp session tty tpgid flags minflt cminflt
	 * majflt cmajflt utime stime */
	if (sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
	           &ut, &st) != 2)
		return 0;
	return ut + st;
}

static uint64_t lg_cpu_ticks(const struct lg *g)
{
	uint64_t t = 0;
	for (size_t i = 0; i < g->n_pids; i++)
		t += proc_ticks(g->pids[i]);
	return t;
}

/* kB from /proc/PID/status, e.g. "VmHWM" */
static uint64_t proc_status_kb(pid_t pid, const char *key)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t kl = strlen(key);
	uint64_t v = 0;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			v = strtoull(line + kl + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

static uint64_t lg_status_kb(const struct lg *g, const char *key)
{
	uint64_t t = 0;
	for (size_t i = 0; i < g->n_pids; i++)
		t += proc_status_kb(g->pids[i], key);
	return t;
}

/* ---- corpus ---- */

static char *read_file(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, len = 0;
	char *b = xmalloc(cap);
	for (;;) {
		if (cap - len < 1 << 15) {
			cap *= 2;
			char *nb = realloc(b, cap);
			if (!nb)
				die("out of memory");
			b = nb;
		}
		size_t n = fread(b + len, 1, cap - len, f);
		if (n == 0)
			break;
		len += n;
	}
	fclose(f);
	*len_r = len;
	return b;
}

static char *http_head(const char *ip, const char *helo, const char *from,
                       const char *rcpt, const char *qid, size_t body_len,
                       size_t *len_r)
{
	char *h = xmalloc(2048);
	int n = snprintf(h, 2048,
	    "POST /checkv2 HTTP/1.1\r\nHost: localhost\r\n"
	    "Connection: keep-alive\r\nIP: %s\r\nHelo: %s\r\nFrom: <%s>\r\n"
	    "Rcpt: <%s>\r\nQueue-Id: %s\r\nContent-Length: %zu\r\n\r\n",
	    ip, helo, from, rcpt, qid, body_len);
	if (n < 0 || n >= 2048)
		die("HTTP head too long");
	*len_r = (size_t)n;
	return h;
}

/* index.tsv: file <TAB> client-ip <TAB> helo <TAB> mail-from <TAB> rcpt.
 * Relative file names are taken from the index's directory. */
static void corpus_load(struct lg *g, const char *index, const char *match)
{
	FILE *f = fopen(index, "r");
	if (!f)
		die("cannot open the corpus index");
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", index);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof dir, ".");
	size_t cap = 256;
	g->items = xmalloc(cap * sizeof *g->items);
	char line[8192];
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		char *fld[5] = { 0 };
		char *p = line;
		for (int i = 0; i < 5; i++) {
			fld[i] = p;
			char *t = p ? strchr(p, '\t') : NULL;
			if (t) {
				*t = '\0';
				p = t + 1;
			} else {
				p = NULL;
			}
		}
		if (!fld[4])
			die("corpus index: a line with fewer than 5 fields");
		if (match && !strstr(fld[0], match))
			continue;
		char path[4096 + 8192 + 2];
		if (fld[0][0] == '/')
			snprintf(path, sizeof path, "%s", fld[0]);
		else
			snprintf(path, sizeof path, "%s/%s", dir, fld[0]);
		size_t blen;
		char *body = read_file(path, &blen);
		if (!body) {
			fprintf(stderr, "loadgen: cannot read %s\n", path);
			exit(2);
		}
		char *head;
		size_t hlen;
		if (g->proto == LG_HTTP) {
			head = http_head(fld[1], fld[2], fld[3], fld[4], fld[0], blen, &hlen);
		} else {
			const char *rc[1] = { fld[4] };
			struct proto_envelope e = {
				.client_ip = fld[1], .helo = fld[2], .mail_from = fld[3],
				.queue_id = NULL, .rcpt = rc, .n_rcpt = 1,
				.format = PROTO_FMT_TEXT,
			};
			if (proto_write_scan_head(&e, blen, &head, &hlen) != 0)
				die("proto_write_scan_head failed");
		}
		if (g->n_items == cap) {
			cap *= 2;
			struct item *ni = realloc(g->items, cap * sizeof *ni);
			if (!ni)
				die("out of memory");
			g->items = ni;
		}
		struct item *it = &g->items[g->n_items++];
		it->name = strdup(fld[0]);
		it->req = xmalloc(hlen + blen);
		memcpy(it->req, head, hlen);
		memcpy(it->req + hlen, body, blen);
		it->req_len = hlen + blen;
		it->body_len = blen;
		it->dumped = 0;
		g->corpus_bytes += blen;
		free(head);
		free(body);
	}
	fclose(f);
	if (g->n_items == 0)
		die("empty corpus");
}

/* ---- replies ---- */

/* Length of the first complete HTTP response in b[0..n), 0 if more bytes
 * are needed, -1 if malformed. */
static long http_reply_length(const char *b, size_t n)
{
	const char *end = memmem(b, n, "\r\n\r\n", 4);
	if (!end)
		return n > 65536 ? -1 : 0;
	size_t hl = (size_t)(end - b) + 4;
	unsigned long long cl = 0;
	int have = 0;
	for (const char *p = b; p < end;) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0) {
			cl = strtoull(p + 15, NULL, 10);
			have = 1;
		}
		p = eol + 1;
	}
	if (!have)
		return -1;
	if (n - hl < cl)
		return 0;
	return (long)(hl + cl);
}

static int http_code(const char *b, size_t n)
{
	if (n < 12 || strncmp(b, "HTTP/1.", 7) != 0)
		return -1;
	return atoi(b + 9);
}

static void note_action(struct lg *g, const char *b, size_t n)
{
	const char *a = memmem(b, n, "\nAction: ", 9);
	int k = 4;
	if (a) {
		a += 9;
		for (int i = 0; i < 4; i++) {
			size_t l = strlen(action_names[i]);
			if ((size_t)(b + n - a) >= l && strncmp(a, action_names[i], l) == 0)
				k = i;
		}
	} else if (g->proto == LG_HTTP) {
		/* rspamd: "action":"no action" | "add header" | "reject" | "soft reject" */
		const char *j = memmem(b, n, "\"action\":\"", 10);
		if (j) {
			j += 10;
			size_t left = (size_t)(b + n - j);
			if (left >= 9 && strncmp(j, "no action", 9) == 0)
				k = 0;
			else if (left >= 10 && strncmp(j, "add header", 10) == 0)
				k = 1;
			else if (left >= 6 && strncmp(j, "reject", 6) == 0)
				k = 2;
			else if (left >= 11 && strncmp(j, "soft reject", 11) == 0)
				k = 3;
		}
	}
	g->actions[k]++;
}

static void dump_verdict(struct lg *g, struct item *it, const char *b, size_t n)
{
	if (!g->verdicts || it->dumped)
		return;
	it->dumped = 1;
	fprintf(g->verdicts, "%s\t", it->name);
	size_t start = 0;
	if (g->proto == LG_HTTP) {
		const char *e = memmem(b, n, "\r\n\r\n", 4);
		if (e)
			start = (size_t)(e - b) + 4;
	}
	for (size_t i = start; i < n; i++) {
		unsigned char ch = (unsigned char)b[i];
		if (ch == '\r')
			continue;
		if (ch == '\n')
			fputs("\\n", g->verdicts);
		else if (ch == '\t')
			fputc(' ', g->verdicts);
		else
			fputc(ch, g->verdicts);
	}
	fputc('\n', g->verdicts);
}

static void record(struct lg *g, struct lconn *c, const struct pending *pd,
                   const char *b, size_t n)
{
	uint64_t now = uv_hrtime();
	int code = g->proto == LG_HTTP ? http_code(b, n) : proto_reply_code(b, n);
	g->completed++;
	struct item *it = &g->items[pd->item];
	if (code != 200) {
		g->errors_reply++;
		if (!g->quiet && g->errors_reply <= 5) {
			int l = (int)(n < 120 ? n : 120);
			fprintf(stderr, "loadgen: error reply for %s: %.*s\n", it->name, l, b);
		}
	} else {
		dump_verdict(g, it, b, n);
	}
	if (!pd->measured)
		return;
	note_action(g, b, n);
	uint64_t d = now - pd->t_start;
	if (d > g->lat_max_ns)
		g->lat_max_ns = d;
	if (g->n_lat == g->cap_lat) {
		g->cap_lat = g->cap_lat ? g->cap_lat * 2 : 65536;
		uint32_t *nl = realloc(g->lat, g->cap_lat * sizeof *nl);
		if (!nl)
			die("out of memory");
		g->lat = nl;
	}
	uint64_t us = d / 1000;
	g->lat[g->n_lat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
	g->measured_done++;
	g->measured_bytes += it->body_len;
	g->t_last = now;
	(void)c;
}

/* ---- connections ---- */

static void on_conn_closed(uv_handle_t *h)
{
	struct lconn *c = h->data;
	if (--c->open_handles > 0)
		return;
	struct lg *g = c->lg;
	size_t slot = c->slot;
	int restart = (!g->reuse || c->peer_closed) && !g->stop_issue &&
	              !g->finished && g->idle == 0;
	int retry = c->retry_restart && !g->finished;
	int retries = c->retries;
	g->conns[slot] = NULL;
	free(c->q);
	free(c->rbuf);
	free(c);
	if (retry) {
		conn_start(g, slot);
		if (g->conns[slot])
			g->conns[slot]->retries = retries;
	} else if (restart) {
		conn_start(g, slot);
	} else {
		lg_check_done(g);
	}
}

static void conn_close(struct lconn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	uv_close(&c->u.h, on_conn_closed);
	uv_close((uv_handle_t *)&c->retry, on_conn_closed);
}

static void conn_fail(struct lconn *c, const char *why, int err)
{
	struct lg *g = c->lg;
	/* requests in flight on a dead connection are errors */
	g->errors_conn += c->qn ? c->qn : 1;
	g->completed += c->qn;
	c->qn = 0;
	if (!g->quiet && g->errors_conn <= 5)
		fprintf(stderr, "loadgen: connection %zu: %s: %s\n", c->slot, why,
		        err ? uv_strerror(err) : "");
	conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *buf)
{
	struct lconn *c = h->data;
	if (c->rcap - c->rlen < 16384) {
		size_t nc = c->rcap ? c->rcap * 2 : 32768;
		char *nb = realloc(c->rbuf, nc);
		if (!nb)
			die("out of memory");
		c->rbuf = nb;
		c->rcap = nc;
	}
	buf->base = c->rbuf + c->rlen;
	buf->len = c->rcap - c->rlen;
	(void)sugg;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct lconn *c = s->data;
	struct lg *g = c->lg;
	(void)buf;
	if (nread < 0) {
		if (c->qn || nread != UV_EOF) {
			conn_fail(c, "read", nread == UV_EOF ? 0 : (int)nread);
		} else {
			c->peer_closed = 1;   /* reconnect in the same slot */
			conn_close(c);
		}
		return;
	}
	c->rlen += (size_t)nread;
	for (;;) {
		long l = g->proto == LG_HTTP ? http_reply_length(c->rbuf, c->rlen)
		                             : proto_reply_length(c->rbuf, c->rlen);
		if (l == 0)
			break;
		if (l < 0 || c->qn == 0) {
			g->errors_proto++;
			conn_fail(c, "unparsable or unexpected reply", 0);
			return;
		}
		struct pending pd = c->q[c->qhead];
		c->qhead = (c->qhead + 1) % g->depth;
		c->qn--;
		c->served++;
		if (g->idle) {
			g->idle_ok++;
		} else {
			record(g, c, &pd, c->rbuf, (size_t)l);
		}
		if (g->proto == LG_HTTP) {
			const char *he = memmem(c->rbuf, (size_t)l, "\r\n\r\n", 4);
			if (he && memmem(c->rbuf, (size_t)(he - c->rbuf), "Connection: close", 17))
				c->peer_closed = 1;
		}
		memmove(c->rbuf, c->rbuf + l, c->rlen - (size_t)l);
		c->rlen -= (size_t)l;
	}
	if (g->idle) {
		lg_check_done(g);
		return;
	}
	if ((!g->reuse || c->peer_closed) && c->served > 0 && c->qn == 0) {
		conn_close(c);
		lg_check_done(g);
		return;
	}
	conn_pump(c);
	lg_check_done(g);
}

static void on_written(uv_write_t *w, int status)
{
	struct lconn *c = w->data;
	free(w);
	if (status < 0 && status != UV_ECANCELED && !c->closing)
		conn_fail(c, "write", status);
}

static int may_issue(struct lg *g)
{
	if (g->stop_issue)
		return 0;
	if (g->count && g->issued >= g->warmup_count + g->count) {
		g->stop_issue = 1;
		return 0;
	}
	return 1;
}

static void send_request(struct lconn *c, const char *data, size_t len,
                         size_t item)
{
	struct lg *g = c->lg;
	size_t tail = (c->qhead + c->qn) % g->depth;
	uint64_t now = uv_hrtime();
	if (!g->measuring && !g->idle) {
		int end_warm = g->warmup_s > 0
		    ? (double)(now - g->t_begin) / 1e9 >= g->warmup_s
		    : g->issued >= g->warmup_count;
		if (end_warm) {
			g->measuring = 1;
			g->t_measure = now;
			g->cpu0 = lg_cpu_ticks(g);
		}
	}
	c->q[tail] = (struct pending){ .item = item, .t_start = now,
	                               .measured = g->measuring };
	c->qn++;
	g->issued++;
	uv_write_t *w = xmalloc(sizeof *w);
	w->data = c;
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	int rc = uv_write(w, &c->u.s, &b, 1, on_written);
	if (rc < 0) {
		free(w);
		conn_fail(c, "write", rc);
	}
}

static void conn_pump(struct lconn *c)
{
	struct lg *g = c->lg;
	if (!c->connected || c->closing)
		return;
	size_t lim = g->reuse ? g->depth : 1;
	while (c->qn < lim && !c->peer_closed &&
	       (g->reuse || c->served + c->qn == 0) && may_issue(g)) {
		size_t i = (size_t)(g->next_item++ % g->n_items);
		send_request(c, g->items[i].req, g->items[i].req_len, i);
		if (c->closing)
			return;
	}
}

static void on_connect(uv_connect_t *r, int status);

static void conn_try_connect(struct lconn *c)
{
	struct lg *g = c->lg;
	if (g->proto == LG_HTTP) {
		struct sockaddr_in a;
		uv_ip4_addr(g->host, g->port, &a);
		int rc = uv_tcp_connect(&c->creq, &c->u.t, (const struct sockaddr *)&a,
		                        on_connect);
		if (rc < 0)
			on_connect(&c->creq, rc);
	} else {
		uv_pipe_connect(&c->creq, &c->u.p, g->socket, on_connect);
	}
}

static void on_retry(uv_timer_t *t)
{
	/* a failed connect leaves the handle unusable: close it, and the close
	 * callback starts a fresh connection in the same slot */
	struct lconn *c = t->data;
	c->retry_restart = 1;
	conn_close(c);
}

static void on_connect(uv_connect_t *r, int status)
{
	struct lconn *c = r->data;
	struct lg *g = c->lg;
	if (status < 0) {
		if (c->closing)
			return;
		if ((status == UV_EAGAIN || status == UV_ECONNREFUSED) &&
		    c->retries < CONNECT_RETRIES) {
			/* listen backlog full: try again shortly on a new handle */
			c->retries++;
			uv_timer_start(&c->retry, on_retry, 2 + (uint64_t)(c->slot % 8), 0);
			return;
		}
		conn_fail(c, "connect", status);
		return;
	}
	c->connected = 1;
	int rc = uv_read_start(&c->u.s, on_alloc, on_read);
	if (rc < 0) {
		conn_fail(c, "read_start", rc);
		return;
	}
	if (g->idle) {
		static const char ping[] = "PING\r\n\r\n";
		g->idle_open++;
		send_request(c, ping, sizeof ping - 1, 0);
		return;
	}
	conn_pump(c);
}

static void conn_start(struct lg *g, size_t slot)
{
	struct lconn *c = calloc(1, sizeof *c);
	if (!c)
		die("out of memory");
	c->lg = g;
	c->slot = slot;
	c->q = xmalloc(g->depth * sizeof *c->q);
	int rc = g->proto == LG_HTTP ? uv_tcp_init(g->loop, &c->u.t)
	                             : uv_pipe_init(g->loop, &c->u.p, 0);
	if (rc < 0)
		die("handle init failed");
	uv_timer_init(g->loop, &c->retry);
	c->u.h.data = c;
	c->retry.data = c;
	c->creq.data = c;
	c->open_handles = 2;
	g->conns[slot] = c;
	conn_try_connect(c);
}

static void lg_stop_all(struct lg *g)
{
	for (size_t i = 0; i < g->n_conns; i++)
		if (g->conns[i])
			conn_close(g->conns[i]);
	uv_close((uv_handle_t *)&g->tick, NULL);
}

static void lg_check_done(struct lg *g)
{
	if (g->finished)
		return;
	if (g->idle) {
		if (g->idle_ok + g->errors_conn >= g->idle && g->t_last == 0)
			g->t_last = uv_hrtime();  /* all open: the tick timer holds them */
		return;
	}
	if (!g->stop_issue && !(g->count && g->issued >= g->warmup_count + g->count))
		return;
	g->stop_issue = 1;
	for (size_t i = 0; i < g->n_conns; i++)
		if (g->conns[i] && g->conns[i]->qn)
			return;
	g->finished = 1;
	g->cpu1 = lg_cpu_ticks(g);
	if (g->t_last == 0)
		g->t_last = uv_hrtime();
	lg_stop_all(g);
}

static uint64_t idle_hold_start;

static void on_tick(uv_timer_t *t)
{
	struct lg *g = t->data;
	uint64_t now = uv_hrtime();
	if (g->idle) {
		if (g->t_last && !idle_hold_start)
			idle_hold_start = now;
		if (idle_hold_start && (double)(now - idle_hold_start) / 1e9 >= g->hold_s) {
			g->idle_rss_kb = lg_status_kb(g, "VmRSS");
			g->finished = 1;
			lg_stop_all(g);
		}
		return;
	}
	if (g->duration_s > 0 && g->measuring && !g->stop_issue &&
	    (double)(now - g->t_measure) / 1e9 >= g->duration_s) {
		g->stop_issue = 1;
		g->t_end_issue = now;
		lg_check_done(g);
	}
}

/* ---- results ---- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const uint32_t *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return (double)v[i] / 1000.0;
}

static void usage(void)
{
	fprintf(stderr,
	    "usage: loadgen (--socket PATH | --http HOST:PORT) --corpus INDEX.tsv\n"
	    "  [-c CONNECTIONS] [-d DEPTH] [--no-reuse] [--count N | --duration S]\n"
	    "  [--warmup N | --warmup-s S] [--pid PID]... [--match SUBSTR]\n"
	    "  [--json FILE] [--label TEXT] [--verdicts FILE] [--quiet]\n"
	    "  loadgen --socket PATH --idle N [--hold S] [--pid PID] [--json FILE]\n");
	exit(64);
}

static void raise_nofile(size_t want)
{
	struct rlimit r;
	if (getrlimit(RLIMIT_NOFILE, &r) != 0)
		return;
	if (r.rlim_cur < want + 64) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
}

int main(int argc, char **argv)
{
	struct lg g;
	memset(&g, 0, sizeof g);
	g.n_conns = 8;
	g.depth = 1;
	g.reuse = 1;
	g.hold_s = 2;
	const char *corpus = NULL, *match = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV() do { if (!v) usage(); i++; } while (0)
		if (!strcmp(a, "--socket")) { NEEDV(); g.socket = v; }
		else if (!strcmp(a, "--http")) {
			NEEDV();
			static char host[256];
			const char *colon = strrchr(v, ':');
			if (!colon || (size_t)(colon - v) >= sizeof host)
				usage();
			memcpy(host, v, (size_t)(colon - v));
			host[colon - v] = '\0';
			g.host = host;
			g.port = atoi(colon + 1);
			g.proto = LG_HTTP;
		}
		else if (!strcmp(a, "--corpus")) { NEEDV(); corpus = v; }
		else if (!strcmp(a, "--match")) { NEEDV(); match = v; }
		else if (!strcmp(a, "-c")) { NEEDV(); g.n_conns = strtoul(v, NULL, 10); }
		else if (!strcmp(a, "-d")) { NEEDV(); g.depth = strtoul(v, NULL, 10); }
		else if (!strcmp(a, "--no-reuse")) g.reuse = 0;
		else if (!strcmp(a, "--count")) { NEEDV(); g.count = strtoull(v, NULL, 10); }
		else if (!strcmp(a, "--duration")) { NEEDV(); g.duration_s = atof(v); }
		else if (!strcmp(a, "--warmup")) { NEEDV(); g.warmup_count = strtoull(v, NULL, 10); }
		else if (!strcmp(a, "--warmup-s")) { NEEDV(); g.warmup_s = atof(v); }
		else if (!strcmp(a, "--pid")) {
			NEEDV();
			if (g.n_pids < MAX_PIDS)
				g.pids[g.n_pids++] = (pid_t)atoi(v);
		}
		else if (!strcmp(a, "--json")) { NEEDV(); g.json_path = v; }
		else if (!strcmp(a, "--label")) { NEEDV(); g.label = v; }
		else if (!strcmp(a, "--verdicts")) { NEEDV(); g.verdicts_path = v; }
		else if (!strcmp(a, "--idle")) { NEEDV(); g.idle = strtoul(v, NULL, 10); }
		else if (!strcmp(a, "--hold")) { NEEDV(); g.hold_s = atof(v); }
		else if (!strcmp(a, "--quiet")) g.quiet = 1;
		else usage();
#undef NEEDV
	}
	if ((!g.socket && !g.host) || g.n_conns == 0 || g.depth == 0)
		usage();
	if (g.idle) {
		g.n_conns = g.idle;
		g.depth = 1;
	} else {
		if (!corpus || (g.count == 0 && g.duration_s <= 0))
			usage();
		if (!g.reuse)
			g.depth = 1;
		corpus_load(&g, corpus, match);
	}
	if (!g.label)
		g.label = "";
	raise_nofile(g.n_conns);
	if (g.verdicts_path) {
		g.verdicts = fopen(g.verdicts_path, "w");
		if (!g.verdicts)
			die("cannot write the verdicts file");
	}

	g.loop = uv_default_loop();
	g.conns = calloc(g.n_conns, sizeof *g.conns);
	if (!g.conns)
		die("out of memory");
	uv_timer_init(g.loop, &g.tick);
	g.tick.data = &g;
	uv_timer_start(&g.tick, on_tick, 5, 5);
	uint64_t kb0 = lg_status_kb(&g, "VmRSS");
	g.t_begin = uv_hrtime();
	if (g.warmup_s <= 0 && g.warmup_count == 0 && !g.idle) {
		g.measuring = 1;
		g.t_measure = g.t_begin;
		g.cpu0 = lg_cpu_ticks(&g);
	}
	for (size_t i = 0; i < g.n_conns; i++)
		conn_start(&g, i);
	uv_run(g.loop, UV_RUN_DEFAULT);

	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double self_cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	                  (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	double tck = (double)sysconf(_SC_CLK_TCK);
	uint64_t hwm = lg_status_kb(&g, "VmHWM");
	uint64_t rss = lg_status_kb(&g, "VmRSS");

	FILE *js = g.json_path ? fopen(g.json_path, "w") : NULL;
	if (g.idle) {
		/* RSS was sampled with every connection open, before the close */
		printf("idle connections: %zu opened, %zu answered PING, %" PRIu64
		       " errors; daemon RSS %" PRIu64 " kB before, %" PRIu64
		       " kB with all open, %" PRIu64 " kB peak\n",
		       g.idle_open, g.idle_ok, g.errors_conn, kb0, g.idle_rss_kb, hwm);
		if (js)
			fprintf(js, "{\"label\":\"%s\",\"mode\":\"idle\",\"connections\":%zu,"
			        "\"answered\":%zu,\"errors\":%" PRIu64 ",\"rss_before_kb\":%" PRIu64
			        ",\"rss_kb\":%" PRIu64 ",\"hwm_kb\":%" PRIu64 "}\n",
			        g.label, g.idle_open, g.idle_ok, g.errors_conn, kb0,
			        g.idle_rss_kb, hwm);
		if (js)
			fclose(js);
		return g.idle_ok == g.idle ? 0 : 1;
	}

	qsort(g.lat, g.n_lat, sizeof *g.lat, cmp_u32);
	double secs = g.t_last > g.t_measure ? (double)(g.t_last - g.t_measure) / 1e9 : 0;
	double rate = secs > 0 ? (double)g.measured_done / secs : 0;
	double cpu_s = g.n_pids ? (double)(g.cpu1 - g.cpu0) / tck : 0;
	double cpu_per_msg_ms = g.measured_done && g.n_pids
	    ? cpu_s * 1000.0 / (double)g.measured_done : 0;
	double p50 = pct(g.lat, g.n_lat, 0.50), p90 = pct(g.lat, g.n_lat, 0.90);
	double p99 = pct(g.lat, g.n_lat, 0.99);
	double mx = (double)g.lat_max_ns / 1e6;
	uint64_t errors = g.errors_reply + g.errors_conn + g.errors_proto;
	double mean_kb = g.measured_done ? (double)g.measured_bytes / 1024.0 /
	                                   (double)g.measured_done : 0;

	if (!g.quiet) {
		printf("%-28s %9s %8s %8s %8s %8s %8s %9s %8s %6s\n", "run", "msgs/s",
		       "p50 ms", "p90 ms", "p99 ms", "max ms", "cpu ms", "MB/s", "RSS MB", "errors");
	}
	printf("%-28s %9.0f %8.3f %8.3f %8.3f %8.2f %8.3f %9.1f %8.1f %6" PRIu64 "\n",
	       g.label[0] ? g.label : "loadgen", rate, p50, p90, p99, mx,
	       cpu_per_msg_ms, secs > 0 ? (double)g.measured_bytes / 1048576.0 / secs : 0,
	       (double)hwm / 1024.0, errors);
	if (js) {
		fprintf(js,
		    "{\"label\":\"%s\",\"mode\":\"%s\",\"connections\":%zu,\"depth\":%zu,"
		    "\"reuse\":%d,\"messages\":%" PRIu64 ",\"seconds\":%.4f,"
		    "\"msgs_per_s\":%.2f,\"mb_per_s\":%.3f,\"mean_kb\":%.2f,"
		    "\"p50_ms\":%.4f,\"p90_ms\":%.4f,\"p99_ms\":%.4f,\"max_ms\":%.4f,"
		    "\"daemon_cpu_s\":%.3f,\"daemon_cpu_ms_per_msg\":%.4f,"
		    "\"daemon_hwm_kb\":%" PRIu64 ",\"daemon_rss_kb\":%" PRIu64 ","
		    "\"loadgen_cpu_s\":%.3f,\"errors\":%" PRIu64 ",\"errors_reply\":%" PRIu64
		    ",\"errors_conn\":%" PRIu64 ",\"errors_proto\":%" PRIu64 ","
		    "\"actions\":{\"accept\":%" PRIu64 ",\"quarantine\":%" PRIu64
		    ",\"reject\":%" PRIu64 ",\"tempfail\":%" PRIu64 ",\"other\":%" PRIu64 "}}\n",
		    g.label, g.proto == LG_HTTP ? "http" : "alignd", g.n_conns, g.depth,
		    g.reuse, g.measured_done, secs, rate,
		    secs > 0 ? (double)g.measured_bytes / 1048576.0 / secs : 0, mean_kb,
		    p50, p90, p99, mx, cpu_s, cpu_per_msg_ms, hwm, rss, self_cpu, errors,
		    g.errors_reply, g.errors_conn, g.errors_proto, g.actions[0],
		    g.actions[1], g.actions[2], g.actions[3], g.actions[4]);
		fclose(js);
	}
	if (g.verdicts)
		fclose(g.verdicts);
	return errors ? 1 : 0;
}
