/* Blocking client of the alignd protocol with poll() deadlines; TLS
 * (OpenSSL) on a non-blocking socket for tls:HOST:PORT. */
#include "clients/dclient.h"
#include "common/limits.h"
#include "protocol/reply.h"
#include "protocol/request.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define DEFAULT_SOCKET "/run/alignd/alignd.sock"
#define MAX_REPLY (16u * 1024 * 1024)

const char *dclient_default_socket(void)
{
	const char *e = getenv("ALIGND_SOCKET");
	return e && *e ? e : DEFAULT_SOCKET;
}

struct dclient_tls {
	SSL_CTX *ctx;
};

void dclient_init(struct dclient *c, int timeout_ms)
{
	c->fd = -1;
	c->timeout_ms = timeout_ms;
	c->tls = NULL;
	c->ssl = NULL;
	buf_init(&c->in, MAX_REPLY);
}

/* The first reason OpenSSL queued on this thread; the queue is cleared. */
static const char *ossl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	snprintf(buf, len, "%s", r ? r : e ? "OpenSSL error" : "connection closed");
	ERR_clear_error();
	return buf;
}

int dclient_tls_setup(const char *spec, const char *ca_file, const char *cert_file,
                      const char *key_file, struct dclient_tls **out,
                      char *err, size_t errlen)
{
	*out = NULL;
	int opts = (ca_file && *ca_file) || (cert_file && *cert_file) || (key_file && *key_file);
	if (strncmp(spec, "tls:", 4) != 0) {
		if (opts) {
			snprintf(err, errlen, "--tls-ca, --tls-cert and --tls-key need a tls:HOST:PORT "
			         "daemon address, not %s", spec);
			return -1;
		}
		return 0;
	}
	if (!(cert_file && *cert_file) != !(key_file && *key_file)) {
		snprintf(err, errlen, "--tls-cert and --tls-key go together");
		return -1;
	}
	struct dclient_tls *t = calloc(1, sizeof(*t));
	char r[256];
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ERR_clear_error();
	t->ctx = SSL_CTX_new(TLS_client_method());
	if (!t->ctx) {
		snprintf(err, errlen, "TLS: %s", ossl_reason(r, sizeof r));
		goto fail;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	if (ca_file && *ca_file) {
		if (access(ca_file, R_OK) < 0) {
			snprintf(err, errlen, "--tls-ca %s: %s", ca_file, strerror(errno));
			goto fail;
		}
		if (SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL) != 1) {
			snprintf(err, errlen, "--tls-ca %s: %s", ca_file, ossl_reason(r, sizeof r));
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
		snprintf(err, errlen, "TLS: the system's CA store: %s", ossl_reason(r, sizeof r));
		goto fail;
	}
	if (cert_file && *cert_file) {
		if (access(cert_file, R_OK) < 0 || access(key_file, R_OK) < 0) {
			int bad = access(cert_file, R_OK) < 0;
			snprintf(err, errlen, "%s %s: %s", bad ? "--tls-cert" : "--tls-key",
			         bad ? cert_file : key_file, strerror(errno));
			goto fail;
		}
		if (SSL_CTX_use_certificate_chain_file(t->ctx, cert_file) != 1) {
			snprintf(err, errlen, "--tls-cert %s: %s", cert_file, ossl_reason(r, sizeof r));
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(t->ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(t->ctx) != 1) {
			snprintf(err, errlen, "--tls-key %s: %s", key_file, ossl_reason(r, sizeof r));
			goto fail;
		}
	}
	*out = t;
	return 0;
fail:
	dclient_tls_free(&t);
	return -1;
}

void dclient_tls_free(struct dclient_tls **tp)
{
	struct dclient_tls *t = *tp;
	*tp = NULL;
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

/* OpenSSL writes to the socket with write(): a daemon that has closed
 * (after refusing our certificate, say) would raise SIGPIPE and kill the
 * MTA's process. Around each TLS call SIGPIPE is blocked in this thread,
 * and one it raised is taken off before the old mask returns. */
struct nopipe {
	sigset_t old;
	int was_pending;
};

static void nopipe_begin(struct nopipe *np)
{
	sigset_t pipe, pending;
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	sigpending(&pending);
	np->was_pending = sigismember(&pending, SIGPIPE) == 1;
	pthread_sigmask(SIG_BLOCK, &pipe, &np->old);
}

static void nopipe_end(struct nopipe *np)
{
	sigset_t pipe, pending;
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	sigpending(&pending);
	if (!np->was_pending && sigismember(&pending, SIGPIPE) == 1) {
		const struct timespec none = { 0, 0 };
		int saved = errno;
		while (sigtimedwait(&pipe, NULL, &none) < 0 && errno == EINTR)
			;
		errno = saved;
	}
	pthread_sigmask(SIG_SETMASK, &np->old, NULL);
}

/* Waits for what OpenSSL needs after a call that returned rc: 1 when it
 * may be retried, 0 on the deadline, -1 when the call failed for good. */
static int tls_wait(struct dclient *c, int rc)
{
	int e = SSL_get_error(c->ssl, rc);
	if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
		return -1;
	struct pollfd p = { .fd = c->fd, .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT };
	for (;;) {
		int n = poll(&p, 1, c->timeout_ms > 0 ? c->timeout_ms : -1);
		if (n < 0 && errno == EINTR)
			continue;
		return n > 0 ? 1 : 0;
	}
}

/* The handshake on the connected socket; the daemon's certificate must
 * chain to the CAs and name host (a DNS name, or an IP address in its
 * subjectAltName). */
static int tls_start(struct dclient *c, const char *host, const char *spec,
                     char *err, size_t errlen)
{
	char r[256];
	ERR_clear_error();
	c->ssl = SSL_new(c->tls->ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
		snprintf(err, errlen, "TLS: %s", ossl_reason(r, sizeof r));
		return -1;
	}
	unsigned char ip[16];
	int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
	if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host) != 1
	          : (SSL_set1_host(c->ssl, host) != 1 ||
	             SSL_set_tlsext_host_name(c->ssl, host) != 1)) {
		snprintf(err, errlen, "TLS: cannot check the name %s: %s", host, ossl_reason(r, sizeof r));
		return -1;
	}
	SSL_set_connect_state(c->ssl);
	for (;;) {
		struct nopipe np;
		nopipe_begin(&np);
		int rc = SSL_do_handshake(c->ssl);
		nopipe_end(&np);
		if (rc == 1)
			return 0;
		int w = tls_wait(c, rc);
		if (w > 0)
			continue;
		if (w == 0) {
			snprintf(err, errlen, "TLS handshake with tls:%s timed out", spec);
			return -1;
		}
		long vr = SSL_get_verify_result(c->ssl);
		if (vr != X509_V_OK) {
			ERR_clear_error();
			snprintf(err, errlen, "TLS handshake with tls:%s failed: the daemon's certificate: %s",
			         spec, X509_verify_cert_error_string(vr));
		} else {
			snprintf(err, errlen, "TLS handshake with tls:%s failed: %s", spec,
			         ossl_reason(r, sizeof r));
		}
		return -1;
	}
}

/* "tcp:HOST:PORT" or "tcp:[v6]:PORT": the daemon's listen_tcp; tls set
 * for "tls:" */
static int connect_tcp(struct dclient *c, const char *spec, int tls, char *err, size_t errlen)
{
	char host[256];
	const char *scheme = tls ? "tls" : "tcp";
	const char *colon = strrchr(spec, ':');
	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof host || !colon[1]) {
		snprintf(err, errlen, "want %s:HOST:PORT, not %s:%s", scheme, scheme, spec);
		return -1;
	}
	if (tls && !c->tls) {
		snprintf(err, errlen, "tls:%s: no TLS settings were made for it", spec);
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
		snprintf(err, errlen, "cannot connect to %s:%s: %s", scheme, spec, strerror(saved));
		return -1;
	}
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->fd = fd;
	c->in.len = 0;
	if (tls) {
		/* OpenSSL on a non-blocking socket, every wait a poll() with the
		 * timeout */
		int fl = fcntl(fd, F_GETFL);
		if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
		    tls_start(c, h, spec, err, errlen) < 0) {
			if (fl < 0)
				snprintf(err, errlen, "fcntl: %s", strerror(errno));
			dclient_close(c);
			return -1;
		}
	}
	return 0;
}

