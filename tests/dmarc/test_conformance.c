/* The public DMARC cases in ../shared/conformance/dmarc (transcribed from
 * authentication_milter), run over their zone file loaded into the
 * in-memory DNS. The messages carry no DKIM signature, so SPF is the only
 * input; a minimal SPF stand-in (ip4/ip6/all only, enough for these zone
 * records) computes it here: this test exercises DMARC, not SPF.
 * Usage: test_conformance <shared/conformance directory> */
#include "checks/dmarc/dmarc.h"
#include "tests/dmarc/dmtest.h"
#include "tests/lib/memdns.h"

#include <arpa/inet.h>
#include <ctype.h>

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *s = malloc((size_t)n + 1);
	if (!s || fread(s, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(s);
		return NULL;
	}
	s[n] = '\0';
	fclose(f);
	return s;
}

/* ---- zone file: A, AAAA, MX, TXT and ";ERROR,name,TYPE,STATUS" ---- */

struct txtrec {
	char name[256];
	char text[2048];
};
static struct txtrec txts[128];
static size_t ntxt;

static void lower_name(char *s)
{
	size_t n = strlen(s);
	if (n && s[n - 1] == '.')
		s[--n] = '\0';
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

static void load_zone(struct memdns *m, char *z)
{
	for (char *line = strtok(z, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, ";ERROR,", 7) == 0) {
			char name[256], type[16], st[32];
			if (sscanf(line + 7, "%255[^,],%15[^,],%31s", name, type, st) == 3 &&
			    strcmp(st, "NXDOMAIN") == 0) {
				lower_name(name);
				memdns_set_status(m, name, strcmp(type, "TXT") == 0 ? DNSQ_T_TXT : 0,
				                  DNSQ_NXDOMAIN);
			}
			continue;
		}
		if (line[0] == ';' || line[0] == '\0')
			continue;
		char name[256], tok[64];
		int off = 0, k;
		if (sscanf(line, "%255s%n", name, &off) != 1)
			continue;
		lower_name(name);
		char *p = line + off;
		/* skip TTL and class */
		for (;;) {
			if (sscanf(p, "%63s%n", tok, &k) != 1)
				break;
			if (isdigit((unsigned char)tok[0]) || strcmp(tok, "IN") == 0) {
				p += k;
				continue;
			}
			break;
		}
		if (sscanf(p, "%63s%n", tok, &k) != 1)
			continue;
		p += k;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strcmp(tok, "A") == 0 || strcmp(tok, "AAAA") == 0) {
			char ip[64];
			if (sscanf(p, "%63s", ip) == 1) {
				if (tok[1] == '\0')
					memdns_add_a(m, name, ip);
				else
					memdns_add_aaaa(m, name, ip);
			}
		} else if (strcmp(tok, "MX") == 0) {
			unsigned pref;
			char target[256];
			if (sscanf(p, "%u %255s", &pref, target) == 2) {
				lower_name(target);
				memdns_add_mx(m, name, (uint16_t)pref, target);
			}
		} else if (strcmp(tok, "TXT") == 0 && ntxt < 128) {
			/* character-strings: quoted or bare, parentheses dropped */
			const char *parts[32];
			char store[32][2048];
			size_t np = 0;
			struct txtrec *t = &txts[ntxt];
			snprintf(t->name, sizeof(t->name), "%s", name);
			t->text[0] = '\0';
			while (*p && np < 32) {
				while (*p == ' ' || *p == '\t' || *p == '(' || *p == ')' || *p == '\r')
					p++;
				if (!*p)
					break;
				size_t o = 0;
				if (*p == '"') {
					for (p++; *p && *p != '"' && o < 2047; p++)
						store[np][o++] = *p;
					if (*p == '"')
						p++;
				} else {
					while (*p && *p != ' ' && *p != '\t' && *p != ')' && o < 2047)
						store[np][o++] = *p++;
				}
				store[np][o] = '\0';
				parts[np] = store[np];
				size_t cur = strlen(t->text);
				if (cur + o < sizeof(t->text)) {
					memcpy(t->text + cur, store[np], o);
					t->text[cur + o] = '\0';
				}
				np++;
			}
			if (np) {
				memdns_add_txt_parts(m, name, parts, np);
				ntxt++;
			}
		}
	}
}

