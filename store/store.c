/* The history store's one interface: picks the back end from the URI,
 * maps records to columns for both back ends, and enforces retention.
 * Caller's thread; no globals. */
#include "store/store_int.h"
#include "common/jsonr.h"
#include "common/jsonw.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void store_record_clear(struct store_record *r)
{
	free(r->dkim);
	free(r->evidence);
	r->dkim = NULL;
	r->n_dkim = 0;
	r->evidence = NULL;
}

int store_record_dkim(struct store_record *r, size_t n)
{
	free(r->dkim);
	r->n_dkim = 0;
	r->dkim = n ? calloc(n, sizeof(*r->dkim)) : NULL;
	if (n && !r->dkim)
		return -1;
	r->n_dkim = n;
	return 0;
}

void store_copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

int store_open(const char *uri, struct store **st_r, char *err, size_t errlen)
{
	*st_r = NULL;
	if (strncmp(uri, "sqlite:", 7) == 0)
		return store_sqlite_open(uri + 7, st_r, err, errlen);
	if (strncmp(uri, "postgresql://", 13) == 0 || strncmp(uri, "postgres://", 11) == 0)
		return store_pg_open(uri, st_r, err, errlen);
	snprintf(err, errlen, "history: want sqlite:/path, postgresql://... or off");
	return -1;
}

void store_close(struct store **stp)
{
	struct store *st = *stp;
	*stp = NULL;
	if (st)
		st->ops->close(st);
}

const char *store_backend(const struct store *st)
{
	return st->ops->name;
}

int store_found_version(const struct store *st)
{
	return st->found_version;
}

int store_append(struct store *st, const struct store_record *const *recs, size_t n,
                 char *err, size_t errlen)
{
	if (n == 0)
		return 0;
	return st->ops->append(st, recs, n, err, errlen);
}

int store_query(struct store *st, const struct store_query *q, store_row_cb cb, void *arg,
                char *err, size_t errlen)
{
	return st->ops->query(st, q, cb, arg, err, errlen);
}

int64_t store_count(struct store *st, char *err, size_t errlen)
{
	return st->ops->count(st, err, errlen);
}

int64_t store_size(struct store *st, char *err, size_t errlen)
{
	return st->ops->size(st, err, errlen);
}

int store_purge(struct store *st, int64_t before, uint64_t max_bytes, uint64_t budget,
                uint64_t *deleted_r, int *more_r, char *err, size_t errlen)
{
	uint64_t total = 0, n = 0;
	*deleted_r = 0;
	*more_r = 0;
	if (budget == 0)
		budget = 1;
	if (before > 0) {
		if (st->ops->delete_rows(st, before, budget, &n, err, errlen) < 0)
			return -1;
		total += n;
		if (n == budget) {
			*deleted_r = total;
			*more_r = 1;
			return 0;
		}
	}
	if (max_bytes > 0) {
		/* a few rounds: each estimates the bytes per row from what is there
		 * and deletes the oldest rows beyond what fits, aiming at 90 % of the
		 * cap so the cap is not crossed again at the next batch */
		for (int round = 0; round < 4 && total < budget; round++) {
			int64_t size = st->ops->size(st, err, errlen);
			int64_t rows = st->ops->count(st, err, errlen);
			if (size < 0 || rows < 0)
				return -1;
			if ((uint64_t)size <= max_bytes || rows == 0)
				break;
			double per_row = (double)size / (double)rows;
			uint64_t keep = (uint64_t)((double)max_bytes * 0.9 / per_row);
			uint64_t drop = (uint64_t)rows > keep ? (uint64_t)rows - keep : 1;
			if (drop > budget - total) {
				drop = budget - total;
				*more_r = 1;
			}
			if (st->ops->delete_rows(st, 0, drop, &n, err, errlen) < 0)
				return -1;
			total += n;
			if (n == 0) {
				*more_r = 0;
				break;
			}
		}
	}
	*deleted_r = total;
	return 0;
}

/* ---- columns ---- */

char *store_dkim_encode(const struct store_record *r)
{
	struct buf b;
	buf_init(&b, 0);
	struct jsonw w;
	jsonw_init(&w, &b);
	jsonw_arr(&w);
	for (size_t i = 0; i < r->n_dkim; i++) {
		/* d and s were made printable ASCII when the record was built */
		jsonw_obj(&w);
		jsonw_key(&w, "d"), jsonw_str(&w, r->dkim[i].d);
		jsonw_key(&w, "s"), jsonw_str(&w, r->dkim[i].s);
		jsonw_key(&w, "r"), jsonw_str(&w, r->dkim[i].result);
		jsonw_end(&w);
	}
	jsonw_end(&w);
	char *text = jsonw_done(&w) == 0 ? buf_steal(&b, NULL) : NULL;
	buf_free(&b);
	return text;
}

/* Signatures a dkim column may list (it holds what the daemon evaluated). */
#define DKIM_COLUMN_TOKENS 1024

