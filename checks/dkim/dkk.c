/* DKIM key records: parsing (RFC 6376 3.6.1, RFC 8463 4.2), decoding to an
 * EVP_PKEY, and the shared cache of decoded keys. The cache is a hash table
 * under one mutex held only for lookups and insertions; decoding happens
 * outside it. Replacement is first in, first out over a ring of slots:
 * keys are few and their TTLs short, so recency tracking would cost more
 * than it saves. */
#include "checks/dkim/dkk.h"
#include "checks/dkim/dkc.h"
#include "checks/dkim/dkv_int.h"
#include "common/text.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

const char *dkk_err_name(enum dkk_err e)
{
	switch (e) {
	case DKK_OK:             return "ok";
	case DKK_E_SYNTAX:       return "malformed key record";
	case DKK_E_DUP:          return "a tag twice in the key record (RFC 6376 3.2)";
	case DKK_E_VERSION:      return "key record v= is not DKIM1";
	case DKK_E_HASH_UNKNOWN: return "key record h= names no known hash";
	case DKK_E_SERVICE:      return "key is not for email (s=)";
	case DKK_E_KEYTYPE:      return "unknown key type (k=)";
	case DKK_E_NO_P:         return "key record has no p=";
	case DKK_E_REVOKED:      return "key revoked (empty p=)";
	case DKK_E_DECODE:       return "key does not decode";
	}
	return "unknown key error";
}

/* ---- parsing ---- */

struct kval {
	const char *v;
	size_t len;
};

struct ktags {
	struct kval v, h, k, p, s, t;
	int dup;
};

static int key_tag(void *arg, const char *tag, size_t tlen, const char *val,
                   size_t vlen)
{
	struct ktags *kt = arg;
	struct kval *slot = NULL;
	if (!dkv_tag_name_ok(tag, tlen))
		return -1;
	if (tlen == 1) {
		switch (tag[0]) {
		case 'v': slot = &kt->v; break;
		case 'h': slot = &kt->h; break;
		case 'k': slot = &kt->k; break;
		case 'p': slot = &kt->p; break;
		case 's': slot = &kt->s; break;
		case 't': slot = &kt->t; break;
		default: break;
		}
	}
	if (slot == NULL)
		return 0;      /* 3.6.1: unknown tags are ignored */
	if (slot->v != NULL)
		kt->dup = 1;   /* 3.2: a tag twice makes the list invalid */
	slot->v = val;
	slot->len = vlen;
	return 0;
}

/* Does a colon-separated list (FWS around items) hold lit? */
static int list_has(const struct kval *l, const char *lit)
{
	size_t off = 0;
	while (off <= l->len) {
		size_t end = off;
		while (end < l->len && l->v[end] != ':')
			end++;
		const char *it = l->v + off;
		size_t il = end - off;
		text_trim(&it, &il);
		if (text_ieq(it, il, lit))
			return 1;
		off = end + 1;
	}
	return 0;
}

static void decode(struct dkk_key *k, const struct kval *p)
{
	unsigned char *der = malloc(LIM_DKIM_KEY_DER);
	size_t dlen = 0;
	EVP_PKEY *pk = NULL;
	if (der == NULL) {
		k->err = DKK_E_DECODE;
		return;
	}
	if (dkc_b64_decode(p->v, p->len, der, LIM_DKIM_KEY_DER, &dlen) != 0) {
		k->err = DKK_E_DECODE;
		free(der);
		return;
	}
	if (dlen == 0) {
		k->err = DKK_E_REVOKED;
		free(der);
		return;
	}
	if (k->type == DKV_KEY_ED25519) {
		/* RFC 8463 4.2: p= is the bare 32-byte public key */
		if (dlen == 32)
			pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der,
			                                 dlen);
		if (pk != NULL)
			k->bits = 256;
	} else {
		/* a SubjectPublicKeyInfo, as "openssl rsa -pubout" writes and
		 * nearly everyone publishes; RFC 6376 3.6.1 names the bare
		 * PKCS#1 RSAPublicKey, which some publish, so both are read */
		const unsigned char *q = der;
		pk = d2i_PUBKEY(NULL, &q, (long)dlen);
		if (pk == NULL) {
			q = der;
			pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &q, (long)dlen);
		}
		if (pk != NULL && EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
			EVP_PKEY_free(pk);
			pk = NULL;
		}
		if (pk != NULL)
			k->bits = (unsigned)EVP_PKEY_get_bits(pk);
	}
	free(der);
	if (pk == NULL) {
		k->err = DKK_E_DECODE;
		return;
	}
	k->pkey = pk;
	k->err = DKK_OK;
}

