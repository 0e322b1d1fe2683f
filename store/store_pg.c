/* History store, PostgreSQL back end: one database shared by several
 * instances. A batch is one transaction; instances migrating at the same
 * time serialise on an advisory lock. A lost connection is re-established
 * before the next batch. Caller's thread. */
#include "store/store_int.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* pg_advisory_xact_lock key for schema changes ("alignd" in ASCII) */
#define PG_MIGRATE_LOCK "97108105103110100"

struct store_pg {
	struct store base;   /* first */
	PGconn *c;
	int prepared;
};

static const char *const migrations[] = {
	/* 1: the first layout */
	"CREATE TABLE schema_version (version INTEGER NOT NULL);"
	"INSERT INTO schema_version VALUES (0);"
	"CREATE TABLE history ("
	" id BIGSERIAL PRIMARY KEY,"
	" time BIGINT NOT NULL,"
	" client_ip TEXT NOT NULL, mail_from_domain TEXT NOT NULL,"
	" from_domain TEXT NOT NULL, policy_domain TEXT NOT NULL, discovery TEXT NOT NULL,"
	" p TEXT NOT NULL, sp TEXT NOT NULL, np TEXT NOT NULL,"
	" adkim TEXT NOT NULL, aspf TEXT NOT NULL, psd TEXT NOT NULL,"
	" t INTEGER NOT NULL, pct INTEGER NOT NULL,"
	" dmarc_result TEXT NOT NULL, policy_disposition TEXT NOT NULL,"
	" disposition TEXT NOT NULL, overrides TEXT NOT NULL,"
	" spf_domain TEXT NOT NULL, spf_scope TEXT NOT NULL, spf_result TEXT NOT NULL,"
	" dkim TEXT NOT NULL, queue_id TEXT NOT NULL, evidence TEXT NOT NULL);"
	"CREATE INDEX history_time ON history (time);"
	"CREATE INDEX history_policy_domain ON history (policy_domain, time);",
	/* 2: envelope recipients, the discovery method and the verdict;
	 * reports by author domain */
	"ALTER TABLE history ADD COLUMN rcpt_domains TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE history ADD COLUMN discovery_method TEXT NOT NULL DEFAULT 'rfc9989';"
	"ALTER TABLE history ADD COLUMN action TEXT NOT NULL DEFAULT '';"
	"CREATE INDEX history_from_domain ON history (from_domain, time);",
	/* 3: the per-domain indexes go: every query of the tools names a
	 * period, which the time index serves, and keeping both indexes up to
	 * date was a third of the writer's work (bench/README.md) */
	"DROP INDEX IF EXISTS history_policy_domain; DROP INDEX IF EXISTS history_from_domain;",
};
_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == STORE_SCHEMA_VERSION,
               "one migration per schema version");

static int pg_fail(PGconn *c, const char *what, char *err, size_t errlen)
{
	const char *m = c ? PQerrorMessage(c) : "out of memory";
	size_t n = strlen(m);
	while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
		n--;
	snprintf(err, errlen, "postgresql: %s: %.*s", what, (int)n, m);
	return -1;
}

static int cmd(PGconn *c, const char *sql, char *err, size_t errlen)
{
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	PQclear(r);
	return ok ? 0 : pg_fail(c, sql, err, errlen);
}

static int64_t one_int(PGconn *c, const char *sql, char *err, size_t errlen)
{
	PGresult *r = PQexec(c, sql);
	int64_t v = -1;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	else if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		v = 0;
	else
		pg_fail(c, sql, err, errlen);
	PQclear(r);
	return v;
}

