/* The signing table: which domains are signed with which selectors and
 * keys, read on the loop thread with the configuration (start and SIGHUP)
 * and immutable after, so workers sign from it without locks. */
#include "server/sign.h"
#include "server/config.h"
#include "checks/dkim/dks.h"
#include "checks/dmarc/dmarc.h"
#include "checks/msg.h"
#include "common/limits.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the table ---- */

void signtab_free(struct signtab **tp)
{
	struct signtab *t = *tp;
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->e[i].domain);
		free(t->e[i].selector);
		free(t->e[i].key_file);
		dks_key_free(&t->e[i].key);
	}
	free(t->e);
	for (size_t i = 0; i < t->n_headers; i++)
		free(t->headers[i]);
	free(t->headers);
	for (size_t i = 0; i < t->n_oversign; i++)
		free(t->oversign[i]);
	free(t->oversign);
	free(t->fallback);
	free(t);
	*tp = NULL;
}

/* Reads a private key file: a regular file, no access for group or
 * others (it is the domain's signing secret), a PEM key. */
static int read_key(const char *path, struct dks_key **key_r, char *err,
                    size_t errlen)
{
	char e2[256];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "key file %s: not a regular file", path);
		close(fd);
		return -1;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen, "key file %s: mode %04o lets group or others "
		         "read it (chmod 600 it, owned by the daemon's user)", path,
		         (unsigned)(st.st_mode & 07777));
		close(fd);
		return -1;
	}
	if (st.st_size > (off_t)LIM_DKIM_SIGN_KEY_FILE) {
		snprintf(err, errlen, "key file %s: larger than %u bytes", path,
		         LIM_DKIM_SIGN_KEY_FILE);
		close(fd);
		return -1;
	}
	char *pem = malloc(LIM_DKIM_SIGN_KEY_FILE + 1);
	if (pem == NULL) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, pem + len, LIM_DKIM_SIGN_KEY_FILE - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
			free(pem);
			close(fd);
			return -1;
		}
		if (n == 0 || len + (size_t)n == LIM_DKIM_SIGN_KEY_FILE) {
			len += (size_t)n;
			break;
		}
		len += (size_t)n;
	}
	close(fd);
	int r = dks_key_from_pem(pem, len, key_r, e2, sizeof e2);
	explicit_bzero(pem, len);
	free(pem);
	if (r != 0) {
		snprintf(err, errlen, "key file %s: %s", path, e2);
		return -1;
	}
	return 0;
}

static int valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > LIM_DNS_MAX_NAME)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!(isalnum(c) || c == '-' || c == '.' || c == '_'))
			return 0;
	}
	return s[0] != '.' && s[n - 1] != '.' && strstr(s, "..") == NULL;
}

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* "a b:c, d" -> a list of field names */
static int name_list(const char *v, char ***out, size_t *n_r, const char *key,
                     char *err, size_t errlen)
{
	*out = NULL;
	*n_r = 0;
	if (*v == '\0')
		return 0;
	char **l = calloc(LIM_DKIM_H_NAMES, sizeof *l);
	if (l == NULL)
		return -1;
	size_t n = 0;
	const char *p = v;
	while (*p) {
		p += strspn(p, " \t,:");
		size_t w = strcspn(p, " \t,:");
		if (w == 0)
			break;
		int wild = p[w - 1] == '*';
		int ok = w <= LIM_DKIM_SIGN_NAME;
		for (size_t i = 0; ok && i < w - (size_t)wild; i++)
			ok = isalnum((unsigned char)p[i]) || p[i] == '-' || p[i] == '_';
		if (!ok || n == LIM_DKIM_H_NAMES || (l[n] = strndup(p, w)) == NULL) {
			snprintf(err, errlen, "%s: '%.*s' is not a field name", key,
			         (int)(w < 64 ? w : 64), p);
			*out = l;
			*n_r = n;
			return -1;
		}
		n++;
		p += w;
	}
	*out = l;
	*n_r = n;
	return 0;
}

