/* DKIM key records (RFC 6376 3.6.1, RFC 8463 4.2): parsed and decoded to an
 * OpenSSL EVP_PKEY once, then kept in a bounded cache shared by every
 * worker, keyed by (query name, record text) and dropped when the DNS TTL
 * runs out. A key is immutable once made and counted by reference, so a
 * worker keeps using its key while the cache drops or replaces it. Shared
 * by the DKIM verifier and ARC. */
#ifndef ALIGND_DKK_H
#define ALIGND_DKK_H

#include <stddef.h>
#include <stdint.h>

#include "checks/dkim/dkv.h"

/* What is wrong with a record, in the order a verifier meets it (the
 * order libopendkim reports it in, so that both engines judge alike). */
enum dkk_err {
	DKK_OK = 0,
	DKK_E_SYNTAX,        /* not a tag-list, or empty */
	DKK_E_DUP,           /* a tag twice (RFC 6376 3.2; libopendkim takes one) */
	DKK_E_VERSION,       /* v= present and not DKIM1 */
	DKK_E_HASH_UNKNOWN,  /* h= names no hash we know */
	DKK_E_SERVICE,       /* s= names neither email nor * */
	DKK_E_KEYTYPE,       /* k= is neither rsa nor ed25519 */
	DKK_E_NO_P,          /* no p= */
	DKK_E_REVOKED,       /* p= empty (3.6.1: the key is revoked) */
	DKK_E_DECODE,        /* p= is not base64, or not a key of type k= */
};

struct dkk_key {
	enum dkk_err err;
	enum dkv_keytype type;    /* from k= (rsa when absent), even on error */
	int h_sha256;             /* h= absent, or it lists sha256 */
	int h_sha1;               /* h= absent, or it lists sha1 */
	int testing;              /* t=y */
	int strict;               /* t=s: i= must be exactly d= */
	unsigned bits;            /* RSA modulus bits, 256 for ed25519; 0 on error */
	void *pkey;               /* EVP_PKEY *, NULL unless err == DKK_OK */
	/* cache bookkeeping */
	unsigned refs;
	uint64_t hash;
	uint64_t expires;         /* seconds, monotonic clock */
	char *qname;
	char *txt;
};

/* A fresh key from a record's text; NULL when out of memory. The caller
 * holds one reference. */
struct dkk_key *dkk_parse(const char *txt);
void dkk_unref(struct dkk_key **k);
const char *dkk_err_name(enum dkk_err e);

struct dkk_cache;

/* cap 0: LIM_DKIM_KEY_CACHE. NULL when out of memory. */
struct dkk_cache *dkk_cache_new(size_t cap);
void dkk_cache_free(struct dkk_cache **c);
/* The key for (qname, txt), decoded now unless the cache holds it; ttl in
 * seconds (0: LIM_DKIM_KEY_CACHE_TTL, longer is cut to it). The caller
 * holds a reference (dkk_unref). c may be NULL: no caching. NULL when out
 * of memory. Any thread. */
struct dkk_key *dkk_cache_get(struct dkk_cache *c, const char *qname,
                              const char *txt, uint32_t ttl);

struct dkk_stats {
	uint64_t hits, misses, evictions;
	size_t entries;
};
void dkk_cache_stats(struct dkk_cache *c, struct dkk_stats *out);

#endif
