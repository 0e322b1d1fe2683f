/* ARC (RFC 8617) chain validation. Loop thread: arc_list() names the ARC
 * sets of a parsed header section and the key records their signatures
 * need; the server stores the answers in a dkv_keyset (the same key records
 * as DKIM: <s>._domainkey.<d>, so one key set may serve both checks).
 * Worker thread: arc_verify() validates the chain (RFC 8617 5.2) from that
 * key set only, never doing DNS. No global state. */
#ifndef ALIGND_ARC_H
#define ALIGND_ARC_H

#include <stddef.h>
#include <stdint.h>

#include "checks/auth.h"
#include "checks/dkim/dkv.h"

struct msg;
struct trace;

/* RFC 8617 4.2.1 and 5.2 step 1: instances run from 1 to at most 50 */
#define ARC_MAX_SETS      50u
#define ARC_MAX_REFS      (2u * ARC_MAX_SETS)   /* one AS and one AMS per set */
#define ARC_REASON_MAX    160
#define ARC_AAR_MAX       16u    /* method=result pairs kept from the first AAR */
#define ARC_AAR_PROPS_MAX 160
#define ARC_AAR_TEXT_MAX  4096u  /* longest first-hop AAR text kept */

/* ---- loop thread: which keys does the chain need? ---- */

struct arc_ref {
	unsigned instance;          /* i=, 0 when missing or outside 1..50 */
	int seal;                   /* 1: ARC-Seal, 0: ARC-Message-Signature */
	char cv[8];                 /* ARC-Seal cv= (printable), "" otherwise */
	char d[DKV_NAME_MAX];       /* d= as written (printable), "" if absent */
	char s[DKV_NAME_MAX];       /* s= as written (printable), "" if absent */
	char a[32];                 /* a= as written (printable), "" if absent */
	/* "<s>._domainkey.<d>" in lower case, "" when there is nothing to
	 * look up (d= or s= missing or not a usable DNS name) */
	char qname[DKV_NAME_MAX];
	int dup;                    /* same qname as an earlier ref: look it up once */
};

struct arc_listing {
	size_t n_fields;            /* ARC-Seal, ARC-Message-Signature and ARC-Authentication-Results fields */
	unsigned n_sets;            /* highest instance seen (N), capped at ARC_MAX_SETS + 1 */
	/* 1 when the structure alone already decides (no ARC fields, or a
	 * chain that fails RFC 8617 5.2 steps 1-3): no key is needed and the
	 * server should start no lookup for this message's ARC fields. */
	int decided;
	enum auth_res result;       /* when decided: AUTH_NONE or AUTH_FAIL */
	char reason[ARC_REASON_MAX];
};

/* Fills refs[0..] with the ARC-Seal and ARC-Message-Signature fields of m,
 * top to bottom, at most max (pass ARC_MAX_REFS). Returns how many were
 * filled; *sum_r (may be NULL) gets the chain summary. Borrows m. */
size_t arc_list(const struct msg *m, struct arc_ref *refs, size_t max,
                struct arc_listing *sum_r);

/* ---- worker thread: verify ---- */

struct dkk_cache;

struct arc_opts {
	unsigned min_rsa_bits;      /* 0: LIM_DKIM_MIN_RSA_BITS (RFC 8301 3.2) */
	struct dkk_cache *key_cache; /* DKIM's decoded keys (dkv_lib_key_cache); NULL: none */
	uint64_t fixed_time;        /* 0: the real clock; else "now" for x= (tests) */
};

/* One signature (AS or AMS) of one instance. */
struct arc_sig {
	/* pass, fail (crypto said no), policy (RFC 8301: rsa-sha1, small key),
	 * permerror (malformed, no usable key), temperror (key lookup failed
	 * for now), none (not evaluated, see reason) */
	enum auth_res res;
	char reason[ARC_REASON_MAX];
	char d[DKV_NAME_MAX];
	char s[DKV_NAME_MAX];
	char a[32];
	enum dkv_keytype key_type;
	unsigned key_bits;
};

