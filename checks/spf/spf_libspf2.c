/* placeholder */
#include "checks/spf/spf_engines.h"
void spf_libspf2_check_host(struct dnsq *dq, const struct spf_request *rq,
                            struct trace *t, spf_done_cb done, void *arg)
{
	spf_native_check_host(dq, rq, t, done, arg);
}
