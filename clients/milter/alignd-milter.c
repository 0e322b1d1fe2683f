/* alignd-milter: a libmilter filter (Postfix smtpd_milters, Sendmail) that
 * asks alignd about each message at end of DATA and acts on the verdict;
 * outbound mail (an authenticated client, an internal network, or a
 * submission service, as configured) is signed instead (SIGN).
 * libmilter runs one thread per MTA connection; each session context owns
 * its envelope, its message copy (memory, then an unlinked file in $TMPDIR)
 * and its connection to the daemon.
 * Security stance: trusts the MTA's envelope, not the message's headers. */
#include "clients/dclient.h"
#include "common/limits.h"
#include "common/netprefix.h"
#include "protocol/request.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#define AR_NAME "Authentication-Results"
/* classes of incoming A-R fields besides an index into sess.ar_ids */
#define AR_UNREAD 0xfe               /* no authserv-id can be read */
#define AR_UNKNOWN 0xff              /* one more distinct id than we tell apart */
_Static_assert(LIM_CLIENT_AR_IDS < AR_UNREAD, "A-R classes fit in a byte");
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_QUARANTINE_HEADER "X-Alignd-Quarantine"

enum fallback { FB_TEMPFAIL = 0, FB_ACCEPT };
enum oversize { OV_TEMPFAIL = 0, OV_ACCEPT, OV_REJECT };

static struct {
	const char *milter_conn;      /* libmilter spec: unix:/path, inet:port@host */
	const char *daemon_socket;
	const char *tls_ca, *tls_cert, *tls_key;
	struct dclient_tls *tls;      /* for a tls:HOST:PORT daemon, shared by all threads */
	int timeout_ms;
	enum fallback fallback;
	const char *authserv_id;      /* NULL: taken from the daemon's reply */
	int quarantine_hold;          /* smfi_quarantine() on quarantine */
	int quarantine_header;        /* add a marker header on quarantine */
	const char *quarantine_header_name;
	size_t max_size;
	enum oversize oversize;       /* messages over max_size */
	long socket_mode;             /* -1: leave as created */
	int use_syslog;
	int debug;
	/* outbound mail: signed by the daemon, not checked */
	int outbound_auth;            /* SASL-authenticated clients ({auth_authen}) */
	struct net_prefix internal[LIM_CLIENT_INTERNAL_NETS];
	size_t n_internal;
	const char *outbound_daemons; /* {daemon_name} values, comma-separated */
} opt;

static void logmsg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logmsg(int prio, const char *fmt, ...)
{
	if (prio == LOG_DEBUG && !opt.debug)
		return;
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* untrusted text (addresses, daemon text) ends up here: printable only */
	for (char *p = line; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (opt.use_syslog)
		syslog(prio, "%s", line);
	else
		fprintf(stderr, "alignd-milter: %s\n", line);
}

struct sess {
	int leadspc;                  /* MTA keeps the space after the colon */
	char client_ip[INET6_ADDRSTRLEN];
	const char *conn_outbound;    /* why this connection's mail is outbound, or NULL */
	const char *outbound;         /* why the current message is, or NULL */
	char *helo;
	/* the message in progress */
	int have_from;
	char *mail_from;              /* "" for the null sender */
	char **rcpt;
	size_t n_rcpt;
	/* the message as the daemon gets it (header section and body, CRLF):
	 * in memory up to LIM_CLIENT_MEMORY bytes, then all of it in an
	 * unlinked spool file, so that a transaction holds little memory */
	struct buf msg;
	int spool_fd;                 /* -1: all in msg */
	int spool_failed;             /* a spool write failed: no verdict possible */
	size_t msg_len;               /* bytes so far, wherever they are */
	int oversize;
	/* every incoming A-R field, so that each one claiming our id can be
	 * removed (RFC 8601 5), however many: one byte each, the class of its
	 * authserv-id (an index into ar_ids, AR_UNREAD or AR_UNKNOWN) */
	unsigned char *ar_cls;
	size_t ar_seen, ar_cap;       /* A-R fields so far (chgheader index) */
	int ar_too_many;              /* more than LIM_MAX_HEADERS of them */
	char ar_ids[LIM_CLIENT_AR_IDS][LIM_AUTHSERV_ID];
	unsigned n_ar_ids;
	/* the daemon */
	struct dclient dc;
	int dc_scans;                 /* scans answered on this connection */
};

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");
	if (!d)
		logmsg(LOG_ERR, "out of memory");
	return d;
}

static void sess_reset_message(struct sess *s)
{
	s->outbound = NULL;
	free(s->mail_from);
	s->mail_from = NULL;
	s->have_from = 0;
	for (size_t i = 0; i < s->n_rcpt; i++)
		free(s->rcpt[i]);
	free(s->rcpt);
	s->rcpt = NULL;
	s->n_rcpt = 0;
	buf_free(&s->msg);
	buf_init(&s->msg, LIM_CLIENT_MEMORY);
	if (s->spool_fd >= 0)
		close(s->spool_fd);
	s->spool_fd = -1;
	s->spool_failed = 0;
	s->msg_len = 0;
	s->oversize = 0;
	free(s->ar_cls);
	s->ar_cls = NULL;
	s->ar_seen = s->ar_cap = 0;
	s->ar_too_many = 0;
	s->n_ar_ids = 0;
}

