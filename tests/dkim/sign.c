/* DKIM signing (checks/dkim/dks.c): messages signed with fresh RSA-2048 and
 * Ed25519 keys in every canonicalisation must verify with our own verifier
 * and with libopendkim; changed after signing (body, an added From or
 * Subject, a changed signed header) they must not. With --out DIR the
 * signed messages (NAME.eml, and NAME.bad.eml for the changed ones) and the
 * key table (keys.tsv, "<name>\t<TXT>") are written for a third verifier
 * (sign_check.py, python3-dkim).
 * Usage: dkim_sign [--out DIR] */
#include "checks/dkim/dks.h"
#include "checks/dkim/dkv.h"
#include "checks/msg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOMAIN "example.org"

static int failures, checks;
static const char *outdir;
static FILE *keys_out;

#define FAIL(...) do { failures++; fprintf(stderr, "FAIL: " __VA_ARGS__); fputc('\n', stderr); } while (0)

struct mcase {
	const char *name;
	const char *text;
	const char *tamper_from, *tamper_to;   /* a change that must break it */
};

static const struct mcase cases[] = {
	{ "basic",
	  "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n"
	  "Subject: hello\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
	  "Message-ID: <1@example.org>\r\n\r\nHello Bob.\r\n",
	  "Hello Bob.", "Hello Rob." },
	{ "folded",
	  "From: Alice Example\r\n  <alice@example.org>\r\n"
	  "To: bob@example.net,\r\n\tcarol@example.net,   dave@example.net\r\n"
	  "Subject:   a subject  that is\r\n   folded\t twice\r\n and more\r\n"
	  "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
	  "Received: from x by y; Mon, 07 Dec 2026 10:00:00 +0000\r\n"
	  "\r\nBody  with   runs of spaces \t \r\nand trailing blanks   \r\n\r\n\r\n",
	  "folded\t twice", "folded\t thrice" },
	{ "no-date",
	  "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: no date\r\n"
	  "\r\nNo Date field here.\r\n",
	  "Subject: no date", "Subject: no data" },
	{ "dup-subject",
	  "From: alice@example.org\r\nSubject: first\r\nTo: bob@example.net\r\n"
	  "Subject: second\r\n\r\nTwo Subject fields.\r\n",
	  "Subject: first", "Subject: fir5t" },
	{ "8bit",
	  "From: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>\r\nTo: bob@example.net\r\n"
	  "Subject: Gr\xc3\xbc\xc3\x9f" "e\r\nMIME-Version: 1.0\r\n"
	  "Content-Type: text/plain; charset=utf-8\r\n"
	  "Content-Transfer-Encoding: 8bit\r\n\r\n"
	  "Sch\xc3\xb6ne Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln \xe2\x82\xac\r\n",
	  "K\xc3\xb6ln", "Koln" },
	{ "no-final-crlf",
	  "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: x\r\n\r\n"
	  "line one\r\nlast line without its end",
	  "without", "w1thout" },
	{ "empty-body",
	  "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: empty\r\n\r\n",
	  "Subject: empty", "Subject: empt" },
	{ "lf-only",
	  "From: alice@example.org\nTo: bob@example.net\nSubject: unix\n"
	  "Date: Mon, 07 Dec 2026 10:00:00 +0000\n\nLF line ends.\n",
	  "LF line", "CR line" },
	{ "list",
	  "From: alice@example.org\r\nTo: list@lists.example.org\r\nSubject: post\r\n"
	  "List-Id: <list.lists.example.org>\r\n"
	  "List-Unsubscribe: <mailto:leave@lists.example.org>\r\n"
	  "List-Post: <mailto:list@lists.example.org>\r\n"
	  "Reply-To: list@lists.example.org\r\nCc: carol@example.net\r\n"
	  "In-Reply-To: <0@example.org>\r\nReferences: <0@example.org>\r\n"
	  "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nA list post.\r\n",
	  "List-Id: <list.", "List-Id: <lost." },
};

static const struct {
	const char *name;
	int hs, bs;
} canons[] = {
	{ "rr", 0, 0 }, { "ss", 1, 1 }, { "rs", 0, 1 }, { "sr", 1, 0 },
};

static char *concat(const char *a, const char *b, size_t blen, size_t *len_r)
{
	size_t al = strlen(a);
	char *s = malloc(al + blen + 1);
	if (s == NULL)
		abort();
	memcpy(s, a, al);
	memcpy(s + al, b, blen);
	s[al + blen] = '\0';
	*len_r = al + blen;
	return s;
}

