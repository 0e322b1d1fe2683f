/* History store, SQLite back end: one database file in WAL mode, so that a
 * report can read while the daemon writes, and a crash of the writer never
 * leaves a half-written batch (a batch is one transaction; the WAL makes it
 * atomic, https://www.sqlite.org/wal.html). Caller's thread. */
#include "store/store_int.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a write waits for another writer (a report tool's purge, an
 * administrator's sqlite3 shell) before the batch fails and is retried. */
#define SQLITE_BUSY_MS 2000

#define SQLITE_PAGE_SIZE 16384
#define STR_(x) #x
#define STR(x) STR_(x)

struct store_sqlite {
	struct store base;   /* first */
	sqlite3 *db;
	sqlite3_stmt *insert;
};

/* Migration k brings a database from version k-1 to k. Version 0 is an
 * empty file. Never edit a released step: add one. */
static const char *const migrations[] = {
	/* 1: the first layout */
	"CREATE TABLE schema_version (version INTEGER NOT NULL);"
	"INSERT INTO schema_version VALUES (0);"
	"CREATE TABLE history ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" time INTEGER NOT NULL,"
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

static int fail(sqlite3 *db, const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "sqlite: %s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
	return -1;
}

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, errlen, "sqlite: %s", msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int64_t one_int(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return fail(db, sql, err, errlen);
	int64_t v = -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	else
		fail(db, sql, err, errlen);
	sqlite3_finalize(st);
	return v;
}

static int migrate(struct store_sqlite *s, char *err, size_t errlen)
{
	sqlite3 *db = s->db;
	/* IMMEDIATE: a second instance starting at the same time waits here */
	if (exec(db, "BEGIN IMMEDIATE", err, errlen) < 0)
		return -1;
	int64_t have = one_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
	                       " AND name = 'schema_version'", err, errlen);
	int64_t v = have > 0 ? one_int(db, "SELECT version FROM schema_version", err, errlen) : 0;
	if (have < 0 || v < 0)
		goto bad;
	s->base.found_version = (int)v;
	if (v > STORE_SCHEMA_VERSION) {
		snprintf(err, errlen, "sqlite: schema version %lld is newer than this build (%d)",
		         (long long)v, STORE_SCHEMA_VERSION);
		goto bad;
	}
	for (int64_t k = v; k < STORE_SCHEMA_VERSION; k++) {
		char upd[64];
		snprintf(upd, sizeof(upd), "UPDATE schema_version SET version = %lld", (long long)k + 1);
		if (exec(db, migrations[k], err, errlen) < 0 || exec(db, upd, err, errlen) < 0)
			goto bad;
	}
	return exec(db, "COMMIT", err, errlen);
bad:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static int sq_append(struct store *st, const struct store_record *const *recs, size_t n,
                     char *err, size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)st;
	if (exec(s->db, "BEGIN IMMEDIATE", err, errlen) < 0)
		return -1;
	for (size_t k = 0; k < n; k++) {
		char bufs[STORE_NCOLUMNS][32];
		char *owned[STORE_NCOLUMNS];
		int bad = 0;
		for (int i = 0; i < STORE_NCOLUMNS; i++) {
			const char *v = store_column(recs[k], i, bufs[i], &owned[i]);
			if (!v || sqlite3_bind_text(s->insert, i + 1, v, -1, SQLITE_STATIC) != SQLITE_OK)
				bad = 1;
		}
		int rc = bad ? SQLITE_NOMEM : sqlite3_step(s->insert);
		sqlite3_reset(s->insert);
		sqlite3_clear_bindings(s->insert);
		for (int i = 0; i < STORE_NCOLUMNS; i++)
			free(owned[i]);
		if (rc != SQLITE_DONE) {
			fail(s->db, "insert", err, errlen);
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			return -1;
		}
	}
	if (exec(s->db, "COMMIT", err, errlen) < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

static int sq_query(struct store *st, const struct store_query *q, store_row_cb cb, void *arg,
                    char *err, size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)st;
	const char *sql = q->domain
		? "SELECT id, " STORE_COLUMNS " FROM history WHERE time >= ?1 AND time < ?2"
		  " AND (policy_domain = ?3 OR from_domain = ?3) ORDER BY time, id LIMIT ?4"
		: "SELECT id, " STORE_COLUMNS " FROM history WHERE time >= ?1 AND time < ?2"
		  " ORDER BY time, id LIMIT ?4";
	sqlite3_stmt *stmt;
	if (sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL) != SQLITE_OK)
		return fail(s->db, "query", err, errlen);
	sqlite3_bind_int64(stmt, 1, q->since);
	sqlite3_bind_int64(stmt, 2, q->until);
	if (q->domain)
		sqlite3_bind_text(stmt, 3, q->domain, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 4, q->limit ? (int64_t)q->limit : -1);
	int rc, ret = 0;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		struct store_record r;
		memset(&r, 0, sizeof(r));
		r.id = sqlite3_column_int64(stmt, 0);
		for (int i = 0; i < STORE_NCOLUMNS && ret == 0; i++)
			if (store_set_column(&r, i, (const char *)sqlite3_column_text(stmt, i + 1)) < 0) {
				snprintf(err, errlen, "sqlite: row %lld: bad column %d", (long long)r.id, i);
				ret = -1;
			}
		int stop = ret == 0 ? cb(arg, &r) : 1;
		store_record_clear(&r);
		if (stop)
			break;
	}
	if (ret == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
		ret = fail(s->db, "query", err, errlen);
	sqlite3_finalize(stmt);
	return ret;
}