static struct sess *sess_get(SMFICTX *ctx)
{
	struct sess *s = smfi_getpriv(ctx);
	if (s)
		return s;
	s = calloc(1, sizeof(*s));
	if (!s) {
		logmsg(LOG_ERR, "out of memory");
		return NULL;
	}
	buf_init(&s->msg, LIM_CLIENT_MEMORY);
	s->spool_fd = -1;
	dclient_init(&s->dc, opt.timeout_ms);
	s->dc.tls = opt.tls;
	if (smfi_setpriv(ctx, s) != MI_SUCCESS) {
		free(s);
		return NULL;
	}
	return s;
}

/* Addresses come as "<a@b>" (or bare); the daemon wants them bare. */
static char *strip_angles(const char *a)
{
	size_t n = strlen(a);
	if (n >= 2 && a[0] == '<' && a[n - 1] == '>') {
		char *d = malloc(n - 1);
		if (d) {
			memcpy(d, a + 1, n - 2);
			d[n - 2] = '\0';
		}
		return d;
	}
	return xstrdup(a);
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += (size_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* A new unlinked file in $TMPDIR (or /tmp). -1 on failure. */
static int spool_open(void)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	snprintf(path, sizeof(path), "%s/alignd-milter.XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0) {
		logmsg(LOG_ERR, "cannot create a spool file in %s: %s", dir && *dir ? dir : "/tmp",
		       strerror(errno));
		return -1;
	}
	unlink(path);
	return fd;
}

/* Appends message bytes: to memory while they fit in LIM_CLIENT_MEMORY,
 * else to the spool file (which then takes what memory held). Past
 * max_size only the count goes on. */
static void msg_append(struct sess *s, const void *data, size_t len)
{
	if (s->oversize || s->spool_failed)
		return;
	if (len > opt.max_size - s->msg_len) {
		s->oversize = 1;
		buf_free(&s->msg);
		buf_init(&s->msg, LIM_CLIENT_MEMORY);
		return;
	}
	s->msg_len += len;
	if (s->spool_fd < 0 && buf_add(&s->msg, data, len) == 0)
		return;
	if (s->spool_fd < 0) {
		s->spool_fd = spool_open();
		if (s->spool_fd < 0 || write_all(s->spool_fd, s->msg.data, s->msg.len) < 0) {
			s->spool_failed = 1;
			return;
		}
		buf_free(&s->msg);
		buf_init(&s->msg, LIM_CLIENT_MEMORY);
	}
	if (write_all(s->spool_fd, data, len) < 0) {
		logmsg(LOG_ERR, "cannot write the spool file: %s", strerror(errno));
		s->spool_failed = 1;
	}
}

/* Appends s with every bare LF turned into CRLF (folded header values). */
static void add_crlf(struct buf *b, const char *s)
{
	for (const char *p = s; *p; p++) {
		if (*p == '\n' && (p == s || p[-1] != '\r'))
			buf_add(b, "\r", 1);
		buf_add(b, p, 1);
	}
}

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                             unsigned long f2, unsigned long f3,
                             unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3)
{
	struct sess *s = sess_get(ctx);
	if (!s)
		return SMFIS_TEMPFAIL;
	unsigned long want = SMFIF_ADDHDRS | SMFIF_CHGHDRS;
	if (opt.quarantine_hold)
		want |= SMFIF_QUARANTINE;
	if ((f0 & want) != want) {
		logmsg(LOG_ERR, "the MTA does not allow the header changes%s alignd-milter needs",
		       opt.quarantine_hold ? " and the quarantine (-Q hold)" : "");
		return SMFIS_REJECT;
	}
	*pf0 = want;
	*pf1 = 0;
	/* keep header values byte-exact (DKIM "simple" canonicalization) */
	s->leadspc = (f1 & SMFIP_HDR_LEADSPC) != 0;
	*pf1 = s->leadspc ? SMFIP_HDR_LEADSPC : 0;
	*pf2 = 0;
	*pf3 = 0;
	return SMFIS_CONTINUE;
}

/* Is ip inside one of the --internal networks? */
static int in_internal(const char *ip)
{
	for (size_t i = 0; i < opt.n_internal; i++)
		if (net_prefix_match_text(&opt.internal[i], ip))
			return 1;
	return 0;
}

/* Is v one of the comma-separated words of list? */
static int in_list(const char *list, const char *v)
{
	size_t vl = strlen(v);
	for (const char *p = list; *p;) {
		size_t n = strcspn(p, ",");
		if (n == vl && strncmp(p, v, n) == 0)
			return 1;
		p += n;
		if (*p)
			p++;
	}
	return 0;
}