/* the message with the first from replaced by to (same length or not) */
static char *replace(const char *msg, size_t len, const char *from,
                     const char *to, size_t *len_r)
{
	const char *p = strstr(msg, from);
	if (p == NULL)
		return NULL;
	size_t fl = strlen(from), tl = strlen(to), off = (size_t)(p - msg);
	char *s = malloc(len - fl + tl + 1);
	if (s == NULL)
		abort();
	memcpy(s, msg, off);
	memcpy(s + off, to, tl);
	memcpy(s + off + tl, p + fl, len - off - fl);
	*len_r = len - fl + tl;
	s[*len_r] = '\0';
	return s;
}

static enum auth_res verify1(struct dkv_lib *l, const struct dkv_keyset *ks,
                             const char *msg, size_t len, char *why, size_t wl)
{
	struct dkv_result res;
	enum auth_res r = AUTH_NONE;
	if (dkv_verify(l, msg, len, ks, &res, NULL) == 0 && res.n > 0) {
		r = res.sigs[0].res;
		snprintf(why, wl, "%s", res.sigs[0].reason);
	} else {
		snprintf(why, wl, "no result");
	}
	dkv_result_free(&res);
	return r;
}

static void write_file(const char *name, const char *ext, const char *data,
                       size_t len)
{
	char path[4096];
	if (outdir == NULL)
		return;
	snprintf(path, sizeof path, "%s/%s%s", outdir, name, ext);
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		FAIL("cannot write %s", path);
		exit(1);
	}
}

/* verifies with both engines; want_pass 1: both pass, 0: neither */
static void expect(struct dkv_lib *libs[2], int can[2], const struct dkv_keyset *ks,
                   const char *label, const char *msg, size_t len, int want_pass)
{
	static const char *engine[2] = { "native", "libopendkim" };
	for (int e = 0; e < 2; e++) {
		char why[DKV_REASON_MAX];
		if (!can[e])
			continue;
		checks++;
		enum auth_res r = verify1(libs[e], ks, msg, len, why, sizeof why);
		if ((r == AUTH_PASS) != want_pass)
			FAIL("%s: %s says %s (%s), want %s", label, engine[e],
			     auth_res_name(r), why, want_pass ? "pass" : "no pass");
	}
}

static void run(struct dkv_lib *libs[2], int ed_ode, const struct dkv_keyset *ks,
                struct dks_key *key, const char *sel, const struct mcase *c,
                int ci, uint64_t now)
{
	char label[256], err[256];
	struct msg m;
	size_t len = strlen(c->text);
	int can[2] = { 1, dks_key_alg(key) == DKS_ALG_RSA_SHA256 || ed_ode };
	snprintf(label, sizeof label, "%s-%s-%s", c->name, sel, canons[ci].name);
	if (msg_parse(c->text, len, &m) != 0) {
		FAIL("%s: does not parse", label);
		return;
	}
	struct dks_opts o = {
		.domain = DOMAIN, .selector = sel, .key = key,
		.header_simple = canons[ci].hs, .body_simple = canons[ci].bs,
		.now = now, .expire = 86400,
	};
	char *field = NULL;
	int crlf = m.crlf;
	int r = dks_sign(&m, &o, crlf ? "\r\n" : "\n", &field, err, sizeof err);
	msg_free(&m);
	if (r != 0) {
		FAIL("%s: dks_sign: %s", label, err);
		return;
	}
	/* every line of the field is folded before the fold column */
	for (const char *p = field; *p;) {
		const char *e = strchr(p, '\n');
		size_t ll = e ? (size_t)(e - p) : strlen(p);
		if (ll > LIM_DKIM_SIGN_FOLD + 1)
			FAIL("%s: a field line of %zu bytes", label, ll);
		p = e ? e + 1 : p + ll;
	}
	size_t slen;
	char *signed_msg = concat(field, c->text, len, &slen);
	expect(libs, can, ks, label, signed_msg, slen, 1);
	write_file(label, ".eml", signed_msg, slen);

	/* changed after signing: a body or header byte, an added From or
	 * Subject above (over-signed), must not verify */
	size_t tl;
	char *t = replace(signed_msg, slen, c->tamper_from, c->tamper_to, &tl);
	if (t == NULL) {
		FAIL("%s: tamper text not found", label);
	} else {
		char l2[300];
		snprintf(l2, sizeof l2, "%s-changed", label);
		expect(libs, can, ks, l2, t, tl, 0);
		write_file(l2, ".bad.eml", t, tl);
		free(t);
	}
	const char *extra[] = { "From: mallory@example.org", "Subject: added",
	                        "Date: Tue, 08 Dec 2026 10:00:00 +0000" };
	for (size_t k = 0; k < sizeof extra / sizeof extra[0]; k++) {
		char *added;
		size_t al;
		char line[128];
		/* right after the signature, where an attacker would add it */
		snprintf(line, sizeof line, "%s%s", extra[k], crlf ? "\r\n" : "\n");
		char *head = concat(field, line, strlen(line), &al);
		added = concat(head, c->text, len, &al);
		free(head);
		char l2[300];
		snprintf(l2, sizeof l2, "%s-added%zu", label, k);
		expect(libs, can, ks, l2, added, al, 0);
		write_file(l2, ".bad.eml", added, al);
		free(added);
	}
	free(signed_msg);
	free(field);
}

