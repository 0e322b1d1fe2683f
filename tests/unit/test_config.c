/* Configuration keys: defaults, the file format, units, errors. */
#include "server/config.h"
#include "tests/unit/check.h"

#include <stdlib.h>
#include <unistd.h>

static const char *write_tmp(const char *text)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/alignd-cfg-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0)
		return NULL;
	if (write(fd, text, strlen(text)) < 0)
		path[0] = '\0';
	close(fd);
	return path;
}

static void test_defaults(void)
{
	struct srv_config *c = cfg_new_default();
	CHECK(c != NULL);
	CHECK(c->max_message_size == 50u << 20);
	CHECK(c->idle_timeout == 60000);
	CHECK(c->socket_mode == 0660);
	CHECK_STR(c->spf_engine, "native");
	CHECK_STR(c->dmarc_mode, "rfc9989");
	cfg_unref(&c);
	CHECK(c == NULL);
}

static void test_file(void)
{
	const char *p = write_tmp(
		"# comment\n"
		"socket = /tmp/x.sock   # trailing comment\n"
		"  max_message_size=10M\n"
		"idle_timeout = 250ms\n"
		"scan_timeout = 2m\n"
		"socket_mode = 0600\n"
		"spf_helo = no\n"
		"authserv_id = \"mx.example.net\"\n"
		"\n");
	char err[256] = "";
	struct srv_config *c = cfg_load(p, err, sizeof(err));
	unlink(p);
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	CHECK_STR(c->socket, "/tmp/x.sock");
	CHECK(c->max_message_size == 10u << 20);
	CHECK(c->idle_timeout == 250);
	CHECK(c->scan_timeout == 120000);
	CHECK(c->socket_mode == 0600);
	CHECK(c->spf_helo == 0);
	CHECK_STR(c->authserv_id, "mx.example.net");
	CHECK_STR(cfg_authserv_id(c), "mx.example.net");
	cfg_unref(&c);
}

static void expect_error(const char *text, const char *want_in_err)
{
	const char *p = write_tmp(text);
	char err[256] = "";
	struct srv_config *c = cfg_load(p, err, sizeof(err));
	unlink(p);
	CHECK(c == NULL);
	if (!strstr(err, want_in_err))
		fprintf(stderr, "error '%s' lacks '%s'\n", err, want_in_err);
	CHECK(strstr(err, want_in_err) != NULL);
	cfg_unref(&c);
}

static void test_errors(void)
{
	expect_error("no_such_key = 1\n", ":1: unknown key 'no_such_key'");
	expect_error("\nmax_message_size = lots\n", ":2: max_message_size");
	expect_error("idle_timeout = 5 minutes\n", "idle_timeout");
	expect_error("spf_engine = magic\n", "not one of");
	expect_error("max_connections = 0\n", "outside");
	expect_error("just words\n", "want 'key = value'");
	expect_error("socket_mode = 999\n", "octal");
	char err[128];
	CHECK(cfg_load("/nonexistent/alignd.conf", err, sizeof(err)) == NULL);
}

static void test_roundtrip(void)
{
	/* cfg_print writes a file that loads back to the same values */
	struct srv_config *c = cfg_new_default();
	char err[256];
	CHECK(cfg_set(c, "max_line_length", "8K", err, sizeof(err)) == 0);
	CHECK(cfg_set(c, "reject_score", "12.5", err, sizeof(err)) == 0);
	char path[] = "/tmp/alignd-cfg-rt-XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	cfg_print(c, f);
	fclose(f);
	struct srv_config *d = cfg_load(path, err, sizeof(err));
	unlink(path);
	CHECK(d != NULL);
	if (d) {
		CHECK(d->max_line_length == 8192);
		CHECK(d->reject_score == 12.5);
		CHECK_STR(d->socket_group, "");
	}
	cfg_unref(&c);
	cfg_unref(&d);
}

static void test_narrow_fields(void)
{
	/* a key whose field is an unsigned writes that width and no more: the
	 * neighbours set before it keep their values */
	struct srv_config *c = cfg_new_default();
	char err[256];
	CHECK(cfg_set(c, "failure_reports", "yes", err, sizeof(err)) == 0);
	CHECK(cfg_set(c, "failure_report_redact", "no", err, sizeof(err)) == 0);
	CHECK(cfg_set(c, "report_retry_days", "7", err, sizeof(err)) == 0);
	CHECK(cfg_set(c, "failure_report_rate", "3", err, sizeof(err)) == 0);
	CHECK(cfg_set(c, "workers", "3", err, sizeof(err)) == 0);
	CHECK(c->report_retry_days == 7);
	CHECK(c->failure_reports == 1);
	CHECK(c->failure_report_redact == 0);
	CHECK(c->failure_report_rate == 3);
	CHECK(c->reject_score > 0);
	CHECK(c->workers == 3);
	cfg_unref(&c);
}

int main(void)
{
	test_narrow_fields();
	test_defaults();
	test_file();
	test_errors();
	test_roundtrip();
	return check_done("test_config");
}