static sfsistat on_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *sa)
{
	struct sess *s = sess_get(ctx);
	if (!s)
		return SMFIS_TEMPFAIL;
	s->client_ip[0] = '\0';
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)sa)->sin_addr,
		          s->client_ip, sizeof(s->client_ip));
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)sa)->sin6_addr,
		          s->client_ip, sizeof(s->client_ip));
	s->conn_outbound = NULL;
	if (s->client_ip[0] && in_internal(s->client_ip))
		s->conn_outbound = "internal network";
	const char *dn = smfi_getsymval(ctx, "{daemon_name}");
	if (!s->conn_outbound && dn && opt.outbound_daemons && in_list(opt.outbound_daemons, dn))
		s->conn_outbound = "submission service";
	logmsg(LOG_DEBUG, "connect from %s [%s]%s%s", hostname ? hostname : "?",
	       s->client_ip[0] ? s->client_ip : "local",
	       s->conn_outbound ? ": outbound, " : "", s->conn_outbound ? s->conn_outbound : "");
	return SMFIS_CONTINUE;
}

static sfsistat on_helo(SMFICTX *ctx, char *helo)
{
	struct sess *s = sess_get(ctx);
	if (!s)
		return SMFIS_TEMPFAIL;
	free(s->helo);
	s->helo = xstrdup(helo);
	return s->helo ? SMFIS_CONTINUE : SMFIS_TEMPFAIL;
}

static sfsistat on_envfrom(SMFICTX *ctx, char **argv)
{
	struct sess *s = sess_get(ctx);
	if (!s)
		return SMFIS_TEMPFAIL;
	sess_reset_message(s);           /* a new message on this session */
	s->mail_from = strip_angles(argv[0] ? argv[0] : "");
	s->have_from = 1;
	/* Postfix and Sendmail give the SASL login name with MAIL FROM */
	const char *auth = smfi_getsymval(ctx, "{auth_authen}");
	if (opt.outbound_auth && auth && *auth)
		s->outbound = "authenticated";
	else
		s->outbound = s->conn_outbound;
	return s->mail_from ? SMFIS_CONTINUE : SMFIS_TEMPFAIL;
}

static sfsistat on_envrcpt(SMFICTX *ctx, char **argv)
{
	struct sess *s = sess_get(ctx);
	if (!s || !argv[0])
		return SMFIS_TEMPFAIL;
	if (s->n_rcpt >= LIM_MAX_REQUEST_FIELDS / 2)
		return SMFIS_CONTINUE;   /* the daemon only needs a few of them */
	char **n = realloc(s->rcpt, (s->n_rcpt + 1) * sizeof(*n));
	if (!n)
		return SMFIS_TEMPFAIL;
	s->rcpt = n;
	n[s->n_rcpt] = strip_angles(argv[0]);
	if (!n[s->n_rcpt])
		return SMFIS_TEMPFAIL;
	s->n_rcpt++;
	return SMFIS_CONTINUE;
}

/* Remembers the class of one more incoming A-R field. -1: out of memory. */
static int track_ar(struct sess *s, const char *value)
{
	if (s->ar_too_many || s->ar_seen >= LIM_MAX_HEADERS) {
		s->ar_too_many = 1;
		return 0;
	}
	if (s->ar_seen == s->ar_cap) {
		size_t ncap = s->ar_cap ? s->ar_cap * 2 : 16;
		unsigned char *n = realloc(s->ar_cls, ncap);
		if (!n) {
			logmsg(LOG_ERR, "out of memory");
			return -1;
		}
		s->ar_cls = n;
		s->ar_cap = ncap;
	}
	char id[LIM_AUTHSERV_ID];
	unsigned char cls = AR_UNREAD;
	if (dclient_ar_authserv_id(value, strlen(value), id, sizeof(id)) == 0) {
		unsigned k = 0;
		while (k < s->n_ar_ids && strcmp(s->ar_ids[k], id) != 0)
			k++;
		if (k == s->n_ar_ids && k < LIM_CLIENT_AR_IDS)
			memcpy(s->ar_ids[s->n_ar_ids++], id, strlen(id) + 1);
		cls = k < s->n_ar_ids ? (unsigned char)k : AR_UNKNOWN;
	}
	s->ar_cls[s->ar_seen++] = cls;
	return 0;
}

static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{
	struct sess *s = sess_get(ctx);
	if (!s)
		return SMFIS_TEMPFAIL;
	if (strcasecmp(name, AR_NAME) == 0 && track_ar(s, value) < 0)
		return SMFIS_TEMPFAIL;
	if (s->oversize)
		return SMFIS_CONTINUE;
	/* one field at a time: the MTA bounds its size */
	struct buf line;
	buf_init(&line, 0);
	buf_adds(&line, name);
	buf_add(&line, ":", 1);
	if (!s->leadspc)
		buf_add(&line, " ", 1);
	add_crlf(&line, value);
	buf_add(&line, "\r\n", 2);
	if (line.failed) {
		buf_free(&line);
		logmsg(LOG_ERR, "out of memory");
		return SMFIS_TEMPFAIL;
	}
	msg_append(s, line.data, line.len);
	buf_free(&line);
	return SMFIS_CONTINUE;
}

