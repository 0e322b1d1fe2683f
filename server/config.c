/* Configuration keys, defaults and the `key = value` file reader.
 * Loop thread only. The key table below is the single source of truth:
 * cfg_print() and docs/CONFIG.md follow it. */
#include "server/config.h"
#include "server/sign.h"
#include "server/tls.h"
#include "common/limits.h"
#include "common/text.h"

#include <ctype.h>
#include <limits.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pwd.h>
#include <unistd.h>

enum ktype { K_STR, K_UINT, K_MS, K_SIZE, K_BOOL, K_MODE, K_DOUBLE, K_LOG };

struct key {
	const char *name;
	enum ktype type;
	size_t off, size;         /* where the value lives, and its width */
	const char *def;          /* default, as text */
	const char *choices;      /* K_STR: allowed values, space-separated, or NULL */
	uint64_t min, max;        /* numeric keys */
};

/* a field's place and width: a numeric key may be unsigned or uint64_t */
#define O(f) offsetof(struct srv_config, f), sizeof(((struct srv_config *)0)->f)
static const struct key keys[] = {
	{ "socket",              K_STR,  O(socket), "/run/alignd/alignd.sock", NULL, 0, 0 },
	{ "socket_mode",         K_MODE, O(socket_mode), "0660", NULL, 0, 0777 },
	{ "socket_group",        K_STR,  O(socket_group), "", NULL, 0, 0 },
	{ "pid_file",            K_STR,  O(pid_file), "", NULL, 0, 0 },
	{ "user",                K_STR,  O(user), "", NULL, 0, 0 },
	{ "group",               K_STR,  O(group), "", NULL, 0, 0 },
	{ "allowed_peers",       K_STR,  O(allowed_peers), "", NULL, 0, 0 },
	{ "allowed_networks",    K_STR,  O(allowed_networks), "127.0.0.0/8, ::1", NULL, 0, 0 },
	{ "http_listen",         K_STR,  O(http_listen), "", NULL, 0, 0 },
	{ "listen_tcp",          K_STR,  O(listen_tcp), "", NULL, 0, 0 },
	{ "tcp_allow_remote",    K_BOOL, O(tcp_allow_remote), "no", NULL, 0, 0 },
	{ "tls_cert_file",       K_STR,  O(tls_cert_file), "", NULL, 0, 0 },
	{ "tls_key_file",        K_STR,  O(tls_key_file), "", NULL, 0, 0 },
	{ "tls_client_ca_file",  K_STR,  O(tls_client_ca_file), "", NULL, 0, 0 },
	{ "tls_min_version",     K_STR,  O(tls_min_version), "1.2", "1.2 1.3", 0, 0 },
	{ "tls_ciphers",         K_STR,  O(tls_ciphers), "", NULL, 0, 0 },
	{ "tls_handshake_timeout", K_MS, O(tls_handshake_timeout), "10s", NULL, 100, 600000 },
	{ "http_allow_remote",   K_BOOL, O(http_allow_remote), "no", NULL, 0, 0 },
	{ "workers",             K_UINT, O(workers), "0", NULL, 0, 256 },
	{ "max_message_size",    K_SIZE, O(max_message_size), "50M", NULL, 1024, (uint64_t)1 << 32 },
	{ "max_request_header",  K_SIZE, O(max_request_header), "64K", NULL, 512, 16u << 20 },
	{ "max_line_length",     K_SIZE, O(max_line_length), "4096", NULL, 256, 1u << 20 },
	{ "max_connections",     K_UINT, O(max_connections), "1024", NULL, 1, 1000000 },
	{ "max_inflight_bytes",  K_SIZE, O(max_inflight_bytes), "512M", NULL, 1024, (uint64_t)1 << 40 },
	{ "idle_timeout",        K_MS,   O(idle_timeout), "60s", NULL, 100, 86400000 },
	{ "request_timeout",     K_MS,   O(request_timeout), "30s", NULL, 100, 86400000 },
	{ "scan_timeout",        K_MS,   O(scan_timeout), "20s", NULL, 100, 3600000 },
	{ "shutdown_timeout",    K_MS,   O(shutdown_timeout), "10s", NULL, 0, 3600000 },
	{ "log",                 K_LOG,  O(log), "stderr", NULL, 0, 0 },
	{ "syslog_facility",     K_STR,  O(syslog_facility), "mail",
	  "mail daemon local0 local1 local2 local3 local4 local5 local6 local7", 0, 0 },
	{ "log_debug",           K_BOOL, O(log_debug), "no", NULL, 0, 0 },
	{ "log_format",          K_STR,  O(log_format), "text", "text json", 0, 0 },
	{ "authserv_id",         K_STR,  O(authserv_id), "", NULL, 0, 0 },
	{ "dns_trust_anchor",    K_STR,  O(dns_trust_anchor), "/usr/share/dns/root.key", NULL, 0, 0 },
	{ "dns_mode",            K_STR,  O(dns_mode), "forward", "forward recursive", 0, 0 },
	{ "dns_forwarders",      K_STR,  O(dns_forwarders), "", NULL, 0, 0 },
	{ "unbound_config",      K_STR,  O(unbound_config), "", NULL, 0, 0 },
	{ "dns_timeout",         K_MS,   O(dns_timeout), "5s", NULL, 50, 600000 },
	{ "dns_msg_cache_size",  K_SIZE, O(dns_msg_cache_size), "32M", NULL, 0, (uint64_t)1 << 36 },
	{ "dns_rrset_cache_size", K_SIZE, O(dns_rrset_cache_size), "64M", NULL, 0, (uint64_t)1 << 36 },
	{ "dns_serve_stale",     K_BOOL, O(dns_serve_stale), "no", NULL, 0, 0 },
	{ "dns_qname_minimisation", K_BOOL, O(dns_qname_minimisation), "no", NULL, 0, 0 },
	{ "spf_engine",          K_STR,  O(spf_engine), "native", "native libspf2", 0, 0 },
	{ "spf_helo",            K_BOOL, O(spf_helo), "yes", NULL, 0, 0 },
	{ "dkim_max_signatures", K_UINT, O(dkim_max_signatures), "8", NULL, 1, 64 },
	{ "dkim_engine",         K_STR,  O(dkim_engine), "native", "native libopendkim", 0, 0 },
	{ "dkim_key_cache",      K_UINT, O(dkim_key_cache), "4096", NULL, 1, 1000000 },
	{ "dkim_sign_table",     K_STR,  O(dkim_sign_table), "", NULL, 0, 0 },
	{ "dkim_sign_fallback",  K_STR,  O(dkim_sign_fallback), "", NULL, 0, 0 },
	{ "dkim_sign_canon",     K_STR,  O(dkim_sign_canon), "relaxed/relaxed",
	  "relaxed/relaxed relaxed/simple simple/relaxed simple/simple", 0, 0 },
	{ "dkim_sign_expire",    K_MS,   O(dkim_sign_expire), "0", NULL, 0, (uint64_t)366 * 86400000 },
	{ "dkim_sign_headers",   K_STR,  O(dkim_sign_headers), "", NULL, 0, 0 },
	{ "dkim_sign_oversign",  K_STR,  O(dkim_sign_oversign), "", NULL, 0, 0 },
	{ "dmarc_mode",          K_STR,  O(dmarc_mode), "rfc9989", "rfc9989 rfc7489", 0, 0 },
	{ "dmarc_temperror",     K_STR,  O(dmarc_temperror), "tempfail", "tempfail accept", 0, 0 },
	{ "policy_mode",         K_STR,  O(policy_mode), "rfc9989", "strict rfc9989 quarantine-only", 0, 0 },
	{ "trusted_arc_sealers", K_STR,  O(trusted_arc_sealers), "", NULL, 0, 0 },
	{ "untrusted_arc",       K_STR,  O(untrusted_arc), "ignore", "ignore quarantine", 0, 0 },
	{ "bad_from",            K_STR,  O(bad_from), "reject", "reject quarantine accept", 0, 0 },
	{ "trusted_forwarders",  K_STR,  O(trusted_forwarders), "", NULL, 0, 0 },
	{ "trusted_lists",       K_STR,  O(trusted_lists), "", NULL, 0, 0 },
	{ "policy_exceptions",   K_STR,  O(policy_exceptions), "", NULL, 0, 0 },
	{ "report_org_name",     K_STR,  O(report_org_name), "", NULL, 0, 0 },
	{ "report_email",        K_STR,  O(report_email), "", NULL, 0, 0 },
	{ "report_dir",          K_STR,  O(report_dir), "/var/lib/alignd/reports", NULL, 0, 0 },
	{ "report_smtp",         K_STR,  O(report_smtp), "smtp://localhost:25", NULL, 0, 0 },
	{ "report_smtp_tls",     K_STR,  O(report_smtp_tls), "try", "try require off", 0, 0 },
	{ "report_smtp_user",    K_STR,  O(report_smtp_user), "", NULL, 0, 0 },
	{ "report_smtp_password_file", K_STR, O(report_smtp_password_file), "", NULL, 0, 0 },
	{ "report_suppress",     K_STR,  O(report_suppress), "", NULL, 0, 0 },
	{ "report_pace",         K_MS,   O(report_pace), "1s", NULL, 0, 3600000 },
	{ "report_max_size",     K_SIZE, O(report_max_size), "10M", NULL, 1024, (uint64_t)1 << 30 },
	{ "report_retry_days",   K_UINT, O(report_retry_days), "5", NULL, 0, LIM_REPORT_RETRY_DAYS },
	{ "failure_reports",     K_BOOL, O(failure_reports), "no", NULL, 0, 0 },
	{ "failure_report_redact", K_BOOL, O(failure_report_redact), "yes", NULL, 0, 0 },
	{ "failure_report_rate", K_UINT, O(failure_report_rate), "10", NULL, 0, LIM_FAILURE_RATE_MAX },
	{ "reject_score",        K_DOUBLE, O(reject_score), "15", NULL, 0, 0 },
	{ "quarantine_score",    K_DOUBLE, O(quarantine_score), "6", NULL, 0, 0 },
	{ "history",             K_STR,  O(history), "sqlite:/var/lib/alignd/history.sqlite", NULL, 0, 0 },
	{ "history_queue",       K_UINT, O(history_queue), "8192", NULL, 1, LIM_HISTORY_QUEUE_MAX },
	{ "history_retention",   K_UINT, O(history_retention), "90", NULL, 0, 36500 },
	{ "history_max_size",    K_SIZE, O(history_max_size), "1G", NULL, 0, (uint64_t)1 << 40 },
};
#undef O

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static void *field(struct srv_config *c, const struct key *k)
{
	return (char *)c + k->off;
}

