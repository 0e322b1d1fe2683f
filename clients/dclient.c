/* Blocking client of the alignd protocol with poll() deadlines. */
#include "clients/dclient.h"
#include "common/limits.h"
#include "protocol/reply.h"
#include "protocol/request.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/alignd/alignd.sock"
#define MAX_REPLY (16u * 1024 * 1024)

const char *dclient_default_socket(void)
{
	const char *e = getenv("ALIGND_SOCKET");
	return e && *e ? e : DEFAULT_SOCKET;
}

void dclient_init(struct dclient *c, int timeout_ms)
{
	c->fd = -1;
	c->timeout_ms = timeout_ms;
	buf_init(&c->in, MAX_REPLY);
}

/* "tcp:HOST:PORT" or "tcp:[v6]:PORT": the daemon's listen_tcp */
static int connect_tcp(struct dclient *c, const char *spec, char *err, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof host || !colon[1]) {
		snprintf(err, errlen, "want tcp:HOST:PORT, not tcp:%s", spec);
		return -1;
	}
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	char *h = host;
	size_t hl = strlen(h);
	if (hl > 2 && h[0] == '[' && h[hl - 1] == ']') {
		h[hl - 1] = '\0';
		h++;
	}
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	int rc = getaddrinfo(h, colon + 1, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", spec, gai_strerror(rc));
		return -1;
	}
	int fd = -1, saved = 0;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		/* within the client's timeout: a host that does not answer must
		 * not hold the MTA for the kernel's two minutes */
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0) {
			int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
			if (r < 0 && errno == EINPROGRESS) {
				struct pollfd pf = { .fd = fd, .events = POLLOUT };
				int soerr = 0;
				socklen_t sl = sizeof soerr;
				r = poll(&pf, 1, c->timeout_ms > 0 ? c->timeout_ms : -1);
				if (r == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
				    soerr == 0)
					r = 0;
				else
					errno = r == 0 ? ETIMEDOUT : soerr ? soerr : errno;
				if (r != 0)
					r = -1;
			}
			if (r == 0 && fcntl(fd, F_SETFL, fl) == 0)
				break;
		}
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "cannot connect to tcp:%s: %s", spec, strerror(saved));
		return -1;
	}
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->fd = fd;
	c->in.len = 0;
	return 0;
}

int dclient_connect(struct dclient *c, const char *path, char *err, size_t errlen)
{
	if (strncmp(path, "tcp:", 4) == 0)
		return connect_tcp(c, path + 4, err, errlen);
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long");
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	/* a local connect() does not block for long: the listen backlog is the
	 * only wait, and a full one fails at once with EAGAIN */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	c->fd = fd;
	c->in.len = 0;
	return 0;
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = ev };
	for (;;) {
		int rc = poll(&p, 1, timeout_ms);
		if (rc < 0 && errno == EINTR)
			continue;
		return rc;
	}
}

