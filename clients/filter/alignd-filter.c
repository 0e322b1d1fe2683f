/* alignd-filter: Postfix after-queue content filter run by pipe(8). Spools
 * the message from standard input to an unlinked temporary file, asks
 * alignd, and re-injects it with sendmail or exits with a status that
 * tells Postfix to bounce (69) or keep it queued (75). One process per
 * message, single-threaded; never holds the message in memory. */
#include "clients/dclient.h"
#include "common/limits.h"
#include "protocol/request.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define EX_USAGE_ 64
#define EX_UNAVAILABLE_ 69
#define EX_TEMPFAIL_ 75

#define AR_NAME "Authentication-Results"
#define DEFAULT_SENDMAIL "/usr/sbin/sendmail"
#define DEFAULT_TIMEOUT_MS 60000
#define DEFAULT_QUARANTINE_HEADER "X-Alignd-Quarantine"

static struct {
	const char *socket, *sendmail, *client_ip, *helo, *sender, *queue_id;
	const char *authserv_id;
	const char *quarantine_header;   /* NULL: no marker */
	int timeout_ms;
	const char *tls_ca, *tls_cert, *tls_key;
	size_t max_size;
	int oversize;                    /* over max_size: EX_TEMPFAIL_, EX_UNAVAILABLE_ or 0 (accept) */
	int have_sender;
	char **rcpt;
	size_t n_rcpt;
} opt;

/* Diagnostics for standard error, held back until the status line is out:
 * pipe(8) reads standard output and error as one text, and takes the
 * delivery status only from its start. */
