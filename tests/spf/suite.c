/* Loads the converted RFC 7208 suite and runs check_host over memdns. */
#include "tests/spf/suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);
	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	return p;
}

/* "x" + hex -> bytes (NUL-terminated; *len_r gets the length). */
static char *unhex(const char *s, size_t *len_r)
{
	if (s[0] != 'x')
		return NULL;
	s++;
	size_t n = strlen(s) / 2;
	char *o = xalloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1) {
			free(o);
			return NULL;
		}
		o[i] = (char)v;
	}
	o[n] = '\0';
	if (len_r)
		*len_r = n;
	return o;
}

int suite_load(struct suite *s, const char *path)
{
	memset(s, 0, sizeof(*s));
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	size_t ccap = 0, scap = 0;
	while ((len = getline(&line, &cap, f)) > 0) {
		if (line[len - 1] == '\n')
			line[--len] = '\0';
		if (line[0] == 'S') {
			if (s->nscen == scap) {
				scap = scap ? scap * 2 : 16;
				s->zone = realloc(s->zone, scap * sizeof(*s->zone));
				s->zone_len = realloc(s->zone_len, scap * sizeof(*s->zone_len));
				s->desc = realloc(s->desc, scap * sizeof(*s->desc));
				if (!s->zone || !s->zone_len || !s->desc)
					exit(2);
			}
			s->zone[s->nscen] = NULL;
			s->zone_len[s->nscen] = 0;
			s->desc[s->nscen] = unhex(line + 2, NULL);
			s->nscen++;
		} else if (line[0] == 'Z' && s->nscen > 0) {
			size_t i = s->nscen - 1, zl = s->zone_len[i];
			s->zone[i] = realloc(s->zone[i], zl + (size_t)len + 1);
			if (!s->zone[i])
				exit(2);
			memcpy(s->zone[i] + zl, line, (size_t)len + 1);
			s->zone_len[i] = zl + (size_t)len + 1;
		} else if (line[0] == 'T' && s->nscen > 0) {
			char f1[512], f2[128], f3[2048], f4[2048], f5[256], f6[4096];
			if (sscanf(line, "T %511s %127s %2047s %2047s %255s %4095s",
			           f1, f2, f3, f4, f5, f6) != 6)
				goto bad;
			if (s->n == ccap) {
				ccap = ccap ? ccap * 2 : 256;
				s->c = realloc(s->c, ccap * sizeof(*s->c));
				if (!s->c)
					exit(2);
			}
			struct suite_case *c = &s->c[s->n++];
			c->name = unhex(f1, NULL);
			c->host = strdup(f2);
			c->mailfrom = unhex(f3, NULL);
			c->helo = unhex(f4, NULL);
			c->results = strdup(f5);
			c->explanation = strcmp(f6, "-") ? unhex(f6, NULL) : NULL;
			c->scenario = s->nscen - 1;
			if (!c->name || !c->mailfrom || !c->helo)
				goto bad;
		}
	}
	free(line);
	fclose(f);
	return s->n ? 0 : -1;
bad:
	fprintf(stderr, "bad suite line: %s\n", line);
	free(line);
	fclose(f);
	return -1;
}

void suite_free(struct suite *s)
{
	for (size_t i = 0; i < s->nscen; i++) {
		free(s->zone[i]);
		free(s->desc[i]);
	}
	for (size_t i = 0; i < s->n; i++) {
		free(s->c[i].name);
		free(s->c[i].host);
		free(s->c[i].mailfrom);
		free(s->c[i].helo);
		free(s->c[i].results);
		free(s->c[i].explanation);
	}
	free(s->zone);
	free(s->zone_len);
	free(s->desc);
	free(s->c);
	memset(s, 0, sizeof(*s));
}

static uint16_t type_of(const char *t)
{
	if (!strcmp(t, "A")) return DNSQ_T_A;
	if (!strcmp(t, "AAAA")) return DNSQ_T_AAAA;
	if (!strcmp(t, "MX")) return DNSQ_T_MX;
	if (!strcmp(t, "PTR")) return DNSQ_T_PTR;
	if (!strcmp(t, "TXT")) return DNSQ_T_TXT;
	if (!strcmp(t, "CNAME")) return DNSQ_T_CNAME;
	return 0;
}