int dclient_send(struct dclient *c, const void *data, size_t len, char *err, size_t errlen)
{
	const char *p = data;
	while (len > 0) {
		if (wait_fd(c->fd, POLLOUT, c->timeout_ms) <= 0) {
			snprintf(err, errlen, "timed out sending to the daemon");
			return -1;
		}
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			snprintf(err, errlen, "send: %s", strerror(errno));
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static char *dupn(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static int push(char ***arr, size_t *n, const char *s, size_t len)
{
	char **na = realloc(*arr, (*n + 1) * sizeof(*na));
	if (!na)
		return -1;
	*arr = na;
	na[*n] = dupn(s, len);
	if (!na[*n])
		return -1;
	(*n)++;
	return 0;
}

/* A field the daemon sends once: a second one makes the reply invalid. */
static int set_once(char **dst, const char *v, size_t vl)
{
	if (*dst)
		return -1;
	*dst = dupn(v, vl);
	return *dst ? 0 : -1;
}

int dreply_parse(const char *buf, size_t len, struct dreply *r)
{
	memset(r, 0, sizeof(*r));
	r->code = proto_reply_code(buf, len);
	if (r->code < 100)
		return -1;        /* "053" is no status the daemon sends */
	const char *p = buf, *end = buf + len;
	int first = 1, in_sig = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (ll && p[ll - 1] == '\r')
			ll--;
		if (ll == 0)
			break;
		/* the daemon never sends a CR or NUL inside a line: a reply with
		 * one is not the daemon's, and none reaches a header we add */
		if (memchr(p, '\r', ll) != NULL || memchr(p, '\0', ll) != NULL)
			return -1;
		if (!first && (*p == ' ' || *p == '\t')) {
			/* a continuation line: only DKIM-Signature fields have them */
			if (in_sig) {
				char **last = &r->signatures[r->n_signatures - 1];
				size_t ol = strlen(*last);
				char *n = realloc(*last, ol + 1 + ll + 1);
				if (!n)
					return -1;
				n[ol] = '\n';
				memcpy(n + ol + 1, p, ll);
				n[ol + 1 + ll] = '\0';
				*last = n;
			}
		} else if (first) {
			r->status = dupn(p + (ll > 13 ? 13 : ll), ll > 13 ? ll - 13 : 0);
			first = 0;
		} else {
			const char *colon = memchr(p, ':', ll);
			in_sig = 0;
			if (colon) {
				size_t nlen = (size_t)(colon - p);
				const char *v = colon + 1;
				size_t vl = ll - nlen - 1;
				while (vl && *v == ' ') {
					v++;
					vl--;
				}
#define IS(lit) (nlen == sizeof(lit) - 1 && strncasecmp(p, lit, nlen) == 0)
				int rc = 0;
				in_sig = IS("DKIM-Signature");
				if (in_sig)
					rc = push(&r->signatures, &r->n_signatures, v, vl);
				else if (IS("Action"))
					rc = set_once(&r->action, v, vl);
				else if (IS("Score")) {
					/* strtod reads to a NUL: only this line's bytes */
					char num[64];
					size_t k = vl < sizeof num - 1 ? vl : sizeof num - 1;
					memcpy(num, v, k);
					num[k] = '\0';
					r->score = strtod(num, NULL);
				}
				else if (IS("SMTP-Reply"))
					rc = set_once(&r->smtp_reply, v, vl);
				else if (IS("Symbol"))
					rc = push(&r->symbols, &r->n_symbols, v, vl);
				else if (IS("Authentication-Results"))
					rc = set_once(&r->auth_results, v, vl);
				else if (IS("Add-Header"))
					rc = push(&r->add_headers, &r->n_add_headers, v, vl);
				else if (IS("Trace"))
					rc = push(&r->trace, &r->n_trace, v, vl);
				else
					rc = push(&r->fields, &r->n_fields, p, ll);
#undef IS
				if (rc < 0)
					return -1;
			}
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	return 0;
}

static void free_arr(char **a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(a[i]);
	free(a);
}

void dreply_free(struct dreply *r)
{
	free(r->status);
	free(r->action);
	free(r->smtp_reply);
	free(r->auth_results);
	free_arr(r->symbols, r->n_symbols);
	free_arr(r->add_headers, r->n_add_headers);
	free_arr(r->trace, r->n_trace);
	free_arr(r->fields, r->n_fields);
	free_arr(r->signatures, r->n_signatures);
	memset(r, 0, sizeof(*r));
}

/* The next complete reply: its length in c->in, or -1. */
static long read_reply(struct dclient *c, char *err, size_t errlen)
{
	for (;;) {
		long n = c->in.len ? proto_reply_length(c->in.data, c->in.len) : 0;
		if (n < 0) {
			snprintf(err, errlen, "the daemon's reply is not an alignd reply");
			return -1;
		}
		if (n > 0)
			return n;
		if (wait_fd(c->fd, POLLIN, c->timeout_ms) <= 0) {
			snprintf(err, errlen, "timed out waiting for the daemon's reply");
			return -1;
		}
		if (buf_reserve(&c->in, 65536) < 0) {
			snprintf(err, errlen, "reply too large");
			return -1;
		}
		ssize_t got = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len - 1, 0);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got <= 0) {
			snprintf(err, errlen, "the daemon closed the connection%s%s",
			         got < 0 ? ": " : "", got < 0 ? strerror(errno) : "");
			return -1;
		}
		c->in.len += (size_t)got;
		c->in.data[c->in.len] = '\0';
	}
}

int dclient_read(struct dclient *c, struct dreply *r, char *err, size_t errlen)
{
	long n = read_reply(c, err, errlen);
	if (n < 0)
		return -1;
	int rc = dreply_parse(c->in.data, (size_t)n, r);
	buf_consume(&c->in, (size_t)n);
	if (rc < 0)
		snprintf(err, errlen, "cannot parse the daemon's reply");
	return rc;
}

int dclient_sign(struct dclient *c, const char *msg, size_t len,
                 int *code_r, char **reply_r, char *err, size_t errlen)
{
	char *head;
	size_t hl;
	struct proto_envelope env = { .sign = 1 };
	*reply_r = NULL;
	if (proto_write_scan_head(&env, len, &head, &hl) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int rc = dclient_send(c, head, hl, err, errlen);
	free(head);
	if (rc == 0)
		rc = dclient_send(c, msg, len, err, errlen);
	/* after a failed send the daemon's reply (413 and close) says more */
	char e2[256];
	long n = read_reply(c, rc == 0 ? err : e2, rc == 0 ? errlen : sizeof e2);
	if (n < 0)
		return -1;
	*code_r = proto_reply_code(c->in.data, (size_t)n);
	*reply_r = malloc((size_t)n + 1);
	if (*reply_r == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(*reply_r, c->in.data, (size_t)n);
	(*reply_r)[n] = '\0';
	buf_consume(&c->in, (size_t)n);
	return 0;
}

int dclient_scan(struct dclient *c, const struct proto_envelope *env,
                 const char *msg, size_t len, struct dreply *r,
                 char *err, size_t errlen)
{
	char *head;
	size_t hl;
	if (proto_write_scan_head(env, len, &head, &hl) < 0) {
		snprintf(err, errlen, "envelope value with a line break or NUL");
		return -1;
	}
	int rc = dclient_send(c, head, hl, err, errlen);
	free(head);
	if (rc == 0)
		rc = dclient_send(c, msg, len, err, errlen);
	if (rc < 0) {
		/* the daemon may have refused the request (413) and closed: its
		 * reply says why, so read it if it is there */
		char e2[256];
		if (dclient_read(c, r, e2, sizeof(e2)) == 0)
			return 0;
		return -1;
	}
	return dclient_read(c, r, err, errlen);
}

int dclient_scan_fd(struct dclient *c, const struct proto_envelope *env,
                    int fd, size_t len, struct dreply *r,
                    char *err, size_t errlen)
{
	char *head;
	size_t hl;
	if (proto_write_scan_head(env, len, &head, &hl) < 0) {
		snprintf(err, errlen, "envelope value with a line break or NUL");
		return -1;
	}
	int rc = dclient_send(c, head, hl, err, errlen);
	free(head);
	char chunk[64 * 1024];
	size_t left = len;
	while (rc == 0 && left > 0) {
		ssize_t n = read(fd, chunk, left < sizeof(chunk) ? left : sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* the daemon waits for bytes that will not come: drop the
			 * connection rather than leave it mid-request */
			snprintf(err, errlen, "spool file: %s", n < 0 ? strerror(errno) : "ends early");
			dclient_close(c);
			return -1;
		}
		left -= (size_t)n;
		rc = dclient_send(c, chunk, (size_t)n, err, errlen);
	}
	if (rc < 0) {
		char e2[256];
		if (dclient_read(c, r, e2, sizeof(e2)) == 0)
			return 0;
		return -1;
	}
	return dclient_read(c, r, err, errlen);
}

int dclient_split_smtp(const char *s, char code[4], char xcode[16],
                       char *text, size_t textlen)
{
	if (!s || !isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) ||
	    !isdigit((unsigned char)s[2]) || s[0] < '2' || s[0] > '5' ||
	    (s[3] != ' ' && s[3] != '\0'))
		return -1;
	memcpy(code, s, 3);
	code[3] = '\0';
	xcode[0] = '\0';
	const char *p = s + 3;
	while (*p == ' ')
		p++;
	/* RFC 3463: class "." subject "." detail, class matching the code */
	size_t n = 0;
	int dots = 0, ok = p[0] == s[0] && p[1] == '.';
	while (ok && p[n] && p[n] != ' ') {
		if (p[n] == '.')
			dots++;
		else if (!isdigit((unsigned char)p[n]))
			ok = 0;
		n++;
	}
	if (ok && dots == 2 && n < 16 && p[n - 1] != '.') {
		memcpy(xcode, p, n);
		xcode[n] = '\0';
		p += n;
		while (*p == ' ')
			p++;
	}
	size_t o = 0;
	for (; *p && o + 1 < textlen; p++)
		text[o++] = (*p == '%' || (unsigned char)*p < 0x20 || *p == 0x7f) ? '?' : *p;
	if (textlen)
		text[o] = '\0';
	return 0;
}

/* Skips white space, folding and (nested) comments: RFC 5322 3.2.2 CFWS.
 * -1 when a comment does not end before the value does. */
static int skip_cfws(const char *v, size_t len, size_t *i)
{
	for (;;) {
		while (*i < len && (v[*i] == ' ' || v[*i] == '\t' || v[*i] == '\r' || v[*i] == '\n'))
			(*i)++;
		if (*i >= len || v[*i] != '(')
			return 0;
		size_t depth = 0;
		for (;;) {
			if (*i >= len)
				return -1;
			char ch = v[(*i)++];
			if (ch == '\\') {
				if (*i >= len)
					return -1;
				(*i)++;           /* quoted-pair: "\)" does not close */
			} else if (ch == '(') {
				depth++;
			} else if (ch == ')' && --depth == 0) {
				break;
			}
		}
	}
}

/* RFC 2045 5.1 token characters (RFC 8601 2.2: authserv-id = value). */
static int is_token_char(unsigned char ch)
{
	return ch > 0x20 && ch < 0x7f && !strchr("()<>@,;:\\\"/[]?=", ch);
}

static int read_authserv_id(const char *v, size_t len, char *id, size_t idlen)
{
	size_t i = 0, o = 0;
	if (idlen < 2 || skip_cfws(v, len, &i) < 0 || i >= len)
		return -1;
	if (v[i] == '"') {
		/* RFC 5322 3.2.4 quoted-string: quoted-pairs unescaped, folding
		 * (CR, LF) invisible; white space or controls left inside make
		 * it no host name, and so unreadable */
		for (i++;; i++) {
			if (i >= len)
				return -1;
			unsigned char ch = (unsigned char)v[i];
			if (ch == '"')
				break;
			if (ch == '\r' || ch == '\n')
				continue;
			if (ch == '\\') {
				if (++i >= len)
					return -1;
				ch = (unsigned char)v[i];
			}
			if (ch == ' ' || ch == '\t') {
				if (o == 0)
					continue;     /* leading white space */
				size_t j = i;   /* trailing white space is allowed */
				while (j < len && (v[j] == ' ' || v[j] == '\t' || v[j] == '\r' || v[j] == '\n'))
					j++;
				if (j < len && v[j] == '"') {
					i = j - 1;
					continue;
				}
				return -1;
			}
			if (ch < 0x20 || ch == 0x7f || o + 1 >= idlen)
				return -1;
			id[o++] = (char)tolower(ch);
		}
		i++;
	} else {
		while (i < len && is_token_char((unsigned char)v[i])) {
			if (o + 1 >= idlen)
				return -1;
			id[o++] = (char)tolower((unsigned char)v[i++]);
		}
	}
	/* a fully-qualified name with its root dot is the same name */
	while (o > 0 && id[o - 1] == '.')
		o--;
	id[o] = '\0';
	if (o == 0)
		return -1;
	if (skip_cfws(v, len, &i) < 0)
		return -1;
	if (i >= len)
		return 1;             /* the id alone (a configured value) */
	if (isdigit((unsigned char)v[i])) {
		/* RFC 8601 2.2 authres-version */
		while (i < len && isdigit((unsigned char)v[i]))
			i++;
		if (skip_cfws(v, len, &i) < 0)
			return -1;
	}
	return i < len && v[i] == ';' ? 0 : -1;
}

int dclient_ar_authserv_id(const char *v, size_t len, char *id, size_t idlen)
{
	int rc = read_authserv_id(v, len, id, idlen);
	if (rc < 0 && idlen)
		id[0] = '\0';
	return rc;
}

int dclient_ar_forged(const char *value, size_t len, const char *our_id)
{
	char id[LIM_AUTHSERV_ID];
	if (!our_id || !our_id[0])
		return 1;
	if (dclient_ar_authserv_id(value, len, id, sizeof(id)) != 0)
		return 1;
	return strcmp(id, our_id) == 0;
}

void dclient_close(struct dclient *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	buf_free(&c->in);
	buf_init(&c->in, MAX_REPLY);
}
