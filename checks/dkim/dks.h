/* DKIM signing (RFC 6376 5, RFC 8463 ed25519-sha256): from a parsed message
 * and a private key, the DKIM-Signature field to prepend. The same
 * canonicalisation and hashing as the verifier (dkc). No I/O: keys come in
 * as PEM text; any thread, nothing kept between calls. */
#ifndef ALIGND_DKS_H
#define ALIGND_DKS_H

#include <stddef.h>
#include <stdint.h>

struct msg;

enum dks_alg { DKS_ALG_RSA_SHA256 = 0, DKS_ALG_ED25519_SHA256 };

/* A private key ready to sign with; immutable, so one key may sign on
 * several threads at once. */
struct dks_key;

/* Reads a PEM private key (PKCS#8 or traditional RSA) from pem[0..len).
 * RSA keys under LIM_DKIM_MIN_RSA_BITS or over LIM_DKIM_MAX_RSA_BITS and
 * other key types are refused. 0, or -EINVAL with a reason in err. */
int dks_key_from_pem(const char *pem, size_t len, struct dks_key **key_r,
                     char *err, size_t errlen);
/* Makes a fresh key (bits for RSA only; 0: LIM_DKIM_SIGN_RSA_BITS). */
int dks_key_generate(enum dks_alg alg, unsigned bits, struct dks_key **key_r,
                     char *err, size_t errlen);
void dks_key_free(struct dks_key **key);
enum dks_alg dks_key_alg(const struct dks_key *key);
unsigned dks_key_bits(const struct dks_key *key);
const char *dks_alg_name(enum dks_alg alg);     /* "rsa-sha256", "ed25519-sha256" */
/* The private key as PKCS#8 PEM (malloc'd, NUL-terminated); NULL when out
 * of memory. */
char *dks_key_pem(const struct dks_key *key);
/* The DNS TXT record that publishes the public half (RFC 6376 3.6.1,
 * RFC 8463 4.2): "v=DKIM1; k=rsa; p=..." (malloc'd); NULL when out of
 * memory. */
char *dks_key_record(const struct dks_key *key);
/* 1 when the key record text txt holds the public half of key, 0 when it
 * does not (or does not parse). */
int dks_key_matches(const struct dks_key *key, const char *txt);

/* What to sign with. Every pointer is borrowed for the call. */
struct dks_opts {
	const char *domain;            /* d= (lower-case DNS name) */
	const char *selector;          /* s= */
	const struct dks_key *key;
	int header_simple;             /* c= simple/... instead of relaxed/... */
	int body_simple;               /* c= .../simple instead of .../relaxed */
	/* Field names to sign (NULL: the default list below). A name ending in
	 * '*' (e.g. "List-*") stands for every field of the message whose
	 * name starts with what precedes it. Each is listed as often as the
	 * message holds it. */
	const char *const *headers;
	size_t n_headers;
	/* Names listed once more than present (over-signing, RFC 6376 8.15:
	 * no further instance can be added without breaking the signature).
	 * NULL: the default list below. */
	const char *const *oversign;
	size_t n_oversign;
	/* The body hash for this body canonicalisation, when the caller has it
	 * (several signatures of one message: dks_body_hash() once); NULL:
	 * computed here. */
	const unsigned char *body_hash;
	uint64_t now;                  /* t=, seconds since the epoch */
	uint64_t expire;               /* > 0: x= = now + expire */
};

/* The defaults: From, To, Cc, Subject, Date, Reply-To, Message-ID,
 * In-Reply-To, References, MIME-Version, Content-Type,
 * Content-Transfer-Encoding, List-*; over-signed: From, To, Cc, Subject,
 * Date, Reply-To, Message-ID and the MIME fields. */
extern const char *const dks_default_headers[];
extern const size_t dks_n_default_headers;
extern const char *const dks_default_oversign[];
extern const size_t dks_n_default_oversign;

#define DKS_BODY_HASH_LEN 32      /* SHA-256 */

/* The body hash of m for o->body_simple, for dks_opts.body_hash. 0 or
 * -ENOMEM. */
int dks_body_hash(const struct msg *m, int body_simple,
                  unsigned char out[DKS_BODY_HASH_LEN]);

/* Signs m (parsed from the complete message, body included). *field_r gets
 * the whole field "DKIM-Signature: v=1; ..." folded at about 78 columns,
 * its lines joined with eol ("\r\n" or "\n"), ending with one eol
 * (malloc'd; the caller frees it). 0, -ENOMEM, or -EINVAL with a reason
 * in err (no From field, bad domain or selector, a signing failure). */
int dks_sign(const struct msg *m, const struct dks_opts *o, const char *eol,
             char **field_r, char *err, size_t errlen);

#endif
