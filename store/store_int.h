/* Inside the history store: the back-end table behind struct store, and
 * helpers the back ends share. Not for callers of store.h. */
#ifndef ALIGND_STORE_INT_H
#define ALIGND_STORE_INT_H

#include "store/store.h"

struct store_ops {
	const char *name;
	int (*append)(struct store *st, const struct store_record *const *recs, size_t n,
	              char *err, size_t errlen);
	int (*query)(struct store *st, const struct store_query *q, store_row_cb cb, void *arg,
	             char *err, size_t errlen);
	int64_t (*count)(struct store *st, char *err, size_t errlen);
	int64_t (*size)(struct store *st, char *err, size_t errlen);
	/* deletes at most n rows (n > 0): with time < before, or (before 0)
	 * the oldest */
	int (*delete_rows)(struct store *st, int64_t before, uint64_t n, uint64_t *deleted_r,
	                   char *err, size_t errlen);
	void (*close)(struct store *st);
};

struct store {
	const struct store_ops *ops;
	int found_version;
};

int store_sqlite_open(const char *path, struct store **st_r, char *err, size_t errlen);
int store_pg_open(const char *conninfo, struct store **st_r, char *err, size_t errlen);

/* The DKIM column: a JSON array of {"d","s","r"}; malloc'd, or NULL. */
char *store_dkim_encode(const struct store_record *r);
/* Fills r->dkim from that text; 0 or -1. */
int store_dkim_decode(const char *text, struct store_record *r);
/* One column into a fixed field ("" for NULL). */
void store_copy(char *dst, size_t cap, const char *src);

/* The columns, in the order both back ends bind and select them. */
#define STORE_COLUMNS "time, client_ip, mail_from_domain, rcpt_domains, from_domain, " \
	"policy_domain, discovery, discovery_method, p, sp, np, adkim, aspf, psd, t, pct, " \
	"dmarc_result, policy_disposition, disposition, overrides, action, " \
	"spf_domain, spf_scope, spf_result, dkim, queue_id, evidence"
#define STORE_NCOLUMNS 27

/* Text of column i of a record (the integers are formatted into buf).
 * *owned is set when the text must be freed (the DKIM column). */
const char *store_column(const struct store_record *r, int i, char buf[32], char **owned);
/* Sets column i of r from text (NULL: absent). 0 or -1. */
int store_set_column(struct store_record *r, int i, const char *v);

#endif