static void check_expiry(struct dkv_lib *libs[2], int ed_ode,
                         const struct dkv_keyset *ks, struct dks_key *key,
                         const char *sel, uint64_t now)
{
	struct msg m;
	char err[256], *field = NULL;
	const char *text = cases[0].text;
	int can[2] = { 1, dks_key_alg(key) == DKS_ALG_RSA_SHA256 || ed_ode };
	if (msg_parse(text, strlen(text), &m) != 0)
		return;
	/* signed two days ago with x= one day: expired now */
	struct dks_opts o = { .domain = DOMAIN, .selector = sel, .key = key,
	                      .now = now - 2 * 86400, .expire = 86400 };
	if (dks_sign(&m, &o, "\r\n", &field, err, sizeof err) != 0) {
		FAIL("expiry: %s", err);
	} else {
		size_t sl;
		char *s = concat(field, text, strlen(text), &sl);
		expect(libs, can, ks, "expired", s, sl, 0);
		free(s);
		if (strstr(field, " x=") == NULL)
			FAIL("expiry: no x= in %s", field);
	}
	free(field);
	/* no expiry: no x= tag */
	o.now = now;
	o.expire = 0;
	if (dks_sign(&m, &o, "\r\n", &field, err, sizeof err) == 0 &&
	    strstr(field, "x=") != NULL)
		FAIL("no expiry asked, but x= in %s", field);
	free(field);
	msg_free(&m);
}

/* h= of the basic message: what is listed, and how often */
static void check_hlist(struct dks_key *key, uint64_t now)
{
	struct msg m;
	char err[256], *field = NULL;
	const char *text = cases[8].text;   /* list: most fields */
	if (msg_parse(text, strlen(text), &m) != 0)
		return;
	struct dks_opts o = { .domain = DOMAIN, .selector = "x", .key = key, .now = now };
	checks++;
	if (dks_sign(&m, &o, "\n", &field, err, sizeof err) != 0) {
		FAIL("hlist: %s", err);
		msg_free(&m);
		return;
	}
	/* unfold and cut out h= */
	char flat[8192];
	size_t n = 0;
	for (const char *p = field; *p && n + 1 < sizeof flat; p++)
		if (*p != '\n' && *p != '\t')
			flat[n++] = *p;
	flat[n] = '\0';
	const char *h = strstr(flat, " h=");
	const char *want = " h=from:from:to:to:cc:cc:subject:subject:date:reply-to:"
		"reply-to:message-id:in-reply-to:references:mime-version:"
		"mime-version:content-type:content-type:content-transfer-encoding:"
		"list-id:list-unsubscribe:list-post;";
	if (h == NULL || strncmp(h, want, strlen(want)) != 0)
		FAIL("hlist: got %s", flat);
	free(field);
	/* no From: refused */
	struct msg m2;
	const char *nofrom = "To: a@example.org\r\n\r\nx\r\n";
	if (msg_parse(nofrom, strlen(nofrom), &m2) == 0) {
		checks++;
		if (dks_sign(&m2, &o, "\r\n", &field, err, sizeof err) != -EINVAL)
			FAIL("a message without From was signed");
		free(field);
		msg_free(&m2);
	}
	/* a NUL byte in the header section: refused (verifiers refuse it) */
	static const char nul[] = "From: a@exam\0ple.org\r\n\r\nx\r\n";
	if (msg_parse(nul, sizeof nul - 1, &m2) == 0) {
		checks++;
		if (dks_sign(&m2, &o, "\r\n", &field, err, sizeof err) != -EINVAL)
			FAIL("a header section with a NUL byte was signed");
		free(field);
		msg_free(&m2);
	}
	/* a bad domain refused */
	o.domain = "exa mple.org";
	checks++;
	if (dks_sign(&m, &o, "\r\n", &field, err, sizeof err) != -EINVAL)
		FAIL("a domain with a space was used");
	msg_free(&m);
}

static void check_keys(struct dks_key *key)
{
	char err[256];
	char *pem = dks_key_pem(key);
	struct dks_key *k2 = NULL;
	checks++;
	if (pem == NULL || dks_key_from_pem(pem, strlen(pem), &k2, err, sizeof err) != 0) {
		FAIL("key round trip: %s", pem ? err : "no PEM");
	} else {
		char *rec = dks_key_record(key);
		if (rec == NULL || !dks_key_matches(k2, rec))
			FAIL("the record of a key does not match it after a PEM round trip");
		free(rec);
	}
	free(pem);
	dks_key_free(&k2);
	checks++;
	if (dks_key_from_pem("junk", 4, &k2, err, sizeof err) == 0)
		FAIL("junk read as a key");
}

