/* The head of a request to the rspamd-compatible HTTP endpoint: finding
 * where it ends as bytes arrive, and parsing it into a scan request. A
 * small strict HTTP/1.x reader (RFC 9112): no folded fields, no transfer
 * codings, Content-Length required for a scan, no control characters, at
 * most LIM_MAX_REQUEST_FIELDS fields; also the legacy spamc form
 * "CHECK RSPAMC/1.3" that Exim sends. No I/O, no global state. */
#ifndef ALIGND_HTTP_REQ_H
#define ALIGND_HTTP_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/request.h"

enum http_target {
	HTTP_T_SCAN = 0,     /* POST /checkv2, /check, /symbols; PROCESS, CHECK, SYMBOLS */
	HTTP_T_PING,         /* GET /ping */
	HTTP_T_METRICS,      /* GET /metrics (Prometheus) */
};

struct http_head {
	enum http_target target;
	int keep_alive;      /* HTTP/1.1 unless "Connection: close"; 1.0 unless keep-alive */
	int legacy;          /* RSPAMC/1.x: legacy text reply, then close */
};

/* Offset just past the blank line that ends the head in d[0..len), or 0
 * when it has not arrived. With resume (0 before the first call for a
 * head), each call looks only at bytes it has not seen: a head that comes
 * one byte at a time costs linear time, not quadratic. */
size_t http_head_end(const char *d, size_t len, size_t *resume);

/* Parses head[0..len) (request line, fields, blank line; the bytes are
 * modified) into h and req. Returns 0, or an HTTP status (400, 404, 405,
 * 411, 413, 431, 500, 505) with *why set to a static text. req is cleared
 * first and holds copies: proto_request_clear() it either way. max_body:
 * the largest Content-Length accepted (413 above). */
int http_parse_head(char *head, size_t len, uint64_t max_body, struct http_head *h,
                    struct proto_request *req, const char **why);

#endif
