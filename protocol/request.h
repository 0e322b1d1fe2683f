/* alignd line protocol, request side: an incremental parser that the
 * daemon feeds with socket bytes, plus the writer clients use to build a
 * request. No I/O, no globals; any thread, one parser per connection.
 * The contract is docs/PROTOCOL.md. */
#ifndef ALIGND_PROTO_REQUEST_H
#define ALIGND_PROTO_REQUEST_H

#include <stddef.h>
#include <stdint.h>

enum proto_cmd {
	PROTO_CMD_NONE = 0,
	PROTO_CMD_SCAN,
	PROTO_CMD_PING,
	PROTO_CMD_STATS,
	PROTO_CMD_QUIT,
	PROTO_CMD_SIGN,           /* a message to sign: same framing as SCAN */
};

enum proto_format { PROTO_FMT_TEXT = 0, PROTO_FMT_MSGPACK };

struct proto_limits {
	size_t max_line;          /* one request line, EOL excluded */
	size_t max_head;          /* command line + fields + blank line */
	size_t max_fields;
	uint64_t max_body;        /* Content-Length */
};

void proto_limits_default(struct proto_limits *l);

struct proto_request {
	enum proto_cmd cmd;
	char *client_ip;          /* NULL when absent */
	char *helo;               /* NULL when absent or empty */
	char *mail_from;          /* NULL when absent, "" for the null sender <> */
	char **rcpt;
	size_t n_rcpt;
	char *queue_id;
	enum proto_format format;
	int explain;
	uint64_t content_length;
	int has_length;
};

enum proto_ev {
	PROTO_EV_MORE = 0,        /* every byte given was used; feed more */
	PROTO_EV_HEAD,            /* SCAN or SIGN head parsed; body bytes follow */
	PROTO_EV_BODY,            /* a chunk of the SCAN or SIGN body (data, len) */
	PROTO_EV_END,             /* request complete: act on it */
	PROTO_EV_ERROR,           /* bad request: reply status + reason */
};

struct proto_event {
	enum proto_ev type;
	const struct proto_request *req;  /* HEAD, END: borrowed until the next proto_feed() */
	const char *data;                 /* BODY: points into the fed buffer */
	size_t len;
	int status;                       /* ERROR: 4xx */
	const char *reason;               /* ERROR: static text */
	int fatal;                        /* ERROR: framing lost, close the connection */
};

struct proto_parser;

struct proto_parser *proto_parser_new(const struct proto_limits *lim);
void proto_parser_free(struct proto_parser **p);

/* Consumes bytes from buf[0..len) and reports one event; *used_r says how
 * many bytes were consumed. The caller feeds the rest again, and keeps
 * calling (even with len 0) until PROTO_EV_MORE: the END of a request whose
 * last byte has been consumed comes without further input. After a fatal
 * ERROR every later call returns the same error. A non-fatal ERROR is
 * reported once the bad request has been skipped entirely, so replies stay
 * in request order and the connection stays usable. */
int proto_feed(struct proto_parser *p, const char *buf, size_t len,
               size_t *used_r, struct proto_event *ev);

/* Moves the request reported by HEAD or END out of the parser: the caller
 * owns it and frees it with proto_request_clear(). */
void proto_take_request(struct proto_parser *p, struct proto_request *dst);
void proto_request_clear(struct proto_request *r);

/* 1 when the parser is inside a request (some of its bytes were read). */
int proto_in_request(const struct proto_parser *p);

const char *proto_cmd_name(enum proto_cmd c);

/* Client side: writes a SCAN request head (fields + blank line) for a body
 * of body_len bytes into a malloc'd buffer. Values containing CR, LF or NUL
 * are refused (-1). */
struct proto_envelope {
	const char *client_ip, *helo, *mail_from, *queue_id;
	const char *const *rcpt;
	size_t n_rcpt;
	enum proto_format format;
	int explain;
	int sign;                 /* a SIGN head instead of SCAN */
};
int proto_write_scan_head(const struct proto_envelope *e, uint64_t body_len,
                          char **out_r, size_t *len_r);

#endif
