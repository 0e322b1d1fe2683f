/* The loop-thread half: dkv_list() on a parsed header section, lookups
 * through struct dnsq (the in-memory implementation), answers stored with
 * dkv_keyset_put(), then dkv_verify() on them. Uses the RFC 8463 example
 * (an ed25519 and an rsa-sha256 signature). Usage: dkim_keys <conformance/dkim dir> */
#include "tests/dkim/dkvtest.h"
#include "tests/lib/memdns.h"
#include "checks/msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks, bad;

#define CHECK(cond) do { checks++; if (!(cond)) { bad++; \
	printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } } while (0)

struct pending {
	struct dkv_keyset *ks;
	char qname[DKV_NAME_MAX];
};

static void on_key(void *arg, const struct dnsq_answer *a)
{
	struct pending *p = arg;
	CHECK(dkv_keyset_put(p->ks, p->qname, a) == 0);
}

/* The server's part, in small: list, look up every distinct name, store. */
static struct dkv_keyset *fetch(struct memdns *md, const char *msg, size_t len,
                                size_t *nrefs_r)
{
	struct msg m;
	struct dkv_sigref refs[LIM_DKIM_MAX_SIGNATURES];
	static struct pending pend[LIM_DKIM_MAX_SIGNATURES];
	struct dkv_keyset *ks = dkv_keyset_new();
	if (msg_parse(msg, len, &m) != 0)
		return ks;
	size_t n = dkv_list(&m, refs, LIM_DKIM_MAX_SIGNATURES, NULL);
	*nrefs_r = n;
	for (size_t k = 0; k < n; k++) {
		if (refs[k].qname[0] == '\0' || refs[k].dup)
			continue;
		pend[k].ks = ks;
		snprintf(pend[k].qname, sizeof pend[k].qname, "%s", refs[k].qname);
		dnsq_lookup(memdns_dnsq(md), refs[k].qname, DNSQ_T_TXT, on_key, &pend[k]);
	}
	memdns_run(md);
	msg_free(&m);
	return ks;
}

