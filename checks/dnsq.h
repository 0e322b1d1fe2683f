/* Asynchronous DNS as the checks see it: one lookup, one callback.
 * The daemon implements it over the shared validating libunbound cache
 * (server/dns.c); tests implement it over in-memory zones. The checks never
 * see libunbound, libuv or a socket. Runs on the loop thread only. */
#ifndef ALIGND_DNSQ_H
#define ALIGND_DNSQ_H

#include <stddef.h>
#include <stdint.h>

enum { DNSQ_T_A = 1, DNSQ_T_NS = 2, DNSQ_T_CNAME = 5, DNSQ_T_PTR = 12,
       DNSQ_T_MX = 15, DNSQ_T_TXT = 16, DNSQ_T_AAAA = 28 };

enum dnsq_status {
	DNSQ_OK = 0,      /* at least one record of the asked type */
	DNSQ_NODATA,      /* the name exists, no record of that type */
	DNSQ_NXDOMAIN,    /* the name does not exist */
	DNSQ_TEMPFAIL,    /* SERVFAIL, REFUSED, network or resolver error */
	DNSQ_TIMEOUT,     /* no answer within the lookup's deadline */
	DNSQ_BOGUS,       /* DNSSEC validation failed: the data must not be used */
};

enum dnsq_sec { DNSQ_SEC_INSECURE = 0, DNSQ_SEC_SECURE, DNSQ_SEC_BOGUS };

struct dnsq_answer {
	const char *qname;
	uint16_t qtype;
	enum dnsq_status status;
	enum dnsq_sec sec;
	uint32_t ttl;
	int from_cache;               /* 1 yes, 0 no, -1 unknown */
	int stale;                    /* 1: an expired record served because a
	                                 refresh did not come in time (RFC 8767) */
	uint64_t elapsed_us;          /* from lookup() to the callback */
	const char *why;              /* resolver's reason (why_bogus, error), or NULL */
	size_t count;                 /* records; 0 unless status == DNSQ_OK */
	const unsigned char *const *rdata; /* wire-format rdata; names uncompressed */
	const size_t *rdlen;
};

typedef void (*dnsq_cb)(void *arg, const struct dnsq_answer *ans);

struct dnsq {
	/* Starts a lookup. The callback runs exactly once, later, on the
	 * calling thread, never from inside lookup(); a lookup that cannot
	 * start is reported through the callback as DNSQ_TEMPFAIL. The answer
	 * is borrowed for the duration of the callback only. */
	void (*lookup)(struct dnsq *dq, const char *name, uint16_t type,
	               dnsq_cb cb, void *arg);
};

static inline void dnsq_lookup(struct dnsq *dq, const char *name,
                               uint16_t type, dnsq_cb cb, void *arg)
{
	dq->lookup(dq, name, type, cb, arg);
}

/* Record decoders: bounds-checked, 0 on success, -1 on malformed rdata. */

/* TXT: the character-strings of record i concatenated (RFC 7208 3.3),
 * NUL-terminated; -1 also when it does not fit in cap. */
int dnsq_txt(const struct dnsq_answer *a, size_t i, char *out, size_t cap,
             size_t *len_r);
/* A wire-format name at rd[*off] to dotted text without the final dot
 * (root is ""); lower case kept as is. Advances *off. */
int dnsq_wire_name(const unsigned char *rd, size_t len, size_t *off,
                   char *out, size_t cap);
/* MX: preference and exchange name of record i. */
int dnsq_mx(const struct dnsq_answer *a, size_t i, uint16_t *pref_r,
            char *out, size_t cap);
/* PTR / CNAME / NS: the target name of record i. */
int dnsq_target(const struct dnsq_answer *a, size_t i, char *out, size_t cap);

const char *dnsq_status_name(enum dnsq_status s);
const char *dnsq_sec_name(enum dnsq_sec s);

#endif
