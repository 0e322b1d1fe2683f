/* The benchmark corpus as the C benchmarks read it: index.tsv lines
 * "<file> <TAB> <ip> <TAB> <helo> <TAB> <mail from> <TAB> <rcpt>" and the
 * message files beside it, read whole into memory. Exits on error. */
#ifndef ALIGND_BENCH_CORPUS_IO_H
#define ALIGND_BENCH_CORPUS_IO_H

#include <stddef.h>

struct m_item {
	char *data;
	size_t len;
	char ip[64], helo[256], from[256], rcpt[256];
};

/* Loads every message of index; *n_r gets the count (at least 1). */
struct m_item *corpus_load(const char *index, size_t *n_r);
double corpus_now_s(void);

#endif