static sfsistat on_eoh(SMFICTX *ctx)
{
	struct sess *s = sess_get(ctx);
	if (!s)
		return SMFIS_TEMPFAIL;
	msg_append(s, "\r\n", 2);
	return SMFIS_CONTINUE;
}

static sfsistat on_body(SMFICTX *ctx, unsigned char *data, size_t len)
{
	struct sess *s = sess_get(ctx);
	if (!s)
		return SMFIS_TEMPFAIL;
	msg_append(s, data, len);
	return SMFIS_CONTINUE;
}

/* One SCAN; a connection that has served scans before may have been
 * closed by the daemon (idle timeout, restart): then one retry on a fresh
 * connection. 0 with *r filled, or -1 (daemon unreachable or too slow). */
static int ask_daemon(struct sess *s, const char *queue_id, int sign, struct dreply *r)
{
	struct proto_envelope env = {
		.sign = sign,
		.client_ip = s->client_ip[0] ? s->client_ip : NULL,
		.helo = s->helo,
		.mail_from = s->have_from ? s->mail_from : NULL,
		.queue_id = queue_id,
		.rcpt = (const char *const *)s->rcpt,
		.n_rcpt = s->n_rcpt,
	};
	char err[512];
	for (int attempt = 0; attempt < 2; attempt++) {
		if (s->dc.fd < 0) {
			if (dclient_connect(&s->dc, opt.daemon_socket, err, sizeof(err)) < 0)
				break;
			s->dc_scans = 0;
		}
		int reused = s->dc_scans > 0, rc;
		if (s->spool_fd >= 0) {
			if (lseek(s->spool_fd, 0, SEEK_SET) < 0) {
				snprintf(err, sizeof(err), "spool file: %s", strerror(errno));
				break;
			}
			rc = dclient_scan_fd(&s->dc, &env, s->spool_fd, s->msg_len, r, err, sizeof(err));
		} else {
			rc = dclient_scan(&s->dc, &env, s->msg.data ? s->msg.data : "", s->msg.len,
			                  r, err, sizeof(err));
		}
		if (rc == 0) {
			s->dc_scans++;
			return 0;
		}
		dclient_close(&s->dc);
		if (!reused)
			break;
		logmsg(LOG_DEBUG, "reconnecting to the daemon: %s", err);
	}
	logmsg(LOG_WARNING, "%s: daemon unavailable: %s", queue_id ? queue_id : "-", err);
	return -1;
}

static sfsistat set_reply(SMFICTX *ctx, const char *reply, const char *def_code,
                          const char *def_x, const char *def_text, sfsistat st)
{
	char code[4], xcode[16], text[512];
	if (!reply || dclient_split_smtp(reply, code, xcode, text, sizeof(text)) < 0 ||
	    code[0] != def_code[0]) {
		snprintf(code, sizeof(code), "%s", def_code);
		snprintf(xcode, sizeof(xcode), "%s", def_x);
		snprintf(text, sizeof(text), "%s", def_text);
	}
	if (smfi_setreply(ctx, code, xcode[0] ? xcode : NULL, text) != MI_SUCCESS)
		logmsg(LOG_WARNING, "the MTA refused the reply text; it uses its own");
	return st;
}

static sfsistat fallback(SMFICTX *ctx)
{
	if (opt.fallback == FB_ACCEPT)
		return SMFIS_ACCEPT;
	return set_reply(ctx, NULL, "451", "4.7.0",
	                 "Message authentication is unavailable, try again later",
	                 SMFIS_TEMPFAIL);
}

/* Adds "Name: value" at the top (index 0), or after the others (-1). */
static void add_header(SMFICTX *ctx, struct sess *s, const char *name,
                       const char *value, int top)
{
	char *v = malloc(strlen(value) + 2);
	if (!v)
		return;
	/* with SMFIP_HDR_LEADSPC the MTA writes our value after the colon as is */
	snprintf(v, strlen(value) + 2, "%s%s", s->leadspc ? " " : "", value);
	int rc = top ? smfi_insheader(ctx, 0, (char *)name, v)
	             : smfi_addheader(ctx, (char *)name, v);
	if (rc != MI_SUCCESS)
		logmsg(LOG_WARNING, "cannot add header %s", name);
	free(v);
}

/* RFC 8601 5: results claiming our authserv-id were not made by us. The
 * same rule as dclient_ar_forged(): fields whose id cannot be read go
 * too, and all of them when our id is unknown (""). */
static void remove_forged_ar(SMFICTX *ctx, struct sess *s, const char *q, const char *our_id)
{
	size_t removed = 0;
	/* from the last: removing one does not renumber those before it */
	for (size_t i = s->ar_seen; i > 0; i--) {
		unsigned char cls = s->ar_cls[i - 1];
		if (our_id[0] && cls < AR_UNREAD && strcmp(s->ar_ids[cls], our_id) != 0)
			continue;
		if (smfi_chgheader(ctx, AR_NAME, (int)i, NULL) != MI_SUCCESS)
			logmsg(LOG_WARNING, "%s: cannot remove Authentication-Results #%zu", q, i);
		else
			removed++;
	}
	if (removed)
		logmsg(LOG_INFO, "%s: removed %zu Authentication-Results field(s) claiming %s or unreadable",
		       q, removed, our_id[0] ? our_id : "an unknown id");
}