static void load_keys(struct memdns *md, const char *path, int split)
{
	char *data = dkvt_read_file(path, NULL);
	CHECK(data != NULL);
	if (data == NULL)
		return;
	for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
		if (line[0] == '#')
			continue;
		char *sp = strchr(line, ' ');
		if (sp == NULL)
			continue;
		*sp++ = '\0';
		if (split) {
			/* long keys come in several character-strings */
			size_t len = strlen(sp), half = len / 2;
			char *a = strndup(sp, half), *b = strdup(sp + half);
			const char *parts[2] = { a, b };
			memdns_add_txt_parts(md, line, parts, 2);
			free(a);
			free(b);
		} else {
			memdns_add_txt(md, line, sp);
		}
	}
	free(data);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s <conformance/dkim dir>\n", argv[0]);
		return 2;
	}
	char path[4096], err[256];
	snprintf(path, sizeof path, "%s/rfc8463/rfc8463-example.signed.msg", argv[1]);
	size_t len;
	char *msg = dkvt_read_file(path, &len);
	if (msg == NULL) {
		printf("FAIL: cannot read %s\n", path);
		return 1;
	}
	snprintf(path, sizeof path, "%s/rfc8463/keys.txt", argv[1]);
	struct dkv_opts lo = { .engine = dkvt_engine() };
	struct dkv_lib *lib = dkv_lib_new(&lo, err, sizeof err);
	CHECK(lib != NULL);
	CHECK(dkv_lib_has_ed25519(lib) == 1);
	CHECK(dkv_lib_max_signatures(lib) == LIM_DKIM_MAX_SIGNATURES);

	/* dkv_list: names, tags, duplicates, malformed fields */
	{
		const char *m2 =
			"DKIM-Signature: v=1; a=rsa-sha256; d=Example.COM;\r\n"
			" s=Sel1; h=from; bh=x; b=y\r\n"
			"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel1; h=from; bh=x; b=z\r\n"
			"DKIM-Signature: v=1; a=ed25519-sha256; d=bad..name; s=s; h=from; bh=x; b=z\r\n"
			"DKIM-Signature: garbage without tags\r\n"
			"DKIM-Signature: v=1; d=example.net; s=a.b; h=from; bh=x; b=z\r\n"
			"From: a@example.com\r\n\r\nbody\r\n";
		struct msg m;
		struct dkv_sigref refs[4];
		size_t total = 0;
		CHECK(msg_parse(m2, strlen(m2), &m) == 0);
		size_t n = dkv_list(&m, refs, 4, &total);
		CHECK(n == 4);
		CHECK(total == 5);
		CHECK(strcmp(refs[0].qname, "sel1._domainkey.example.com") == 0);
		CHECK(strcmp(refs[0].d, "Example.COM") == 0);
		CHECK(strcmp(refs[0].a, "rsa-sha256") == 0);
		CHECK(refs[0].dup == 0);
		CHECK(refs[1].dup == 1);
		CHECK(refs[2].qname[0] == '\0');
		CHECK(refs[3].qname[0] == '\0');
		n = dkv_list(&m, refs, 4, NULL);
		CHECK(n == 4);
		msg_free(&m);
	}

	/* the whole flow, keys split into character-strings, DNSSEC secure */
	{
		struct memdns *md = memdns_new();
		load_keys(md, path, 1);
		/* an unrelated TXT record at the same name must not be chosen */
		memdns_add_txt(md, "brisbane._domainkey.football.example.com", "v=spf1 -all");
		memdns_set_sec(md, "football.example.com", DNSQ_SEC_SECURE);
		size_t nrefs = 0;
		struct dkv_keyset *ks = fetch(md, msg, len, &nrefs);
		CHECK(nrefs == 2);
		CHECK(dkv_keyset_count(ks) == 2);
		CHECK(memdns_lookups(md) == 2);
		struct dkv_result r;
		CHECK(dkv_verify(lib, msg, len, ks, &r, NULL) == 0);
		CHECK(r.n == 2);
		CHECK(r.best == AUTH_PASS);
		for (size_t k = 0; k < r.n; k++) {
			CHECK(r.sigs[k].res == AUTH_PASS);
			CHECK(r.sigs[k].key_sec == DNSQ_SEC_SECURE);
		}
		CHECK(r.n == 2 && r.sigs[0].key_type == DKV_KEY_ED25519);
		CHECK(r.n == 2 && r.sigs[1].key_type == DKV_KEY_RSA && r.sigs[1].key_bits == 1024);
		dkv_result_free(&r);
		dkv_keyset_free(&ks);
		CHECK(ks == NULL);
		memdns_free(&md);
	}

	/* bogus answers carry data, which must never be used */
	{
		struct memdns *md = memdns_new();
		load_keys(md, path, 0);
		memdns_set_sec(md, "football.example.com", DNSQ_SEC_BOGUS);
		size_t nrefs = 0;
		struct dkv_keyset *ks = fetch(md, msg, len, &nrefs);
		struct dkv_result r;
		CHECK(dkv_verify(lib, msg, len, ks, &r, NULL) == 0);
		CHECK(r.n == 2);
		for (size_t k = 0; k < r.n; k++) {
			CHECK(r.sigs[k].res == AUTH_TEMPERROR);
			CHECK(r.sigs[k].key_found == 0);
		}
		CHECK(r.best == AUTH_TEMPERROR);
		dkv_result_free(&r);
		dkv_keyset_free(&ks);
		memdns_free(&md);
	}

	/* no key records at all: NXDOMAIN is a permanent error */
	{
		struct memdns *md = memdns_new();
		size_t nrefs = 0;
		struct dkv_keyset *ks = fetch(md, msg, len, &nrefs);
		struct dkv_result r;
		CHECK(dkv_verify(lib, msg, len, ks, &r, NULL) == 0);
		CHECK(r.n == 2 && r.sigs[0].res == AUTH_PERMERROR &&
		      r.sigs[1].res == AUTH_PERMERROR);
		dkv_result_free(&r);
		/* an empty key set: nothing was looked up, which is temporary */
		struct dkv_keyset *empty = dkv_keyset_new();
		CHECK(dkv_verify(lib, msg, len, empty, &r, NULL) == 0);
		CHECK(r.best == AUTH_TEMPERROR);
		dkv_result_free(&r);
		/* a later answer for the same name replaces the earlier one */
		CHECK(dkv_keyset_put_text(empty, "BRISBANE._domainkey.football.example.com.",
		                          DNSQ_TIMEOUT, DNSQ_SEC_INSECURE, NULL) == 0);
		CHECK(dkv_keyset_put_text(empty, "brisbane._domainkey.football.example.com",
		                          DNSQ_OK, DNSQ_SEC_INSECURE,
		                          "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=") == 0);
		CHECK(dkv_keyset_count(empty) == 1);
		CHECK(dkv_keyset_has(empty, "brisbane._domainkey.Football.Example.Com"));
		CHECK(dkv_keyset_put_text(empty, "", DNSQ_OK, DNSQ_SEC_INSECURE, "x") < 0);
		CHECK(dkv_verify(lib, msg, len, empty, &r, NULL) == 0);
		CHECK(r.n == 2 && r.sigs[0].res == AUTH_PASS && r.sigs[1].res == AUTH_TEMPERROR);
		dkv_result_free(&r);
		dkv_keyset_free(&empty);
		dkv_keyset_free(&ks);
		memdns_free(&md);
	}

	/* a max of 1 signature: the second is counted, not evaluated */
	{
		struct dkv_opts o = { .max_signatures = 1, .engine = dkvt_engine() };
		struct dkv_lib *one = dkv_lib_new(&o, err, sizeof err);
		struct memdns *md = memdns_new();
		load_keys(md, path, 0);
		size_t nrefs = 0;
		struct dkv_keyset *ks = fetch(md, msg, len, &nrefs);
		struct dkv_result r;
		CHECK(dkv_verify(one, msg, len, ks, &r, NULL) == 0);
		CHECK(r.n == 1 && r.not_evaluated == 1 && r.sigs[0].res == AUTH_PASS);
		dkv_result_free(&r);
		dkv_keyset_free(&ks);
		memdns_free(&md);
		dkv_lib_free(&one);
	}

	/* empty input and a message without a body */
	{
		struct dkv_keyset *ks = dkv_keyset_new();
		struct dkv_result r;
		CHECK(dkv_verify(lib, "", 0, ks, &r, NULL) == 0);
		CHECK(r.n == 0 && r.best == AUTH_NONE);
		dkv_result_free(&r);
		const char *nb = "DKIM-Signature: v=1; a=rsa-sha256; d=x.org; s=s; h=from; bh=x; b=y";
		CHECK(dkv_verify(lib, nb, strlen(nb), ks, &r, NULL) == 0);
		dkv_result_free(&r);
		dkv_keyset_free(&ks);
	}

	free(msg);
	dkv_lib_free(&lib);
	CHECK(lib == NULL);
	printf("dkim keys: %d checks, %d failed\n", checks, bad);
	return bad ? 1 : 0;
}
