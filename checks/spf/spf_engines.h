/* The two check_host() engines behind spf_check_host(). Loop thread only. */
#ifndef ALIGND_SPF_ENGINES_H
#define ALIGND_SPF_ENGINES_H

#include "checks/spf/spf.h"

/* As spf_check_host(): 0, or -1 without memory (done will not run). */
int spf_native_check_host(struct dnsq *dq, const struct spf_request *rq,
                          struct trace *t, spf_done_cb done, void *arg);
int spf_libspf2_check_host(struct dnsq *dq, const struct spf_request *rq,
                           struct trace *t, spf_done_cb done, void *arg);

#endif