static const void *cfield(const struct srv_config *c, const struct key *k)
{
	return (const char *)c + k->off;
}

/* "123", "10s", "250ms", "2m" -> milliseconds */
static int parse_ms(const char *v, uint64_t *out)
{
	size_t len = strlen(v), dl = 0;
	while (dl < len && isdigit((unsigned char)v[dl]))
		dl++;
	uint64_t n;
	if (text_u64(v, dl, UINT64_MAX / 86400000, &n) < 0)
		return -1;
	const char *u = v + dl;
	if (!*u || strcmp(u, "ms") == 0)
		*out = n;
	else if (strcmp(u, "s") == 0)
		*out = n * 1000;
	else if (strcmp(u, "m") == 0)
		*out = n * 60000;
	else if (strcmp(u, "h") == 0)
		*out = n * 3600000;
	else if (strcmp(u, "d") == 0)
		*out = n * 86400000;
	else
		return -1;
	return 0;
}

/* "1024", "64K", "50M", "1G" -> bytes */
static int parse_size(const char *v, uint64_t *out)
{
	size_t len = strlen(v), dl = 0;
	while (dl < len && isdigit((unsigned char)v[dl]))
		dl++;
	uint64_t n;
	if (text_u64(v, dl, UINT64_MAX >> 31, &n) < 0)
		return -1;
	const char *u = v + dl;
	if (!*u)
		*out = n;
	else if (strcasecmp(u, "K") == 0 || strcasecmp(u, "KiB") == 0)
		*out = n << 10;
	else if (strcasecmp(u, "M") == 0 || strcasecmp(u, "MiB") == 0)
		*out = n << 20;
	else if (strcasecmp(u, "G") == 0 || strcasecmp(u, "GiB") == 0)
		*out = n << 30;
	else
		return -1;
	return 0;
}