struct arc_set {
	unsigned instance;          /* k + 1 for sets[k] */
	unsigned n_as, n_ams, n_aar;  /* fields seen with this instance (1 each when valid) */
	char cv[8];                 /* the seal's cv= (printable) */
	struct arc_sig as;          /* as.d is the sealing domain of this hop */
	struct arc_sig ams;
};

struct arc_aar_method {
	char method[32];            /* lower case, e.g. "spf", "dkim", "dmarc" */
	char result[32];            /* lower case, e.g. "pass" */
	char props[ARC_AAR_PROPS_MAX]; /* the rest of the resinfo, printable */
};

struct arc_result {
	/* AUTH_NONE: no ARC field; AUTH_PASS; AUTH_FAIL; AUTH_TEMPERROR: a key
	 * that decides the outcome could not be fetched (the chain may be
	 * valid; RFC 8617 registers only none/pass/fail for arc=, so report it
	 * as a temporary failure, not as arc=fail). */
	enum auth_res chain;
	char reason[ARC_REASON_MAX];  /* printable; why chain is what it is */
	unsigned n_sets;            /* N, the highest instance (0 when none) */
	/* RFC 8617 5.2 step 5: the lowest instance whose AMS, and every newer
	 * AMS, still validates; 0 when all of them do. Meaningful on pass. */
	unsigned oldest_pass;
	/* per-instance details: sets[k] is instance k+1; n_sets entries
	 * (at most ARC_MAX_SETS). Owned, see arc_result_free. */
	struct arc_set *sets;
	/* The ARC-Authentication-Results of instance 1, i.e. SPF/DKIM/DMARC as
	 * the first ARC participant saw them: unfolded, printable, without
	 * "i=1;"; NULL when absent. Trust it only when chain is AUTH_PASS. */
	char *aar1;
	char aar1_authserv[DKV_NAME_MAX];
	struct arc_aar_method aar1_res[ARC_AAR_MAX];
	size_t aar1_n;
	uint64_t elapsed_us;
};

/* Validates the ARC chain of msg[0..len) (LF or CRLF line ends), taking
 * keys from ks only (a key that is not there counts as a failed lookup:
 * temperror). o may be NULL for the defaults. res is overwritten; call
 * arc_result_free afterwards, also after an error. t (may be NULL) gets
 * one line per set and one for the chain. Returns 0, or -ENOMEM (res then
 * says temperror) or -EINVAL (the header section could not be parsed; res
 * says fail when ARC fields were seen, else none). Borrows everything;
 * ks is only read, so one key set may serve several verifications. */
int arc_verify(const struct arc_opts *o, const char *msg, size_t len,
               const struct dkv_keyset *ks, struct arc_result *res,
               struct trace *t);
void arc_result_free(struct arc_result *res);

/* Parses an Authentication-Results value (RFC 8601 2.2: authserv-id
 * [version] ; resinfo ; ...), splitting at ';' only outside quoted strings
 * and comments: each "method=result props" entry, lower-cased, into out
 * (at most max). authserv (may be NULL) gets the authserv-id. Returns how
 * many entries were filled. Borrows s. */
size_t arc_ar_parse(const char *s, size_t len, char *authserv, size_t acap,
                    struct arc_aar_method *out, size_t max);

/* The first-hop result for a method ("spf", "dkim", "dmarc", ...): the
 * result text of its first entry in aar1, or NULL. */
const char *arc_aar1_result(const struct arc_result *res, const char *method);

/* "pass header.oldest-pass=0 (sealer lists.example.org)"-style text for an
 * Authentication-Results arc= entry (RFC 8617 10.1). Returns the length
 * written (cut to cap - 1). */
size_t arc_ar_text(const struct arc_result *res, char *out, size_t cap);

#endif
