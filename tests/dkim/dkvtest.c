/* Helpers for the DKIM tests (see dkvtest.h). */
#include "tests/dkim/dkvtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

char *dkvt_read_file(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap + 1);
	while (buf != NULL) {
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (n < cap)
			break;
		char *nb = realloc(buf, cap * 2 + 1);
		if (nb == NULL) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = nb;
		cap *= 2;
	}
	if (buf != NULL && ferror(f)) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf != NULL) {
		buf[n] = '\0';
		if (len_r)
			*len_r = n;
	}
	return buf;
}

size_t dkvt_split_tabs(char *line, char **f, size_t max)
{
	size_t n = 0;
	char *p = line;
	while (n < max) {
		f[n++] = p;
		char *tab = strchr(p, '\t');
		if (tab == NULL)
			break;
		*tab = '\0';
		p = tab + 1;
	}
	return n;
}

static void chomp(char *s)
{
	size_t len = strlen(s);
	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' ||
	                   s[len - 1] == ' ' || s[len - 1] == '\t'))
		s[--len] = '\0';
}

int dkvt_load_keytable(struct dkv_keyset *ks, const char *path)
{
	char *data = dkvt_read_file(path, NULL);
	if (data == NULL)
		return -1;
	int added = 0;
	for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
		chomp(line);
		if (line[0] == '#' || line[0] == '\0')
			continue;
		char *sp = line + strcspn(line, " \t");
		if (*sp == '\0')
			continue;
		*sp++ = '\0';
		sp += strspn(sp, " \t");
		enum dnsq_status st = DNSQ_OK;
		enum dnsq_sec sec = DNSQ_SEC_INSECURE;
		const char *txt = sp;
		if (strncmp(sp, "~~SECURE~~ ", 11) == 0) {
			sec = DNSQ_SEC_SECURE;
			txt = sp + 11;
		}
		if (strcmp(txt, "NXDOMAIN") == 0)
			st = DNSQ_NXDOMAIN;
		else if (strcmp(txt, "~~NODATA~~") == 0)
			st = DNSQ_NODATA;
		else if (strcmp(txt, "~~Query timed out~~") == 0)
			st = DNSQ_TIMEOUT;
		else if (strcmp(txt, "~~SERVFAIL~~") == 0)
			st = DNSQ_TEMPFAIL;
		else if (strcmp(txt, "~~BOGUS~~") == 0)
			st = DNSQ_BOGUS;
		else if (strcmp(txt, "\"\"") == 0)
			txt = "";
		if (dkv_keyset_put_text(ks, line, st, sec, st == DNSQ_OK ? txt : NULL) != 0) {
			free(data);
			return -1;
		}
		added++;
	}
	free(data);
	return added;
}

/* rdata of a TXT line: quoted strings and bare words concatenated, the
 * grouping parentheses dropped */
static void txt_rdata(const char *p, char *out, size_t cap)
{
	size_t n = 0;
	while (*p && n + 1 < cap) {
		if (*p == '"') {
			p++;
			while (*p && *p != '"' && n + 1 < cap) {
				if (*p == '\\' && p[1])
					p++;
				out[n++] = *p++;
			}
			if (*p == '"')
				p++;
		} else if (*p == '(' || *p == ')' || *p == ' ' || *p == '\t') {
			p++;
		} else {
			out[n++] = *p++;
		}
	}
	out[n] = '\0';
}

int dkvt_load_zonefile(struct dkv_keyset *ks, const char *path)
{
	char *data = dkvt_read_file(path, NULL);
	if (data == NULL)
		return -1;
	int added = 0;
	static char rd[1 << 16];
	for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
		chomp(line);
		if (strncmp(line, ";ERROR,", 7) == 0) {
			/* ;ERROR,<name>,<type>,<rcode> */
			char *f[4];
			char *p = line + 7;
			size_t nf = 0;
			while (nf < 4 && p) {
				f[nf++] = p;
				p = strchr(p, ',');
				if (p)
					*p++ = '\0';
			}
			if (nf == 3 && strstr(f[0], "._domainkey.") &&
			    strcasecmp(f[1], "TXT") == 0 && strcmp(f[2], "NXDOMAIN") == 0 &&
			    dkv_keyset_put_text(ks, f[0], DNSQ_NXDOMAIN,
			                        DNSQ_SEC_INSECURE, NULL) == 0)
				added++;
			continue;
		}
		if (line[0] == ';' || line[0] == '\0')
			continue;
		char *tok[4];
		char *p = line;
		size_t nt = 0;
		/* name [ttl] [IN] TYPE rdata... */
		while (nt < 4 && *p) {
			p += strspn(p, " \t");
			if (*p == '\0')
				break;
			tok[nt] = p;
			p += strcspn(p, " \t");
			if (*p)
				*p++ = '\0';
			if (nt == 1 && strspn(tok[1], "0123456789") == strlen(tok[1]))
				continue;   /* TTL */
			if (nt == 1 && strcasecmp(tok[1], "IN") == 0)
				continue;
			nt++;
			if (nt == 2)
				break;
		}
		if (nt < 2 || strcasecmp(tok[1], "TXT") != 0 ||
		    strstr(tok[0], "._domainkey.") == NULL)
			continue;
		p += strspn(p, " \t");
		if (*p == '\0')
			continue;   /* no rdata */
		txt_rdata(p, rd, sizeof rd);
		if (dkv_keyset_put_text(ks, tok[0], DNSQ_OK, DNSQ_SEC_INSECURE, rd) != 0) {
			free(data);
			return -1;
		}
		added++;
	}
	free(data);
	return added;
}

enum dkv_engine dkvt_engine(void)
{
	const char *e = getenv("ALIGND_DKIM_ENGINE");
	return e && strcmp(e, "libopendkim") == 0 ? DKV_ENGINE_LIBOPENDKIM
	                                           : DKV_ENGINE_NATIVE;
}
