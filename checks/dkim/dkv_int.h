/* Internals shared by the files of checks/dkim (not for callers). */
#ifndef ALIGND_DKV_INT_H
#define ALIGND_DKV_INT_H

#include <stddef.h>

#include "checks/dnsq.h"

struct dkv_key {
	char *qname;              /* lower case, no final dot */
	enum dnsq_status status;
	enum dnsq_sec sec;
	char *txt;                /* the TXT text when status == DNSQ_OK, else NULL */
};

struct dkv_keyset {
	struct dkv_key *keys;
	size_t n, cap;
};

int dkv_taglist(const char *s, size_t len,
                int (*fn)(void *arg, const char *tag, size_t tlen,
                          const char *val, size_t vlen),
                void *arg);
void dkv_lower(char *s);
/* A d= or s= value usable in a key query name (letters, digits, '-', '_',
 * non-empty labels of at most 63 bytes): 1 or 0. Shared with ARC. */
int dkv_usable_name(const char *s, size_t len);
const struct dkv_key *dkv_keyset_find(const struct dkv_keyset *ks,
                                      const char *qname);

#endif
