/* Shared by the fuzz targets: the libFuzzer entry points and a small
 * reader that splits one input into typed pieces (sizes from the end,
 * bytes from the front, so mutations of one rarely shift the other).
 * Every target also links with replay.c to run its corpus without
 * libFuzzer (meson suite 'fuzz-replay'). */
#ifndef ALIGND_FUZZ_H
#define ALIGND_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A broken invariant: print it and abort so libFuzzer keeps the input. */
#define FUZZ_ASSERT(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
		abort(); \
	} \
} while (0)

struct fz {
	const uint8_t *p;
	size_t len;
};

static inline void fz_init(struct fz *f, const uint8_t *data, size_t size)
{
	f->p = data;
	f->len = size;
}

/* One byte from the end, or 0 when empty. */
static inline unsigned fz_u8(struct fz *f)
{
	if (f->len == 0)
		return 0;
	f->len--;
	return f->p[f->len];
}

static inline unsigned fz_u16(struct fz *f)
{
	unsigned hi = fz_u8(f);
	return (hi << 8) | fz_u8(f);
}

/* Up to n bytes from the front. */
static inline const uint8_t *fz_bytes(struct fz *f, size_t n, size_t *got_r)
{
	if (n > f->len)
		n = f->len;
	const uint8_t *r = f->p;
	f->p += n;
	f->len -= n;
	*got_r = n;
	return r;
}

/* A malloc'd NUL-terminated string: bytes from the front up to the next
 * NUL byte (consumed) or max bytes. The NUL ends the string, so the
 * fuzzer controls where each string stops. */
static inline char *fz_str(struct fz *f, size_t max)
{
	size_t n = 0;
	while (n < f->len && n < max && f->p[n] != 0)
		n++;
	char *s = malloc(n + 1);
	if (!s)
		abort();
	memcpy(s, f->p, n);
	s[n] = '\0';
	size_t skip = n < f->len ? n + 1 : n;
	f->p += skip;
	f->len -= skip;
	return s;
}

/* An exactly sized heap copy, so that ASan sees a read past the end. */
static inline char *fz_dup(const uint8_t *data, size_t size)
{
	char *s = malloc(size ? size : 1);
	if (!s)
		abort();
	if (size)
		memcpy(s, data, size);
	else
		s[0] = '\0';
	return s;
}

#endif