/* ---- minimal SPF: ip4/ip6/all of the MAIL FROM domain's record ---- */

static int cidr_match(const char *spec, const char *client)
{
	char net[64];
	int bits = -1;
	unsigned char a[16], b[16];
	snprintf(net, sizeof(net), "%s", spec);
	char *slash = strchr(net, '/');
	if (slash) {
		*slash = '\0';
		bits = atoi(slash + 1);
	}
	int v6 = strchr(net, ':') != NULL;
	if (inet_pton(v6 ? AF_INET6 : AF_INET, net, a) != 1 ||
	    inet_pton(v6 ? AF_INET6 : AF_INET, client, b) != 1)
		return 0;
	if (bits < 0)
		bits = v6 ? 128 : 32;
	for (int i = 0; i < bits; i++)
		if (((a[i / 8] >> (7 - i % 8)) & 1) != ((b[i / 8] >> (7 - i % 8)) & 1))
			return 0;
	return 1;
}

static enum auth_res spf_stub(const char *domain, const char *client)
{
	char dom[DMARC_DOMAIN_MAX];
	if (dmarc_domain_norm(domain, strlen(domain), dom) < 0)
		return AUTH_NONE;
	for (size_t i = 0; i < ntxt; i++) {
		if (strcmp(txts[i].name, dom) != 0 || strncmp(txts[i].text, "v=spf1 ", 7) != 0)
			continue;
		char buf[2048];
		snprintf(buf, sizeof(buf), "%s", txts[i].text + 7);
		for (char *t = strtok(buf, " "); t; t = strtok(NULL, " ")) {
			char q = '+';
			if (strchr("+-~?", *t))
				q = *t++;
			int hit = strcmp(t, "all") == 0 ||
			          ((strncmp(t, "ip4:", 4) == 0 || strncmp(t, "ip6:", 4) == 0) &&
			           cidr_match(t + 4, client));
			if (hit)
				return q == '+' ? AUTH_PASS : q == '-' ? AUTH_FAIL :
				       q == '~' ? AUTH_SOFTFAIL : AUTH_NEUTRAL;
		}
		return AUTH_NEUTRAL;
	}
	return AUTH_NONE;
}

/* ---- the YAML list (flat mappings of scalars) ---- */

struct ccase {
	char name[128], client_ip[64], mailfrom[256], expected[32];
	char *message;
};

static char *yaml_scalar(const char *v)
{
	size_t n = strlen(v);
	char *out = malloc(n + 1), *o = out;
	if (!out)
		abort();
	if (*v != '"') {
		memcpy(out, v, n + 1);
		while (n && (out[n - 1] == '\r' || out[n - 1] == ' '))
			out[--n] = '\0';
		return out;
	}
	for (v++; *v && *v != '"'; v++) {
		if (*v == '\\' && v[1]) {
			v++;
			*o++ = *v == 'r' ? '\r' : *v == 'n' ? '\n' : *v == 't' ? '\t' : *v;
		} else {
			*o++ = *v;
		}
	}
	*o = '\0';
	return out;
}

