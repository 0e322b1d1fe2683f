/* common/text.c: text_domain_within, which the policy exceptions, the
 * report suppression list and the what-if replay share. */
#include "tests/unit/check.h"
#include "common/text.h"

static int within(const char *name, const char *base)
{
	return text_domain_within(name, base, strlen(base));
}

int main(void)
{
	CHECK(within("example.com", "example.com"));
	CHECK(within("Mail.Example.COM", "example.com"));
	CHECK(within("a.b.example.com.", "EXAMPLE.com"));
	CHECK(within("example.com..", "example.com"));
	CHECK(!within("badexample.com", "example.com"));
	CHECK(!within("example.com", "mail.example.com"));
	CHECK(!within("example.org", "example.com"));
	CHECK(!within("", "example.com"));
	CHECK(!within("example.com", ""));
	/* a counted base, as the suppression list cuts it from "a.example, b.example" */
	CHECK(text_domain_within("x.a.example", "a.example, b.example", 9));
	CHECK(!text_domain_within("x.b.example", "a.example, b.example", 9));
	return check_done("test_text");
}
