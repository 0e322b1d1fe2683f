/* Outbound DKIM signing in the daemon: the signing table (which domains
 * are signed with which selectors and keys, read with the configuration and
 * again on SIGHUP) and the SIGN request, whose signing runs on the worker
 * pool. Loop thread, except where a comment says otherwise. */
#ifndef ALIGND_SIGN_H
#define ALIGND_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/request.h"

struct srv;
struct srv_config;
struct msg;
struct dks_key;

struct signtab_entry {
	char *domain;          /* d=, lower case */
	char *selector;
	char *key_file;
	int subdomains;        /* also signs From addresses in subdomains of domain */
	/* a "next" selector (key rotation): not used until its record is
	 * published and matches the key; published is set on the loop thread
	 * once a lookup shows it, read by workers (atomic) */
	int next;
	int published;
	struct dks_key *key;
};

struct signtab {
	struct signtab_entry *e;
	size_t n;
	char *fallback;        /* signing domain when the From domain has no entry */
	size_t n_next;         /* entries marked next */
	uint64_t next_checked; /* loop time (ms) of the last lookup of them; loop thread */
	unsigned next_pending; /* their lookups in flight */
	int header_simple, body_simple;
	uint64_t expire;       /* seconds; 0: no x= */
	char **headers;        /* NULL: the default list */
	size_t n_headers;
	char **oversign;       /* NULL: the default list */
	size_t n_oversign;
};

/* Reads the signing table file named by the configuration and every key
 * it names. A key file that is not a regular file, is accessible to group
 * or others, or does not parse fails the load with a reason naming it.
 * c->signing is NULL when no table is configured. 0 or -1. */
int signtab_load(struct srv_config *c, char *err, size_t errlen);
void signtab_free(struct signtab **t);

/* 0 for a "next" entry not yet seen published, else 1. Any thread. */
int signtab_usable(const struct signtab_entry *e);

/* The entries that sign mail whose author domain is from (lower case):
 * those of from itself, else of the nearest parent domain with an entry
 * marked subdomains, else of the fallback domain. Fills idx[0..max) with
 * entry indexes, in table order; returns how many (0: not signed). Any
 * thread (the table is immutable). */
size_t signtab_pick(const struct signtab *t, const char *from, size_t *idx,
                    size_t max);

/* Signs m with every entry signtab_pick gives for its author domain. The
 * fields (each ending in CRLF) go to fields[0..max), malloc'd; *n_r says
 * how many, *domain_r (borrowed from t) the signing domain. 0, -ENOMEM
 * (no memory: try again), or -1 with a reason in err (a message that cannot
 * be signed: no or several author domains, a signing failure). Any thread. */
int sign_message(const struct signtab *t, const struct msg *m, uint64_t now,
                 char **fields, size_t max, size_t *n_r,
                 const char **domain_r, char *err, size_t errlen);

/* Looks up the records of the "next" entries not yet seen published (at
 * most every LIM_DKIM_SIGN_NEXT_RECHECK seconds); one whose record holds
 * its key is used from then on. Loop thread; holds a reference to c until
 * the answers are in. */
void sign_check_next(struct srv *s, struct srv_config *c);

/* ---- the SIGN request ---- */

struct sign_req;

/* reply: the complete reply text, borrowed for the call */
typedef void (*sign_done_cb)(void *arg, const char *reply, size_t len,
                             int status);

/* Takes ownership of *req (left empty); NULL when out of memory. */
struct sign_req *sign_new(struct srv *s, struct proto_request *req,
                          sign_done_cb done, void *arg);
void sign_body(struct sign_req *r, const char *data, size_t len);
/* The message is complete: it is signed on a worker; done() follows,
 * never from inside this call. */
void sign_end(struct sign_req *r);
/* The client is gone: done() will not be called. */
void sign_abandon(struct sign_req *r);

#endif