int dclient_connect(struct dclient *c, const char *path, char *err, size_t errlen)
{
	if (strncmp(path, "tcp:", 4) == 0)
		return connect_tcp(c, path + 4, 0, err, errlen);
	if (strncmp(path, "tls:", 4) == 0)
		return connect_tcp(c, path + 4, 1, err, errlen);
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

static int tls_send(struct dclient *c, const char *p, size_t len, char *err, size_t errlen)
{
	char r[256];
	ERR_clear_error();
	while (len > 0) {
		struct nopipe np;
		nopipe_begin(&np);
		int n = SSL_write(c->ssl, p, len > (1u << 30) ? (1 << 30) : (int)len);
		nopipe_end(&np);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		int w = tls_wait(c, n);
		if (w > 0)
			continue;
		if (w == 0)
			snprintf(err, errlen, "timed out sending to the daemon");
		else
			snprintf(err, errlen, "TLS send: %s", ossl_reason(r, sizeof r));
		return -1;
	}
	return 0;
}

int dclient_send(struct dclient *c, const void *data, size_t len, char *err, size_t errlen)
{
	const char *p = data;
	if (c->ssl)
		return tls_send(c, p, len, err, errlen);
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

/* Some plaintext into c->in (room reserved): 0, or -1 with a reason. A
 * daemon that refuses the client certificate says so with an alert that
 * arrives here, after the client's side of a TLS 1.3 handshake ended. */
static int tls_recv(struct dclient *c, char *err, size_t errlen)
{
	char r[256];
	size_t room = c->in.cap - c->in.len - 1;
	ERR_clear_error();
	for (;;) {
		struct nopipe np;
		nopipe_begin(&np);
		int n = SSL_read(c->ssl, c->in.data + c->in.len, room > INT_MAX ? INT_MAX : (int)room);
		nopipe_end(&np);
		if (n > 0) {
			c->in.len += (size_t)n;
			c->in.data[c->in.len] = '\0';
			return 0;
		}
		int e = SSL_get_error(c->ssl, n);
		int w = tls_wait(c, n);
		if (w > 0)
			continue;
		if (w == 0)
			snprintf(err, errlen, "timed out waiting for the daemon's reply");
		else if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
			snprintf(err, errlen, "the daemon closed the connection");
		else
			snprintf(err, errlen, "the daemon closed the connection: TLS: %s",
			         ossl_reason(r, sizeof r));
		return -1;
	}
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
		if (!c->ssl && wait_fd(c->fd, POLLIN, c->timeout_ms) <= 0) {
			snprintf(err, errlen, "timed out waiting for the daemon's reply");
			return -1;
		}
		if (buf_reserve(&c->in, 65536) < 0) {
			snprintf(err, errlen, "reply too large");
			return -1;
		}
		if (c->ssl) {
			if (tls_recv(c, err, errlen) < 0)
				return -1;
			continue;
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
	if (c->ssl) {
		/* close_notify if the socket takes it now; never waits */
		struct nopipe np;
		nopipe_begin(&np);
		(void)SSL_shutdown(c->ssl);
		nopipe_end(&np);
		SSL_free(c->ssl);
		c->ssl = NULL;
		ERR_clear_error();
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	buf_free(&c->in);
	buf_init(&c->in, MAX_REPLY);
}
