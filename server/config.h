/* The daemon's configuration: a table of keys with defaults, loaded from
 * an optional `key = value` file and overridden by command-line flags.
 * Loop thread only. A loaded config is immutable and reference-counted:
 * SIGHUP builds a new one; scans keep the one they started with. */
#ifndef ALIGND_CONFIG_H
#define ALIGND_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "checks/verdict/verdict.h"
#include "common/limits.h"
#include "common/netprefix.h"

enum cfg_log { CFG_LOG_STDERR = 0, CFG_LOG_SYSLOG };

struct signtab;
struct srv_tls;

struct srv_config {
	unsigned refs;
	char *path;                   /* the file it was read from, or NULL */

	/* socket */
	char *socket;
	unsigned socket_mode;
	char *socket_group;
	char *pid_file;
	char *user;                   /* drop to this user when started as root */
	char *group;                  /* and this group (default: the user's) */
	char *allowed_peers;          /* uids or user names allowed to connect */
	char *allowed_networks;       /* TCP listeners: client networks allowed */
	char *listen_tcp;             /* line protocol over TCP: ADDRESS:PORT, or "" */
	int tcp_allow_remote;         /* listen_tcp may be a non-loopback address */
	char *http_listen;            /* rspamd-compatible endpoint: "", unix:/path, ADDR:PORT */
	int http_allow_remote;        /* allow a non-loopback http_listen address */
	char *tls_cert_file;          /* listen_tcp speaks TLS when this and the key are set */
	char *tls_key_file;
	char *tls_client_ca_file;     /* client certificates from these CAs are required */
	char *tls_min_version;        /* 1.2 | 1.3 */
	char *tls_ciphers;            /* TLS 1.2 cipher list; "": OpenSSL's default */
	uint64_t tls_handshake_timeout;  /* milliseconds from accept to a finished handshake */
	struct srv_tls *tls;          /* built by cfg_finalize(); NULL: plain TCP */

	/* workers and limits */
	unsigned workers;             /* 0: one per core */
	uint64_t max_message_size;
	uint64_t max_inflight_bytes;     /* message bytes held by all requests together */
	uint64_t max_request_header;
	uint64_t max_line_length;
	uint64_t max_connections;
	uint64_t idle_timeout;        /* milliseconds */
	uint64_t request_timeout;
	uint64_t scan_timeout;
	uint64_t shutdown_timeout;

	/* logging */
	enum cfg_log log;
	char *syslog_facility;
	int log_debug;
	char *log_format;             /* text | json */

	/* results */
	char *authserv_id;            /* empty: the host name */

	/* DNS */
	char *dns_trust_anchor;
	char *dns_mode;               /* forward | recursive */
	char *dns_forwarders;
	char *unbound_config;
	uint64_t dns_timeout;
	uint64_t dns_msg_cache_size;
	uint64_t dns_rrset_cache_size;
	int dns_serve_stale;
	int dns_qname_minimisation;