static int migrate(struct store_pg *s, char *err, size_t errlen)
{
	PGconn *c = s->c;
	if (cmd(c, "BEGIN", err, errlen) < 0)
		return -1;
	if (cmd(c, "SELECT pg_advisory_xact_lock(" PG_MIGRATE_LOCK ")", err, errlen) < 0)
		goto bad;
	int64_t have = one_int(c, "SELECT count(*) FROM pg_catalog.pg_tables WHERE tablename ="
	                       " 'schema_version' AND schemaname = current_schema()", err, errlen);
	int64_t v = have > 0 ? one_int(c, "SELECT version FROM schema_version", err, errlen) : 0;
	if (have < 0 || v < 0)
		goto bad;
	s->base.found_version = (int)v;
	if (v > STORE_SCHEMA_VERSION) {
		snprintf(err, errlen, "postgresql: schema version %lld is newer than this build (%d)",
		         (long long)v, STORE_SCHEMA_VERSION);
		goto bad;
	}
	for (int64_t k = v; k < STORE_SCHEMA_VERSION; k++) {
		char upd[64];
		snprintf(upd, sizeof(upd), "UPDATE schema_version SET version = %lld", (long long)k + 1);
		if (cmd(c, migrations[k], err, errlen) < 0 || cmd(c, upd, err, errlen) < 0)
			goto bad;
	}
	return cmd(c, "COMMIT", err, errlen);
bad:
	PQclear(PQexec(c, "ROLLBACK"));
	return -1;
}

static int prepare(struct store_pg *s, char *err, size_t errlen)
{
	if (s->prepared)
		return 0;
	char sql[1024];
	size_t n = (size_t)snprintf(sql, sizeof(sql), "INSERT INTO history (" STORE_COLUMNS ") VALUES (");
	for (int i = 1; i <= STORE_NCOLUMNS && n < sizeof(sql); i++)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, "$%d%s", i, i < STORE_NCOLUMNS ? ", " : ")");
	PGresult *r = PQprepare(s->c, "alignd_insert", sql, 0, NULL);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok)
		return pg_fail(s->c, "prepare insert", err, errlen);
	s->prepared = 1;
	return 0;
}

/* A server restart or a network cut breaks the connection: try once more. */
static int ensure(struct store_pg *s, char *err, size_t errlen)
{
	if (PQstatus(s->c) != CONNECTION_OK) {
		PQreset(s->c);
		s->prepared = 0;
		if (PQstatus(s->c) != CONNECTION_OK)
			return pg_fail(s->c, "reconnect", err, errlen);
	}
	return prepare(s, err, errlen);
}

static int pg_append(struct store *st, const struct store_record *const *recs, size_t n,
                     char *err, size_t errlen)
{
	struct store_pg *s = (struct store_pg *)st;
	if (ensure(s, err, errlen) < 0 || cmd(s->c, "BEGIN", err, errlen) < 0)
		return -1;
	for (size_t k = 0; k < n; k++) {
		char bufs[STORE_NCOLUMNS][32];
		char *owned[STORE_NCOLUMNS];
		const char *vals[STORE_NCOLUMNS];
		int bad = 0;
		for (int i = 0; i < STORE_NCOLUMNS; i++)
			if (!(vals[i] = store_column(recs[k], i, bufs[i], &owned[i])))
				bad = 1;
		PGresult *r = bad ? NULL
		            : PQexecPrepared(s->c, "alignd_insert", STORE_NCOLUMNS, vals, NULL, NULL, 0);
		int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
		for (int i = 0; i < STORE_NCOLUMNS; i++)
			free(owned[i]);
		if (!ok) {
			pg_fail(s->c, "insert", err, errlen);
			PQclear(PQexec(s->c, "ROLLBACK"));
			return -1;
		}
	}
	if (cmd(s->c, "COMMIT", err, errlen) < 0) {
		PQclear(PQexec(s->c, "ROLLBACK"));
		return -1;
	}
	return 0;
}

