/* common/netprefix: parsing address/prefix and matching addresses. */
#include "tests/unit/check.h"
#include "common/netprefix.h"

static int parses(const char *s)
{
	struct net_prefix p;
	return net_prefix_parse(s, strlen(s), &p) == 0;
}

static int in(const char *net, const char *ip)
{
	struct net_prefix p;
	if (net_prefix_parse(net, strlen(net), &p) < 0)
		return -1;
	return net_prefix_match_text(&p, ip);
}

int main(void)
{
	CHECK(parses("192.0.2.0/24"));
	CHECK(parses("192.0.2.7"));
	CHECK(parses("0.0.0.0/0"));
	CHECK(parses("2001:db8::/32"));
	CHECK(parses("::1"));
	CHECK(parses("::/0"));
	CHECK(!parses(""));
	CHECK(!parses("192.0.2.0/33"));
	CHECK(!parses("192.0.2.0/"));
	CHECK(!parses("192.0.2.0/-1"));
	CHECK(!parses("192.0.2.0/+8"));
	CHECK(!parses("192.0.2.0/24x"));
	CHECK(!parses("::1/129"));
	CHECK(!parses("example.com"));
	CHECK(!parses("192.0.2"));
	CHECK(!parses("1234567890123456789012345678901234567890123456789012345678901234"));

	CHECK(in("192.0.2.0/24", "192.0.2.200") == 1);
	CHECK(in("192.0.2.0/24", "192.0.3.1") == 0);
	CHECK(in("192.0.2.128/25", "192.0.2.127") == 0);
	CHECK(in("192.0.2.128/25", "192.0.2.128") == 1);
	CHECK(in("10.0.0.0/7", "11.255.255.255") == 1);
	CHECK(in("10.0.0.0/7", "12.0.0.0") == 0);
	CHECK(in("0.0.0.0/0", "203.0.113.9") == 1);
	CHECK(in("0.0.0.0/0", "2001:db8::1") == 0);
	CHECK(in("127.0.0.0/8", "::ffff:127.0.0.1") == 1);   /* IPv4-mapped */
	CHECK(in("127.0.0.0/8", "::1") == 0);
	CHECK(in("::1", "::1") == 1);
	CHECK(in("::1", "::2") == 0);
	CHECK(in("2001:db8::/33", "2001:db8:7fff::1") == 1);
	CHECK(in("2001:db8::/33", "2001:db8:8000::1") == 0);
	CHECK(in("192.0.2.1", "192.0.2.1") == 1);
	CHECK(in("192.0.2.1", "192.0.2.2") == 0);
	CHECK(in("192.0.2.0/24", "not an address") == 0);
	return check_done("test_netprefix");
}
