/* DKIM canonicalisation and hashing (RFC 6376 3.4, 3.7), shared by the
 * DKIM verifier and ARC's message signatures and seals: one implementation
 * of the header and body algorithms, SHA-256 through OpenSSL. No I/O, no
 * global state but OpenSSL's fetched digest; any thread. LF-only input is
 * read as CRLF (a bare LF ends a line), as libopendkim's FIXCRLF does. */
#ifndef ALIGND_DKC_H
#define ALIGND_DKC_H

#include <stddef.h>
#include <stdint.h>

#include "common/limits.h"

struct msg_field;

#define DKC_DIGEST_LEN 32          /* SHA-256 */

/* ---- an incremental SHA-256 with a small gather buffer ---- */

struct dkc_hash;
struct dkc_hash *dkc_hash_new(void);
void dkc_hash_free(struct dkc_hash **h);
/* 0, or -ENOMEM once OpenSSL failed (sticky) */
int dkc_hash_update(struct dkc_hash *h, const void *p, size_t n);
int dkc_hash_final(struct dkc_hash *h, unsigned char out[DKC_DIGEST_LEN]);

/* Feeds one header field to h: relaxed (3.4.2) or simple (3.4.1). With
 * strip_b the value of its b= tag is left out (3.7: the signature field
 * itself) and no CRLF ends it. 0 or -ENOMEM. */
int dkc_header(struct dkc_hash *h, const struct msg_field *f, int relaxed,
               int strip_b);

/* ---- streaming body hashes ----
 * A message asks for the (canonicalisation, l=) pairs its signatures need,
 * then its body is fed in chunks of any size, once: each canonicaliser
 * (simple and relaxed) runs over each chunk and feeds every hash that
 * wants its output. Nothing of the body is kept. */

struct dkc_body;

struct dkc_body *dkc_body_new(void);
void dkc_body_free(struct dkc_body **b);
/* The index of the hash for (relaxed, limit) (limit < 0: the whole body),
 * added unless already asked for; -1 when LIM_DKIM_BODY_HASHES are in use
 * or memory ran out. Only before the first dkc_body_feed. */
int dkc_body_want(struct dkc_body *b, int relaxed, int64_t limit);
/* Counts the canonical length of the body for relaxed (or simple) without
 * hashing it (l= checks of signatures that are not verified). */
void dkc_body_measure(struct dkc_body *b, int relaxed);
/* 0 or -ENOMEM */
int dkc_body_feed(struct dkc_body *b, const char *p, size_t n);
/* Ends the body (a last line without its line end counts as a line). 0 or
 * -ENOMEM; afterwards the digests and lengths below are valid. */
int dkc_body_end(struct dkc_body *b);
const unsigned char *dkc_body_digest(const struct dkc_body *b, int idx);
/* Length of the whole canonical body, simple or relaxed (only for a
 * canonicalisation some dkc_body_want asked for). */
uint64_t dkc_body_canon_len(const struct dkc_body *b, int relaxed);

/* The hash of one whole body in one call (tests, callers with the body in
 * memory and one pair). 0 or -ENOMEM. */
int dkc_body_hash(const char *body, size_t len, int relaxed, int64_t limit,
                  unsigned char out[DKC_DIGEST_LEN], uint64_t *canon_len_r);

/* ---- base64 ----
 * Strict base64 (RFC 4648) with FWS allowed anywhere (RFC 6376 3.5 b=,
 * bh=, 3.6.1 p=); -1 on bad input or when it does not fit in cap. */
int dkc_b64_decode(const char *s, size_t len, unsigned char *out, size_t cap,
                   size_t *out_len_r);
/* The value of one base64 alphabet character, or -1. */
int dkc_b64_value(unsigned char c);

#endif