static int parse_bool(const char *v, int *out)
{
	if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "on"))
		*out = 1;
	else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "off"))
		*out = 0;
	else
		return -1;
	return 0;
}

static int in_choices(const char *choices, const char *v)
{
	size_t vl = strlen(v);
	const char *p = choices;
	while (*p) {
		const char *e = strchr(p, ' ');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == vl && strncmp(p, v, l) == 0)
			return 1;
		p += l;
		if (*p)
			p++;
	}
	return 0;
}

static int set_key(struct srv_config *c, const struct key *k, const char *v,
                   char *err, size_t errlen)
{
	uint64_t n = 0;
	switch (k->type) {
	case K_STR: {
		if (k->choices && !in_choices(k->choices, v)) {
			snprintf(err, errlen, "%s: '%s' is not one of: %s", k->name, v, k->choices);
			return -1;
		}
		char *d = strdup(v);
		if (!d) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		char **slot = field(c, k);
		free(*slot);
		*slot = d;
		return 0;
	}
	case K_BOOL:
		if (parse_bool(v, field(c, k)) < 0) {
			snprintf(err, errlen, "%s: want yes or no, not '%s'", k->name, v);
			return -1;
		}
		return 0;
	case K_LOG:
		if (strcmp(v, "stderr") == 0)
			*(enum cfg_log *)field(c, k) = CFG_LOG_STDERR;
		else if (strcmp(v, "syslog") == 0)
			*(enum cfg_log *)field(c, k) = CFG_LOG_SYSLOG;
		else {
			snprintf(err, errlen, "%s: want stderr or syslog, not '%s'", k->name, v);
			return -1;
		}
		return 0;
	case K_DOUBLE: {
		char *end;
		errno = 0;
		double d = strtod(v, &end);
		if (errno || end == v || *end || d != d || d < -1e6 || d > 1e6) {
			snprintf(err, errlen, "%s: want a number, not '%s'", k->name, v);
			return -1;
		}
		*(double *)field(c, k) = d;
		return 0;
	}
	case K_MODE: {
		char *end;
		errno = 0;
		unsigned long m = strtoul(v, &end, 8);
		if (errno || end == v || *end || m > k->max) {
			snprintf(err, errlen, "%s: want an octal mode such as 0660, not '%s'", k->name, v);
			return -1;
		}
		*(unsigned *)field(c, k) = (unsigned)m;
		return 0;
	}
	case K_UINT:
		if (text_u64(v, strlen(v), UINT64_MAX, &n) < 0) {
			snprintf(err, errlen, "%s: want a whole number, not '%s'", k->name, v);
			return -1;
		}
		break;
	case K_MS:
		if (parse_ms(v, &n) < 0) {
			snprintf(err, errlen, "%s: want a duration such as 500ms, 10s or 2m, not '%s'", k->name, v);
			return -1;
		}
		break;
	case K_SIZE:
		if (parse_size(v, &n) < 0) {
			snprintf(err, errlen, "%s: want a size such as 4096, 64K or 50M, not '%s'", k->name, v);
			return -1;
		}
		break;
	}
	if (n < k->min || n > k->max) {
		snprintf(err, errlen, "%s: %llu is outside [%llu, %llu]", k->name,
		         (unsigned long long)n, (unsigned long long)k->min,
		         (unsigned long long)k->max);
		return -1;
	}
	if (k->size == sizeof(unsigned)) {
		if (n > UINT_MAX) {   /* a table whose max does not fit the field */
			snprintf(err, errlen, "%s: %llu is too large", k->name, (unsigned long long)n);
			return -1;
		}
		*(unsigned *)field(c, k) = (unsigned)n;
	} else {
		*(uint64_t *)field(c, k) = n;
	}
	return 0;
}