int store_dkim_decode(const char *text, struct store_record *r)
{
	if (!text || !*text)
		return store_record_dkim(r, 0);
	struct jsonr_tok tok[DKIM_COLUMN_TOKENS];
	struct jsonr j;
	const char *why;
	if (jsonr_parse(&j, text, strlen(text), tok, DKIM_COLUMN_TOKENS, &why) < 0 ||
	    jsonr_type(&j, 0) != JSONR_ARRAY)
		return -1;
	size_t n = jsonr_count(&j, 0);
	if (store_record_dkim(r, n) < 0)
		return -1;
	long o = n ? jsonr_at(&j, 0, 0) : -1;
	for (size_t i = 0; i < n; i++, o = (long)j.tok[o].next) {
		if (jsonr_str(&j, jsonr_get(&j, o, "d"), r->dkim[i].d, sizeof(r->dkim[i].d)) < 0)
			r->dkim[i].d[0] = '\0';
		if (jsonr_str(&j, jsonr_get(&j, o, "s"), r->dkim[i].s, sizeof(r->dkim[i].s)) < 0)
			r->dkim[i].s[0] = '\0';
		if (jsonr_str(&j, jsonr_get(&j, o, "r"), r->dkim[i].result,
		              sizeof(r->dkim[i].result)) < 0)
			r->dkim[i].result[0] = '\0';
	}
	return 0;
}

static const char *chr(char c, char buf[32])
{
	buf[0] = c ? c : 'r';
	buf[1] = '\0';
	return buf;
}

const char *store_column(const struct store_record *r, int i, char buf[32], char **owned)
{
	*owned = NULL;
	switch (i) {
	case 0:  snprintf(buf, 32, "%" PRId64, r->time); return buf;
	case 1:  return r->client_ip;
	case 2:  return r->mail_from_domain;
	case 3:  return r->rcpt_domains;
	case 4:  return r->from_domain;
	case 5:  return r->policy_domain;
	case 6:  return r->discovery;
	case 7:  return r->discovery_method;
	case 8:  return r->p;
	case 9:  return r->sp;
	case 10: return r->np;
	case 11: return chr(r->adkim, buf);
	case 12: return chr(r->aspf, buf);
	case 13: buf[0] = r->psd ? r->psd : 'u'; buf[1] = '\0'; return buf;
	case 14: snprintf(buf, 32, "%d", r->t ? 1 : 0); return buf;
	case 15: snprintf(buf, 32, "%d", r->pct); return buf;
	case 16: return r->dmarc_result;
	case 17: return r->policy_disposition;
	case 18: return r->disposition;
	case 19: return r->overrides;
	case 20: return r->action;
	case 21: return r->spf_domain;
	case 22: return r->spf_scope;
	case 23: return r->spf_result;
	case 24: *owned = store_dkim_encode(r); return *owned;
	case 25: return r->queue_id;
	case 26: return r->evidence ? r->evidence : "{}";
	}
	return "";
}

int store_set_column(struct store_record *r, int i, const char *v)
{
	const char *s = v ? v : "";
	switch (i) {
	case 0:  r->time = strtoll(s, NULL, 10); return 0;
	case 1:  store_copy(r->client_ip, sizeof(r->client_ip), s); return 0;
	case 2:  store_copy(r->mail_from_domain, sizeof(r->mail_from_domain), s); return 0;
	case 3:  store_copy(r->rcpt_domains, sizeof(r->rcpt_domains), s); return 0;
	case 4:  store_copy(r->from_domain, sizeof(r->from_domain), s); return 0;
	case 5:  store_copy(r->policy_domain, sizeof(r->policy_domain), s); return 0;
	case 6:  store_copy(r->discovery, sizeof(r->discovery), s); return 0;
	case 7:  store_copy(r->discovery_method, sizeof(r->discovery_method), s); return 0;
	case 8:  store_copy(r->p, sizeof(r->p), s); return 0;
	case 9:  store_copy(r->sp, sizeof(r->sp), s); return 0;
	case 10: store_copy(r->np, sizeof(r->np), s); return 0;
	case 11: r->adkim = *s ? *s : 'r'; return 0;
	case 12: r->aspf = *s ? *s : 'r'; return 0;
	case 13: r->psd = *s ? *s : 'u'; return 0;
	case 14: r->t = atoi(s) != 0; return 0;
	case 15: r->pct = atoi(s); return 0;
	case 16: store_copy(r->dmarc_result, sizeof(r->dmarc_result), s); return 0;
	case 17: store_copy(r->policy_disposition, sizeof(r->policy_disposition), s); return 0;
	case 18: store_copy(r->disposition, sizeof(r->disposition), s); return 0;
	case 19: store_copy(r->overrides, sizeof(r->overrides), s); return 0;
	case 20: store_copy(r->action, sizeof(r->action), s); return 0;
	case 21: store_copy(r->spf_domain, sizeof(r->spf_domain), s); return 0;
	case 22: store_copy(r->spf_scope, sizeof(r->spf_scope), s); return 0;
	case 23: store_copy(r->spf_result, sizeof(r->spf_result), s); return 0;
	case 24: return store_dkim_decode(s, r);
	case 25: store_copy(r->queue_id, sizeof(r->queue_id), s); return 0;
	case 26:
		free(r->evidence);
		r->evidence = strdup(s);
		return r->evidence ? 0 : -1;
	}
	return 0;
}
