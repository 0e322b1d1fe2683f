/* DKIM verification (RFC 6376, RFC 8463 ed25519, RFC 8301 crypto updates)
 * through libopendkim. Loop thread: dkv_list() names the key records the
 * signatures need and the server stores its DNS answers in a dkv_keyset.
 * Worker thread: dkv_verify() checks the whole message against that key set
 * and never does DNS. One dkv_lib is shared by every worker. */
#ifndef ALIGND_DKV_H
#define ALIGND_DKV_H

#include <stddef.h>
#include <stdint.h>

#include "checks/auth.h"
#include "checks/dnsq.h"
#include "common/limits.h"

struct msg;
struct trace;
struct dkk_cache;

/* ---- the shared library handle (any thread once made) ---- */

/* Who verifies: our own verifier (canonicalisation in one pass, keys
 * decoded once and cached), or libopendkim, kept as an option and as the
 * oracle the native engine is tested against. */
enum dkv_engine { DKV_ENGINE_NATIVE = 0, DKV_ENGINE_LIBOPENDKIM };

struct dkv_opts {
	enum dkv_engine engine;
	size_t key_cache;         /* decoded keys kept (native); 0: LIM_DKIM_KEY_CACHE */
	unsigned max_signatures;  /* signatures evaluated per message; 0: LIM_DKIM_MAX_SIGNATURES */
	unsigned min_rsa_bits;    /* smaller RSA keys give AUTH_POLICY; 0: LIM_DKIM_MIN_RSA_BITS */
	unsigned clock_drift;     /* seconds a t= may lie in the future; 0: LIM_DKIM_CLOCK_DRIFT */
	uint64_t fixed_time;      /* 0: the real clock; else "now" in seconds since the epoch (tests) */
};

struct dkv_lib;

/* 0 fields of o (or o == NULL) take the defaults. NULL on failure, with a
 * reason in err. Options are fixed for the life of the handle. */
struct dkv_lib *dkv_lib_new(const struct dkv_opts *o, char *err, size_t errlen);
void dkv_lib_free(struct dkv_lib **l);
/* 1 when libopendkim verifies ed25519-sha256 itself (it does from 2.11 when
 * built against OpenSSL >= 1.1.1), else 0. */
int dkv_lib_has_ed25519(const struct dkv_lib *l);
unsigned dkv_lib_max_signatures(const struct dkv_lib *l);
enum dkv_engine dkv_lib_engine(const struct dkv_lib *l);
const char *dkv_engine_name(enum dkv_engine e);
/* The native engine's decoded-key cache (ARC shares it); NULL for
 * libopendkim. */
struct dkk_cache *dkv_lib_key_cache(struct dkv_lib *l);
/* The native engine's key cache, for STATS; zeros for libopendkim. */
void dkv_lib_key_stats(const struct dkv_lib *l, uint64_t *hits,
                       uint64_t *misses, size_t *entries);

/* ---- loop thread: which keys does the message need? ---- */

#define DKV_NAME_MAX  (LIM_DNS_MAX_NAME + 1)

struct dkv_sigref {
	char d[DKV_NAME_MAX];      /* d= as written (printable), "" if absent */
	char s[DKV_NAME_MAX];      /* s= as written (printable), "" if absent */
	char a[32];                /* a= as written (printable), "" if absent */
	/* "<s>._domainkey.<d>" in lower case, or "" when d= or s= is missing or
	 * not a usable DNS name (then there is nothing to look up). */
	char qname[DKV_NAME_MAX];
	int dup;                   /* same qname as an earlier ref: look it up once */
};

/* Fills refs[0..] from the DKIM-Signature fields of m, top to bottom, at most
 * max of them (pass dkv_lib_max_signatures()). Returns how many were
 * filled; *total_r (may be NULL) gets how many DKIM-Signature fields there
 * are. Borrows m. Malformed fields still take a slot (with qname ""), so
 * ref i is the i-th signature that dkv_verify() evaluates. */
size_t dkv_list(const struct msg *m, struct dkv_sigref *refs, size_t max,
                size_t *total_r);