int signtab_load(struct srv_config *c, char *err, size_t errlen)
{
	signtab_free(&c->signing);
	if (c->dkim_sign_table == NULL || *c->dkim_sign_table == '\0')
		return 0;
	struct signtab *t = calloc(1, sizeof *t);
	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	c->signing = t;
	t->header_simple = strncmp(c->dkim_sign_canon, "simple/", 7) == 0;
	t->body_simple = strcmp(strchr(c->dkim_sign_canon, '/') + 1, "simple") == 0;
	t->expire = c->dkim_sign_expire / 1000;
	if (name_list(c->dkim_sign_headers, &t->headers, &t->n_headers,
	              "dkim_sign_headers", err, errlen) < 0 ||
	    name_list(c->dkim_sign_oversign, &t->oversign, &t->n_oversign,
	              "dkim_sign_oversign", err, errlen) < 0)
		return -1;
	const char *path = c->dkim_sign_table;
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		snprintf(err, errlen, "dkim_sign_table %s: %s", path, strerror(errno));
		return -1;
	}
	char line[4096];
	unsigned lineno = 0;
	int rc = 0;
	t->e = calloc(LIM_DKIM_SIGN_KEYS, sizeof *t->e);
	if (t->e == NULL) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	while (rc == 0 && fgets(line, sizeof line, f)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *w[5];
		size_t nw = 0;
		char *save = NULL;
		for (char *tok = strtok_r(line, " \t\r\n", &save); tok;
		     tok = strtok_r(NULL, " \t\r\n", &save)) {
			if (nw == 5) {
				nw++;
				break;
			}
			w[nw++] = tok;
		}
		if (nw == 0)
			continue;
		int sub = 0, next = 0, bad = nw < 3 || nw > 5;
		for (size_t q = 3; !bad && q < nw; q++) {
			if (strcmp(w[q], "subdomains") == 0 && !sub)
				sub = 1;
			else if (strcmp(w[q], "next") == 0 && !next)
				next = 1;
			else
				bad = 1;
		}
		if (bad) {
			snprintf(err, errlen, "%s:%u: want 'domain selector keyfile [subdomains] [next]'",
			         path, lineno);
			rc = -1;
			break;
		}
		lower(w[0]);
		if (!valid_name(w[0]) || !valid_name(w[1]) || strlen(w[1]) > 63) {
			snprintf(err, errlen, "%s:%u: '%s' / '%s' is not a usable domain and selector",
			         path, lineno, w[0], w[1]);
			rc = -1;
			break;
		}
		if (t->n == LIM_DKIM_SIGN_KEYS) {
			snprintf(err, errlen, "%s:%u: more than %u keys", path, lineno,
			         LIM_DKIM_SIGN_KEYS);
			rc = -1;
			break;
		}
		struct signtab_entry *e = &t->e[t->n];
		char e2[512];
		if (read_key(w[2], &e->key, e2, sizeof e2) < 0) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, e2);
			rc = -1;
			break;
		}
		e->domain = strdup(w[0]);
		e->selector = strdup(w[1]);
		e->key_file = strdup(w[2]);
		e->subdomains = sub;
		e->next = next;
		t->n_next += (size_t)next;
		t->n++;
		if (!e->domain || !e->selector || !e->key_file) {
			snprintf(err, errlen, "out of memory");
			rc = -1;
		}
	}
	fclose(f);
	if (rc < 0)
		return -1;
	if (*c->dkim_sign_fallback) {
		t->fallback = strdup(c->dkim_sign_fallback);
		if (t->fallback == NULL)
			return -1;
		lower(t->fallback);
		size_t idx;
		if (signtab_pick(t, t->fallback, &idx, 1) == 0) {
			snprintf(err, errlen, "dkim_sign_fallback: %s has no entry in %s",
			         t->fallback, path);
			return -1;
		}
	}
	return 0;
}

int signtab_usable(const struct signtab_entry *e)
{
	return !e->next || __atomic_load_n(&e->published, __ATOMIC_ACQUIRE);
}

static size_t pick_exact(const struct signtab *t, const char *d, int sub,
                         size_t *idx, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < t->n && n < max; i++)
		if (strcmp(t->e[i].domain, d) == 0 && (!sub || t->e[i].subdomains) &&
		    signtab_usable(&t->e[i]))
			idx[n++] = i;
	return n;
}

size_t signtab_pick(const struct signtab *t, const char *from, size_t *idx,
                    size_t max)
{
	if (t == NULL || from == NULL)
		return 0;
	size_t n = pick_exact(t, from, 0, idx, max);
	for (const char *p = strchr(from, '.'); n == 0 && p; p = strchr(p + 1, '.'))
		n = pick_exact(t, p + 1, 1, idx, max);
	if (n == 0 && t->fallback && strcmp(t->fallback, from) != 0)
		n = pick_exact(t, t->fallback, 0, idx, max);
	return n;
}

int sign_message(const struct signtab *t, const struct msg *m, uint64_t now,
                 char **fields, size_t max, size_t *n_r,
                 const char **domain_r, char *err, size_t errlen)
{
	struct dmarc_author a;
	size_t idx[LIM_DKIM_SIGN_KEYS];
	*n_r = 0;
	*domain_r = NULL;
	if (dmarc_author(m, &a) < 0 && a.status == DMARC_AUTHOR_NO_MEMORY) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (a.status != DMARC_AUTHOR_OK) {
		snprintf(err, errlen, "cannot sign: %s",
		         a.status == DMARC_AUTHOR_OK ? "no author domain"
		         : a.why ? a.why : "no single author domain");
		return -1;
	}
	size_t n = signtab_pick(t, a.domains[0], idx,
	                        max < LIM_DKIM_SIGN_KEYS ? max : LIM_DKIM_SIGN_KEYS);
	/* one body hash for every signature (all share the canonicalisation) */
	unsigned char bh[DKS_BODY_HASH_LEN];
	if (n > 0 && dks_body_hash(m, t->body_simple, bh) != 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t k = 0; k < n; k++) {
		const struct signtab_entry *e = &t->e[idx[k]];
		struct dks_opts o = {
			.domain = e->domain, .selector = e->selector, .key = e->key,
			.header_simple = t->header_simple, .body_simple = t->body_simple,
			.headers = (const char *const *)t->headers, .n_headers = t->n_headers,
			.oversign = (const char *const *)t->oversign, .n_oversign = t->n_oversign,
			.body_hash = bh, .now = now, .expire = t->expire,
		};
		char e2[256];
		int rc = dks_sign(m, &o, "\r\n", &fields[k], e2, sizeof e2);
		if (rc != 0) {
			snprintf(err, errlen, "cannot sign with %s._domainkey.%s: %s",
			         e->selector, e->domain, e2);
			for (size_t q = 0; q < k; q++) {
				free(fields[q]);
				fields[q] = NULL;
			}
			return rc == -ENOMEM ? -ENOMEM : -1;
		}
		*domain_r = e->domain;
	}
	*n_r = n;
	return 0;
}