static void add_result_headers(SMFICTX *ctx, struct sess *s, const struct dreply *r)
{
	for (size_t i = 0; i < r->n_add_headers; i++) {
		char *h = r->add_headers[i];
		char *colon = strchr(h, ':');
		if (!colon || colon == h)
			continue;
		*colon = '\0';
		const char *v = colon + 1;
		while (*v == ' ')
			v++;
		add_header(ctx, s, h, v, 0);
		*colon = ':';
	}
	if (r->auth_results && *r->auth_results)
		add_header(ctx, s, AR_NAME, r->auth_results, 1);
}

static int has_header_named(const struct dreply *r, const char *name)
{
	size_t nl = strlen(name);
	for (size_t i = 0; i < r->n_add_headers; i++)
		if (strncasecmp(r->add_headers[i], name, nl) == 0 && r->add_headers[i][nl] == ':')
			return 1;
	return 0;
}

/* The end of the Authentication-Results clause (resinfo, RFC 8601 2.2)
 * starting at p: the next ';' outside comments and quoted-strings, or the
 * terminating NUL. */
static const char *ar_clause_end(const char *p)
{
	int depth = 0, quoted = 0;
	for (; *p; p++) {
		if (*p == '\\' && (quoted || depth) && p[1])
			p++;
		else if (quoted)
			quoted = *p != '"';
		else if (*p == '"' && !depth)
			quoted = 1;
		else if (*p == '(')
			depth++;
		else if (*p == ')' && depth)
			depth--;
		else if (*p == ';' && !depth)
			break;
	}
	return p;
}

/* The reason given to smfi_quarantine(): alignd, the score and the
 * dmarc= clause of our own results, e.g. "alignd: quarantine, score 5.00,
 * dmarc=fail (p=quarantine dis=quarantine) header.from=example.org".
 * Sendmail keeps it with the queued message; Postfix holds the message
 * but drops the text, so it is logged as well. One line, printable. */
static void quarantine_reason(const struct dreply *r, char *out, size_t outlen)
{
	const char *ar = r->auth_results ? r->auth_results : "";
	const char *d = NULL, *e = NULL;
	/* the first clause is the authserv-id */
	for (const char *p = ar_clause_end(ar); *p && !d; p = ar_clause_end(p)) {
		p++;
		p += strspn(p, " \t\r\n");
		if (strncasecmp(p, "dmarc=", 6) == 0) {
			d = p;
			e = ar_clause_end(p);
		}
	}
	if (d) {
		while (e > d && strchr(" \t\r\n", e[-1]))
			e--;
		snprintf(out, outlen, "alignd: quarantine, score %.2f, %.*s", r->score,
		         (int)(e - d), d);
	} else {
		snprintf(out, outlen, "alignd: quarantine, score %.2f, no DMARC result", r->score);
	}
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
}

/* Outbound: the daemon signs, nothing is checked or enforced. The
 * signatures go on top, in the order the daemon gave them. */
static sfsistat sign_outbound(SMFICTX *ctx, struct sess *s, const char *qid)
{
	const char *q = qid ? qid : "-";
	struct dreply r;
	if (ask_daemon(s, qid, 1, &r) < 0) {
		sess_reset_message(s);
		return fallback(ctx);
	}
	if (r.code >= 500) {
		logmsg(LOG_WARNING, "%s: daemon answered %d %s", q, r.code, r.status ? r.status : "");
		dreply_free(&r);
		sess_reset_message(s);
		return fallback(ctx);
	}
	if (r.code != 200) {
		/* the message cannot be signed (no From), or signing is not
		 * configured: it leaves as it came */
		logmsg(LOG_WARNING, "%s: outbound (%s), not signed: %d %s", q, s->outbound,
		       r.code, r.status ? r.status : "");
	} else if (r.n_signatures == 0) {
		logmsg(LOG_INFO, "%s: outbound (%s) from=<%s>: no signing key for its From domain",
		       q, s->outbound, s->mail_from ? s->mail_from : "");
	} else {
		for (size_t i = r.n_signatures; i-- > 0;)
			add_header(ctx, s, "DKIM-Signature", r.signatures[i], 1);
		logmsg(LOG_INFO, "%s: outbound (%s) from=<%s>: signed, %zu signature%s", q,
		       s->outbound, s->mail_from ? s->mail_from : "", r.n_signatures,
		       r.n_signatures == 1 ? "" : "s");
	}
	dreply_free(&r);
	sess_reset_message(s);
	return SMFIS_ACCEPT;
}

