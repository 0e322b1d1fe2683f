/* Prototype, bench only: DKIM verification (rsa-sha256) with the public
 * keys decoded once per selector and kept, against libopendkim which
 * decodes the key record on every signature. Same corpus, same threads,
 * same run: prints both rates and how many signatures the two agree on.
 *   keycache INDEX.tsv KEYS.tsv THREADS SECONDS
 * The canonicalisation and hashing are checks/arc's (RFC 6376 3.4, 3.7,
 * the same as an ARC-Message-Signature's); tags are parsed as ARC's. Only
 * rsa-sha256 is handled: other signatures are counted, not verified.
 * Output: one JSON object on stdout. */
#include "checks/arc/arc_int.h"
#include "checks/dkim/dkv.h"
#include "checks/msg.h"
#include "corpus_io.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>


struct ckey {                  /* one decoded key, shared read-only */
	char qname[DKV_NAME_MAX];
	EVP_PKEY *pk;
};

static struct m_item *items;
static size_t n_items;
static struct ckey *keys;
static size_t n_keys;
static struct dkv_lib *lib;
static struct dkv_keyset *keyset;
static volatile int stop_flag;

static double now_s(void)
{
	return corpus_now_s();
}

/* p= of a key record, base64-decoded into a DER public key */
static EVP_PKEY *decode_key(const char *txt)
{
	const char *p = strstr(txt, "p=");
	if (!p)
		return NULL;
	p += 2;
	size_t n = strcspn(p, ";");
	unsigned char der[4096];
	size_t dl;
	if (dkc_b64_decode(p, n, der, sizeof der, &dl) < 0)
		return NULL;
	const unsigned char *q = der;
	return d2i_PUBKEY(NULL, &q, (long)dl);
}

static void load_keys(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "keycache: cannot open %s\n", path);
		exit(2);
	}
	keyset = dkv_keyset_new();
	keys = calloc(8192, sizeof *keys);
	static char line[16384];
	while (keyset && keys && fgets(line, sizeof line, f) && n_keys < 8192) {
		line[strcspn(line, "\r\n")] = '\0';
		char *tab = strchr(line, '\t');
		if (!tab)
			continue;
		*tab = '\0';
		dkv_keyset_put_text(keyset, line, DNSQ_OK, DNSQ_SEC_SECURE, tab + 1);
		if (!strstr(tab + 1, "k=rsa"))
			continue;
		struct ckey *k = &keys[n_keys];
		size_t ql = strlen(line);
		if (ql >= sizeof k->qname)
			continue;
		memcpy(k->qname, line, ql + 1);
		k->pk = decode_key(tab + 1);
		if (k->pk)
			n_keys++;
	}
	fclose(f);
}

static EVP_PKEY *find_key(const char *qname)
{
	/* a linear scan is enough for a prototype's few hundred keys; a real
	 * cache would hash by name and expire with the record's TTL */
	for (size_t i = 0; i < n_keys; i++)
		if (strcmp(keys[i].qname, qname) == 0)
			return keys[i].pk;
	return NULL;
}

static int val_eq(const struct arc_val *v, const char *lit)
{
	return v->v && v->len == strlen(lit) && strncasecmp(v->v, lit, v->len) == 0;
}

enum vres { V_PASS = 0, V_FAIL, V_SKIP };