static void add_txt(struct memdns *m, const char *name, char *list)
{
	unsigned char *rd = xalloc(strlen(list) + 16);
	size_t off = 0;
	if (strcmp(list, "-") != 0) {
		for (char *save = NULL, *p = strtok_r(list, ",", &save); p;
		     p = strtok_r(NULL, ",", &save)) {
			size_t l;
			char *part = unhex(p, &l);
			if (!part)
				continue;
			size_t pos = 0;
			do {   /* a long string becomes several character-strings */
				size_t k = l - pos > 255 ? 255 : l - pos;
				rd[off++] = (unsigned char)k;
				memcpy(rd + off, part + pos, k);
				off += k;
				pos += k;
			} while (pos < l);
			free(part);
		}
	}
	memdns_add(m, name, DNSQ_T_TXT, rd, off);
	free(rd);
}

struct memdns *suite_zone(const struct suite *s, size_t sc)
{
	struct memdns *m = memdns_new();
	const char *z = s->zone[sc];
	size_t zl = s->zone_len[sc];
	for (size_t off = 0; off < zl; off += strlen(z + off) + 1) {
		char *line = strdup(z + off);
		char *save = NULL;
		strtok_r(line, " ", &save);   /* "Z" */
		char *hname = strtok_r(NULL, " ", &save);
		char *type = strtok_r(NULL, " ", &save);
		char *a1 = strtok_r(NULL, " ", &save);
		char *a2 = strtok_r(NULL, " ", &save);
		char *name = hname ? unhex(hname, NULL) : NULL;
		if (!name || !type) {
			free(name);
			free(line);
			continue;
		}
		if (!strcmp(type, "A") && a1)
			memdns_add_a(m, name, a1);
		else if (!strcmp(type, "AAAA") && a1)
			memdns_add_aaaa(m, name, a1);
		else if (!strcmp(type, "MX") && a1 && a2) {
			char *t = unhex(a2, NULL);
			memdns_add_mx(m, name, (uint16_t)atoi(a1), t);
			free(t);
		} else if ((!strcmp(type, "PTR") || !strcmp(type, "CNAME")) && a1) {
			char *t = unhex(a1, NULL);
			if (type[0] == 'P')
				memdns_add_ptr(m, name, t);
			else
				memdns_add_cname(m, name, t);
			free(t);
		} else if (!strcmp(type, "TXT") && a1) {
			add_txt(m, name, a1);
		} else if (!strcmp(type, "SPF99")) {
			memdns_add(m, name, 99, "", 0);
		} else if (!strcmp(type, "TIMEOUT") && a1) {
			for (char *s2 = NULL, *p = strtok_r(a1, ",", &s2); p;
			     p = strtok_r(NULL, ",", &s2))
				memdns_set_status(m, name, type_of(p), DNSQ_TIMEOUT);
		}
		free(name);
		free(line);
	}
	return m;
}

static int in_call;

static void done_cb(void *arg, const struct spf_result *r)
{
	struct run_out *o = arg;
	o->calls++;
	if (in_call)
		o->reentrant = 1;
	o->r = *r;
}

int run_check(struct memdns *m, const struct spf_request *rq, struct trace *t,
              struct run_out *out)
{
	memset(out, 0, sizeof(*out));
	in_call = 1;
	int rc = spf_check_host(memdns_dnsq(m), rq, t, done_cb, out);
	in_call = 0;
	if (rc < 0)
		return -1;
	memdns_run(m);
	return (out->calls == 1 && !out->reentrant) ? 0 : -1;
}

int result_in(const char *list, enum auth_res r)
{
	const char *name = auth_res_name(r);
	size_t nl = strlen(name);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == nl && strncmp(p, name, l) == 0)
			return 1;
		if (!e)
			break;
		p = e + 1;
	}
	return 0;
}
