/* A JSON reader (RFC 8259) for documents of a known shape: one pass that
 * splits the text into tokens in the caller's array (no allocation), then
 * lookups by member name and values read out. It is what the what-if
 * replay reads a million stored evidence documents with; jansson builds a
 * tree of allocations for each and was most of the time.
 *
 * Strict: one value, nothing but white space after it, nesting at most
 * JSONR_DEPTH deep, strings with valid escapes and no control characters,
 * numbers as the grammar has them. Member names are compared as written
 * (an escaped name matches nothing). Any thread, no globals. */
#ifndef ALIGND_JSONR_H
#define ALIGND_JSONR_H

#include <stddef.h>
#include <stdint.h>

#define JSONR_DEPTH 32

enum jsonr_type { JSONR_NULL = 0, JSONR_FALSE, JSONR_TRUE, JSONR_NUMBER, JSONR_STRING,
                  JSONR_ARRAY, JSONR_OBJECT };

struct jsonr_tok {
	uint8_t type;          /* enum jsonr_type */
	uint8_t escaped;       /* a string with backslash escapes */
	uint32_t start, len;   /* the bytes (a string: between its quotes) */
	uint32_t next;         /* the token after this value and all inside it */
	uint32_t count;        /* array: elements; object: members */
};

struct jsonr {
	const char *text;
	size_t len;
	struct jsonr_tok *tok;
	size_t n, cap;
};

/* Splits text[0..len) into at most cap tokens. 0, or -1 with a reason
 * (not JSON, too deep, more than cap tokens). Token 0 is the document. */
int jsonr_parse(struct jsonr *j, const char *text, size_t len, struct jsonr_tok *tok, size_t cap,
                const char **why);

/* The value of member `name` of object token obj; -1 when obj is not an
 * object or has no such member (the first, if several). */
long jsonr_get(const struct jsonr *j, long obj, const char *name);
/* Element i of array token arr, or -1. */
long jsonr_at(const struct jsonr *j, long arr, size_t i);
/* An array's element count (0 for anything else). */
size_t jsonr_count(const struct jsonr *j, long arr);
int jsonr_type(const struct jsonr *j, long t);   /* -1 for t < 0 */

/* A string value into dst (NUL-terminated, cut to cap - 1 bytes, \u
 * escapes as UTF-8); returns its length, or -1 when t is not a string. */
long jsonr_str(const struct jsonr *j, long t, char *dst, size_t cap);
/* The string's bytes when it has no escapes (not NUL-terminated), else NULL. */
const char *jsonr_raw(const struct jsonr *j, long t, size_t *len);
/* An integer value (a number without fraction or exponent that fits),
 * else dflt. */
long long jsonr_int(const struct jsonr *j, long t, long long dflt);
/* A number as a double, else dflt. */
double jsonr_num(const struct jsonr *j, long t, double dflt);
/* true, or a non-zero integer; else 0. */
int jsonr_bool(const struct jsonr *j, long t);

#endif
