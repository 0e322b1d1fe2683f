/* common/jsonw.c and common/jsonr.c: what the writer writes the reader
 * reads back, byte for byte; what RFC 8259 forbids the reader refuses. */
#include "tests/unit/check.h"
#include "common/jsonr.h"
#include "common/jsonw.h"

#include <stdlib.h>

static struct jsonr_tok tok[256];

static int parse(struct jsonr *j, const char *text)
{
	const char *why = NULL;
	int rc = jsonr_parse(j, text, strlen(text), tok, 256, &why);
	if (rc < 0 && !why)
		return -2;
	return rc;
}

static void test_roundtrip(void)
{
	struct buf b;
	buf_init(&b, 0);
	struct jsonw w;
	jsonw_init(&w, &b);
	jsonw_obj(&w);
	jsonw_key(&w, "s"), jsonw_str(&w, "quote \" back \\ tab \t nl \n cr \r bell \a é");
	jsonw_key(&w, "bad"), jsonw_strn(&w, "a\xff\xfe" "b", 4);   /* not UTF-8 */
	jsonw_key(&w, "null"), jsonw_str(&w, NULL);
	jsonw_key(&w, "i"), jsonw_int(&w, -42);
	jsonw_key(&w, "r"), jsonw_real(&w, 3);
	jsonw_key(&w, "t"), jsonw_bool(&w, 1);
	jsonw_key(&w, "a"), jsonw_arr(&w);
	jsonw_int(&w, 1);
	jsonw_obj(&w);
	jsonw_end(&w);
	jsonw_arr(&w);
	jsonw_end(&w);
	jsonw_str(&w, "x");
	jsonw_end(&w);
	jsonw_end(&w);
	CHECK(jsonw_done(&w) == 0);
	buf_add(&b, "", 1);
	CHECK_STR(b.data, "{\"s\":\"quote \\\" back \\\\ tab \\t nl \\n cr \\r bell \\u0007 é\","
	                  "\"bad\":\"a??b\",\"null\":null,\"i\":-42,\"r\":3.0,\"t\":true,"
	                  "\"a\":[1,{},[],\"x\"]}");

	struct jsonr j;
	CHECK(parse(&j, b.data) == 0);
	char out[128];
	CHECK(jsonr_str(&j, jsonr_get(&j, 0, "s"), out, sizeof(out)) > 0);
	CHECK_STR(out, "quote \" back \\ tab \t nl \n cr \r bell \a é");
	CHECK(jsonr_str(&j, jsonr_get(&j, 0, "bad"), out, sizeof(out)) == 4);
	CHECK(jsonr_type(&j, jsonr_get(&j, 0, "null")) == JSONR_NULL);
	CHECK(jsonr_str(&j, jsonr_get(&j, 0, "null"), out, sizeof(out)) == -1);
	CHECK(jsonr_int(&j, jsonr_get(&j, 0, "i"), 0) == -42);
	CHECK(jsonr_int(&j, jsonr_get(&j, 0, "r"), 7) == 7);    /* not an integer */
	CHECK(jsonr_num(&j, jsonr_get(&j, 0, "r"), 0) == 3.0);
	CHECK(jsonr_bool(&j, jsonr_get(&j, 0, "t")) == 1);
	long a = jsonr_get(&j, 0, "a");
	CHECK(jsonr_count(&j, a) == 4);
	CHECK(jsonr_type(&j, jsonr_at(&j, a, 1)) == JSONR_OBJECT);
	CHECK(jsonr_type(&j, jsonr_at(&j, a, 2)) == JSONR_ARRAY);
	CHECK(jsonr_str(&j, jsonr_at(&j, a, 3), out, sizeof(out)) == 1 && out[0] == 'x');
	CHECK(jsonr_at(&j, a, 4) == -1);
	CHECK(jsonr_get(&j, 0, "missing") == -1);
	CHECK(jsonr_get(&j, a, "s") == -1);    /* not an object */
	/* a value cut to its buffer */
	CHECK(jsonr_str(&j, jsonr_get(&j, 0, "s"), out, 6) == 5);
	CHECK_STR(out, "quote");
	buf_free(&b);

	/* the writer refuses what would not be JSON */
	buf_init(&b, 0);
	jsonw_init(&w, &b);
	jsonw_obj(&w);
	jsonw_key(&w, "k");
	jsonw_end(&w);
	CHECK(jsonw_done(&w) < 0 || strcmp(b.data, "{\"k\":}") != 0);
	buf_free(&b);
}

static void test_unicode(void)
{
	struct jsonr j;
	char out[32];
	CHECK(parse(&j, "\"\\u00e9\\ud83d\\ude00\\u0041\\/\"") == 0);
	CHECK(jsonr_str(&j, 0, out, sizeof(out)) == 8);
	CHECK_STR(out, "\xc3\xa9\xf0\x9f\x98\x80" "A/");
	CHECK(parse(&j, "\"\\udc00x\"") == 0);            /* a lone surrogate */
	CHECK(jsonr_str(&j, 0, out, sizeof(out)) == 2);
	CHECK_STR(out, "?x");
}

static void test_refused(void)
{
	struct jsonr j;
	static const char *const bad[] = {
		"", " ", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "01", "1.", "-", "1e",
		".5", "+1", "\"abc", "\"a\x01\"", "\"\\x\"", "\"\\u12\"", "tru", "nul", "[1 2]",
		"{} {}", "[]]", "\"\\", NULL,
	};
	for (size_t i = 0; bad[i]; i++) {
		int rc = parse(&j, bad[i]);
		if (rc != -1)
			fprintf(stderr, "accepted: '%s'\n", bad[i]);
		CHECK(rc == -1);
	}
	static const char *const good[] = {
		"0", "-0.5e+10", "1E-2", "true", "null", " [ ] ", "{\"\":\"\"}", "\"\"", NULL,
	};
	for (size_t i = 0; good[i]; i++)
		CHECK(parse(&j, good[i]) == 0);
	/* nesting past JSONR_DEPTH, and more tokens than the array holds */
	char deep[2 * JSONR_DEPTH + 3];
	memset(deep, '[', JSONR_DEPTH);
	memset(deep + JSONR_DEPTH, ']', JSONR_DEPTH);
	deep[2 * JSONR_DEPTH] = '\0';
	CHECK(parse(&j, deep) == 0);
	memset(deep, '[', JSONR_DEPTH + 1);
	memset(deep + JSONR_DEPTH + 1, ']', JSONR_DEPTH + 1);
	deep[2 * JSONR_DEPTH + 2] = '\0';
	CHECK(parse(&j, deep) == -1);
	char many[1024] = "[";
	for (int i = 0; i < 300; i++)
		strcat(many, i ? ",0" : "0");
	strcat(many, "]");
	CHECK(parse(&j, many) == -1);
}

int main(void)
{
	test_roundtrip();
	test_unicode();
	test_refused();
	return check_done("test_json");
}
