/* The rspamd-compatible HTTP endpoint (config key http_listen): Exim's
 * `spamd_address = ... variant=rspamd`, rspamc and other rspamd clients
 * POST a message to /checkv2 (or /check, /symbols) with the envelope in
 * request headers; GET /ping, and GET /metrics for Prometheus
 * (server/metrics.h). Loop thread. Owns its listener and its connections. */
#ifndef ALIGND_HTTP_H
#define ALIGND_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct srv;

/* Starts listening when http_listen is set (no-op otherwise). 0 or -1
 * with a reason in err. */
int http_start(struct srv *s, char *err, size_t errlen);
/* Stops accepting; idle connections close now, busy ones after their
 * reply. srv_maybe_finish() sees them through srv->n_conns. */
void http_shutdown(struct srv *s);

/* For srv_shed_idle(): whether an HTTP connection waits idle for its next
 * request (1, with the loop time it began waiting), and closing the one
 * that has waited longest. */
int http_oldest_idle(struct srv *s, uint64_t *since_r);
void http_shed_oldest_idle(struct srv *s);

#endif
