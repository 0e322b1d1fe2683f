/* spf_check_host(): engine choice and request builders. Loop thread. */
#include "checks/spf/spf.h"
#include "checks/spf/spf_engines.h"

#include <string.h>

int spf_check_host(struct dnsq *dq, const struct spf_request *rq,
                   struct trace *t, spf_done_cb done, void *arg)
{
	if (rq->engine == SPF_ENGINE_LIBSPF2)
		return spf_libspf2_check_host(dq, rq, t, done, arg);
	return spf_native_check_host(dq, rq, t, done, arg);
}

void spf_request_mailfrom(struct spf_request *rq, const char *ip,
                          const char *mail_from, const char *helo)
{
	memset(rq, 0, sizeof(*rq));
	rq->ip = ip;
	rq->helo = helo;
	/* RFC 7208 2.4: with a null reverse-path the MAIL FROM check is the
	 * HELO check: sender postmaster@<helo>, domain <helo> */
	rq->sender = (mail_from && *mail_from) ? mail_from : NULL;
	rq->domain = NULL;
}

void spf_request_helo(struct spf_request *rq, const char *ip, const char *helo)
{
	memset(rq, 0, sizeof(*rq));
	rq->ip = ip;
	rq->helo = helo;
	rq->sender = NULL;   /* RFC 7208 2.3: postmaster@<helo> */
	rq->domain = helo;
}

const char *spf_engine_name(int engine)
{
	return engine == SPF_ENGINE_LIBSPF2 ? "libspf2" : "native";
}