static sfsistat on_eom(SMFICTX *ctx)
{
	struct sess *s = sess_get(ctx);
	if (!s)
		return SMFIS_TEMPFAIL;
	const char *qid = smfi_getsymval(ctx, "i");
	const char *q = qid ? qid : "-";
	char our_id[LIM_AUTHSERV_ID] = "";
	if (opt.authserv_id)
		snprintf(our_id, sizeof(our_id), "%s", opt.authserv_id);
	sfsistat st;
	if (s->ar_too_many) {
		/* more results than could be examined: some may claim our id */
		logmsg(LOG_WARNING, "%s: more than %u Authentication-Results fields; rejected",
		       q, LIM_MAX_HEADERS);
		sess_reset_message(s);
		return set_reply(ctx, NULL, "550", "5.7.0", "Too many Authentication-Results fields",
		                 SMFIS_REJECT);
	}
	if (s->oversize) {
		/* larger than the daemon is sent (--max-size): no verdict. The
		 * MTA's own size limit should be below this. */
		enum oversize ov = opt.oversize;
		logmsg(LOG_WARNING, "%s: larger than %zu bytes: %s without a verdict", q, opt.max_size,
		       ov == OV_ACCEPT ? "accepted" : ov == OV_REJECT ? "rejected" : "deferred");
		if (ov == OV_ACCEPT)
			remove_forged_ar(ctx, s, q, our_id);
		sess_reset_message(s);
		if (ov == OV_ACCEPT)
			return SMFIS_ACCEPT;
		if (ov == OV_REJECT)
			return set_reply(ctx, NULL, "552", "5.3.4",
			                 "Message too large for authentication checks", SMFIS_REJECT);
		return set_reply(ctx, NULL, "451", "4.3.4",
		                 "Message too large for authentication checks, try again later",
		                 SMFIS_TEMPFAIL);
	}
	if (s->spool_failed) {
		logmsg(LOG_WARNING, "%s: the message could not be spooled", q);
		sess_reset_message(s);
		return set_reply(ctx, NULL, "451", "4.3.0", "Temporary local problem, try again later",
		                 SMFIS_TEMPFAIL);
	}
	struct dreply r;
	if (s->outbound)
		return sign_outbound(ctx, s, qid);
	if (ask_daemon(s, qid, 0, &r) < 0) {
		sess_reset_message(s);
		return fallback(ctx);
	}
	if (r.code != 200 || !r.action) {
		logmsg(LOG_WARNING, "%s: daemon answered %d %s", q, r.code, r.status ? r.status : "");
		dreply_free(&r);
		sess_reset_message(s);
		return fallback(ctx);
	}
	if (!our_id[0] && r.auth_results &&
	    dclient_ar_authserv_id(r.auth_results, strlen(r.auth_results), our_id, sizeof(our_id)) < 0)
		logmsg(LOG_WARNING, "%s: no authserv-id in the daemon's results; every incoming one is removed", q);
	logmsg(LOG_INFO, "%s: from=<%s> ip=%s action=%s score=%.2f%s%s", q,
	       s->mail_from ? s->mail_from : "", s->client_ip, r.action, r.score,
	       r.smtp_reply ? " reply=" : "", r.smtp_reply ? r.smtp_reply : "");
	if (strcmp(r.action, "reject") == 0) {
		st = set_reply(ctx, r.smtp_reply, "550", "5.7.1",
		               "Rejected by message authentication policy", SMFIS_REJECT);
	} else if (strcmp(r.action, "tempfail") == 0) {
		st = set_reply(ctx, r.smtp_reply, "451", "4.7.1",
		               "Message authentication failed temporarily, try again later",
		               SMFIS_TEMPFAIL);
	} else {
		remove_forged_ar(ctx, s, q, our_id);
		add_result_headers(ctx, s, &r);
		if (strcmp(r.action, "quarantine") == 0) {
			const char *why = r.smtp_reply ? r.smtp_reply : "message authentication policy";
			if (opt.quarantine_header && !has_header_named(&r, opt.quarantine_header_name))
				add_header(ctx, s, opt.quarantine_header_name, why, 0);
			if (opt.quarantine_hold) {
				char reason[256];
				quarantine_reason(&r, reason, sizeof(reason));
				if (smfi_quarantine(ctx, reason) != MI_SUCCESS)
					logmsg(LOG_WARNING, "%s: the MTA refused to quarantine", q);
				else
					logmsg(LOG_INFO, "%s: quarantined (hold): %s", q, reason);
			}
		} else if (strcmp(r.action, "accept") != 0) {
			logmsg(LOG_WARNING, "%s: unknown action '%s'; accepting", q, r.action);
		}
		st = SMFIS_ACCEPT;
	}
	dreply_free(&r);
	sess_reset_message(s);
	return st;
}

static sfsistat on_abort(SMFICTX *ctx)
{
	struct sess *s = smfi_getpriv(ctx);
	if (s)
		sess_reset_message(s);
	return SMFIS_CONTINUE;
}

static sfsistat on_close(SMFICTX *ctx)
{
	struct sess *s = smfi_getpriv(ctx);
	if (!s)
		return SMFIS_CONTINUE;
	sess_reset_message(s);
	buf_free(&s->msg);
	free(s->helo);
	dclient_close(&s->dc);
	buf_free(&s->dc.in);
	free(s);
	smfi_setpriv(ctx, NULL);
	return SMFIS_CONTINUE;
}