int cfg_set(struct srv_config *c, const char *key, const char *value,
            char *err, size_t errlen)
{
	if (strncmp(key, "score_", 6) == 0) {
		char *end;
		errno = 0;
		double d = strtod(value, &end);
		if (errno || end == value || *end || d != d || d < -1000 || d > 1000) {
			snprintf(err, errlen, "%s: want a number, not '%s'", key, value);
			return -1;
		}
		if (verdict_set_weight(&c->weights, key + 6, d) < 0) {
			snprintf(err, errlen, "%s: no symbol named %s", key, key + 6);
			return -1;
		}
		return 0;
	}
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, key) == 0)
			return set_key(c, &keys[i], value, err, errlen);
	snprintf(err, errlen, "unknown key '%s'", key);
	return -1;
}

/* Whether set_key() and cfg_print() access k's field with its own width. */
static bool width_fits(const struct key *k)
{
	switch (k->type) {
	case K_STR:    return k->size == sizeof(char *);
	case K_BOOL:   return k->size == sizeof(int);
	case K_LOG:    return k->size == sizeof(enum cfg_log);
	case K_MODE:   return k->size == sizeof(unsigned);
	case K_DOUBLE: return k->size == sizeof(double);
	case K_UINT:   return k->size == sizeof(uint64_t) ||
	                      (k->size == sizeof(unsigned) && k->max <= UINT_MAX);
	case K_MS:
	case K_SIZE:   return k->size == sizeof(uint64_t);
	}
	return false;
}

