/* IP networks as address/prefix: the trusted forwarders of the policy,
 * the milter's internal networks, the daemon's allowed_networks. Parsing
 * and matching only; no I/O. Any thread. */
#ifndef ALIGND_NETPREFIX_H
#define ALIGND_NETPREFIX_H

#include <stddef.h>

struct net_prefix {
	int family;               /* 4 or 6 */
	unsigned char addr[16];
	unsigned bits;            /* 0..32 or 0..128 */
};

/* "192.0.2.0/24", "2001:db8::/32", "198.51.100.7" (a host) from s[0..n).
 * 0, or -1 when it is not an address with an optional prefix length. */
int net_prefix_parse(const char *s, size_t n, struct net_prefix *out);
/* Is the address (4 or 16 bytes of family 4 or 6) inside p? An IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d) is matched as the IPv4 address. */
int net_prefix_match(const struct net_prefix *p, int family, const unsigned char *addr);
/* The same for an address in text; 0 when ip is not an address. */
int net_prefix_match_text(const struct net_prefix *p, const char *ip);

#endif
