/* IP networks as address/prefix. */
#include "common/netprefix.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int net_prefix_parse(const char *s, size_t n, struct net_prefix *out)
{
	char buf[INET6_ADDRSTRLEN + 8];
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	char *slash = strchr(buf, '/');
	long bits = -1;
	if (slash) {
		*slash = '\0';
		char *end;
		errno = 0;
		if (slash[1] < '0' || slash[1] > '9')
			return -1;
		bits = strtol(slash + 1, &end, 10);
		if (errno || *end)
			return -1;
	}
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = 4;
		if (bits < 0)
			bits = 32;
		if (bits > 32)
			return -1;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = 6;
		if (bits < 0)
			bits = 128;
		if (bits > 128)
			return -1;
	} else {
		return -1;
	}
	out->bits = (unsigned)bits;
	return 0;
}

int net_prefix_match(const struct net_prefix *p, int family, const unsigned char *addr)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (family == 6 && p->family == 4 && memcmp(addr, mapped, 12) == 0) {
		addr += 12;
		family = 4;
	}
	if (family != p->family)
		return 0;
	unsigned full = p->bits / 8, rest = p->bits % 8;
	if (memcmp(addr, p->addr, full) != 0)
		return 0;
	if (rest) {
		unsigned char mask = (unsigned char)(0xff << (8 - rest));
		if ((addr[full] & mask) != (p->addr[full] & mask))
			return 0;
	}
	return 1;
}

int net_prefix_match_text(const struct net_prefix *p, const char *ip)
{
	unsigned char a[16];
	if (inet_pton(AF_INET, ip, a) == 1)
		return net_prefix_match(p, 4, a);
	if (inet_pton(AF_INET6, ip, a) == 1)
		return net_prefix_match(p, 6, a);
	return 0;
}