static struct smfiDesc desc = {
	.xxfi_name = "alignd-milter",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE,
	.xxfi_connect = on_connect,
	.xxfi_helo = on_helo,
	.xxfi_envfrom = on_envfrom,
	.xxfi_envrcpt = on_envrcpt,
	.xxfi_header = on_header,
	.xxfi_eoh = on_eoh,
	.xxfi_body = on_body,
	.xxfi_eom = on_eom,
	.xxfi_abort = on_abort,
	.xxfi_close = on_close,
	.xxfi_negotiate = on_negotiate,
};

static void usage(FILE *out)
{
	fprintf(out,
	"usage: alignd-milter -p SPEC [options]\n"
	"  -p, --milter SPEC        where the MTA connects: unix:/path or inet:PORT@127.0.0.1\n"
	DCLIENT_USAGE_SOCKET
	"  -t, --timeout MS         deadline for each step of a scan (default %d)\n"
	"  -F, --fallback MODE      daemon unreachable or too slow: tempfail (451, default)\n"
	"                           or accept (pass the message without a verdict)\n"
	"  -a, --authserv-id ID     remove incoming Authentication-Results with this id\n"
	"                           (default: the id in the daemon's own results)\n"
	"  -Q, --quarantine MODES   on quarantine: header (a marker header, delivered),\n"
	"                           hold (smfi_quarantine: Postfix's hold queue,\n"
	"                           Sendmail's quarantine), or header,hold (default)\n"
	"  -H, --quarantine-header NAME  marker header (default %s)\n"
	"  -S, --max-size BYTES     largest message sent to the daemon (default %u)\n"
	"  -O, --oversize MODE      larger messages: tempfail (451 4.3.4, default),\n"
	"                           reject (552 5.3.4) or accept (no verdict; incoming\n"
	"                           Authentication-Results of the -a id removed, all\n"
	"                           of them without -a)\n"
	"  -m, --socket-mode OCTAL  mode of a unix milter socket (e.g. 0666)\n"
	"  outbound mail is signed by the daemon (SIGN) instead of checked:\n"
	"  -A, --outbound-authenticated  mail of SASL-authenticated clients ({auth_authen})\n"
	"  -I, --internal NETS      mail of clients in these networks (CIDR, comma-separated)\n"
	"  -D, --outbound-daemon NAMES  mail through these {daemon_name} values\n"
	"                           (comma-separated; Postfix: milter_macro_daemon_name)\n"
	"  messages over %u KiB are spooled to an unlinked file in $TMPDIR (or /tmp)\n"
	"  -l, --syslog             log to syslog (mail facility) instead of stderr\n"
	"  -d, --debug              debug logging\n"
	"  -h, --help               this text\n",
	dclient_default_socket(), DEFAULT_TIMEOUT_MS, DEFAULT_QUARANTINE_HEADER,
	LIM_MAX_MESSAGE_SIZE, LIM_CLIENT_MEMORY / 1024);
}

static int parse_quarantine(const char *v)
{
	opt.quarantine_header = opt.quarantine_hold = 0;
	char tmp[64];
	snprintf(tmp, sizeof(tmp), "%s", v);
	for (char *save = NULL, *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (strcmp(t, "header") == 0)
			opt.quarantine_header = 1;
		else if (strcmp(t, "hold") == 0)
			opt.quarantine_hold = 1;
		else
			return -1;
	}
	return 0;
}

