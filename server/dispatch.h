/* The check engines as the daemon runs them, created once at start-up:
 * the shared DNS cache, the DKIM library, the public suffix list, and a
 * deferral queue the checks use to call back on a later loop turn.
 * The per-scan orchestration lives in scan.c. Loop thread. */
#ifndef ALIGND_DISPATCH_H
#define ALIGND_DISPATCH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct srv;
struct dnsq;
struct dkv_lib;
struct dmarc_psl;
/* One deferred call. The caller owns the node (inside the object that
 * defers), so deferring allocates nothing and cannot fail; a node is on
 * the queue at most once at a time. */
struct defer_item {
	struct defer_item *next;
	void (*fn)(void *);
	void *arg;
};

struct engines {
	struct srv_dns *dns;
	struct dnsq *dq;
	struct dkv_lib *dkv;
	struct dmarc_psl *psl;         /* loaded when dmarc_mode = rfc7489 */
	uv_idle_t defer_idle;
	struct defer_item *defer_head, *defer_tail;
	uint64_t dkim_jobs;            /* verifications handed to the worker pool */
};

struct srv_config;
struct dns_opts;
/* The resolver options a configuration gives (the daemon and alignd-report). */
void dispatch_dns_opts(const struct srv_config *c, struct dns_opts *o);
int dispatch_init(struct srv *s, char *err, size_t errlen);
/* Called at shutdown once no scan is left. */
void dispatch_close(struct srv *s);
/* Extra STATS lines; returns how many were written (at most max). */
size_t dispatch_stats(struct srv *s, const char **names, uint64_t *values,
                      size_t max);
/* Runs fn(arg) on a later loop turn (the checks' "never from inside"
 * hook), queued through the caller's node. */
void dispatch_defer(struct engines *e, struct defer_item *it, void (*fn)(void *), void *arg);

#endif