struct srv_config *cfg_new_default(void)
{
	struct srv_config *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->refs = 1;
	verdict_opts_default(&c->weights);
	char err[256];
	for (size_t i = 0; i < NKEYS; i++)
		if (!width_fits(&keys[i])) {
			/* a field whose width its type does not write is a bug in the table */
			fprintf(stderr, "alignd: key %s: field width %zu does not fit its type\n",
			        keys[i].name, keys[i].size);
			abort();
		}
	for (size_t i = 0; i < NKEYS; i++)
		if (set_key(c, &keys[i], keys[i].def, err, sizeof(err)) < 0) {
			/* a default that does not parse is a bug in the table */
			fprintf(stderr, "alignd: bad built-in default: %s\n", err);
			abort();
		}
	return c;
}

struct srv_config *cfg_load(const char *path, char *err, size_t errlen)
{
	struct srv_config *c = cfg_new_default();
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (!path)
		return c;
	c->path = strdup(path);
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		cfg_unref(&c);
		return NULL;
	}
	char line[4096];
	unsigned lineno = 0;
	int rc = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		size_t len = strlen(line);
		if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
			snprintf(err, errlen, "%s:%u: line too long", path, lineno);
			rc = -1;
			break;
		}
		char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		char *hash = strchr(p, '#');
		if (hash)
			*hash = '\0';
		char *end = p + strlen(p);
		while (end > p && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (!*p)
			continue;
		char *eq = strchr(p, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%u: want 'key = value'", path, lineno);
			rc = -1;
			break;
		}
		char *ke = eq;
		while (ke > p && isspace((unsigned char)ke[-1]))
			ke--;
		*ke = '\0';
		char *v = eq + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		/* an optional pair of double quotes keeps spaces and '#' out of it */
		size_t vl = strlen(v);
		if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
			v[vl - 1] = '\0';
			v++;
		}
		char e2[512];
		if (cfg_set(c, p, v, e2, sizeof(e2)) < 0) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, e2);
			rc = -1;
			break;
		}
	}
	fclose(f);
	if (rc < 0) {
		cfg_unref(&c);
		return NULL;
	}
	return c;
}

struct srv_config *cfg_ref(struct srv_config *c)
{
	c->refs++;
	return c;
}

void cfg_unref(struct srv_config **cp)
{
	struct srv_config *c = *cp;
	*cp = NULL;
	if (!c || --c->refs > 0)
		return;
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].type == K_STR)
			free(*(char **)field(c, &keys[i]));
	policy_conf_free(&c->policy);
	signtab_free(&c->signing);
	srv_tls_free(&c->tls);
	free(c->path);
	free(c);
}

int cfg_peer_allowed(const struct srv_config *c, unsigned uid)
{
	if (c->n_allowed == 0 || uid == 0 || uid == (unsigned)geteuid())
		return 1;
	for (size_t i = 0; i < c->n_allowed; i++)
		if (c->allowed_uids[i] == uid)
			return 1;
	return 0;
}

int cfg_addr_allowed(const struct srv_config *c, int family, const unsigned char *addr)
{
	for (size_t i = 0; i < c->n_allowed_nets; i++)
		if (net_prefix_match(&c->allowed_nets[i], family, addr))
			return 1;
	return 0;
}

