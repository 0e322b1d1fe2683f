/* The check engines as the daemon runs them: created once at start-up
 * (DNS cache, DKIM library, ...), and the per-scan orchestration lives in
 * scan.c. Loop thread. */
#ifndef ALIGND_DISPATCH_H
#define ALIGND_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

struct srv;

int dispatch_init(struct srv *s, char *err, size_t errlen);
/* Called at shutdown once no scan is left. */
void dispatch_close(struct srv *s);
/* Extra STATS lines; returns how many were written (at most max). */
size_t dispatch_stats(struct srv *s, const char **names, uint64_t *values,
                      size_t max);

#endif
