/* One SCAN request: the message bytes, the checks it runs and its reply.
 * Loop thread (its checks hand CPU work to the worker pool). A scan owns
 * its request and buffers; it frees itself after it has reported (or been
 * abandoned) and every check of it has settled. */
#ifndef ALIGND_SCAN_H
#define ALIGND_SCAN_H

#include <stddef.h>

#include "protocol/reply.h"
#include "protocol/request.h"

struct srv;
struct scan;

/* The verdict; borrowed for the duration of the call. The caller encodes
 * it (text or msgpack on the line protocol, JSON on the HTTP endpoint).
 * res is NULL when the scan failed internally (reply 5xx). */
typedef void (*scan_done_cb)(void *arg, const struct proto_result *res);

/* Takes ownership of *req (left empty). */
struct scan *scan_new(struct srv *s, struct proto_request *req,
                      scan_done_cb done, void *arg);
/* Appends body bytes; checks that need only the header section start as
 * soon as it is complete. */
void scan_body(struct scan *sc, const char *data, size_t len);
/* The whole message is in: the remaining checks run; done() follows,
 * never from inside this call. */
void scan_end(struct scan *sc);
/* The client is gone: done() will not be called. */
void scan_abandon(struct scan *sc);

#endif
