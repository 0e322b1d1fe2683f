/* A compact JSON writer (RFC 8259) into a struct buf: values are written
 * as they come, with no tree and no allocation but the buffer's own.
 * Strings that are not valid UTF-8 are written made printable
 * (text_printable); quotes, backslashes and control characters are
 * escaped. Objects and arrays nest up to JSONW_DEPTH deep; past that, or
 * when the buffer fails, the writer fails (sticky) and the text is not
 * to be used. Any thread, one owner. */
#ifndef ALIGND_JSONW_H
#define ALIGND_JSONW_H

#include <stddef.h>

#include "common/buf.h"

#define JSONW_DEPTH 16

struct jsonw {
	struct buf *b;
	unsigned depth;
	unsigned char first[JSONW_DEPTH];  /* no member written yet at this level */
	char close[JSONW_DEPTH];           /* '}' or ']' */
	int after_key;
	int failed;
};

void jsonw_init(struct jsonw *w, struct buf *b);
/* Begin and end an object or an array (as a value: after a key, in an
 * array, or at the top). */
void jsonw_obj(struct jsonw *w);
void jsonw_arr(struct jsonw *w);
void jsonw_end(struct jsonw *w);
/* A member's name; the next call writes its value. */
void jsonw_key(struct jsonw *w, const char *k);
/* Values. A NULL string is written as null. */
void jsonw_str(struct jsonw *w, const char *s);
void jsonw_strn(struct jsonw *w, const char *s, size_t n);
void jsonw_int(struct jsonw *w, long long v);
void jsonw_bool(struct jsonw *w, int v);
void jsonw_real(struct jsonw *w, double v);
void jsonw_null(struct jsonw *w);
/* 0, or -1 when anything failed. */
int jsonw_done(const struct jsonw *w);

#endif