int main(int argc, char **argv)
{
	char err[256];
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
			outdir = argv[++i];
		} else {
			fprintf(stderr, "usage: dkim_sign [--out DIR]\n");
			return 64;
		}
	}
	uint64_t now = (uint64_t)time(NULL);
	struct dkv_opts vo = { .engine = DKV_ENGINE_NATIVE, .fixed_time = now };
	struct dkv_lib *libs[2];
	libs[0] = dkv_lib_new(&vo, err, sizeof err);
	vo.engine = DKV_ENGINE_LIBOPENDKIM;
	libs[1] = dkv_lib_new(&vo, err, sizeof err);
	if (libs[0] == NULL || libs[1] == NULL) {
		fprintf(stderr, "dkv_lib_new: %s\n", err);
		return 1;
	}
	int ed_ode = dkv_lib_has_ed25519(libs[1]);
	if (!ed_ode)
		fprintf(stderr, "note: this libopendkim does not verify ed25519\n");

	struct dks_key *rsa = NULL, *ed = NULL, *wrong = NULL;
	if (dks_key_generate(DKS_ALG_RSA_SHA256, 2048, &rsa, err, sizeof err) != 0 ||
	    dks_key_generate(DKS_ALG_ED25519_SHA256, 0, &ed, err, sizeof err) != 0 ||
	    dks_key_generate(DKS_ALG_ED25519_SHA256, 0, &wrong, err, sizeof err) != 0) {
		fprintf(stderr, "keygen: %s\n", err);
		return 1;
	}
	struct dkv_keyset *ks = dkv_keyset_new();
	struct { const char *sel; struct dks_key *key; } sels[] = {
		{ "rsa", rsa }, { "ed", ed },
	};
	if (outdir != NULL) {
		char path[4096];
		snprintf(path, sizeof path, "%s/keys.tsv", outdir);
		keys_out = fopen(path, "w");
		if (keys_out == NULL) {
			perror(path);
			return 1;
		}
	}
	for (size_t s = 0; s < 2; s++) {
		char q[128];
		char *rec = dks_key_record(sels[s].key);
		snprintf(q, sizeof q, "%s._domainkey." DOMAIN, sels[s].sel);
		if (rec == NULL ||
		    dkv_keyset_put_text(ks, q, DNSQ_OK, DNSQ_SEC_INSECURE, rec) != 0)
			return 1;
		if (keys_out)
			fprintf(keys_out, "%s\t%s\n", q, rec);
		free(rec);
	}
	/* a selector whose record holds another key: nothing verifies */
	char *wrec = dks_key_record(wrong);
	dkv_keyset_put_text(ks, "wrong._domainkey." DOMAIN, DNSQ_OK, DNSQ_SEC_INSECURE, wrec);
	if (keys_out) {
		fprintf(keys_out, "wrong._domainkey." DOMAIN "\t%s\n", wrec);
		fclose(keys_out);
	}
	free(wrec);

	for (size_t s = 0; s < 2; s++)
		for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
			for (int ci = 0; ci < 4; ci++)
				run(libs, ed_ode, ks, sels[s].key, sels[s].sel, &cases[c], ci, now);
	/* signed with a key other than the published one */
	{
		struct msg m;
		char *field = NULL;
		const char *text = cases[0].text;
		if (msg_parse(text, strlen(text), &m) == 0) {
			struct dks_opts o = { .domain = DOMAIN, .selector = "wrong",
			                      .key = ed, .now = now };
			if (dks_sign(&m, &o, "\r\n", &field, err, sizeof err) == 0) {
				size_t sl;
				char *sm = concat(field, text, strlen(text), &sl);
				int can[2] = { 1, ed_ode };
				expect(libs, can, ks, "wrong-key", sm, sl, 0);
				write_file("wrong-key", ".bad.eml", sm, sl);
				free(sm);
			}
			free(field);
			msg_free(&m);
		}
	}
	for (size_t s = 0; s < 2; s++) {
		check_expiry(libs, ed_ode, ks, sels[s].key, sels[s].sel, now);
		check_keys(sels[s].key);
	}
	check_hlist(rsa, now);

	dkv_keyset_free(&ks);
	dks_key_free(&rsa);
	dks_key_free(&ed);
	dks_key_free(&wrong);
	dkv_lib_free(&libs[0]);
	dkv_lib_free(&libs[1]);
	printf("dkim_sign: %d checks, %d failures\n", checks, failures);
	return failures ? 1 : 0;
}