static size_t load_cases(char *y, struct ccase *cs, size_t max)
{
	size_t n = 0;
	struct ccase *c = NULL;
	for (char *line = strtok(y, "\n"); line; line = strtok(NULL, "\n")) {
		if (line[0] == '#')
			continue;
		if (strncmp(line, "- ", 2) == 0) {
			if (n == max)
				break;
			c = &cs[n++];
			memset(c, 0, sizeof(*c));
			line += 2;
		} else if (strncmp(line, "  ", 2) == 0) {
			line += 2;
		} else {
			continue;
		}
		if (!c)
			continue;
		char *colon = strstr(line, ": ");
		if (!colon)
			continue;
		*colon = '\0';
		char *val = yaml_scalar(colon + 2);
		if (strcmp(line, "name") == 0)
			snprintf(c->name, sizeof(c->name), "%s", val);
		else if (strcmp(line, "client_ip") == 0)
			snprintf(c->client_ip, sizeof(c->client_ip), "%s", val);
		else if (strcmp(line, "mailfrom") == 0)
			snprintf(c->mailfrom, sizeof(c->mailfrom), "%s", val);
		else if (strcmp(line, "expected_dmarc") == 0)
			snprintf(c->expected, sizeof(c->expected), "%s", val);
		else if (strcmp(line, "message") == 0) {
			c->message = val;
			val = NULL;
		}
		free(val);
	}
	return n;
}

struct got {
	int calls;
	struct dmarc_result r;
};

static void on_done(void *arg, const struct dmarc_result *r)
{
	struct got *g = arg;
	g->calls++;
	g->r = *r;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s <shared/conformance directory>\n", argv[0]);
		return 2;
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/dmarc/authentication_milter-cases.yaml", argv[1]);
	char *yaml = slurp(path);
	snprintf(path, sizeof(path), "%s/dkim/authentication_milter/zonefile", argv[1]);
	char *zone = slurp(path);
	if (!yaml || !zone) {
		fprintf(stderr, "FATAL: conformance data missing under %s (expected ../shared "
		        "beside the source tree)\n", argv[1]);
		return 1;
	}
	struct memdns *m = memdns_new();
	load_zone(m, zone);
	CHECK(ntxt > 10, "zone file: only %zu TXT records", ntxt);
	struct ccase cs[32];
	size_t n = load_cases(yaml, cs, 32);
	CHECK(n >= 4, "only %zu cases", n);
	size_t passed = 0;
	for (size_t i = 0; i < n; i++) {
		struct ccase *c = &cs[i];
		struct msg pm;
		struct dmarc_author a;
		if (!c->message || msg_parse(c->message, strlen(c->message), &pm) != 0) {
			CHECK(0, "%s: no message", c->name);
			continue;
		}
		dmarc_author(&pm, &a);
		const char *at = strrchr(c->mailfrom, '@');
		const char *mf_dom = at ? at + 1 : c->mailfrom;
		enum auth_res spf = spf_stub(mf_dom, c->client_ip);
		struct dmarc_opts o = { .defer = dm_defer };
		struct got g = { 0 };
		struct trace t;
		trace_init(&t, trace_now_us(), 1);
		struct dmarc_eval *e = dmarc_start(memdns_dnsq(m), &o, &a, trace_now_us() + 10000000, &t);
		struct dmarc_inputs in = { .spf = spf, .spf_domain = mf_dom };
		dmarc_finish(e, &in, on_done, &g);
		while (memdns_run(m) + dm_run_deferred() > 0)
			;
		int ok = g.calls == 1 && strcmp(dmarc_res_name(g.r.res), c->expected) == 0;
		printf("%-24s spf=%-8s dmarc=%-9s expected=%-5s %s\n", c->name, auth_res_name(spf),
		       dmarc_res_name(g.r.res), c->expected, ok ? "ok" : "MISMATCH");
		if (!ok)
			for (size_t k = 0; k < t.n; k++)
				fprintf(stderr, "  trace: %s\n", t.lines[k].text);
		CHECK(ok, "%s", c->name);
		passed += ok;
		trace_free(&t);
		msg_free(&pm);
		free(c->message);
	}
	printf("%zu/%zu conformance cases match\n", passed, n);
	memdns_free(&m);
	free(yaml);
	free(zone);
	return dm_result("test_conformance");
}
