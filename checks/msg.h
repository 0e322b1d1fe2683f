/* The header section of an RFC 5322 message, split into fields.
 * The parser borrows the message buffer: field names and values point into
 * it and stay valid as long as it does. Read-only once the checks start, so
 * any thread may read a parsed struct msg. */
#ifndef ALIGND_MSG_H
#define ALIGND_MSG_H

#include <stddef.h>

struct msg_field {
	const char *name;     /* field name, without the colon */
	size_t name_len;
	const char *value;    /* raw value after the colon: folding kept, final CRLF/LF excluded */
	size_t value_len;
	const char *line;     /* whole raw field from its name to its last byte (no final EOL) */
	size_t line_len;
};

struct msg {
	struct msg_field *fields;
	size_t n_fields;
	size_t header_len;    /* bytes of the header section including the blank line */
	const char *body;     /* first body byte (may equal the end of the buffer) */
	size_t body_len;
	int crlf;             /* 1 when the first line ended in CRLF */
	int has_8bit;         /* a header byte >= 0x80 was seen */
};

enum msg_status {
	MSG_OK = 0,
	MSG_E_TOO_MANY = -1,    /* more than LIM_MAX_HEADERS fields */
	MSG_E_LINE = -2,        /* a field longer than LIM_MAX_HEADER_LINE */
	MSG_E_BLOCK = -3,       /* header section longer than LIM_MAX_HEADER_BLOCK */
	MSG_E_NOMEM = -4,
};

/* Finds the end of the header section in buf[0..len): returns the offset of
 * the first body byte, or 0 when the blank line has not been seen yet.
 * A message without any blank line is all header (offset len, when the
 * caller knows the message is complete). */
size_t msg_header_end(const char *buf, size_t len);

/* Splits the header section of a complete message. A line without a colon
 * that is not a continuation ends the header section (it is treated as the
 * first body line, as most MTAs do). 0 or a negative enum msg_status. */
int msg_parse(const char *buf, size_t len, struct msg *m);
void msg_free(struct msg *m);

/* The i-th field (0-based, top to bottom) named `name`, case-insensitive,
 * or NULL. msg_count() tells how many there are. */
const struct msg_field *msg_get(const struct msg *m, const char *name, size_t i);
size_t msg_count(const struct msg *m, const char *name);

/* Unfolds a raw value into out (NUL-terminated): CRLF/LF followed by WSP
 * becomes the WSP; leading and trailing WSP removed. Returns the length, or
 * (size_t)-1 when it does not fit. */
size_t msg_unfold(const char *v, size_t len, char *out, size_t cap);

#endif
