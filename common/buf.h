/* A growable byte buffer with a hard cap. Any thread, one owner. */
#ifndef ALIGND_BUF_H
#define ALIGND_BUF_H

#include <stddef.h>

struct buf {
	char *data;
	size_t len, cap;
	size_t max;        /* 0: no cap */
	int failed;        /* an append did not fit or allocation failed; sticky */
};

void buf_init(struct buf *b, size_t max);
int buf_reserve(struct buf *b, size_t extra);
int buf_add(struct buf *b, const void *data, size_t len);
int buf_adds(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Removes the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Hands the bytes over (NUL-terminated); the buffer is left empty. */
char *buf_steal(struct buf *b, size_t *len_r);
void buf_free(struct buf *b);

#endif