static int parse_ulong(const char *s, int base, unsigned long lo, unsigned long hi,
                       unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, base);
	if (errno || end == s || *end || v < lo || v > hi || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

/* "192.0.2.0/24,2001:db8::/32,198.51.100.7" */
static int parse_nets(const char *v)
{
	while (*v) {
		size_t n = strcspn(v, ",");
		if (n > 0) {
			if (opt.n_internal == LIM_CLIENT_INTERNAL_NETS ||
			    net_prefix_parse(v, n, &opt.internal[opt.n_internal]) < 0)
				return -1;
			opt.n_internal++;
		}
		v += n;
		if (*v == ',')
			v++;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "milter", required_argument, NULL, 'p' },
		{ "socket", required_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 't' },
		{ "fallback", required_argument, NULL, 'F' },
		{ "authserv-id", required_argument, NULL, 'a' },
		{ "quarantine", required_argument, NULL, 'Q' },
		{ "quarantine-header", required_argument, NULL, 'H' },
		{ "max-size", required_argument, NULL, 'S' },
		{ "oversize", required_argument, NULL, 'O' },
		{ "socket-mode", required_argument, NULL, 'm' },
		{ "outbound-authenticated", no_argument, NULL, 'A' },
		{ "internal", required_argument, NULL, 'I' },
		{ "outbound-daemon", required_argument, NULL, 'D' },
		{ "syslog", no_argument, NULL, 'l' },
		{ "debug", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "tls-ca", required_argument, NULL, 256 },
		{ "tls-cert", required_argument, NULL, 257 },
		{ "tls-key", required_argument, NULL, 258 },
		{ NULL, 0, NULL, 0 },
	};
	opt.daemon_socket = dclient_default_socket();
	opt.timeout_ms = DEFAULT_TIMEOUT_MS;
	opt.quarantine_header = opt.quarantine_hold = 1;
	opt.quarantine_header_name = DEFAULT_QUARANTINE_HEADER;
	opt.max_size = LIM_MAX_MESSAGE_SIZE;
	opt.socket_mode = -1;
	int c;
	unsigned long v;
	while ((c = getopt_long(argc, argv, "p:s:t:F:a:Q:H:S:O:m:AI:D:ldh", lopts, NULL)) != -1) {
		switch (c) {
		case 'p': opt.milter_conn = optarg; break;
		case 's': opt.daemon_socket = optarg; break;
		case 't':
			if (parse_ulong(optarg, 10, 1, 3600000, &v) < 0)
				goto bad;
			opt.timeout_ms = (int)v;
			break;
		case 'F':
			if (strcmp(optarg, "tempfail") == 0)
				opt.fallback = FB_TEMPFAIL;
			else if (strcmp(optarg, "accept") == 0)
				opt.fallback = FB_ACCEPT;
			else
				goto bad;
			break;
		case 'O':
			if (strcmp(optarg, "tempfail") == 0)
				opt.oversize = OV_TEMPFAIL;
			else if (strcmp(optarg, "accept") == 0)
				opt.oversize = OV_ACCEPT;
			else if (strcmp(optarg, "reject") == 0)
				opt.oversize = OV_REJECT;
			else
				goto bad;
			break;
		case 'a': {
			static char id[LIM_AUTHSERV_ID];
			if (dclient_ar_authserv_id(optarg, strlen(optarg), id, sizeof(id)) != 1)
				goto bad;
			opt.authserv_id = id;
			break;
		}
		case 'Q':
			if (parse_quarantine(optarg) < 0)
				goto bad;
			break;
		case 'H':
			if (!optarg[0] || strpbrk(optarg, ": \t\r\n"))
				goto bad;
			opt.quarantine_header_name = optarg;
			break;
		case 'S':
			if (parse_ulong(optarg, 10, 1024, (unsigned long)1 << 32, &v) < 0)
				goto bad;
			opt.max_size = v;
			break;
		case 'm':
			if (parse_ulong(optarg, 8, 0, 0777, &v) < 0)
				goto bad;
			opt.socket_mode = (long)v;
			break;
		case 'A': opt.outbound_auth = 1; break;
		case 'I':
			if (parse_nets(optarg) < 0)
				goto bad;
			break;
		case 'D':
			if (!optarg[0] || strpbrk(optarg, " \t"))
				goto bad;
			opt.outbound_daemons = optarg;
			break;
		case 256: opt.tls_ca = optarg; break;
		case 257: opt.tls_cert = optarg; break;
		case 258: opt.tls_key = optarg; break;
		case 'l': opt.use_syslog = 1; break;
		case 'd': opt.debug = 1; break;
		case 'h': usage(stdout); return 0;
		default:
		bad:
			if (c != '?')
				fprintf(stderr, "alignd-milter: bad value for -%c: %s\n", c, optarg);
			usage(stderr);
			return 64;
		}
	}
	if (!opt.milter_conn || optind < argc) {
		usage(stderr);
		return 64;
	}
	char err[512];
	if (dclient_tls_setup(opt.daemon_socket, opt.tls_ca, opt.tls_cert, opt.tls_key, &opt.tls,
	                      err, sizeof err) < 0) {
		fprintf(stderr, "alignd-milter: %s\n", err);
		return 64;
	}
	if (opt.use_syslog)
		openlog("alignd-milter", LOG_PID, LOG_MAIL);
	if (!opt.quarantine_hold)
		desc.xxfi_flags &= ~(unsigned long)SMFIF_QUARANTINE;
	if (smfi_setconn((char *)opt.milter_conn) != MI_SUCCESS ||
	    smfi_register(desc) != MI_SUCCESS) {
		logmsg(LOG_ERR, "cannot register the filter on %s", opt.milter_conn);
		return 1;
	}
	if (smfi_opensocket(1) != MI_SUCCESS) {
		logmsg(LOG_ERR, "cannot open %s", opt.milter_conn);
		return 1;
	}
	const char *path = NULL;
	if (strncmp(opt.milter_conn, "unix:", 5) == 0)
		path = opt.milter_conn + 5;
	else if (strncmp(opt.milter_conn, "local:", 6) == 0)
		path = opt.milter_conn + 6;
	if (path && opt.socket_mode >= 0 && chmod(path, (mode_t)opt.socket_mode) < 0) {
		logmsg(LOG_ERR, "chmod %s: %s", path, strerror(errno));
		return 1;
	}
	logmsg(LOG_INFO, "listening on %s; daemon %s; fallback %s; over %zu bytes %s",
	       opt.milter_conn, opt.daemon_socket, opt.fallback == FB_ACCEPT ? "accept" : "tempfail",
	       opt.max_size, opt.oversize == OV_ACCEPT ? "accept" :
	       opt.oversize == OV_REJECT ? "reject" : "tempfail");
	int rc = smfi_main();
	logmsg(LOG_INFO, "stopped");
	return rc == MI_SUCCESS ? 0 : 1;
}
