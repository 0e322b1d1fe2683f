/* An in-memory implementation of struct dnsq for unit tests: zones are
 * added record by record, answers are queued and delivered when the test
 * calls memdns_run(), never from inside lookup() (as the contract says). */
#ifndef ALIGND_TEST_MEMDNS_H
#define ALIGND_TEST_MEMDNS_H

#include "checks/dnsq.h"

struct memdns;

struct memdns *memdns_new(void);
void memdns_free(struct memdns **m);
struct dnsq *memdns_dnsq(struct memdns *m);

/* Raw rdata; names are case-insensitive, a final dot is ignored. */
void memdns_add(struct memdns *m, const char *name, uint16_t type,
                const void *rdata, size_t len);
void memdns_add_txt(struct memdns *m, const char *name, const char *text);
/* TXT from several character-strings exactly as given. */
void memdns_add_txt_parts(struct memdns *m, const char *name,
                          const char *const *parts, size_t n);
void memdns_add_a(struct memdns *m, const char *name, const char *ip4);
void memdns_add_aaaa(struct memdns *m, const char *name, const char *ip6);
void memdns_add_mx(struct memdns *m, const char *name, uint16_t pref,
                   const char *target);
void memdns_add_ptr(struct memdns *m, const char *name, const char *target);
void memdns_add_cname(struct memdns *m, const char *name, const char *target);
/* Every lookup of (name, type) answers with this status (type 0: all types). */
void memdns_set_status(struct memdns *m, const char *name, uint16_t type,
                       enum dnsq_status st);
/* DNSSEC status given to answers of every name at or below `zone`. */
void memdns_set_sec(struct memdns *m, const char *zone, enum dnsq_sec sec);

/* Delivers queued answers (including those queued by callbacks) until none
 * is left; returns how many were delivered. */
size_t memdns_run(struct memdns *m);
/* Lookups started so far, and the most that were pending at once. */
unsigned memdns_lookups(const struct memdns *m);
unsigned memdns_max_pending(const struct memdns *m);

#endif