static int64_t sq_count(struct store *st, char *err, size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)st;
	return one_int(s->db, "SELECT count(*) FROM history", err, errlen);
}

static int64_t sq_size(struct store *st, char *err, size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)st;
	int64_t pages = one_int(s->db, "PRAGMA page_count", err, errlen);
	int64_t freel = one_int(s->db, "PRAGMA freelist_count", err, errlen);
	int64_t psize = one_int(s->db, "PRAGMA page_size", err, errlen);
	if (pages < 0 || freel < 0 || psize < 0)
		return -1;
	/* pages on the free list are reused by the next inserts */
	return (pages - freel) * psize;
}

static int sq_delete(struct store *st, int64_t before, uint64_t n, uint64_t *deleted_r,
                     char *err, size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)st;
	const char *sql = before > 0
	                ? "DELETE FROM history WHERE id IN (SELECT id FROM history WHERE time < ?1 LIMIT ?2)"
	                : "DELETE FROM history WHERE id IN (SELECT id FROM history ORDER BY id LIMIT ?2)";
	sqlite3_stmt *stmt;
	*deleted_r = 0;
	if (sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL) != SQLITE_OK)
		return fail(s->db, "delete", err, errlen);
	sqlite3_bind_int64(stmt, 1, before);
	sqlite3_bind_int64(stmt, 2, n > INT64_MAX ? INT64_MAX : (int64_t)n);
	int rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE)
		return fail(s->db, "delete", err, errlen);
	*deleted_r = (uint64_t)sqlite3_changes(s->db);
	return 0;
}

static void sq_close(struct store *st)
{
	struct store_sqlite *s = (struct store_sqlite *)st;
	sqlite3_finalize(s->insert);
	/* the last connection to close checkpoints the WAL into the file */
	sqlite3_close(s->db);
	free(s);
}

static const struct store_ops sqlite_ops = {
	"sqlite", sq_append, sq_query, sq_count, sq_size, sq_delete, sq_close,
};

int store_sqlite_open(const char *path, struct store **st_r, char *err, size_t errlen)
{
	struct store_sqlite *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->base.ops = &sqlite_ops;
	if (!*path) {
		snprintf(err, errlen, "sqlite: no file name");
		free(s);
		return -1;
	}
	int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	                         SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		fail(s->db, path, err, errlen);
		goto bad;
	}
	sqlite3_busy_timeout(s->db, SQLITE_BUSY_MS);
	/* WAL: readers never block the writer. synchronous=NORMAL: a committed
	 * batch survives a crash of the process; after a power loss the last
	 * batches may be missing, the file is still consistent. */
	/* 16 KB pages (a new file only): a record and its evidence fit one,
	 * and the writer's system calls per record are a quarter of 4 KB's */
	if (exec(s->db, "PRAGMA page_size = " STR(SQLITE_PAGE_SIZE), err, errlen) < 0 ||
	    exec(s->db, "PRAGMA journal_mode = WAL", err, errlen) < 0 ||
	    exec(s->db, "PRAGMA synchronous = NORMAL", err, errlen) < 0 ||
	    migrate(s, err, errlen) < 0)
		goto bad;
	if (sqlite3_prepare_v2(s->db, "INSERT INTO history (" STORE_COLUMNS ") VALUES (?1, ?2, ?3,"
	                       " ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,"
	                       " ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)",
	                       -1, &s->insert, NULL) != SQLITE_OK) {
		fail(s->db, "prepare insert", err, errlen);
		goto bad;
	}
	*st_r = &s->base;
	return 0;
bad:
	sqlite3_close(s->db);
	free(s);
	return -1;
}