static char diag_text[2048];
static size_t diag_len;

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void diag(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* untrusted text (the daemon's, the spool's errors): printable only */
	for (char *p = line; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	int n = snprintf(diag_text + diag_len, sizeof(diag_text) - diag_len,
	                 "alignd-filter: %s\n", line);
	if (n > 0)
		diag_len += (size_t)n < sizeof(diag_text) - diag_len ? (size_t)n
		                                                     : sizeof(diag_text) - diag_len - 1;
}

static int diag_flush(int status)
{
	fflush(stdout);
	if (diag_len)
		fputs(diag_text, stderr);
	diag_len = 0;
	return status;
}

/* pipe(8) turns output starting with an enhanced status code into the
 * delivery status; keep it on one printable line. */
static int finish(int status, const char *dsn, const char *text)
{
	char clean[512];
	size_t o = 0;
	for (const char *p = text; *p && o + 1 < sizeof(clean); p++)
		clean[o++] = ((unsigned char)*p < 0x20 || *p == 0x7f) ? '?' : *p;
	clean[o] = '\0';
	printf("%s %s\n", dsn, clean);
	return diag_flush(status);
}

/* Copies standard input into fd with CRLF line ends (what the daemon and
 * DKIM expect); *len_r gets the spooled size. -1 on a read/write error,
 * -2 when the message exceeds max_size: then the rest is read too (pipe(8)
 * must not meet a closed pipe), but spooled only when the message is to
 * be accepted, whole. */
static int spool_stdin(int fd, size_t *len_r)
{
	FILE *out = fdopen(dup(fd), "w");
	if (!out)
		return -1;
	char in[64 * 1024];
	size_t total = 0;
	int prev_cr = 0, rc = 0;
	for (;;) {
		ssize_t n = read(STDIN_FILENO, in, sizeof(in));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -1;
			break;
		}
		if (n == 0)
			break;
		if (total > opt.max_size) {
			rc = -2;
			if (opt.oversize != 0)
				continue;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (in[i] == '\n' && !prev_cr) {
				putc('\r', out);
				total++;
			}
			putc(in[i], out);
			total++;
			prev_cr = in[i] == '\r';
		}
	}
	if (total > opt.max_size)
		rc = rc == 0 ? -2 : rc;
	if (fclose(out) != 0)
		rc = -1;
	*len_r = total;
	return rc;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes s with CRLF turned into LF: sendmail reads UNIX line ends. */
static int write_lf(int fd, const char *s, size_t len)
{
	size_t start = 0;
	for (size_t i = 0; i + 1 < len; i++) {
		if (s[i] == '\r' && s[i + 1] == '\n') {
			if (write_all(fd, s + start, i - start) < 0)
				return -1;
			start = i + 1;
		}
	}
	return write_all(fd, s + start, len - start);
}

static int write_header(int fd, const char *name, const char *value)
{
	if (write_all(fd, name, strlen(name)) < 0 || write_all(fd, ": ", 2) < 0 ||
	    write_all(fd, value, strlen(value)) < 0 || write_all(fd, "\n", 1) < 0)
		return -1;
	return 0;
}

/* The offset of the value when the header field (name, colon, value,
 * folded lines) is an Authentication-Results field, else 0. */
static size_t ar_value_at(const char *field, size_t len)
{
	size_t nl = sizeof(AR_NAME) - 1;
	if (len <= nl || strncasecmp(field, AR_NAME, nl) != 0)
		return 0;
	size_t i = nl;
	/* RFC 5322 4.5.3 obs-optional: white space before the colon */
	while (i < len && (field[i] == ' ' || field[i] == '\t'))
		i++;
	return i < len && field[i] == ':' ? i + 1 : 0;
}

/* 1 when the field is an Authentication-Results field to remove before
 * ours is added (RFC 8601 5; dclient_ar_forged()). */
static int is_forged_ar(const char *field, size_t len, const char *our_id)
{
	size_t v = ar_value_at(field, len);
	return v > 0 && dclient_ar_forged(field + v, len - v, our_id);
}

/* Streams the spooled message to sendmail's standard input: our headers
 * first, then the message without forged results of ours. */
static int copy_message(int spool, int out, const struct dreply *r, const char *our_id)
{
	if (r->auth_results && *r->auth_results && write_header(out, AR_NAME, r->auth_results) < 0)
		return -1;
	int have_marker = 0;
	for (size_t i = 0; i < r->n_add_headers; i++) {
		const char *h = r->add_headers[i];
		const char *colon = strchr(h, ':');
		if (!colon || colon == h)
			continue;
		if (opt.quarantine_header && (size_t)(colon - h) == strlen(opt.quarantine_header) &&
		    strncasecmp(h, opt.quarantine_header, (size_t)(colon - h)) == 0)
			have_marker = 1;
		if (write_all(out, h, strlen(h)) < 0 || write_all(out, "\n", 1) < 0)
			return -1;
	}
	if (strcmp(r->action, "quarantine") == 0 && opt.quarantine_header && !have_marker &&
	    write_header(out, opt.quarantine_header,
	                 r->smtp_reply ? r->smtp_reply : "message authentication policy") < 0)
		return -1;

	FILE *in = fdopen(dup(spool), "r");
	if (!in)
		return -1;
	/* header section: one field (with its folded lines) at a time */
	struct buf field;
	buf_init(&field, LIM_MAX_HEADER_BLOCK);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0, in_head = 1;
	int passing = 0, dropping = 0;   /* the rest of a field too long to examine */
	while (in_head && (n = getline(&line, &cap, in)) > 0) {
		int blank = (n == 2 && line[0] == '\r') || (n == 1 && line[0] == '\n');
		int cont = line[0] == ' ' || line[0] == '\t';
		if (!cont) {
			passing = dropping = 0;
			if (field.len > 0) {
				if (!is_forged_ar(field.data, field.len, our_id) &&
				    write_lf(out, field.data, field.len) < 0)
					rc = -1;
				field.len = 0;
			}
		}
		if (blank) {
			in_head = 0;
			if (write_lf(out, line, (size_t)n) < 0)
				rc = -1;
		} else if (dropping) {
			continue;
		} else if (passing) {
			if (write_lf(out, line, (size_t)n) < 0)
				rc = -1;
		} else if (buf_add(&field, line, (size_t)n) < 0) {
			/* one absurdly long field: passed on unexamined, unless it is
			 * an Authentication-Results field, which might claim our id */
			const char *start = field.len ? field.data : line;
			size_t slen = field.len ? field.len : (size_t)n;
			if (ar_value_at(start, slen) > 0) {
				diag("an Authentication-Results field over %u bytes removed",
				     LIM_MAX_HEADER_BLOCK);
				dropping = 1;
			} else {
				passing = 1;
				if ((field.len && write_lf(out, field.data, field.len) < 0) ||
				    write_lf(out, line, (size_t)n) < 0)
					rc = -1;
			}
			field.len = 0;
			field.failed = 0;
		}
		if (rc < 0)
			break;
	}
	if (rc == 0 && field.len > 0 && !is_forged_ar(field.data, field.len, our_id) &&
	    write_lf(out, field.data, field.len) < 0)
		rc = -1;
	buf_free(&field);
	/* body: line by line so that CRLF pairs split across reads stay whole */
	while (rc == 0 && (n = getline(&line, &cap, in)) > 0)
		if (write_lf(out, line, (size_t)n) < 0)
			rc = -1;
	if (ferror(in))
		rc = -1;
	free(line);
	fclose(in);
	return rc;
}

static int reinject(int spool, const struct dreply *r, const char *our_id)
{
	if (lseek(spool, 0, SEEK_SET) < 0)
		return -1;
	size_t argc = 6 + opt.n_rcpt + 1;
	const char **av = calloc(argc, sizeof(*av));
	int pfd[2];
	if (!av || pipe(pfd) < 0) {
		free(av);
		return -1;
	}
	size_t k = 0;
	av[k++] = "sendmail";
	av[k++] = "-G";
	av[k++] = "-i";
	av[k++] = "-f";
	av[k++] = opt.sender;
	av[k++] = "--";
	for (size_t i = 0; i < opt.n_rcpt; i++)
		av[k++] = opt.rcpt[i];
	av[k] = NULL;
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		free(av);
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(pfd[0], STDIN_FILENO);
		close(pfd[0]);
		close(pfd[1]);
		close(spool);
		signal(SIGPIPE, SIG_DFL);
		execv(opt.sendmail, (char *const *)av);
		fprintf(stderr, "alignd-filter: cannot run %s: %s\n", opt.sendmail, strerror(errno));
		_exit(EX_TEMPFAIL_);
	}
	free(av);
	close(pfd[0]);
	int rc = copy_message(spool, pfd[1], r, our_id);
	close(pfd[1]);
	int st;
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	if (rc < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		diag("%s failed (%s %d)", opt.sendmail, WIFEXITED(st) ? "status" : "signal",
		     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		return -1;
	}
	return 0;
}

/* The enhanced status code and text of the daemon's SMTP reply, or the
 * defaults when it has none of the right class. */
static void reply_parts(const struct dreply *r, char cls, const char *def_x,
                        const char *def_text, char *x, size_t xl, char *text, size_t tl)
{
	char code[4], xc[16];
	if (r->smtp_reply && dclient_split_smtp(r->smtp_reply, code, xc, text, tl) == 0 &&
	    xc[0] == cls) {
		snprintf(x, xl, "%s", xc);
		return;
	}
	snprintf(x, xl, "%s", def_x);
	snprintf(text, tl, "%s", def_text);
}

static void usage(FILE *out)
{
	fprintf(out,
	"usage: alignd-filter [options] -f SENDER -- RECIPIENT...\n"
	"  -c, --client-ip IP       the SMTP client's address (${client_address})\n"
	"  -h, --helo NAME          its HELO name (${client_helo})\n"
	"  -f, --sender ADDR        envelope sender (${sender}; empty for <>)\n"
	"  -i, --queue-id ID        queue id for logs (${queue_id})\n"
	DCLIENT_USAGE_SOCKET
	"  -t, --timeout MS         deadline for each step of the scan (default %d)\n"
	"  -S, --sendmail PATH      re-injection command (default %s)\n"
	"  -a, --authserv-id ID     remove incoming Authentication-Results with this id\n"
	"                           (default: the id in the daemon's own results)\n"
	"  -H, --quarantine-header NAME  marker header on quarantine (default %s;\n"
	"                           'none' for no marker)\n"
	"  -M, --max-size BYTES     largest message sent to the daemon (default %u)\n"
	"  -O, --oversize MODE      larger messages: tempfail (75, 4.3.4; default),\n"
	"                           reject (69, 5.3.4) or accept (re-injected without\n"
	"                           a verdict; incoming Authentication-Results of the\n"
	"                           -a id removed, all of them without -a)\n"
	"exit status: 0 re-injected, 69 rejected (Postfix bounces), 75 try later\n",
	dclient_default_socket(), DEFAULT_TIMEOUT_MS, DEFAULT_SENDMAIL,
	DEFAULT_QUARANTINE_HEADER, LIM_MAX_MESSAGE_SIZE);
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "client-ip", required_argument, NULL, 'c' },
		{ "helo", required_argument, NULL, 'h' },
		{ "sender", required_argument, NULL, 'f' },
		{ "queue-id", required_argument, NULL, 'i' },
		{ "socket", required_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 't' },
		{ "sendmail", required_argument, NULL, 'S' },
		{ "authserv-id", required_argument, NULL, 'a' },
		{ "quarantine-header", required_argument, NULL, 'H' },
		{ "max-size", required_argument, NULL, 'M' },
		{ "oversize", required_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'x' },
		{ "tls-ca", required_argument, NULL, 256 },
		{ "tls-cert", required_argument, NULL, 257 },
		{ "tls-key", required_argument, NULL, 258 },
		{ NULL, 0, NULL, 0 },
	};
	opt.socket = dclient_default_socket();
	opt.sendmail = DEFAULT_SENDMAIL;
	opt.timeout_ms = DEFAULT_TIMEOUT_MS;
	opt.quarantine_header = DEFAULT_QUARANTINE_HEADER;
	opt.max_size = LIM_MAX_MESSAGE_SIZE;
	opt.oversize = EX_TEMPFAIL_;
	int c;
	char *end;
	unsigned long v;
	while ((c = getopt_long(argc, argv, "c:h:f:i:s:t:S:a:H:M:O:", lopts, NULL)) != -1) {
		switch (c) {
		case 'c': opt.client_ip = optarg[0] ? optarg : NULL; break;
		case 'h': opt.helo = optarg[0] ? optarg : NULL; break;
		case 'f': opt.sender = optarg; opt.have_sender = 1; break;
		case 'i': opt.queue_id = optarg[0] ? optarg : NULL; break;
		case 's': opt.socket = optarg; break;
		case 'S': opt.sendmail = optarg; break;
		case 'a': opt.authserv_id = optarg; break;
		case 'O':
			if (strcmp(optarg, "tempfail") == 0)
				opt.oversize = EX_TEMPFAIL_;
			else if (strcmp(optarg, "reject") == 0)
				opt.oversize = EX_UNAVAILABLE_;
			else if (strcmp(optarg, "accept") == 0)
				opt.oversize = 0;
			else
				goto bad;
			break;
		case 'H':
			if (strcmp(optarg, "none") == 0)
				opt.quarantine_header = NULL;
			else if (!optarg[0] || strpbrk(optarg, ": \t\r\n"))
				goto bad;
			else
				opt.quarantine_header = optarg;
			break;
		case 't':
		case 'M':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || v == 0 ||
			    (c == 't' && v > 3600000) || (c == 'M' && v > ((unsigned long)1 << 32)))
				goto bad;
			if (c == 't')
				opt.timeout_ms = (int)v;
			else
				opt.max_size = v;
			break;
		case 256: opt.tls_ca = optarg; break;
		case 257: opt.tls_cert = optarg; break;
		case 258: opt.tls_key = optarg; break;
		case 'x': usage(stdout); return 0;
		default:
		bad:
			usage(stderr);
			return EX_USAGE_;
		}
	}
	opt.rcpt = argv + optind;
	opt.n_rcpt = (size_t)(argc - optind);
	if (!opt.have_sender || opt.n_rcpt == 0) {
		usage(stderr);
		return EX_USAGE_;
	}
	signal(SIGPIPE, SIG_IGN);

	const char *tmpdir = getenv("TMPDIR");
	char path[4096];
	snprintf(path, sizeof(path), "%s/alignd-filter.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
	int spool = mkstemp(path);
	if (spool < 0)
		return finish(EX_TEMPFAIL_, "4.3.0", "cannot create a spool file");
	unlink(path);
	size_t len;
	int src = spool_stdin(spool, &len);
	if (src == -1)
		return finish(EX_TEMPFAIL_, "4.3.0", "cannot spool the message");

	struct dreply r;
	memset(&r, 0, sizeof(r));
	char our_id[LIM_AUTHSERV_ID] = "";
	if (opt.authserv_id &&
	    dclient_ar_authserv_id(opt.authserv_id, strlen(opt.authserv_id), our_id, sizeof(our_id)) != 1) {
		close(spool);
		diag("bad value for -a: %s", opt.authserv_id);
		return finish(EX_TEMPFAIL_, "4.3.5", "bad authserv-id in the filter's configuration");
	}
	if (src == -2) {
		/* larger than the daemon is sent (--max-size): no verdict.
		 * Postfix's message_size_limit should be below max_size. */
		diag("%s: message larger than %zu bytes: %s without a verdict",
		     opt.queue_id ? opt.queue_id : "-", opt.max_size,
		     opt.oversize == 0 ? "accepted" : opt.oversize == EX_TEMPFAIL_ ? "deferred" : "rejected");
		if (opt.oversize == EX_TEMPFAIL_) {
			close(spool);
			return finish(EX_TEMPFAIL_, "4.3.4", "message too large for authentication checks");
		}
		if (opt.oversize == EX_UNAVAILABLE_) {
			close(spool);
			return finish(EX_UNAVAILABLE_, "5.3.4", "message too large for authentication checks");
		}
		r.action = (char *)"accept";
		int rc = reinject(spool, &r, our_id);
		close(spool);
		return rc < 0 ? finish(EX_TEMPFAIL_, "4.3.0", "re-injection failed") : diag_flush(0);
	}

	const char *rcpts[LIM_MAX_REQUEST_FIELDS / 2];
	size_t nr = opt.n_rcpt < LIM_MAX_REQUEST_FIELDS / 2 ? opt.n_rcpt : LIM_MAX_REQUEST_FIELDS / 2;
	for (size_t i = 0; i < nr; i++)
		rcpts[i] = opt.rcpt[i];
	struct proto_envelope env = {
		.client_ip = opt.client_ip, .helo = opt.helo, .mail_from = opt.sender,
		.queue_id = opt.queue_id, .rcpt = rcpts, .n_rcpt = nr,
	};
	struct dclient dc;
	struct dclient_tls *tls = NULL;
	dclient_init(&dc, opt.timeout_ms);
	char err[512] = "spool file: cannot seek";
	/* TLS settings that cannot be used are the admin's to fix: the mail
	 * waits (75) rather than bounces */
	if (dclient_tls_setup(opt.socket, opt.tls_ca, opt.tls_cert, opt.tls_key, &tls,
	                      err, sizeof err) < 0 ||
	    (dc.tls = tls, lseek(spool, 0, SEEK_SET) < 0) ||
	    dclient_connect(&dc, opt.socket, err, sizeof(err)) < 0 ||
	    dclient_scan_fd(&dc, &env, spool, len, &r, err, sizeof(err)) < 0) {
		diag("daemon unavailable: %s", err);
		dclient_close(&dc);
		dclient_tls_free(&tls);
		buf_free(&dc.in);
		close(spool);
		return finish(EX_TEMPFAIL_, "4.7.0", "message authentication unavailable, try again later");
	}
	dclient_close(&dc);
	dclient_tls_free(&tls);
	buf_free(&dc.in);

	char x[16], text[512];
	int status;
	if (r.code != 200 || !r.action) {
		diag("daemon answered %d %s", r.code, r.status ? r.status : "");
		status = finish(EX_TEMPFAIL_, "4.7.0", "message authentication failed, try again later");
	} else if (strcmp(r.action, "reject") == 0) {
		reply_parts(&r, '5', "5.7.1", "rejected by message authentication policy",
		            x, sizeof(x), text, sizeof(text));
		status = finish(EX_UNAVAILABLE_, x, text);
	} else if (strcmp(r.action, "tempfail") == 0) {
		reply_parts(&r, '4', "4.7.1", "message authentication failed temporarily",
		            x, sizeof(x), text, sizeof(text));
		status = finish(EX_TEMPFAIL_, x, text);
	} else {
		if (!our_id[0] && r.auth_results &&
		    dclient_ar_authserv_id(r.auth_results, strlen(r.auth_results), our_id, sizeof(our_id)) < 0)
			diag("no authserv-id in the daemon's results; every incoming one is removed");
		if (reinject(spool, &r, our_id) < 0)
			status = finish(EX_TEMPFAIL_, "4.3.0", "re-injection failed");
		else
			status = 0;
	}
	dreply_free(&r);
	close(spool);
	return diag_flush(status);
}
