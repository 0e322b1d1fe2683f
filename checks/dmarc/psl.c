/* Public suffix list for RFC 7489 mode, through libpsl. Loaded once;
 * read-only afterwards, so any thread may query it. */
#include "checks/dmarc/dmarc.h"

#include <libpsl.h>
#include <stdlib.h>
#include <string.h>

struct dmarc_psl {
	psl_ctx_t *ctx;
};

struct dmarc_psl *dmarc_psl_open(const char *path)
{
	struct dmarc_psl *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->ctx = path ? psl_load_file(path) : psl_latest(NULL);
	if (!p->ctx) {
		free(p);
		return NULL;
	}
	return p;
}

void dmarc_psl_close(struct dmarc_psl **pp)
{
	struct dmarc_psl *p = *pp;
	if (!p)
		return;
	if (p->ctx)
		psl_free(p->ctx);
	free(p);
	*pp = NULL;
}

int dmarc_psl_org(const struct dmarc_psl *p, const char *domain,
                  char out[DMARC_DOMAIN_MAX])
{
	size_t n = strlen(domain);
	if (!p || n == 0 || n >= DMARC_DOMAIN_MAX)
		return -1;
	/* RFC 7489 3.2: the public suffix plus one label; a domain that is
	 * itself a public suffix stays as it is */
	const char *r = psl_registrable_domain(p->ctx, domain);
	if (!r)
		r = domain;
	memmove(out, r, strlen(r) + 1);
	return 0;
}