/* ---- the key set: written on the loop thread, read on a worker ---- */

struct dkv_keyset;

struct dkv_keyset *dkv_keyset_new(void);
void dkv_keyset_free(struct dkv_keyset **ks);
/* Stores the answer for qname (copied; a is borrowed). A later put for the
 * same name replaces the earlier one. Of several TXT records the first that
 * looks like a DKIM key (has a p= tag) is kept (RFC 6376 3.6.2.2 lets the
 * verifier choose). 0, or -ENOMEM / -EINVAL. */
int dkv_keyset_put(struct dkv_keyset *ks, const char *qname,
                   const struct dnsq_answer *a);
/* The same from text: txt is used only when st == DNSQ_OK. */
int dkv_keyset_put_text(struct dkv_keyset *ks, const char *qname,
                        enum dnsq_status st, enum dnsq_sec sec,
                        const char *txt);
size_t dkv_keyset_count(const struct dkv_keyset *ks);
/* 1 when the key set already holds an answer for qname, else 0. */
int dkv_keyset_has(const struct dkv_keyset *ks, const char *qname);

/* ---- worker thread: verify ---- */

enum dkv_keytype { DKV_KEY_UNKNOWN = 0, DKV_KEY_RSA, DKV_KEY_ED25519 };

#define DKV_REASON_MAX   160
#define DKV_BPREFIX_LEN  16   /* header.b: RFC 6008 wants at least 8 characters */

struct dkv_sig {
	enum auth_res res;         /* pass fail neutral policy temperror permerror */
	char reason[DKV_REASON_MAX];  /* printable; why res is what it is */
	int lib_error;             /* libopendkim's DKIM_SIGERROR_* (0: none) */

	/* signature tags, made printable; "" when absent */
	char d[DKV_NAME_MAX];
	char s[DKV_NAME_MAX];
	char a[32];
	char i[DKV_NAME_MAX];
	char b_prefix[DKV_BPREFIX_LEN + 1];
	int has_t, has_x;
	uint64_t t, x;
	int from_signed;           /* h= names From (RFC 6376 5.4: it must) */

	/* l= (RFC 6376 3.5): only the first l bytes of the canonical body are
	 * protected; unsigned_len bytes after them may be anything. */
	int has_l;
	uint64_t l;
	uint64_t body_len;         /* canonicalized body length */
	uint64_t unsigned_len;

	/* the key */
	int key_found;             /* a key record was given to libopendkim */
	enum dkv_keytype key_type;
	unsigned key_bits;         /* RSA modulus bits; 256 for ed25519; 0 unknown */
	int key_testing;           /* key record t=y (RFC 6376 3.6.1) */
	enum dnsq_status key_status;  /* how the key lookup ended */
	enum dnsq_sec key_sec;     /* DNSSEC status of the key record */

	/* what the crypto said: 1 yes, 0 no, -1 not tested */
	int bh_ok;
	int sig_ok;
};

struct dkv_result {
	struct dkv_sig *sigs;      /* n entries, top to bottom; owned, see dkv_result_free */
	size_t n;
	size_t not_evaluated;      /* signatures beyond max_signatures, not verified */
	enum auth_res best;        /* pass > fail > temperror > policy > permerror > neutral > none */
	uint64_t elapsed_us;       /* wall time spent in dkv_verify */
};

/* Verifies msg[0..len) (LF or CRLF line ends). Keys are taken from ks only:
 * a signature whose key is not in ks gets AUTH_TEMPERROR. ks is read-only
 * here, so one key set may serve several verifications at once. res is
 * overwritten (call dkv_result_free afterwards, also after an error). t
 * (may be NULL) gets one line per signature. Returns 0, or -ENOMEM / -EIO
 * (libopendkim failed internally; res then says temperror for what it could
 * not judge). Borrows everything. */
int dkv_verify(struct dkv_lib *l, const char *msg, size_t len,
               const struct dkv_keyset *ks, struct dkv_result *res,
               struct trace *t);
void dkv_result_free(struct dkv_result *res);

const char *dkv_keytype_name(enum dkv_keytype k);

#endif