/* One DKIM-Signature, rsa-sha256 only. */
static enum vres verify_sig(const struct msg *m, const struct msg_field *sigf)
{
	struct arc_tags tg;
	if (arc_tags_parse(sigf, &tg) < 0)
		return V_SKIP;
	enum vres r = V_SKIP;
	if (tg.bad || !val_eq(&tg.a, "rsa-sha256") || !tg.d.v || !tg.s.v || !tg.h.v ||
	    !tg.b.v || !tg.bh.v)
		goto out;
	char qname[DKV_NAME_MAX];
	if (tg.s.len + tg.d.len + 13 > sizeof qname)
		goto out;
	snprintf(qname, sizeof qname, "%.*s._domainkey.%.*s", (int)tg.s.len, tg.s.v,
	         (int)tg.d.len, tg.d.v);
	for (char *c = qname; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	EVP_PKEY *pk = find_key(qname);
	if (!pk)
		goto out;
	int hrel = 0, brel = 0;
	if (tg.c.v) {
		hrel = tg.c.len >= 7 && strncasecmp(tg.c.v, "relaxed", 7) == 0;
		const char *sl = memchr(tg.c.v, '/', tg.c.len);
		brel = sl && (size_t)(tg.c.v + tg.c.len - sl - 1) >= 7 &&
		       strncasecmp(sl + 1, "relaxed", 7) == 0;
	}
	int64_t limit = -1;
	if (tg.l.v) {
		limit = 0;
		for (size_t i = 0; i < tg.l.len; i++)
			limit = limit * 10 + (tg.l.v[i] - '0');
	}
	r = V_FAIL;
	/* body hash (RFC 6376 3.7) */
	unsigned char bh[32], want[64];
	size_t wl;
	uint64_t canon_len;
	if (dkc_body_hash(m->body, m->body_len, brel, limit, bh, &canon_len) < 0 ||
	    dkc_b64_decode(tg.bh.v, tg.bh.len, want, sizeof want, &wl) < 0 ||
	    wl != 32 || memcmp(bh, want, 32) != 0)
		goto out;
	/* header hash: h= names, each taking the lowest unused instance from
	 * the bottom (RFC 6376 5.4.2), then the signature without b= */
	struct dkc_hash *h = dkc_hash_new();
	if (!h)
		goto out;
	unsigned char used[512] = { 0 };
	const char *p = tg.h.v, *end = tg.h.v + tg.h.len;
	while (p < end) {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		const char *ne = colon ? colon : end;
		const char *a = p, *z = ne;
		while (a < z && isspace((unsigned char)*a))
			a++;
		while (z > a && isspace((unsigned char)z[-1]))
			z--;
		for (size_t k = m->n_fields; k-- > 0;) {
			if (k < sizeof used && used[k])
				continue;
			const struct msg_field *f = &m->fields[k];
			if (f->name_len == (size_t)(z - a) && strncasecmp(f->name, a, f->name_len) == 0) {
				if (k < sizeof used)
					used[k] = 1;
				dkc_header(h, f, hrel, 0);
				break;
			}
		}
		p = colon ? colon + 1 : end;
	}
	dkc_header(h, sigf, hrel, 1);
	unsigned char dg[32];
	dkc_hash_final(h, dg);
	dkc_hash_free(&h);
	unsigned char sig[1024];
	size_t sl;
	if (dkc_b64_decode(tg.b.v, tg.b.len, sig, sizeof sig, &sl) < 0)
		goto out;
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(pk, NULL);
	if (pc && EVP_PKEY_verify_init(pc) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1 &&
	    EVP_PKEY_verify(pc, sig, sl, dg, 32) == 1)
		r = V_PASS;
	EVP_PKEY_CTX_free(pc);
out:
	arc_tags_free(&tg);
	return r;
}

/* Verifies every DKIM-Signature of a message; counts in res[3]. */
static void verify_cached(const struct m_item *it, unsigned long res[3], enum vres *per, size_t max)
{
	struct msg m;
	if (msg_parse(it->data, it->len, &m) != MSG_OK)
		return;
	size_t k = 0;
	for (size_t i = 0; i < m.n_fields; i++) {
		const struct msg_field *f = &m.fields[i];
		if (f->name_len != 14 || strncasecmp(f->name, "DKIM-Signature", 14) != 0)
			continue;
		enum vres r = verify_sig(&m, f);
		res[r]++;
		if (per && k < max)
			per[k] = r;
		k++;
	}
	msg_free(&m);
}

struct targ {
	int cached;
	unsigned long msgs;
};

static void *worker(void *arg)
{
	struct targ *t = arg;
	unsigned long res[3] = { 0 };
	size_t i = 0;
	while (!stop_flag) {
		const struct m_item *it = &items[i++ % n_items];
		if (t->cached) {
			verify_cached(it, res, NULL, 0);
		} else {
			struct dkv_result r;
			dkv_verify(lib, it->data, it->len, keyset, &r, NULL);
			dkv_result_free(&r);
		}
		t->msgs++;
	}
	return NULL;
}

static double rate(int cached, int threads, double secs)
{
	pthread_t th[64];
	struct targ ta[64];
	stop_flag = 0;
	double t0 = now_s();
	for (int i = 0; i < threads; i++) {
		ta[i] = (struct targ){ cached, 0 };
		pthread_create(&th[i], NULL, worker, &ta[i]);
	}
	struct timespec ts = { (time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9) };
	nanosleep(&ts, NULL);
	stop_flag = 1;
	unsigned long total = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		total += ta[i].msgs;
	}
	return (double)total / (now_s() - t0);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: keycache INDEX.tsv KEYS.tsv THREADS SECONDS\n");
		return 2;
	}
	items = corpus_load(argv[1], &n_items);
	load_keys(argv[2]);
	int threads = atoi(argv[3]);
	double secs = atof(argv[4]);
	if (threads < 1 || threads > 64 || secs <= 0)
		return 2;
	char err[256];
	lib = dkv_lib_new(NULL, err, sizeof err);
	if (!lib) {
		fprintf(stderr, "keycache: %s\n", err);
		return 1;
	}
	/* agreement: every rsa-sha256 signature judged by both */
	unsigned long agree = 0, differ = 0, skipped = 0, passes = 0;
	for (size_t i = 0; i < n_items; i++) {
		enum vres per[16];
		unsigned long res[3] = { 0 };
		verify_cached(&items[i], res, per, 16);
		struct dkv_result r;
		dkv_verify(lib, items[i].data, items[i].len, keyset, &r, NULL);
		for (size_t k = 0; k < r.n && k < 16 && k < res[0] + res[1] + res[2]; k++) {
			if (per[k] == V_SKIP) {
				skipped++;
				continue;
			}
			int lib_pass = r.sigs[k].res == AUTH_PASS;
			if (lib_pass == (per[k] == V_PASS))
				agree++;
			else
				differ++;
			passes += per[k] == V_PASS;
		}
		dkv_result_free(&r);
	}
	double lib_rate = rate(0, threads, secs);
	double cached_rate = rate(1, threads, secs);
	printf("{\"bench\":\"dkim_keycache\",\"threads\":%d,\"messages\":%zu,\"keys\":%zu,"
	       "\"libopendkim_msgs_s\":%.0f,\"cached_keys_msgs_s\":%.0f,\"speedup\":%.2f,"
	       "\"signatures_agree\":%lu,\"signatures_differ\":%lu,\"signatures_skipped\":%lu,"
	       "\"passes\":%lu}\n", threads, n_items, n_keys, lib_rate, cached_rate,
	       cached_rate / lib_rate, agree, differ, skipped, passes);
	dkv_lib_free(&lib);
	dkv_keyset_free(&keyset);
	return differ ? 1 : 0;
}