static int pg_query(struct store *st, const struct store_query *q, store_row_cb cb, void *arg,
                    char *err, size_t errlen)
{
	struct store_pg *s = (struct store_pg *)st;
	if (ensure(s, err, errlen) < 0)
		return -1;
	char since[32], until[32], limit[32];
	snprintf(since, sizeof(since), "%lld", (long long)q->since);
	snprintf(until, sizeof(until), "%lld", (long long)q->until);
	snprintf(limit, sizeof(limit), "%zu", q->limit);
	const char *vals[4] = { since, until, q->limit ? limit : NULL, q->domain };
	const char *sql = q->domain
		? "SELECT id, " STORE_COLUMNS " FROM history WHERE time >= $1 AND time < $2"
		  " AND (policy_domain = $4 OR from_domain = $4) ORDER BY time, id LIMIT $3::bigint"
		: "SELECT id, " STORE_COLUMNS " FROM history WHERE time >= $1 AND time < $2"
		  " ORDER BY time, id LIMIT $3::bigint";
	PGresult *r = PQexecParams(s->c, sql, q->domain ? 4 : 3, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		PQclear(r);
		return pg_fail(s->c, "query", err, errlen);
	}
	int ret = 0, rows = PQntuples(r);
	for (int k = 0; k < rows && ret == 0; k++) {
		struct store_record rec;
		memset(&rec, 0, sizeof(rec));
		rec.id = strtoll(PQgetvalue(r, k, 0), NULL, 10);
		for (int i = 0; i < STORE_NCOLUMNS && ret == 0; i++)
			if (store_set_column(&rec, i, PQgetisnull(r, k, i + 1) ? NULL
			                     : PQgetvalue(r, k, i + 1)) < 0) {
				snprintf(err, errlen, "postgresql: row %lld: bad column %d", (long long)rec.id, i);
				ret = -1;
			}
		int stop = ret == 0 ? cb(arg, &rec) : 1;
		store_record_clear(&rec);
		if (stop)
			break;
	}
	PQclear(r);
	return ret;
}

static int64_t pg_count(struct store *st, char *err, size_t errlen)
{
	struct store_pg *s = (struct store_pg *)st;
	if (ensure(s, err, errlen) < 0)
		return -1;
	return one_int(s->c, "SELECT count(*) FROM history", err, errlen);
}

static int64_t pg_size(struct store *st, char *err, size_t errlen)
{
	struct store_pg *s = (struct store_pg *)st;
	if (ensure(s, err, errlen) < 0)
		return -1;
	/* the relation's size on disk shrinks only after VACUUM: estimate the
	 * live rows' bytes from the newest thousand instead */
	return one_int(s->c, "SELECT (SELECT count(*) FROM history) * COALESCE((SELECT"
	               " avg(pg_column_size(h.*)) FROM (SELECT * FROM history ORDER BY id DESC"
	               " LIMIT 1000) h), 0)::bigint", err, errlen);
}

static int pg_delete(struct store *st, int64_t before, uint64_t n, uint64_t *deleted_r,
                     char *err, size_t errlen)
{
	struct store_pg *s = (struct store_pg *)st;
	*deleted_r = 0;
	if (ensure(s, err, errlen) < 0)
		return -1;
	char v[2][32];
	snprintf(v[0], sizeof(v[0]), "%lld", (long long)before);
	snprintf(v[1], sizeof(v[1]), "%llu", (unsigned long long)n);
	const char *vals[2] = { v[0], v[1] };
	const char *sql = before > 0
	                ? "DELETE FROM history WHERE id IN (SELECT id FROM history"
	                  " WHERE time < $1::bigint LIMIT $2::bigint)"
	                : "DELETE FROM history WHERE id IN (SELECT id FROM history"
	                  " WHERE $1::bigint = 0 ORDER BY id LIMIT $2::bigint)";
	PGresult *r = PQexecParams(s->c, sql, 2, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		PQclear(r);
		return pg_fail(s->c, "delete", err, errlen);
	}
	*deleted_r = strtoull(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	return 0;
}

static void pg_close(struct store *st)
{
	struct store_pg *s = (struct store_pg *)st;
	PQfinish(s->c);
	free(s);
}

static const struct store_ops pg_ops = {
	"postgresql", pg_append, pg_query, pg_count, pg_size, pg_delete, pg_close,
};

int store_pg_open(const char *conninfo, struct store **st_r, char *err, size_t errlen)
{
	struct store_pg *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->base.ops = &pg_ops;
	s->c = PQconnectdb(conninfo);
	if (PQstatus(s->c) != CONNECTION_OK) {
		pg_fail(s->c, "connect", err, errlen);
		goto bad;
	}
	/* notices (e.g. of CREATE) would go to stderr: keep the log clean */
	PQclear(PQexec(s->c, "SET client_min_messages = warning"));
	if (migrate(s, err, errlen) < 0 || prepare(s, err, errlen) < 0)
		goto bad;
	*st_r = &s->base;
	return 0;
bad:
	PQfinish(s->c);
	free(s);
	return -1;
}