	/* checks */
	char *spf_engine;             /* native | libspf2 */
	int spf_helo;
	uint64_t dkim_max_signatures;
	char *dkim_engine;            /* native | libopendkim */
	uint64_t dkim_key_cache;      /* decoded keys kept by the native engine */
	/* outbound signing (server/sign.c) */
	char *dkim_sign_table;        /* file: domain selector keyfile [subdomains] */
	char *dkim_sign_fallback;     /* signing domain for other From domains */
	char *dkim_sign_canon;        /* header/body: relaxed/relaxed ... */
	uint64_t dkim_sign_expire;    /* milliseconds; 0: no x= */
	char *dkim_sign_headers;      /* fields to sign; empty: the default list */
	char *dkim_sign_oversign;     /* fields to over-sign; empty: the default list */
	struct signtab *signing;      /* built by cfg_finalize(); NULL: no signing */
	char *dmarc_mode;             /* rfc9989 | rfc7489 */
	char *dmarc_temperror;        /* tempfail | accept */
	char *policy_mode;            /* strict | rfc9989 | quarantine-only */
	char *trusted_arc_sealers;
	char *untrusted_arc;          /* ignore | quarantine */
	char *bad_from;               /* reject | quarantine | accept */
	char *trusted_forwarders;
	char *trusted_lists;
	char *policy_exceptions;      /* file: enforce / never-reject DOMAIN */
	/* DMARC aggregate reports (alignd-report) */
	char *report_org_name;        /* empty: the authserv-id */
	char *report_email;           /* From: and contact; empty: dmarc-noreply@<authserv-id> */
	char *report_dir;             /* report files and the sent ledger */
	char *report_smtp;            /* smtp://host[:port] or smtps:// */
	char *report_smtp_tls;        /* try | require | off (STARTTLS) */
	char *report_smtp_user;
	char *report_smtp_password_file;
	char *report_suppress;        /* domains never reported to */
	uint64_t report_pace;         /* milliseconds between two sends to one domain */
	uint64_t report_max_size;     /* largest gzip file sent */
	unsigned report_retry_days;   /* a report failing for now is retried this long */
	int failure_reports;          /* RFC 9991 failure reports: keep the headers, send them */
	int failure_report_redact;    /* RFC 6590: recipient addresses hidden */
	unsigned failure_report_rate; /* failure reports per policy domain per hour */
	double reject_score;          /* total score at which mail is rejected */
	double quarantine_score;

	/* history store (server/history.c) */
	char *history;                /* off | sqlite:/path | postgresql://... */
	uint64_t history_queue;       /* records waiting for the writer, at most */
	uint64_t history_retention;   /* days; 0: kept for ever */
	uint64_t history_max_size;    /* bytes; 0: no cap */
	/* symbol weights: keys score_<SYMBOL>; thresholds and modes above are
	 * copied in by cfg_verdict_opts() */
	struct verdict_opts weights;
	/* built by cfg_finalize() from the policy keys and the exceptions file */
	struct policy_conf policy;
	/* allowed_peers resolved by cfg_finalize(); n_allowed 0: anyone the
	 * socket's mode lets in */
	unsigned allowed_uids[64];
	size_t n_allowed;
	/* allowed_networks parsed by cfg_finalize(): who may connect over TCP */
	struct net_prefix allowed_nets[LIM_ALLOWED_NETWORKS];
	size_t n_allowed_nets;
};

/* 1 when a peer with this uid may use the daemon. */
int cfg_peer_allowed(const struct srv_config *c, unsigned uid);
/* 1 when a TCP peer at this address (family 4 or 6, 4 or 16 bytes) is
 * inside allowed_networks. */
int cfg_addr_allowed(const struct srv_config *c, int family, const unsigned char *addr);

/* Builds what derives from several keys (the indirect-flow policy, with the
 * exceptions file read now). Call after all keys are set; 0 or -1. */
int cfg_finalize(struct srv_config *c, char *err, size_t errlen);

/* The verdict options this configuration gives. */
void cfg_verdict_opts(const struct srv_config *c, struct verdict_opts *o);
/* The DMARC disposition of a message whose author cannot be determined:
 * bad_from, and never reject in policy_mode quarantine-only. */
enum dmarc_disp cfg_bad_author_disp(const struct srv_config *c);

/* Defaults only. NULL on allocation failure. */
struct srv_config *cfg_new_default(void);
/* Defaults, then the file (if path != NULL). On error returns NULL and
 * writes "file:line: reason" into err. */
struct srv_config *cfg_load(const char *path, char *err, size_t errlen);
/* Sets one key from text (command-line flags use this too). */
int cfg_set(struct srv_config *c, const char *key, const char *value,
            char *err, size_t errlen);
struct srv_config *cfg_ref(struct srv_config *c);
void cfg_unref(struct srv_config **c);
/* Writes every key with its effective value, as a valid config file. */
void cfg_print(const struct srv_config *c, FILE *out);
/* The authserv-id to use (authserv_id or the host name). */
const char *cfg_authserv_id(const struct srv_config *c);

#endif
