/* What the parts of alignd-report share (report_main.c, report_whatif.c):
 * exit codes, configuration loading, the store, periods. */
#ifndef ALIGND_REPORT_TOOL_H
#define ALIGND_REPORT_TOOL_H

#include <stddef.h>
#include <stdint.h>

#include "server/config.h"
#include "store/store.h"

/* sysexits.h values, as the other programs use them */
enum { EX_OK_ = 0, EX_USAGE_ = 64, EX_UNAVAILABLE_ = 69, EX_TEMPFAIL_ = 75, EX_CONFIG_ = 78 };

/* Loads config (NULL: the built-in defaults), applies the KEY=VALUE sets
 * and validates the result as the daemon's --check-config does. EX_OK_,
 * or an exit code with the reason on stderr; *cfg_r is set either way
 * (NULL without memory), for the caller to unref. */
int report_load_config(const char *config, const char *const *sets, size_t nsets,
                       struct srv_config **cfg_r);
/* Opens cfg's history store; EX_OK_, or an exit code with the reason on
 * stderr (EX_CONFIG_ for history = off). */
int report_open_store(const struct srv_config *cfg, struct store **st, char *err, size_t errlen);
/* "7d", "12h", "30m" before now, or a UTC day "YYYY-MM-DD"; 0 or -1. */
int report_parse_since(const char *v, int64_t now, int64_t *since_r);

/* alignd-report --what-if (report_whatif.c) */
struct whatif_opts {
	const char *config;              /* -c: the running configuration */
	const char *proposed;            /* --proposed FILE; NULL: config */
	const char *const *sets;         /* --set, applied to the proposed one, whose
	                                  * history key names the store read */
	size_t nsets;
	const char *since;               /* NULL: 7d */
	const char *domain;              /* --domain: only this author domain (and below) */
	const char *as_policy;           /* --as-policy none|quarantine|reject (with --domain) */
	const char *chart;               /* --chart FILE.png, or NULL */
	int json;
	size_t top;
};
int report_whatif(const struct whatif_opts *o);

#endif