static int parse_networks(struct srv_config *c, char *err, size_t errlen)
{
	c->n_allowed_nets = 0;
	for (const char *p = c->allowed_networks; *p;) {
		size_t n = strcspn(p, ", \t");
		if (n > 0) {
			if (c->n_allowed_nets == LIM_ALLOWED_NETWORKS) {
				snprintf(err, errlen, "allowed_networks: more than %u entries",
				         LIM_ALLOWED_NETWORKS);
				return -1;
			}
			if (net_prefix_parse(p, n, &c->allowed_nets[c->n_allowed_nets]) < 0) {
				snprintf(err, errlen, "allowed_networks: '%.*s' is not an address or "
				         "address/prefix", (int)(n > 64 ? 64 : n), p);
				return -1;
			}
			c->n_allowed_nets++;
		}
		p += n;
		p += strspn(p, ", \t");
	}
	return 0;
}

static int parse_peers(struct srv_config *c, char *err, size_t errlen)
{
	c->n_allowed = 0;
	const char *p = c->allowed_peers;
	while (*p) {
		while (*p == ' ' || *p == ',' || *p == '\t')
			p++;
		size_t n = strcspn(p, " ,\t");
		if (n == 0)
			break;
		char name[64];
		if (n >= sizeof(name)) {
			snprintf(err, errlen, "allowed_peers: '%.*s' is too long", 20, p);
			return -1;
		}
		memcpy(name, p, n);
		name[n] = '\0';
		p += n;
		uint64_t uid;
		if (text_u64(name, n, 0xfffffffeu, &uid) < 0) {
			struct passwd *pw = getpwnam(name);
			if (!pw) {
				snprintf(err, errlen, "allowed_peers: no user named '%s'", name);
				return -1;
			}
			uid = pw->pw_uid;
		}
		if (c->n_allowed == sizeof(c->allowed_uids) / sizeof(c->allowed_uids[0])) {
			snprintf(err, errlen, "allowed_peers: more than %zu entries",
			         sizeof(c->allowed_uids) / sizeof(c->allowed_uids[0]));
			return -1;
		}
		c->allowed_uids[c->n_allowed++] = (unsigned)uid;
	}
	return 0;
}

/* listen_tcp's TLS context, read and checked now: at start, on SIGHUP
 * (certificates are reloaded so) and by --check-config. */
static int load_tls(struct srv_config *c, char *err, size_t errlen)
{
	srv_tls_free(&c->tls);
	if (!*c->tls_cert_file && !*c->tls_key_file) {
		if (*c->tls_client_ca_file) {
			snprintf(err, errlen, "tls_client_ca_file needs tls_cert_file and tls_key_file");
			return -1;
		}
		return 0;
	}
	if (!*c->tls_cert_file || !*c->tls_key_file) {
		snprintf(err, errlen, "tls_cert_file and tls_key_file go together: %s is not set",
		         *c->tls_cert_file ? "tls_key_file" : "tls_cert_file");
		return -1;
	}
	return srv_tls_new(c->tls_cert_file, c->tls_key_file, c->tls_client_ca_file,
	                   c->tls_min_version, c->tls_ciphers, &c->tls, err, errlen);
}

int cfg_finalize(struct srv_config *c, char *err, size_t errlen)
{
	if (parse_peers(c, err, errlen) < 0 || parse_networks(c, err, errlen) < 0)
		return -1;
	if (c->max_message_size > c->max_inflight_bytes) {
		snprintf(err, errlen, "max_message_size (%llu) is above max_inflight_bytes (%llu): "
		         "such a message could never be admitted",
		         (unsigned long long)c->max_message_size,
		         (unsigned long long)c->max_inflight_bytes);
		return -1;
	}
	if (strcmp(c->history, "off") != 0 && !(strncmp(c->history, "sqlite:", 7) == 0 && c->history[7]) &&
	    strncmp(c->history, "postgresql://", 13) != 0 && strncmp(c->history, "postgres://", 11) != 0) {
		snprintf(err, errlen, "history: want off, sqlite:/path or postgresql://..., not '%s'", c->history);
		return -1;
	}
	policy_conf_free(&c->policy);
	struct policy_conf *p = &c->policy;
	p->mode = strcmp(c->policy_mode, "strict") == 0 ? POLICY_STRICT
	        : strcmp(c->policy_mode, "quarantine-only") == 0 ? POLICY_QUARANTINE_ONLY
	        : POLICY_RFC9989;
	p->untrusted_arc_lowers = strcmp(c->untrusted_arc, "quarantine") == 0;
	char e2[384];
	if (policy_add_sealers(p, c->trusted_arc_sealers, e2, sizeof(e2)) < 0) {
		snprintf(err, errlen, "trusted_arc_sealers: %s", e2);
		return -1;
	}
	if (policy_add_forwarders(p, c->trusted_forwarders, e2, sizeof(e2)) < 0) {
		snprintf(err, errlen, "trusted_forwarders: %s", e2);
		return -1;
	}
	if (policy_add_lists(p, c->trusted_lists, e2, sizeof(e2)) < 0) {
		snprintf(err, errlen, "trusted_lists: %s", e2);
		return -1;
	}
	if (*c->policy_exceptions &&
	    policy_load_exceptions(p, c->policy_exceptions, e2, sizeof(e2)) < 0) {
		snprintf(err, errlen, "policy_exceptions: %s", e2);
		return -1;
	}
	if (signtab_load(c, err, errlen) < 0)
		return -1;
	return load_tls(c, err, errlen);
}

