/* Internals of the SPF engines shared by the evaluators and the unit tests:
 * the strict RFC 7208 record parser and the macro expander. Pure functions,
 * any thread. A parsed record points into the record text it was parsed
 * from, which must outlive it. */
#ifndef ALIGND_SPF_INT_H
#define ALIGND_SPF_INT_H

#include <stddef.h>
#include <stdint.h>

enum spf_mech_kind {
	SPF_M_ALL = 0, SPF_M_INCLUDE, SPF_M_A, SPF_M_MX, SPF_M_PTR,
	SPF_M_IP4, SPF_M_IP6, SPF_M_EXISTS,
	SPF_M_REDIRECT,   /* only as the redirect= of struct spf_record */
};

struct spf_mech {
	enum spf_mech_kind kind;
	char qual;               /* '+', '-', '~', '?' */
	const char *spec;        /* domain-spec (NULL: the current domain) */
	size_t spec_len;
	int uses_p;              /* spec contains %{p} */
	unsigned cidr4, cidr6;   /* 32 and 128 when absent */
	unsigned char net[16];   /* ip4: 4 bytes, ip6: 16 bytes */
	const char *text;        /* the whole term as written */
	size_t text_len;
};

struct spf_record {
	struct spf_mech *mech;
	size_t n;
	int has_all;
	struct spf_mech redirect;   /* kind SPF_M_REDIRECT when present */
	int has_redirect;
	const char *exp;            /* exp= domain-spec */
	size_t exp_len;
	int exp_uses_p;
	unsigned dns_mechs;         /* DNS-querying mechanisms in the record */
};

/* 1 when the TXT string is an SPF record: "v=spf1" (any case) followed by
 * a space or the end (RFC 7208 4.5). */
int spf_is_record(const char *s, size_t len);

/* Parses a whole record (starting "v=spf1") strictly per the RFC 7208
 * ABNF. 0, or -1 with a reason in err (a permerror). Allocates rec->mech. */
int spf_parse(const char *s, size_t len, struct spf_record *rec,
              char *err, size_t errcap);
void spf_record_free(struct spf_record *rec);

/* Macro strings (RFC 7208 7.1). */
enum {
	SPF_MS_EXP = 1,     /* explanation text: c, r, t allowed, and spaces */
	SPF_MS_UNKNOWN = 2, /* unknown-modifier value: every letter allowed */
};
/* Syntax check of a macro-string; *uses_p_r (may be NULL) set when %{p}
 * occurs. 0 or -1. */
int spf_macro_check(const char *s, size_t len, int flags, int *uses_p_r);
/* Syntax of a domain-spec: macro-string ending in "." toplabel ["."] or
 * in a macro-expand (RFC 7208 7.1, 4.6.1). 0 or -1. */
int spf_domain_spec_check(const char *s, size_t len, int *uses_p_r);

struct spf_macro_ctx {
	const char *local;      /* l */
	const char *sender_dom; /* o */
	const char *domain;     /* d */
	const char *helo;       /* h */
	const char *ip_dots;    /* i: dotted quad, or 32 dot-separated nibbles */
	const char *ip_text;    /* c */
	int ip6;                /* v: "ip6" or "in-addr" */
	const char *ptr;        /* p: validated name or "unknown" */
	const char *receiver;   /* r */
	uint64_t now;           /* t */
};
/* Expands a macro-string already checked with the same flags. 0, or -1
 * when the result does not fit in cap. */
int spf_expand(const struct spf_macro_ctx *c, const char *s, size_t len,
               int flags, char *out, size_t cap, size_t *len_r);
/* A domain-spec expanded for a query: the trailing dot dropped and, over
 * 253 characters, whole labels cut from the left (RFC 7208 7.3). 0 or -1
 * (no room, or nothing left). */
int spf_expand_domain(const struct spf_macro_ctx *c, const char *s,
                      size_t len, char *out, size_t cap);
/* 1 when name is usable as a DNS query name: labels 1..63 bytes, total
 * at most 253, no empty label. */
int spf_name_ok(const char *name);

/* The "i" value and the reverse-lookup name of an address. */
void spf_ip_dots(const unsigned char *ip, int ip6, char *out, size_t cap);
void spf_reverse_name(const unsigned char *ip, int ip6, char *out, size_t cap);

/* Client address parsing: IPv4-mapped IPv6 becomes IPv4. 0 or -1. */
int spf_parse_ip(const char *text, unsigned char ip_r[16], int *ip6_r);
/* 1 when addr (4 or 16 bytes per ip6) is within net/bits. */
int spf_cidr_match(const unsigned char *addr, const unsigned char *net,
                   unsigned bits, int ip6);

#endif
