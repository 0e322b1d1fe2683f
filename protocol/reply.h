/* alignd line protocol, reply side: the scan result as data, its text and
 * msgpack encodings (daemon), and reply framing/parsing (clients).
 * No I/O; any thread. The contract is docs/PROTOCOL.md. */
#ifndef ALIGND_PROTO_REPLY_H
#define ALIGND_PROTO_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

struct proto_symbol {
	const char *name;
	double score;
	const char *detail;        /* may be NULL */
};

struct proto_trace_line {
	uint64_t t_us;
	const char *area;
	const char *text;
};

struct proto_result {
	const char *queue_id;      /* echoed from the request when it had one */
	const char *action;        /* accept | quarantine | reject | tempfail */
	double score;
	const char *smtp_reply;    /* NULL for accept */
	const struct proto_symbol *symbols;
	size_t n_symbols;
	const char *auth_results;  /* the Authentication-Results value */
	const char *const *add_headers;  /* extra "Name: value" headers for the MTA to add */
	size_t n_add_headers;
	const struct proto_trace_line *trace;
	size_t n_trace;
	size_t trace_dropped;
};

/* Full replies, appended to out (which bounds them). 0 or -1. */
int proto_reply_result_text(struct buf *out, const struct proto_result *r);
int proto_reply_result_msgpack(struct buf *out, const struct proto_result *r);
/* "ALIGND/1 <status> <reason>" + blank line; reason made printable. */
int proto_reply_status(struct buf *out, int status, const char *reason);
/* STATS: status line, then "Name: value" lines, blank line. */
int proto_reply_stats(struct buf *out, const char *const *names,
                      const uint64_t *values, size_t n);

/* SIGN: status line, "Sign-Domain: d" (when n > 0), "Signatures: n", then
 * the n DKIM-Signature fields exactly as they are to be prepended (each
 * folded, its lines ending in CRLF), blank line. 0 or -1. */
int proto_reply_sign(struct buf *out, const char *domain,
                     const char *const *fields, size_t n);

/* Client side: length of the first complete reply in buf[0..len), or 0
 * when more bytes are needed, or -1 when it is not a reply. */
long proto_reply_length(const char *buf, size_t len);
/* Status code of a complete reply (the 3 digits after "ALIGND/1 "), or -1. */
int proto_reply_code(const char *buf, size_t len);

#endif