static void print_ms(FILE *out, uint64_t ms)
{
	if (ms && ms % 1000 == 0)
		fprintf(out, "%llus", (unsigned long long)(ms / 1000));
	else
		fprintf(out, "%llums", (unsigned long long)ms);
}

static void print_size(FILE *out, uint64_t n)
{
	if (n && n % (1u << 20) == 0)
		fprintf(out, "%lluM", (unsigned long long)(n >> 20));
	else if (n && n % 1024 == 0)
		fprintf(out, "%lluK", (unsigned long long)(n >> 10));
	else
		fprintf(out, "%llu", (unsigned long long)n);
}

void cfg_print(const struct srv_config *c, FILE *out)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		const void *f = cfield(c, k);
		fprintf(out, "%s = ", k->name);
		switch (k->type) {
		case K_STR: {
			const char *s = *(char *const *)f;
			if (strpbrk(s, " #") || !*s)
				fprintf(out, "\"%s\"", s);
			else
				fputs(s, out);
			break;
		}
		case K_BOOL:   fputs(*(const int *)f ? "yes" : "no", out); break;
		case K_LOG:    fputs(*(const enum cfg_log *)f == CFG_LOG_SYSLOG ? "syslog" : "stderr", out); break;
		case K_MODE:   fprintf(out, "%04o", *(const unsigned *)f); break;
		case K_DOUBLE: fprintf(out, "%g", *(const double *)f); break;
		case K_UINT:
			if (k->size == sizeof(unsigned))
				fprintf(out, "%u", *(const unsigned *)f);
			else
				fprintf(out, "%llu", (unsigned long long)*(const uint64_t *)f);
			break;
		case K_MS:     print_ms(out, *(const uint64_t *)f); break;
		case K_SIZE:   print_size(out, *(const uint64_t *)f); break;
		}
		fputc('\n', out);
	}
	for (int i = 0; i < VSYM_COUNT; i++)
		fprintf(out, "score_%s = %g\n", verdict_sym_name((enum verdict_sym)i), c->weights.weights[i]);
}

enum dmarc_disp cfg_bad_author_disp(const struct srv_config *c)
{
	/* MUAs show what fails to parse: no From, or a bad one, is judged
	 * by bad_from; in quarantine-only mode nothing is rejected on DMARC
	 * grounds */
	if (strcmp(c->bad_from, "accept") == 0)
		return DMARC_DISP_NONE;
	if (strcmp(c->bad_from, "quarantine") == 0 || c->policy.mode == POLICY_QUARANTINE_ONLY)
		return DMARC_DISP_QUARANTINE;
	return DMARC_DISP_REJECT;
}

void cfg_verdict_opts(const struct srv_config *c, struct verdict_opts *o)
{
	*o = c->weights;
	o->reject_score = c->reject_score;
	o->quarantine_score = c->quarantine_score;
	o->dmarc_temperror_tempfail = strcmp(c->dmarc_temperror, "tempfail") == 0;
}

const char *cfg_authserv_id(const struct srv_config *c)
{
	static char host[256];
	if (c->authserv_id && *c->authserv_id)
		return c->authserv_id;
	if (!host[0] && gethostname(host, sizeof(host) - 1) < 0)
		strcpy(host, "localhost");
	return host;
}