static void parse_into(struct dkk_key *k, const char *txt)
{
	struct ktags kt;
	memset(&kt, 0, sizeof kt);
	k->type = DKV_KEY_RSA;
	k->h_sha256 = k->h_sha1 = 1;
	size_t len = strlen(txt);
	/* the tags are read even from a record that turns out malformed: its
	 * k= still decides "key type does not suit a=" (both engines) */
	int list_bad = len == 0 || dkv_taglist(txt, len, key_tag, &kt) != 0;
	if (kt.k.v != NULL) {
		if (text_ieq(kt.k.v, kt.k.len, "rsa"))
			k->type = DKV_KEY_RSA;
		else if (text_ieq(kt.k.v, kt.k.len, "ed25519"))
			k->type = DKV_KEY_ED25519;
		else
			k->type = DKV_KEY_UNKNOWN;
	}
	if (list_bad || !dkv_text_ok(txt, len)) {
		k->err = DKK_E_SYNTAX;
		return;
	}
	if (kt.t.v != NULL) {
		k->testing = list_has(&kt.t, "y");
		k->strict = list_has(&kt.t, "s");
	}
	if (kt.h.v != NULL) {
		k->h_sha256 = list_has(&kt.h, "sha256");
		k->h_sha1 = list_has(&kt.h, "sha1");
	}
	if (kt.dup) {
		k->err = DKK_E_DUP;
		return;
	}
	/* the order libopendkim checks in: version, hashes, service, type,
	 * then the key itself */
	if (kt.v.v != NULL && !(kt.v.len == 5 && memcmp(kt.v.v, "DKIM1", 5) == 0)) {
		k->err = DKK_E_VERSION;
		return;
	}
	if (!k->h_sha256 && !k->h_sha1) {
		k->err = DKK_E_HASH_UNKNOWN;
		return;
	}
	if (kt.s.v != NULL && !list_has(&kt.s, "*") && !list_has(&kt.s, "email")) {
		k->err = DKK_E_SERVICE;
		return;
	}
	if (k->type == DKV_KEY_UNKNOWN) {
		k->err = DKK_E_KEYTYPE;
		return;
	}
	if (kt.p.v == NULL) {
		k->err = DKK_E_NO_P;
		return;
	}
	decode(k, &kt.p);
}

struct dkk_key *dkk_parse(const char *txt)
{
	struct dkk_key *k = calloc(1, sizeof *k);
	if (k == NULL)
		return NULL;
	k->refs = 1;
	parse_into(k, txt);
	return k;
}

static void key_free(struct dkk_key *k)
{
	EVP_PKEY_free(k->pkey);
	free(k->qname);
	free(k->txt);
	free(k);
}

/* ---- the cache ---- */

struct dkk_cache {
	pthread_mutex_t mu;
	size_t cap;                 /* slots in ring */
	size_t nbuckets;            /* a power of two >= 2 * cap */
	struct dkk_key **buckets;   /* open addressing, linear probing */
	struct dkk_key **ring;      /* insertion order; NULL: free slot */
	size_t next;                /* ring slot the next insertion takes */
	size_t entries;
	uint64_t hits, misses, evictions;
};

/* The count is atomic: the cache (under its lock) and the workers (not
 * under it) drop references to the same key. */
static void unref_locked(struct dkk_key *k)
{
	if (__atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) == 0)
		key_free(k);
}

void dkk_unref(struct dkk_key **kp)
{
	struct dkk_key *k = *kp;
	if (k == NULL)
		return;
	*kp = NULL;
	unref_locked(k);
}

static uint64_t now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

/* FNV-1a over qname, a NUL, txt */
static uint64_t key_hash(const char *qname, const char *txt)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *p = qname; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	h = (h ^ 0xffu) * 1099511628211ull;
	for (const char *p = txt; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return h;
}

struct dkk_cache *dkk_cache_new(size_t cap)
{
	if (cap == 0)
		cap = LIM_DKIM_KEY_CACHE;
	struct dkk_cache *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->cap = cap;
	c->nbuckets = 2;
	while (c->nbuckets < 2 * cap)
		c->nbuckets *= 2;
	c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
	c->ring = calloc(cap, sizeof *c->ring);
	if (c->buckets == NULL || c->ring == NULL ||
	    pthread_mutex_init(&c->mu, NULL) != 0) {
		free(c->buckets);
		free(c->ring);
		free(c);
		return NULL;
	}
	return c;
}

