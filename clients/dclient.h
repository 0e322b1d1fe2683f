/* The client side of the alignd protocol for the thin clients (alignc,
 * the milter, the content filter): connect with a deadline (a UNIX socket,
 * tcp:HOST:PORT or tls:HOST:PORT), send a request, read and parse one
 * reply. Blocking I/O with poll() deadlines; one struct dclient per
 * thread, one struct dclient_tls shared by all of them. */
#ifndef ALIGND_DCLIENT_H
#define ALIGND_DCLIENT_H

#include <stddef.h>

#include "common/buf.h"

/* The --socket and --tls-* lines of a client's usage text (one %s: the
 * default socket), so that every client describes them alike. */
#define DCLIENT_USAGE_SOCKET \
	"  -s, --socket PATH        alignd's socket (default $ALIGND_SOCKET or %s),\n" \
	"                           tcp:HOST:PORT, or tls:HOST:PORT (TLS to listen_tcp)\n" \
	"      --tls-ca FILE        tls: the CAs of the daemon's certificate, which must\n" \
	"                           also name HOST (default: the system's CAs)\n" \
	"      --tls-cert FILE      tls: this client's certificate (PEM) ...\n" \
	"      --tls-key FILE       ... and its key, for a daemon that requires one\n"

struct dclient_tls;
struct ssl_st;

struct dclient {
	int fd;
	int timeout_ms;           /* per operation */
	struct buf in;            /* bytes read and not yet consumed */
	const struct dclient_tls *tls;  /* borrowed; needed for tls:HOST:PORT */
	struct ssl_st *ssl;       /* the TLS session of a tls: connection */
};

/* TLS settings for tls:HOST:PORT, made once at start-up and shared
 * read-only by every thread's struct dclient. spec is the daemon address
 * the program was given; ca_file the CAs the daemon's certificate must
 * chain to (NULL or "": the system's store); cert_file and key_file this
 * client's certificate and key (both or neither). *out stays NULL for a
 * spec other than tls: without TLS options; TLS options with another spec
 * are an error. 0, or -1 with a reason naming the option in err. */
int dclient_tls_setup(const char *spec, const char *ca_file, const char *cert_file,
                      const char *key_file, struct dclient_tls **out,
                      char *err, size_t errlen);
void dclient_tls_free(struct dclient_tls **t);

struct dreply {
	int code;                 /* 200, 4xx, 5xx */
	char *status;             /* the status line's text after the code */
	char *action;             /* NULL unless a scan result */
	double score;
	char *smtp_reply;
	char **symbols;           /* "NAME score detail" */
	size_t n_symbols;
	char *auth_results;
	char **add_headers;
	size_t n_add_headers;
	char **trace;
	size_t n_trace;
	char **fields;            /* every other "Name: value" line, verbatim (STATS) */
	size_t n_fields;
	/* SIGN: the DKIM-Signature field values, top first, folded with LF
	 * (each continuation line starts with its tab), no final line end */
	char **signatures;
	size_t n_signatures;
};

/* Clears c; set c->tls afterwards for a tls: address. */
void dclient_init(struct dclient *c, int timeout_ms);
/* path: a UNIX socket, tcp:HOST:PORT or tls:HOST:PORT (TLS with the
 * daemon's certificate verified for HOST, within the timeout). 0, or -1
 * with a reason in err (daemon unreachable, handshake failed). */
int dclient_connect(struct dclient *c, const char *path, char *err, size_t errlen);
int dclient_send(struct dclient *c, const void *data, size_t len, char *err, size_t errlen);
/* Reads one complete reply into *r (text replies only). 0 or -1. */
int dclient_read(struct dclient *c, struct dreply *r, char *err, size_t errlen);
void dclient_close(struct dclient *c);

int dreply_parse(const char *buf, size_t len, struct dreply *r);
void dreply_free(struct dreply *r);

/* One whole SCAN over an open connection: head, body, reply. */
struct proto_envelope;
int dclient_scan(struct dclient *c, const struct proto_envelope *env,
                 const char *msg, size_t len, struct dreply *r,
                 char *err, size_t errlen);

/* One SIGN over an open connection: *code_r gets the reply's status and
 * *reply_r the whole reply text (malloc'd, NUL-terminated; for 200 its
 * DKIM-Signature fields are the lines from the first "DKIM-Signature:" to
 * the blank line). 0 or -1. */
int dclient_sign(struct dclient *c, const char *msg, size_t len,
                 int *code_r, char **reply_r, char *err, size_t errlen);

/* Like dclient_scan, but the len message bytes are read from fd (a spool
 * file positioned at the message start), so that no copy is held in
 * memory. -1 with a reason when fd ends early or a read fails. */
int dclient_scan_fd(struct dclient *c, const struct proto_envelope *env,
                    int fd, size_t len, struct dreply *r,
                    char *err, size_t errlen);

/* Splits an SMTP reply "550 5.7.1 text" into its parts: code (3 digits,
 * 2xx..5xx), optional enhanced status (class.subject.detail) and text,
 * each written NUL-terminated into the caller's arrays; the text is made
 * printable (CR, LF, NUL and '%' replaced) so that MTAs take it verbatim.
 * 0, or -1 when s does not start with a reply code. */
int dclient_split_smtp(const char *s, char code[4], char xcode[16],
                       char *text, size_t textlen);

/* The authserv-id of an Authentication-Results value (RFC 8601 2.2:
 * authserv-id = value, a token or a quoted-string, after optional CFWS;
 * then an optional version and ';'), of len bytes, not NUL-terminated,
 * untrusted. Copied lower-case, quoted-pairs undone, without trailing
 * dots, into id (idlen bytes). 0 when the value starts well-formed, 1 when
 * it holds the id and nothing else (a configured id), -1 with id "" when
 * no authserv-id can be read (unterminated comment or quote, junk after
 * the id, white space inside it, longer than idlen - 1). */
int dclient_ar_authserv_id(const char *value, size_t len, char *id, size_t idlen);

/* 1 when an incoming Authentication-Results value must go before ours is
 * added (RFC 8601 5): it claims our_id (as dclient_ar_authserv_id()
 * returns it), or its authserv-id cannot be read (a more lenient reader
 * might see ours in it), or our_id is unknown ("" or NULL). */
int dclient_ar_forged(const char *value, size_t len, const char *our_id);

/* Default socket path: $ALIGND_SOCKET or the daemon's default. */
const char *dclient_default_socket(void);

#endif
