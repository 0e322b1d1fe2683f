/* The history store: one evidence record per DMARC-evaluated scan, kept in
 * a database for reports and the what-if replay. One interface, two back
 * ends (SQLite file, PostgreSQL server) chosen by the URI given to
 * store_open(). A store handle is used by one thread at a time; the
 * library has no event loop and no globals. docs/REPORTS.md. */
#ifndef ALIGND_STORE_H
#define ALIGND_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_SCHEMA_VERSION  3      /* what store_open() migrates to */
#define STORE_EVIDENCE_VERSION 2     /* the "v" of the evidence document (2: "scan") */
#define STORE_DOMAIN_MAX      256    /* a domain in text, NUL included */
#define STORE_WORD_MAX        24     /* result and policy words */

struct store_dkim {                 /* one DKIM signature as evaluated */
	char d[STORE_DOMAIN_MAX];
	char s[STORE_DOMAIN_MAX];
	char result[STORE_WORD_MAX];     /* RFC 8601 dkim= value */
};

/* One record. The columns are what reports select and group by; the
 * evidence document (JSON, self-describing, "v": STORE_EVIDENCE_VERSION)
 * holds everything the policy decision read, so that it can be replayed
 * (store_replay_load). Empty strings mean "absent". */
struct store_record {
	int64_t id;                      /* set by store_query(); 0 when appending */
	int64_t time;                    /* seconds since the epoch, UTC */
	char client_ip[64];
	char mail_from_domain[STORE_DOMAIN_MAX];  /* envelope sender domain ("" null sender) */
	char rcpt_domains[1024];         /* envelope recipient domains, distinct, space-separated */
	char from_domain[STORE_DOMAIN_MAX];       /* RFC 5322 From domain (the deciding one) */
	char policy_domain[STORE_DOMAIN_MAX];     /* where the DMARC record was found */
	char discovery[STORE_WORD_MAX];  /* author | org | psd | none: which step found it */
	char discovery_method[STORE_WORD_MAX];    /* rfc9989 (tree walk) | rfc7489 (PSL) */
	char p[STORE_WORD_MAX], sp[STORE_WORD_MAX], np[STORE_WORD_MAX]; /* as published, "" absent */
	char adkim, aspf;                /* 'r' or 's' */
	char psd;                        /* 'y', 'n' or 'u' */
	int t;                           /* t=y */
	int pct;                         /* 0..100 */
	char dmarc_result[STORE_WORD_MAX];        /* none pass fail temperror permerror */
	char policy_disposition[STORE_WORD_MAX];  /* what the policy asked (none quarantine reject) */
	char disposition[STORE_WORD_MAX];         /* what was applied after overrides */
	char overrides[128];             /* reasons, space-separated (RFC 7489 PolicyOverrideType) */
	char action[STORE_WORD_MAX];     /* the verdict: accept quarantine reject tempfail */
	char spf_domain[STORE_DOMAIN_MAX];
	char spf_scope[8];               /* mfrom | helo (RFC 7489 appendix C) */
	char spf_result[STORE_WORD_MAX];
	struct store_dkim *dkim;         /* n_dkim entries, owned */
	size_t n_dkim;
	char queue_id[128];
	char *evidence;                  /* JSON document, owned */
};

/* Frees what the record owns (dkim, evidence) and clears those fields. */
void store_record_clear(struct store_record *r);
/* Sets r->dkim to n entries (zeroed); 0 or -1. */
int store_record_dkim(struct store_record *r, size_t n);

struct store;

/* "sqlite:/path/file.sqlite" or "postgresql://..." / "postgres://..."
 * (a libpq connection URI). Creates the schema, or migrates an older one,
 * inside one transaction. 0 or -1 with a reason. */
int store_open(const char *uri, struct store **st_r, char *err, size_t errlen);
void store_close(struct store **st);
/* "sqlite" or "postgresql" */
const char *store_backend(const struct store *st);
/* The schema version found before any migration ran in store_open. */
int store_found_version(const struct store *st);

/* Appends n records in one transaction: all or none. 0 or -1. Borrows. */
int store_append(struct store *st, const struct store_record *const *recs, size_t n,
                 char *err, size_t errlen);

struct store_query {
	int64_t since, until;            /* time in [since, until) */
	const char *domain;              /* NULL, or policy_domain or from_domain equals it */
	size_t limit;                    /* 0: no limit */
};

/* Calls cb for each record, oldest first (by time, then id: the
 * time index gives that order without a sort); the record is borrowed
 * for the call. cb returns 0 to go on, non-zero to stop. 0 or -1. */
typedef int (*store_row_cb)(void *arg, const struct store_record *r);
int store_query(struct store *st, const struct store_query *q, store_row_cb cb, void *arg,
                char *err, size_t errlen);
/* Rows in the store. -1 on error. */
int64_t store_count(struct store *st, char *err, size_t errlen);
/* Bytes the live rows take (SQLite: used pages; PostgreSQL: an estimate
 * from a sample of rows). -1 on error. */
int64_t store_size(struct store *st, char *err, size_t errlen);

/* Retention: deletes records older than `before` (0: none), then the
 * oldest ones until the store holds at most max_bytes (0: no cap), but
 * never more than `budget` rows in one call, so a caller that must stay
 * responsive (the daemon's writer at shutdown) is not held by a store
 * that has grown far beyond its limits. *deleted_r gets how many went;
 * *more_r is set when the budget ran out before the limits were met
 * (call again). 0 or -1. */
int store_purge(struct store *st, int64_t before, uint64_t max_bytes, uint64_t budget,
                uint64_t *deleted_r, int *more_r, char *err, size_t errlen);

#endif