void dkk_cache_free(struct dkk_cache **cp)
{
	struct dkk_cache *c = *cp;
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->cap; i++)
		if (c->ring[i] != NULL)
			unref_locked(c->ring[i]);
	pthread_mutex_destroy(&c->mu);
	free(c->buckets);
	free(c->ring);
	free(c);
	*cp = NULL;
}

static size_t find_slot(const struct dkk_cache *c, uint64_t h,
                        const char *qname, const char *txt)
{
	size_t mask = c->nbuckets - 1;
	for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
		struct dkk_key *k = c->buckets[i];
		if (k == NULL)
			return i;
		if (k->hash == h && strcmp(k->qname, qname) == 0 &&
		    strcmp(k->txt, txt) == 0)
			return i;
	}
}

/* Removes k from the hash table (backward-shift deletion keeps the probe
 * chains whole). */
static void table_remove(struct dkk_cache *c, const struct dkk_key *k)
{
	size_t mask = c->nbuckets - 1;
	size_t i = find_slot(c, k->hash, k->qname, k->txt);
	if (c->buckets[i] != k)
		return;
	c->buckets[i] = NULL;
	for (size_t j = (i + 1) & mask; c->buckets[j] != NULL; j = (j + 1) & mask) {
		struct dkk_key *m = c->buckets[j];
		size_t home = (size_t)m->hash & mask;
		/* m may move to i when its home is not in (i, j] cyclically */
		int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (!stays) {
			c->buckets[i] = m;
			c->buckets[j] = NULL;
			i = j;
		}
	}
}

struct dkk_key *dkk_cache_get(struct dkk_cache *c, const char *qname,
                              const char *txt, uint32_t ttl)
{
	if (c == NULL)
		return dkk_parse(txt);
	uint64_t h = key_hash(qname, txt);
	uint64_t now = now_s();
	pthread_mutex_lock(&c->mu);
	size_t i = find_slot(c, h, qname, txt);
	struct dkk_key *k = c->buckets[i];
	if (k != NULL && k->expires > now) {
		__atomic_add_fetch(&k->refs, 1, __ATOMIC_ACQ_REL);
		c->hits++;
		pthread_mutex_unlock(&c->mu);
		return k;
	}
	c->misses++;
	pthread_mutex_unlock(&c->mu);

	/* decode outside the lock */
	struct dkk_key *nk = dkk_parse(txt);
	if (nk == NULL)
		return NULL;
	nk->qname = strdup(qname);
	nk->txt = strdup(txt);
	if (nk->qname == NULL || nk->txt == NULL)
		return nk;     /* usable, just not cached */
	nk->hash = h;
	if (ttl == 0 || ttl > LIM_DKIM_KEY_CACHE_TTL)
		ttl = LIM_DKIM_KEY_CACHE_TTL;
	nk->expires = now + ttl;

	pthread_mutex_lock(&c->mu);
	i = find_slot(c, h, qname, txt);
	struct dkk_key *old = c->buckets[i];
	if (old != NULL && old->expires > now) {
		/* another worker decoded it meanwhile: use theirs */
		__atomic_add_fetch(&old->refs, 1, __ATOMIC_ACQ_REL);
		pthread_mutex_unlock(&c->mu);
		dkk_unref(&nk);
		return old;
	}
	if (old != NULL) {
		/* expired: its ring slot is reused below */
		for (size_t r = 0; r < c->cap; r++)
			if (c->ring[r] == old) {
				c->ring[r] = NULL;
				break;
			}
		table_remove(c, old);
		c->entries--;
		unref_locked(old);
	}
	struct dkk_key *victim = c->ring[c->next];
	if (victim != NULL) {
		table_remove(c, victim);
		c->entries--;
		c->evictions++;
		unref_locked(victim);
	}
	c->ring[c->next] = nk;
	c->next = (c->next + 1) % c->cap;
	__atomic_add_fetch(&nk->refs, 1, __ATOMIC_ACQ_REL);  /* the cache's */
	c->buckets[find_slot(c, h, qname, txt)] = nk;
	c->entries++;
	pthread_mutex_unlock(&c->mu);
	return nk;
}

void dkk_cache_stats(struct dkk_cache *c, struct dkk_stats *o)
{
	memset(o, 0, sizeof *o);
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	o->hits = c->hits;
	o->misses = c->misses;
	o->evictions = c->evictions;
	o->entries = c->entries;
	pthread_mutex_unlock(&c->mu);
}
