/* alignd-report: DMARC aggregate reports (RFC 9990) from the history store.
 * For one UTC day: every policy domain with records gets one report per
 * verified rua= destination, written under report_dir and sent by SMTP
 * (libcurl); a ledger there makes a re-run send nothing twice. One thread;
 * DNS through the daemon's validating resolver on a private loop. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <uv.h>

#include "checks/dmarc/dmarc.h"
#include "common/buf.h"
#include "common/limits.h"
#include "common/text.h"
#include "report/ledger.h"
#include "report/report.h"
#include "report/summary.h"
#include "server/config.h"
#include "server/dispatch.h"
#include "server/dns.h"
#include "server/report_tool.h"
#include "store/store.h"


struct dom {                    /* one policy domain of the day */
	char name[LIM_DNS_MAX_NAME + 1];
	struct rpt_agg *agg;
	unsigned dispositions[4];   /* by enum rpt_disp, for the summary */
};

struct tool {
	struct srv_config *cfg;
	struct rpt_meta meta;
	char org[LIM_REPORT_FIELD], email[LIM_REPORT_ADDR], receiver[LIM_DNS_MAX_NAME + 1];
	const char *only_domain;
	const char *out_dir;
	int dry_run;
	struct dom *doms;           /* open addressing by name */
	size_t cap, n;
	uint64_t records, skipped;
	/* DNS */
	uv_loop_t loop;
	struct srv_dns *dns;
	struct dnsq *dq;
	struct dmarc_psl *psl;
	/* pacing: last send per destination domain, in this run */
	struct { char domain[LIM_DNS_MAX_NAME + 1]; uint64_t at_ms; } paced[256];
	size_t n_paced;
	int temp_failures;
	int status;                 /* --status */
	int failures;               /* --failures */
	/* --summary */
	struct rpt_summary *sum;
	int json;
	size_t top;
};

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: alignd-report [-c FILE] [--set KEY=VALUE]... [--day YYYY-MM-DD]\n"
	        "                     [--domain DOMAIN] [--dry-run] [--out DIR]\n"
	        "       alignd-report [-c FILE] [--set KEY=VALUE]... --summary [--since 7d]\n"
	        "                     [--domain DOMAIN] [--top N] [--json]\n"
	        "       alignd-report [-c FILE] [--set KEY=VALUE]... --status [--domain DOMAIN]\n"
	        "       alignd-report [-c FILE] [--set KEY=VALUE]... --failures [--dry-run]\n"
	        "       alignd-report [-c FILE] --what-if [--proposed FILE] [--set KEY=VALUE]...\n"
	        "                     [--since 7d] [--domain DOMAIN [--as-policy P]]\n"
	        "                     [--top N] [--json] [--chart FILE.png]\n"
	        "Builds the DMARC aggregate reports (RFC 9990) of one UTC day (default:\n"
	        "yesterday) from the history store, writes them under report_dir (or DIR)\n"
	        "and sends them to each domain's verified rua= addresses. --dry-run\n"
	        "writes the files and sends nothing. Without --day, reports of earlier\n"
	        "days that failed for now are tried again (back-off from 1 h to 24 h,\n"
	        "for report_retry_days). Exit: 0 done, 75 a send failed for now (a\n"
	        "later run retries it), 69 store or DNS unusable, 64 usage, 78\n"
	        "configuration.\n"
	        "--status lists what became of each report at each destination.\n"
	        "--failures sends the RFC 9991 failure reports of the messages stored\n"
	        "since its last run (failure_reports = yes; run it every few minutes).\n"
	        "--summary prints, per author domain, the messages that passed and failed\n"
	        "DMARC since --since (Nd, Nh, Nm or YYYY-MM-DD; default 7d) and the\n"
	        "sending sources that failed most (--top, default 10; 0: all), as text\n"
	        "or --json.\n"
	        "--what-if re-decides the stored messages since --since under the proposed\n"
	        "configuration (--proposed FILE, else the -c one, with --set applied to it)\n"
	        "and prints how many would change verdict, in which direction, by author\n"
	        "domain and by source, with examples. --as-policy none|quarantine|reject\n"
	        "with --domain: as if that domain published that policy. --chart draws the\n"
	        "verdicts per day now and as proposed (needs gnuplot). Exit 66: no records.\n");
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the day's records ---- */

static size_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;     /* FNV-1a */
	for (; *s; s++) {
		h ^= (unsigned char)(*s | 0x20);
		h *= 1099511628211ull;
	}
	return (size_t)h;
}

static struct dom *dom_get(struct tool *t, const char *name)
{
	if (t->n * 10 >= t->cap * 7) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct dom *d = calloc(cap, sizeof(*d));
		if (!d)
			return NULL;
		for (size_t i = 0; i < t->cap; i++) {
			if (!t->doms[i].agg)
				continue;
			size_t j = name_hash(t->doms[i].name) & (cap - 1);
			while (d[j].agg)
				j = (j + 1) & (cap - 1);
			d[j] = t->doms[i];
		}
		free(t->doms);
		t->doms = d;
		t->cap = cap;
	}
	size_t j = name_hash(name) & (t->cap - 1);
	while (t->doms[j].agg && strcmp(t->doms[j].name, name) != 0)
		j = (j + 1) & (t->cap - 1);
	struct dom *d = &t->doms[j];
	if (!d->agg) {
		if (strlen(name) > LIM_DNS_MAX_NAME)
			return NULL;
		strcpy(d->name, name);
		d->agg = rpt_agg_new(&t->meta, d->name);
		if (!d->agg)
			return NULL;
		t->n++;
	}
	return d;
}

static enum rpt_pol pol_of(const char *s)
{
	if (!s || !*s)
		return RPT_POL_UNSET;
	if (strcmp(s, "reject") == 0)
		return RPT_POL_REJECT;
	if (strcmp(s, "quarantine") == 0)
		return RPT_POL_QUARANTINE;
	return RPT_POL_NONE;
}

static enum auth_res res_of(const char *s)
{
	static const enum auth_res all[] = { AUTH_NONE, AUTH_PASS, AUTH_FAIL, AUTH_SOFTFAIL,
		AUTH_NEUTRAL, AUTH_TEMPERROR, AUTH_PERMERROR, AUTH_POLICY };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (s && strcmp(s, auth_res_name(all[i])) == 0)
			return all[i];
	return AUTH_NONE;
}

/* RFC 7489 PolicyOverrideType names as alignd records them, to RFC 9990's
 * PolicyOverrideType: "forwarded" and "sampled_out" have no entry of their
 * own there and become "other" with the name as the comment. */
static size_t reasons_of(const char *overrides, const char *why, int testing,
                         struct rpt_reason *r, char comments[][64], size_t cap)
{
	size_t n = 0;
	const char *p = overrides;
	while (p && *p && n < cap) {
		while (*p == ' ')
			p++;
		size_t l = strcspn(p, " ");
		if (l == 0)
			break;
		snprintf(comments[n], 64, "%.*s", (int)l, p);
		if (text_ieq(p, l, "trusted_forwarder"))
			r[n] = (struct rpt_reason){ RPT_OVR_TRUSTED_FORWARDER, why && *why ? why : NULL };
		else if (text_ieq(p, l, "mailing_list"))
			r[n] = (struct rpt_reason){ RPT_OVR_MAILING_LIST, why && *why ? why : NULL };
		else if (text_ieq(p, l, "local_policy"))
			r[n] = (struct rpt_reason){ RPT_OVR_LOCAL_POLICY, why && *why ? why : NULL };
		else
			r[n] = (struct rpt_reason){ RPT_OVR_OTHER, comments[n] };
		n++;
		p += l;
	}
	if (testing && n < cap)   /* RFC 9989 t=y lowered the policy */
		r[n++] = (struct rpt_reason){ RPT_OVR_POLICY_TEST_MODE, NULL };
	return n;
}

static int jint(json_t *o, const char *a, const char *b)
{
	json_t *x = json_object_get(json_object_get(o, a), b);
	return json_is_integer(x) ? (int)json_integer_value(x) : json_is_true(x) ? 1 : 0;
}

static const char *jstr(json_t *o, const char *a, const char *b)
{
	json_t *x = json_object_get(o, a);
	if (b)
		x = json_object_get(x, b);
	return json_is_string(x) ? json_string_value(x) : NULL;
}

static int on_record(void *arg, const struct store_record *r)
{
	struct tool *t = arg;
	t->records++;
	if (t->sum) {
		/* every record, with a DMARC record or not, under its From domain */
		if (t->only_domain && strcasecmp(t->only_domain, r->from_domain) != 0 &&
		    strcasecmp(t->only_domain, r->policy_domain) != 0) {
			t->skipped++;
			return 0;
		}
	} else if (!r->policy_domain[0] ||
	           (t->only_domain && strcasecmp(t->only_domain, r->policy_domain) != 0)) {
		t->skipped++;
		return 0;
	}
	json_error_t je;
	json_t *ev = r->evidence ? json_loads(r->evidence, 0, &je) : NULL;

	struct rpt_msg m;
	memset(&m, 0, sizeof(m));
	m.time = r->time;
	m.source_ip = r->client_ip;
	m.header_from = r->from_domain;
	m.envelope_from = r->mail_from_domain[0] ? r->mail_from_domain : NULL;
	/* one envelope_to per record: the first recipient domain */
	char to[LIM_DNS_MAX_NAME + 1] = "";
	snprintf(to, sizeof(to), "%.*s", (int)strcspn(r->rcpt_domains, " "), r->rcpt_domains);
	m.envelope_to = to[0] ? to : NULL;
	/* RFC 9990 ActionDispositionType: "pass" is a DMARC pass under a policy
	 * that asks for something */
	if (strcmp(r->dmarc_result, "pass") == 0)
		m.disposition = pol_of(r->p) > RPT_POL_NONE ? RPT_DISP_PASS : RPT_DISP_NONE;
	else if (strcmp(r->disposition, "reject") == 0)
		m.disposition = RPT_DISP_REJECT;
	else if (strcmp(r->disposition, "quarantine") == 0)
		m.disposition = RPT_DISP_QUARANTINE;
	else
		m.disposition = RPT_DISP_NONE;
	m.dkim_aligned = jint(ev, "dmarc", "dkim_aligned") == 1;
	m.spf_aligned = jint(ev, "dmarc", "spf_aligned") == 1;

	struct rpt_reason reasons[LIM_REPORT_REASONS];
	char comments[LIM_REPORT_REASONS][64];
	json_t *pol = json_object_get(ev, "policy");
	const char *why = jstr(pol, "decision", "why");
	m.reasons = reasons;
	m.n_reasons = reasons_of(r->overrides, why, jint(ev, "dmarc", "testing"),
	                         reasons, comments, LIM_REPORT_REASONS);

	struct rpt_dkim dk[LIM_DKIM_MAX_SIGNATURES * 8];
	json_t *jd = json_object_get(ev, "dkim");
	size_t nd = 0;
	for (size_t i = 0; i < r->n_dkim && nd < sizeof(dk) / sizeof(dk[0]); i++) {
		json_t *ji = json_array_get(jd, i);
		const char *human = jstr(ji, "reason", NULL);
		dk[nd++] = (struct rpt_dkim){ r->dkim[i].d, r->dkim[i].s, res_of(r->dkim[i].result),
		                              human && *human ? human : NULL };
	}
	m.dkim = dk;
	m.n_dkim = nd;
	if (r->spf_domain[0] && strcmp(r->spf_scope, "helo") != 0) {
		m.spf_domain = r->spf_domain;
		m.spf_res = res_of(r->spf_result);
	}
	m.policy = (struct rpt_policy){
		.domain = r->policy_domain, .p = pol_of(r->p), .sp = pol_of(r->sp), .np = pol_of(r->np),
		.adkim = r->adkim, .aspf = r->aspf, .testing = r->t,
		.treewalk = strcmp(r->discovery_method, "rfc7489") != 0,
	};
	const char *fo = jstr(json_object_get(ev, "dmarc"), "record", "fo");
	m.policy.fo = fo && *fo ? fo : NULL;

	int rc = 0;
	struct dom *d = NULL;
	if (t->sum) {
		if (rpt_summary_add(t->sum, &m) < 0) {
			fprintf(stderr, "alignd-report: out of memory\n");
			rc = -1;
		}
	} else if (!(d = dom_get(t, r->policy_domain)) || rpt_agg_add(d->agg, &m) < 0) {
		fprintf(stderr, "alignd-report: out of memory\n");
		rc = -1;
	} else {
		d->dispositions[m.disposition]++;
	}
	json_decref(ev);
	return rc;
}

/* ---- DNS ---- */

struct txt_wait {
	int done;
	enum dnsq_status status;
	char txt[LIM_DMARC_RECORD + 1];
	size_t len;
	int found;
	int (*want)(const char *txt, size_t len);
};

static int is_dmarc(const char *txt, size_t len)
{
	/* RFC 9989 4.7: records that do not start with v=DMARC1 are ignored */
	return len >= 8 && memcmp(txt, "v=DMARC1", 8) == 0 && (len == 8 || txt[8] == ';' || txt[8] == ' ' || txt[8] == '\t');
}

static void on_txt(void *arg, const struct dnsq_answer *a)
{
	struct txt_wait *w = arg;
	w->done = 1;
	w->status = a->status;
	for (size_t i = 0; a->status == DNSQ_OK && i < a->count && !w->found; i++) {
		size_t len;
		if (dnsq_txt(a, i, w->txt, sizeof(w->txt), &len) == 0 && w->want(w->txt, len)) {
			w->len = len;
			w->found = 1;
		}
	}
}

/* 1 found, 0 none (NXDOMAIN, NODATA or no such record), -1 DNS failure. */
static int txt_lookup(struct tool *t, const char *name, int (*want)(const char *, size_t),
                      struct txt_wait *w)
{
	memset(w, 0, sizeof(*w));
	w->want = want;
	dnsq_lookup(t->dq, name, DNSQ_T_TXT, on_txt, w);
	while (!w->done)
		uv_run(&t->loop, UV_RUN_ONCE);
	if (w->found)
		return 1;
	return w->status == DNSQ_OK || w->status == DNSQ_NODATA || w->status == DNSQ_NXDOMAIN ? 0 : -1;
}

/* RFC 9990 3.1: a destination outside the policy domain's organizational
 * domain must say it accepts reports about it. 1 allowed, 0 not, -1 DNS
 * failure (try again later). */
static int dest_allowed(struct tool *t, const char *policy_domain, const char *dest_domain,
                        const char **why_r)
{
	char o1[DMARC_DOMAIN_MAX], o2[DMARC_DOMAIN_MAX];
	if (t->psl && dmarc_psl_org(t->psl, policy_domain, o1) == 0 &&
	    dmarc_psl_org(t->psl, dest_domain, o2) == 0 && strcasecmp(o1, o2) == 0) {
		*why_r = "same organizational domain";
		return 1;
	}
	char name[2 * LIM_DNS_MAX_NAME + 32];
	int n = snprintf(name, sizeof(name), "%s._report._dmarc.%s", policy_domain, dest_domain);
	if (n < 0 || (size_t)n > LIM_DNS_MAX_NAME - 2) {
		*why_r = "verification name too long";
		return 0;
	}
	struct txt_wait w;
	int rc = txt_lookup(t, name, rpt_verify_record, &w);
	*why_r = rc == 1 ? "verified by its _report._dmarc record"
	       : rc == 0 ? "external destination without a _report._dmarc record"
	                 : "verification lookup failed";
	return rc;
}

static int suppressed(const struct tool *t, const char *domain)
{
	/* a listed domain covers its subdomains */
	const char *p = t->cfg->report_suppress;
	while (p && *p) {
		while (*p == ' ' || *p == ',')
			p++;
		size_t l = strcspn(p, " ,");
		if (text_domain_within(domain, p, l))
			return 1;
		p += l;
	}
	return 0;
}

/* ---- files and the ledger ---- */

static int mkdirs(const char *path)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -1;
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
				return -1;
			*p = '/';
		}
	return mkdir(tmp, 0750) < 0 && errno != EEXIST ? -1 : 0;
}

/* Written to a temporary name, synced, then renamed: a crash leaves the
 * old file or the new one, never half of one. */
static int write_atomic(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096], tmp[4200];
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -1;
	snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	const char *c = p;
	size_t off = 0;
	while (off < n) {
		ssize_t w = write(fd, c + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			close(fd);
			unlink(tmp);
			return -1;
		}
		off += (size_t)w;
	}
	if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static void ledger_name(char *out, size_t cap, const char *id, const char *addr)
{
	int n = snprintf(out, cap, "%s!", id);
	for (const char *a = addr; *a && n > 0 && (size_t)n + 1 < cap; a++)
		out[n++] = (*a == '/' ? '_' : *a);
	if (n > 0 && (size_t)n < cap)
		out[n] = '\0';
}

/* The entry for (id, addr): 1 read, 0 none. */
static int ledger_read(const char *dir, const char *id, const char *addr, struct rpt_ledger *l)
{
	char name[512], path[4096], line[600];
	ledger_name(name, sizeof(name), id, addr);
	snprintf(path, sizeof(path), "%s/ledger/%s", dir, name);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	int ok = fgets(line, (int)sizeof(line), f) != NULL && rpt_ledger_parse(line, l) == 0;
	fclose(f);
	return ok;
}

static void ledger_write(const char *dir, const char *id, const char *addr,
                         const struct rpt_ledger *l)
{
	char name[512], ldir[4096], line[600];
	ledger_name(name, sizeof(name), id, addr);
	snprintf(ldir, sizeof(ldir), "%s/ledger", dir);
	size_t n = rpt_ledger_format(l, line, sizeof(line));
	if (n == 0 || mkdirs(ldir) < 0 || write_atomic(ldir, name, line, n) < 0)
		fprintf(stderr, "alignd-report: cannot write the ledger entry %s/%s: %s\n",
		        ldir, name, strerror(errno));
}

/* ---- SMTP ---- */

struct upload {
	const char *p;
	size_t len, off;
};

static size_t read_cb(char *dst, size_t size, size_t nmemb, void *arg)
{
	struct upload *u = arg;
	size_t n = size * nmemb;
	if (n > u->len - u->off)
		n = u->len - u->off;
	memcpy(dst, u->p + u->off, n);
	u->off += n;
	return n;
}

/* 0 sent, 1 refused for good (5xx), -1 failed for now. */
static int smtp_send(struct tool *t, const char *to, const struct buf *msg, char *why, size_t cap)
{
	CURL *c = curl_easy_init();
	if (!c) {
		snprintf(why, cap, "libcurl init failed");
		return -1;
	}
	char from[LIM_REPORT_ADDR + 2], rcpt[LIM_REPORT_ADDR + 2], password[512] = "";
	if (snprintf(from, sizeof(from), "<%s>", t->email) >= (int)sizeof(from) ||
	    snprintf(rcpt, sizeof(rcpt), "<%s>", to) >= (int)sizeof(rcpt)) {
		snprintf(why, cap, "address too long");
		curl_easy_cleanup(c);
		return 1;
	}
	struct curl_slist *rl = curl_slist_append(NULL, rcpt);
	struct upload u = { msg->data, msg->len, 0 };
	const char *tls = t->cfg->report_smtp_tls;
	curl_easy_setopt(c, CURLOPT_URL, t->cfg->report_smtp);
	curl_easy_setopt(c, CURLOPT_MAIL_FROM, from);
	curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rl);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(c, CURLOPT_READDATA, &u);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_USE_SSL, strcmp(tls, "require") == 0 ? (long)CURLUSESSL_ALL
	                 : strcmp(tls, "off") == 0 ? (long)CURLUSESSL_NONE : (long)CURLUSESSL_TRY);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)LIM_REPORT_SMTP_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (*t->cfg->report_smtp_user) {
		FILE *f = fopen(t->cfg->report_smtp_password_file, "r");
		if (!f || !fgets(password, sizeof(password), f)) {
			snprintf(why, cap, "cannot read report_smtp_password_file");
			if (f)
				fclose(f);
			curl_slist_free_all(rl);
			curl_easy_cleanup(c);
			return -1;
		}
		fclose(f);
		password[strcspn(password, "\r\n")] = '\0';
		curl_easy_setopt(c, CURLOPT_USERNAME, t->cfg->report_smtp_user);
		curl_easy_setopt(c, CURLOPT_PASSWORD, password);
	}
	CURLcode rc = curl_easy_perform(c);
	long code = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	explicit_bzero(password, sizeof(password));
	curl_slist_free_all(rl);
	curl_easy_cleanup(c);
	if (rc == CURLE_OK) {
		snprintf(why, cap, "sent");
		return 0;
	}
	snprintf(why, cap, "%s (SMTP %ld)", curl_easy_strerror(rc), code);
	return code >= 500 && code < 600 ? 1 : -1;
}

static void pace(struct tool *t, const char *domain)
{
	size_t i;
	for (i = 0; i < t->n_paced; i++)
		if (strcasecmp(t->paced[i].domain, domain) == 0)
			break;
	uint64_t now = now_ms();
	if (i < t->n_paced) {
		uint64_t due = t->paced[i].at_ms + t->cfg->report_pace;
		if (due > now) {
			struct timespec ts = { (time_t)((due - now) / 1000), (long)((due - now) % 1000) * 1000000 };
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		}
	} else if (t->n_paced < sizeof(t->paced) / sizeof(t->paced[0])) {
		snprintf(t->paced[t->n_paced].domain, sizeof(t->paced[0].domain), "%s", domain);
		t->n_paced++;
	} else {
		i = t->n_paced - 1;   /* table full: the last slot is shared */
	}
	if (i < t->n_paced)
		t->paced[i].at_ms = now_ms();
}

/* ---- one domain ---- */

static void report_domain(struct tool *t, struct dom *d)
{
	const char *err = NULL;
	if (suppressed(t, d->name)) {
		printf("%s: suppressed\n", d->name);
		return;
	}
	char dmarc_name[LIM_DNS_MAX_NAME + 16];
	snprintf(dmarc_name, sizeof(dmarc_name), "_dmarc.%s", d->name);
	struct txt_wait w;
	int found = txt_lookup(t, dmarc_name, is_dmarc, &w);
	if (found <= 0) {
		printf("%s: %zu messages, no report: %s\n", d->name, rpt_agg_messages(d->agg),
		       found < 0 ? "DMARC record lookup failed (try again later)" : "no DMARC record now");
		if (found < 0)
			t->temp_failures++;
		return;
	}
	struct rpt_dest dests[LIM_REPORT_DESTS];
	unsigned skipped = 0;
	int nd = rpt_rua_parse(w.txt, w.len, dests, LIM_REPORT_DESTS, &skipped);
	if (nd <= 0) {
		printf("%s: %zu messages, no report: %s\n", d->name, rpt_agg_messages(d->agg),
		       nd < 0 ? "no rua= tag" : "no usable rua= destination");
		return;
	}

	struct buf xml, gz, fname;
	buf_init(&xml, LIM_REPORT_MAX_XML);
	buf_init(&gz, 0);
	buf_init(&fname, 0);
	char id[33];
	rpt_report_id(&t->meta, d->name, id);
	if (rpt_agg_xml(d->agg, &xml, &err) < 0 || rpt_gzip(xml.data, xml.len, &gz) < 0 ||
	    rpt_filename(&t->meta, d->name, id, &fname) < 0 || buf_add(&fname, "", 1) < 0) {
		printf("%s: cannot build the report: %s\n", d->name, err ? err : "out of memory");
		goto out;
	}
	if (mkdirs(t->out_dir) < 0 || write_atomic(t->out_dir, fname.data, gz.data, gz.len) < 0) {
		printf("%s: cannot write %s/%s: %s\n", d->name, t->out_dir, fname.data, strerror(errno));
		t->temp_failures++;
		goto out;
	}
	printf("%s: %zu messages in %zu records, %s (%zu bytes)\n", d->name, rpt_agg_messages(d->agg),
	       rpt_agg_records(d->agg), fname.data, gz.len);

	char summary[1024], datebuf[32];
	time_t b = (time_t)t->meta.begin;
	struct tm tm;
	gmtime_r(&b, &tm);
	strftime(datebuf, sizeof(datebuf), "%Y-%m-%d", &tm);
	snprintf(summary, sizeof(summary),
	         "DMARC aggregate report (RFC 9990) from %s about mail from %s\n"
	         "for %s (UTC): %zu messages in %zu records.\n"
	         "Dispositions: %u passed, %u none, %u quarantined, %u rejected.\n"
	         "The report is the attached gzip file.\n",
	         t->receiver, d->name, datebuf, rpt_agg_messages(d->agg), rpt_agg_records(d->agg),
	         d->dispositions[RPT_DISP_PASS], d->dispositions[RPT_DISP_NONE],
	         d->dispositions[RPT_DISP_QUARANTINE], d->dispositions[RPT_DISP_REJECT]);

	for (int i = 0; i < nd; i++) {
		const char *to = dests[i].addr, *why = NULL;
		if (suppressed(t, dests[i].domain)) {
			printf("  %s: suppressed\n", to);
			continue;
		}
		if (dests[i].max_size && gz.len > dests[i].max_size) {
			/* RFC 9990 3.2: a report over the destination's limit is not sent */
			printf("  %s: not sent, %zu bytes over its limit of %llu\n", to, gz.len,
			       (unsigned long long)dests[i].max_size);
			continue;
		}
		if (gz.len > t->cfg->report_max_size) {
			printf("  %s: not sent, %zu bytes over report_max_size\n", to, gz.len);
			continue;
		}
		int ok = dest_allowed(t, d->name, dests[i].domain, &why);
		if (ok <= 0) {
			printf("  %s: not sent, %s\n", to, why);
			if (ok < 0)
				t->temp_failures++;
			continue;
		}
		struct rpt_ledger led;
		int have = ledger_read(t->cfg->report_dir, id, to, &led);
		int64_t now = (int64_t)time(NULL), due;
		enum rpt_ledger_next next = rpt_ledger_next(have ? &led : NULL, now,
		                                            t->cfg->report_retry_days, &due);
		if (next == RPT_NEXT_DONE) {
			printf("  %s: already done (%s)\n", to, rpt_ledger_state_name(led.state));
			continue;
		}
		if (next == RPT_NEXT_EXPIRE) {
			led.state = RPT_LEDGER_EXPIRED;
			if (!t->dry_run)
				ledger_write(t->cfg->report_dir, id, to, &led);
			printf("  %s: expired after %u attempts: %s\n", to, led.attempts, led.reason);
			continue;
		}
		if (next == RPT_NEXT_WAIT) {
			printf("  %s: failed for now (%u attempts), next try in %lld min: %s\n", to,
			       led.attempts, (long long)((due - now + 59) / 60), led.reason);
			continue;
		}
		if (t->dry_run) {
			printf("  %s: would send (%s)\n", to, why);
			continue;
		}
		struct rpt_mail mail = { to, summary, (int64_t)time(NULL) };
		struct buf msg;
		buf_init(&msg, 0);
		if (rpt_message(&t->meta, d->name, id, &mail, gz.data, gz.len, &msg) < 0) {
			printf("  %s: cannot build the message\n", to);
			buf_free(&msg);
			continue;
		}
		pace(t, dests[i].domain);
		char res[256];
		int sr = smtp_send(t, to, &msg, res, sizeof(res));
		buf_free(&msg);
		struct rpt_ledger nl = {
			.state = sr == 0 ? RPT_LEDGER_SENT : sr > 0 ? RPT_LEDGER_REFUSED : RPT_LEDGER_FAILED,
			.attempts = (have ? led.attempts : 0) + 1,
			.last = (int64_t)time(NULL),
			.day = t->meta.begin,
		};
		snprintf(nl.domain, sizeof(nl.domain), "%s", d->name);
		snprintf(nl.reason, sizeof(nl.reason), "%s", res);
		ledger_write(t->cfg->report_dir, id, to, &nl);
		if (sr == 0) {
			printf("  %s: sent\n", to);
		} else if (sr > 0) {
			/* a dead rua= address is not retried every day (RFC 9990 3.2) */
			printf("  %s: refused for good: %s\n", to, res);
		} else {
			t->temp_failures++;
			printf("  %s: failed for now: %s (a later run tries again)\n", to, res);
		}
	}
out:
	buf_free(&xml);
	buf_free(&gz);
	buf_free(&fname);
}

/* ---- main ---- */

static int cmp_dom(const void *a, const void *b)
{
	return strcmp((*(struct dom *const *)a)->name, (*(struct dom *const *)b)->name);
}

static int parse_day(const char *s, int64_t *begin_r)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(s, "%Y-%m-%d", &tm);
	if (!end || *end)
		return -1;
	*begin_r = (int64_t)timegm(&tm);
	return 0;
}

static int open_dns(struct tool *t, char *err, size_t errlen)
{
	struct dns_opts o;
	dispatch_dns_opts(t->cfg, &o);
	if (uv_loop_init(&t->loop) < 0) {
		snprintf(err, errlen, "cannot create an event loop");
		return -1;
	}
	if (srv_dns_new(&t->loop, &o, &t->dns, err, errlen) < 0)
		return -1;
	t->dq = srv_dns_dnsq(t->dns);
	t->psl = dmarc_psl_open(NULL);
	return 0;
}

static void clear_doms(struct tool *t)
{
	for (size_t i = 0; i < t->cap; i++)
		rpt_agg_free(&t->doms[i].agg);
	free(t->doms);
	t->doms = NULL;
	t->cap = t->n = 0;
	t->records = t->skipped = 0;
}

/* One UTC day: its records, its reports, their sending. */
static int report_day(struct tool *t, struct store *st, int64_t begin, const char *label)
{
	char err[512];
	clear_doms(t);
	t->meta = (struct rpt_meta){
		.org_name = t->org, .email = t->email, .receiver = t->receiver,
		.generator = "alignd " ALIGND_VERSION,
		/* RFC 9990 2.1: whole UTC days, both ends inclusive */
		.begin = begin, .end = begin + 86399,
	};
	struct store_query q = { .since = t->meta.begin, .until = t->meta.end + 1, .domain = t->only_domain };
	if (store_query(st, &q, on_record, t, err, sizeof(err)) < 0) {
		fprintf(stderr, "alignd-report: reading the history store: %s\n", err);
		return EX_UNAVAILABLE_;
	}
	printf("alignd-report: %s%llu records of %s UTC, %zu policy domains\n",
	       t->dry_run ? "dry run: " : "", (unsigned long long)t->records, label, t->n);
	if (!t->n)
		return EX_OK_;
	if (!t->dns) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || open_dns(t, err, sizeof(err)) < 0) {
			fprintf(stderr, "alignd-report: DNS: %s\n", err);
			return EX_UNAVAILABLE_;
		}
	}
	/* in name order, so that runs are easy to compare */
	struct dom **order = calloc(t->n, sizeof(*order));
	if (!order) {
		fprintf(stderr, "alignd-report: out of memory\n");
		return EX_UNAVAILABLE_;
	}
	size_t k = 0;
	for (size_t i = 0; i < t->cap; i++)
		if (t->doms[i].agg)
			order[k++] = &t->doms[i];
	qsort(order, k, sizeof(*order), cmp_dom);
	for (size_t i = 0; i < k; i++)
		report_domain(t, order[i]);
	free(order);
	return EX_OK_;
}

/* Calls fn for every readable ledger entry; returns how many. */
static size_t ledger_each(const struct tool *t,
                          void (*fn)(void *arg, const char *name, const struct rpt_ledger *l),
                          void *arg)
{
	char ldir[4096];
	snprintf(ldir, sizeof(ldir), "%s/ledger", t->cfg->report_dir);
	DIR *dh = opendir(ldir);
	if (!dh)
		return 0;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(dh)) != NULL) {
		if (e->d_name[0] == '.' || !strchr(e->d_name, '!') || strstr(e->d_name, ".tmp"))
			continue;
		char path[4600], line[600];
		snprintf(path, sizeof(path), "%s/%s", ldir, e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		struct rpt_ledger l;
		if (fgets(line, (int)sizeof(line), f) && rpt_ledger_parse(line, &l) == 0) {
			fn(arg, e->d_name, &l);
			n++;
		}
		fclose(f);
	}
	closedir(dh);
	return n;
}

struct retry_scan {
	const struct tool *t;
	int64_t skip, *days;
	size_t n, cap;
};

static void note_retry_day(void *arg, const char *name, const struct rpt_ledger *l)
{
	struct retry_scan *r = arg;
	if (l->state != RPT_LEDGER_FAILED || l->day < 0 || l->day == r->skip)
		return;
	int64_t due;
	if (rpt_ledger_next(l, (int64_t)time(NULL), r->t->cfg->report_retry_days, &due) ==
	    RPT_NEXT_EXPIRE) {
		/* its day may be gone from the store: expired here, not rebuilt */
		const char *dest = strchr(name, '!');
		printf("%s: %s: expired after %u attempts: %s\n", l->domain[0] ? l->domain : "-",
		       dest ? dest + 1 : name, l->attempts, l->reason);
		if (!r->t->dry_run) {
			struct rpt_ledger x = *l;
			x.state = RPT_LEDGER_EXPIRED;
			char ldir[4096], line[600];
			snprintf(ldir, sizeof(ldir), "%s/ledger", r->t->cfg->report_dir);
			size_t n = rpt_ledger_format(&x, line, sizeof(line));
			if (n == 0 || write_atomic(ldir, name, line, n) < 0)
				fprintf(stderr, "alignd-report: cannot write the ledger entry %s/%s: %s\n",
				        ldir, name, strerror(errno));
		}
		return;
	}
	for (size_t i = 0; i < r->n; i++)
		if (r->days[i] == l->day)
			return;
	if (r->n < r->cap)
		r->days[r->n++] = l->day;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* The days (other than skip) with a report that failed for now, oldest
 * first: rebuilt from the store, their destinations are retried or
 * expired by the ledger's rule. */
static size_t ledger_retry_days(const struct tool *t, int64_t skip, int64_t *days, size_t cap)
{
	struct retry_scan r = { t, skip, days, 0, cap };
	ledger_each(t, note_retry_day, &r);
	qsort(days, r.n, sizeof(*days), cmp_i64);
	return r.n;
}

struct status_row {
	char name[512];
	struct rpt_ledger l;
};

struct status_list {
	struct status_row *rows;
	size_t n, cap;
	int nomem;
};

static void note_status(void *arg, const char *name, const struct rpt_ledger *l)
{
	struct status_list *sl = arg;
	if (sl->n == sl->cap) {
		size_t nc = sl->cap ? sl->cap * 2 : 64;
		struct status_row *nr = realloc(sl->rows, nc * sizeof(*nr));
		if (!nr) {
			sl->nomem = 1;
			return;
		}
		sl->rows = nr;
		sl->cap = nc;
	}
	struct status_row *r = &sl->rows[sl->n++];
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->l = *l;
}

static int cmp_status(const void *a, const void *b)
{
	const struct status_row *x = a, *y = b;
	if (x->l.day != y->l.day)
		return x->l.day > y->l.day ? -1 : 1;
	int c = strcmp(x->l.domain, y->l.domain);
	return c ? c : strcmp(x->name, y->name);
}

/* alignd-report --status: what became of every report at every destination */
static int run_status(struct tool *t)
{
	struct status_list sl = { 0 };
	ledger_each(t, note_status, &sl);
	if (sl.nomem) {
		free(sl.rows);
		fprintf(stderr, "alignd-report: out of memory\n");
		return EX_UNAVAILABLE_;
	}
	qsort(sl.rows, sl.n, sizeof(*sl.rows), cmp_status);
	unsigned count[4] = { 0 };
	int64_t now = (int64_t)time(NULL);
	printf("%-10s  %-30s  %-34s  %-24s  %8s  %s\n", "day", "policy domain", "destination",
	       "state", "attempts", "last answer");
	for (size_t i = 0; i < sl.n; i++) {
		const struct rpt_ledger *l = &sl.rows[i].l;
		if (t->only_domain && strcasecmp(t->only_domain, l->domain) != 0)
			continue;
		count[l->state]++;
		char dayb[16] = "-";
		if (l->day >= 0) {
			time_t b = (time_t)l->day;
			struct tm tm;
			gmtime_r(&b, &tm);
			strftime(dayb, sizeof(dayb), "%Y-%m-%d", &tm);
		}
		const char *dest = strchr(sl.rows[i].name, '!');
		char state[48];
		int64_t due;
		if (l->state == RPT_LEDGER_FAILED &&
		    rpt_ledger_next(l, now, t->cfg->report_retry_days, &due) == RPT_NEXT_WAIT)
			snprintf(state, sizeof(state), "failed, retry in %lld min",
			         (long long)((due - now + 59) / 60));
		else
			snprintf(state, sizeof(state), "%s", rpt_ledger_state_name(l->state));
		printf("%-10s  %-30s  %-34s  %-24s  %8u  %s\n", dayb, l->domain[0] ? l->domain : "-",
		       dest ? dest + 1 : sl.rows[i].name, state, l->attempts,
		       l->reason[0] ? l->reason : "-");
	}
	printf("%u sent, %u refused for good, %u failed for now, %u expired\n",
	       count[RPT_LEDGER_SENT], count[RPT_LEDGER_REFUSED], count[RPT_LEDGER_FAILED],
	       count[RPT_LEDGER_EXPIRED]);
	free(sl.rows);
	return EX_OK_;
}

/* ---- failure reports (RFC 9991) ---- */

/* Ends what open_dns (and curl_global_init) started, if anything. */
static void close_dns(struct tool *t)
{
	if (!t->dns)
		return;
	srv_dns_close(&t->dns);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	uv_loop_close(&t->loop);
	dmarc_psl_close(&t->psl);
	curl_global_cleanup();
}


/* One stored message whose failure report may be due, copied out of the
 * store's callback. */
struct fcase {
	int64_t id, time;
	char client_ip[64], from_domain[STORE_DOMAIN_MAX], policy_domain[STORE_DOMAIN_MAX];
	char action[STORE_WORD_MAX];
	char *mail_from, *rcpt, *auth_results, *headers;
	char dkim_d[STORE_DOMAIN_MAX], dkim_s[STORE_DOMAIN_MAX];
	int dkim_aligned, spf_aligned;
};

struct fscan {
	struct fcase *c;
	size_t n, cap;
	int64_t after_id, last_id;
	int nomem;
};

static void fcase_free(struct fcase *c)
{
	free(c->mail_from);
	free(c->rcpt);
	free(c->auth_results);
	free(c->headers);
}

static char *dup_or_null(const char *v)
{
	return v ? strdup(v) : NULL;
}

static int on_failure_record(void *arg, const struct store_record *r)
{
	struct fscan *f = arg;
	if (r->id <= f->after_id)
		return 0;
	f->last_id = r->id;
	if (!r->evidence || !strstr(r->evidence, "\"failure\""))
		return 0;
	if (f->n == f->cap)
		return 1;   /* the rest waits for the next run */
	json_error_t je;
	json_t *ev = json_loads(r->evidence, 0, &je);
	json_t *fr = json_object_get(ev, "failure");
	const char *h = json_string_value(json_object_get(fr, "headers"));
	if (!h) {
		json_decref(ev);
		return 0;
	}
	struct fcase *c = &f->c[f->n];
	memset(c, 0, sizeof(*c));
	c->id = r->id;
	c->time = r->time;
	snprintf(c->client_ip, sizeof(c->client_ip), "%s", r->client_ip);
	snprintf(c->from_domain, sizeof(c->from_domain), "%s", r->from_domain);
	snprintf(c->policy_domain, sizeof(c->policy_domain), "%s", r->policy_domain);
	snprintf(c->action, sizeof(c->action), "%s", r->action);
	c->headers = strdup(h);
	c->mail_from = dup_or_null(jstr(json_object_get(ev, "envelope"), "mail_from", NULL));
	c->rcpt = dup_or_null(json_string_value(json_object_get(fr, "rcpt")));
	c->auth_results = dup_or_null(json_string_value(json_object_get(fr, "auth_results")));
	c->dkim_aligned = jint(ev, "dmarc", "dkim_aligned") == 1;
	c->spf_aligned = jint(ev, "dmarc", "spf_aligned") == 1;
	for (size_t i = 0; i < r->n_dkim; i++)
		if (strcmp(r->dkim[i].result, "pass") != 0) {
			snprintf(c->dkim_d, sizeof(c->dkim_d), "%s", r->dkim[i].d);
			snprintf(c->dkim_s, sizeof(c->dkim_s), "%s", r->dkim[i].s);
			break;
		}
	json_decref(ev);
	if (!c->headers) {
		fcase_free(c);
		f->nomem = 1;
		return 1;
	}
	f->n++;
	return 0;
}

/* The cursor: the last store record id looked at, and when. */
static void cursor_read(const struct tool *t, int64_t *id, int64_t *when)
{
	char path[4200], line[128];
	snprintf(path, sizeof(path), "%s/failure.cursor", t->cfg->report_dir);
	*id = 0;
	*when = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	long long a, b;
	if (fgets(line, sizeof(line), f) && sscanf(line, "%lld %lld", &a, &b) == 2) {
		*id = a;
		*when = b;
	}
	fclose(f);
}

static int cursor_write(const struct tool *t, int64_t id, int64_t when)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "%lld %lld\n", (long long)id, (long long)when);
	if (mkdirs(t->cfg->report_dir) < 0 ||
	    write_atomic(t->cfg->report_dir, "failure.cursor", line, (size_t)n) < 0) {
		fprintf(stderr, "alignd-report: cannot write %s/failure.cursor: %s\n",
		        t->cfg->report_dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* failure_report_rate per policy domain per hour, across runs: one file
 * per domain with the times of the reports sent in the last hour. */
static int rate_take(const struct tool *t, const char *domain, int64_t now)
{
	char dir[4200], path[4700], name[LIM_DNS_MAX_NAME + 1];
	snprintf(dir, sizeof(dir), "%s/failure-rate", t->cfg->report_dir);
	snprintf(name, sizeof(name), "%s", domain);
	for (char *p = name; *p; p++)
		if (*p == '/')
			*p = '_';
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int64_t kept[LIM_FAILURE_RATE_MAX];
	size_t n = 0;
	FILE *f = fopen(path, "r");
	if (f) {
		long long v;
		while (n < LIM_FAILURE_RATE_MAX && fscanf(f, "%lld", &v) == 1)
			if (v > now - 3600 && v <= now)
				kept[n++] = v;
		fclose(f);
	}
	if (n >= t->cfg->failure_report_rate)
		return 0;
	kept[n++] = now;
	char buf[LIM_FAILURE_RATE_MAX * 24];
	size_t off = 0;
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%lld\n", (long long)kept[i]);
	if (mkdirs(dir) < 0 || write_atomic(dir, name, buf, off) < 0)
		fprintf(stderr, "alignd-report: cannot write %s: %s\n", path, strerror(errno));
	return 1;
}

static enum rpt_delivery delivery_of(const char *action)
{
	return strcmp(action, "reject") == 0 ? RPT_REJECT
	     : strcmp(action, "quarantine") == 0 ? RPT_SPAM
	     : strcmp(action, "accept") == 0 ? RPT_DELIVERED : RPT_OTHER;
}

/* One message: its domain's ruf= destinations, verified, rate-limited. */
static void failure_one(struct tool *t, const struct fcase *c, unsigned *sent)
{
	char dmarc_name[LIM_DNS_MAX_NAME + 16];
	snprintf(dmarc_name, sizeof(dmarc_name), "_dmarc.%s", c->policy_domain);
	struct txt_wait w;
	int found = txt_lookup(t, dmarc_name, is_dmarc, &w);
	if (found <= 0) {
		printf("record %lld (%s): no report: %s\n", (long long)c->id, c->policy_domain,
		       found < 0 ? "DMARC record lookup failed" : "no DMARC record now");
		return;
	}
	struct rpt_dest dests[LIM_REPORT_DESTS];
	unsigned skipped = 0;
	int nd = rpt_ruf_parse(w.txt, w.len, dests, LIM_REPORT_DESTS, &skipped);
	if (nd <= 0) {
		printf("record %lld (%s): no report: %s\n", (long long)c->id, c->policy_domain,
		       nd < 0 ? "no ruf= tag now" : "no usable ruf= destination");
		return;
	}
	if (suppressed(t, c->policy_domain)) {
		printf("record %lld (%s): suppressed\n", (long long)c->id, c->policy_domain);
		return;
	}
	/* the Subject for the text part, unfolded */
	char subject[LIM_REPORT_FIELD] = "";
	struct msg m;
	size_t hl = strlen(c->headers);
	if (msg_parse(c->headers, hl, &m) == 0) {
		const struct msg_field *sf = msg_get(&m, "Subject", 0);
		if (sf && msg_unfold(sf->value, sf->value_len, subject, sizeof(subject)) == (size_t)-1)
			subject[0] = '\0';
		msg_free(&m);
	}
	struct rpt_failure f = {
		.arrival = c->time, .source_ip = c->client_ip, .mail_from = c->mail_from,
		.rcpt_to = c->rcpt, .reported_domain = c->from_domain, .auth_results = c->auth_results,
		.dkim_aligned = c->dkim_aligned, .spf_aligned = c->spf_aligned,
		.delivery = delivery_of(c->action),
		.dkim_domain = c->dkim_d[0] ? c->dkim_d : NULL,
		.dkim_selector = c->dkim_s[0] ? c->dkim_s : NULL,
		.headers = c->headers, .headers_len = hl,
		.subject = subject[0] ? subject : NULL,
		.redact = t->cfg->failure_report_redact,
	};
	/* one slot of the domain's hourly rate per message, whatever the
	 * number of its destinations */
	if (!t->dry_run && !rate_take(t, c->policy_domain, (int64_t)time(NULL))) {
		printf("record %lld: not sent, failure_report_rate (%u an hour) reached for %s\n",
		       (long long)c->id, t->cfg->failure_report_rate, c->policy_domain);
		return;
	}
	for (int i = 0; i < nd; i++) {
		const char *to = dests[i].addr, *why = NULL;
		if (suppressed(t, dests[i].domain)) {
			printf("  %s: suppressed\n", to);
			continue;
		}
		int ok = dest_allowed(t, c->policy_domain, dests[i].domain, &why);
		if (ok <= 0) {
			printf("  record %lld: %s: not sent, %s\n", (long long)c->id, to, why);
			continue;
		}
		struct buf msg;
		buf_init(&msg, 0);
		if (rpt_failure_message(&t->meta, &f, to, (int64_t)time(NULL), &msg) < 0) {
			printf("  record %lld: %s: cannot build the report\n", (long long)c->id, to);
			buf_free(&msg);
			continue;
		}
		if (dests[i].max_size && msg.len > dests[i].max_size) {
			printf("  record %lld: %s: not sent, %zu bytes over its limit\n", (long long)c->id,
			       to, msg.len);
			buf_free(&msg);
			continue;
		}
		if (t->dry_run) {
			printf("  record %lld: %s: would send (%zu bytes)\n", (long long)c->id, to, msg.len);
			buf_free(&msg);
			continue;
		}
		pace(t, dests[i].domain);
		char res[256];
		int sr = smtp_send(t, to, &msg, res, sizeof(res));
		buf_free(&msg);
		if (sr == 0)
			(*sent)++;
		else
			t->temp_failures += sr < 0;
		/* failure reports are not queued: one that fails is reported here */
		printf("  record %lld: %s: %s%s\n", (long long)c->id, to,
		       sr == 0 ? "sent" : sr > 0 ? "refused: " : "failed (not retried): ",
		       sr == 0 ? "" : res);
	}
}

/* alignd-report --failures: the failure reports of the messages stored
 * since the last run (the store is the spool) */
static int run_failures(struct tool *t)
{
	if (!t->cfg->failure_reports) {
		fprintf(stderr, "alignd-report: failure_reports = no: nothing to do\n");
		return EX_OK_;
	}
	char err[512];
	struct store *st = NULL;
	int rc = report_open_store(t->cfg, &st, err, sizeof(err));
	if (rc != EX_OK_)
		return rc;
	int64_t now = (int64_t)time(NULL), after_id, when;
	cursor_read(t, &after_id, &when);
	/* a first run, or one after a long pause, looks back one hour at most:
	 * a failure report is news, not history */
	int64_t since = when > now - LIM_FAILURE_LOOKBACK_S ? when - 60 : now - LIM_FAILURE_LOOKBACK_S;
	if (after_id == 0)
		after_id = -1;
	struct fscan f = { .after_id = after_id, .last_id = after_id,
	                   .c = calloc(LIM_FAILURE_BATCH, sizeof(struct fcase)),
	                   .cap = LIM_FAILURE_BATCH };
	if (!f.c) {
		store_close(&st);
		fprintf(stderr, "alignd-report: out of memory\n");
		return EX_UNAVAILABLE_;
	}
	struct store_query q = { .since = since, .until = now + 1 };
	if (store_query(st, &q, on_failure_record, &f, err, sizeof(err)) < 0) {
		fprintf(stderr, "alignd-report: reading the history store: %s\n", err);
		rc = EX_UNAVAILABLE_;
	}
	store_close(&st);
	unsigned sent = 0;
	if (rc == EX_OK_ && !f.nomem) {
		t->meta = (struct rpt_meta){
			.org_name = t->org, .email = t->email, .receiver = t->receiver,
			.generator = "alignd " ALIGND_VERSION,
		};
		printf("alignd-report: %zu failure reports may be due\n", f.n);
		if (f.n && (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 ||
		            open_dns(t, err, sizeof(err)) < 0)) {
			fprintf(stderr, "alignd-report: DNS: %s\n", err);
			rc = EX_UNAVAILABLE_;
		}
		for (size_t i = 0; rc == EX_OK_ && i < f.n; i++) {
			failure_one(t, &f.c[i], &sent);
			/* a crash sends at most the last message's reports again */
			if (!t->dry_run && cursor_write(t, f.c[i].id, now) < 0)
				rc = EX_UNAVAILABLE_;
		}
		if (rc == EX_OK_ && !t->dry_run && f.last_id > 0 && cursor_write(t, f.last_id, now) < 0)
			rc = EX_UNAVAILABLE_;
		printf("alignd-report: %u failure reports sent\n", sent);
	} else if (f.nomem) {
		fprintf(stderr, "alignd-report: out of memory\n");
		rc = EX_UNAVAILABLE_;
	}
	for (size_t i = 0; i < f.n; i++)
		fcase_free(&f.c[i]);
	free(f.c);
	if (rc == EX_OK_ && t->temp_failures)
		rc = EX_TEMPFAIL_;
	return rc;
}

/* --since: "7d", "12h", "30m" before now, or a UTC day "YYYY-MM-DD". */
int report_parse_since(const char *v, int64_t now, int64_t *since_r)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (end != v && errno == 0 && end[0] && !end[1] && n <= 100000) {
		int64_t unit = end[0] == 'd' ? 86400 : end[0] == 'h' ? 3600 : end[0] == 'm' ? 60 : 0;
		if (unit) {
			*since_r = now - (int64_t)n * unit;
			return 0;
		}
	}
	return parse_day(v, since_r);
}

int report_open_store(const struct srv_config *cfg, struct store **st, char *err, size_t errlen)
{
	if (!*cfg->history || strcmp(cfg->history, "off") == 0) {
		fprintf(stderr, "alignd-report: history = off: there is nothing to report from\n");
		return EX_CONFIG_;
	}
	if (store_open(cfg->history, st, err, errlen) < 0) {
		fprintf(stderr, "alignd-report: history store: %s\n", err);
		return EX_UNAVAILABLE_;
	}
	return EX_OK_;
}

/* alignd-report --summary: the store's failing sources per author domain */
static int run_summary(struct tool *t, const char *since_text)
{
	int64_t now = (int64_t)time(NULL), since;
	if (report_parse_since(since_text ? since_text : "7d", now, &since) < 0) {
		fprintf(stderr, "alignd-report: --since wants Nd, Nh, Nm or YYYY-MM-DD, not '%s'\n",
		        since_text);
		return EX_USAGE_;
	}
	char err[512];
	struct store *st = NULL;
	int rc = report_open_store(t->cfg, &st, err, sizeof(err));
	if (rc != EX_OK_)
		return rc;
	struct store_query q = { .since = since, .until = now + 1, .domain = NULL };
	if (store_query(st, &q, on_record, t, err, sizeof(err)) < 0) {
		fprintf(stderr, "alignd-report: reading the history store: %s\n", err);
		store_close(&st);
		return EX_UNAVAILABLE_;
	}
	store_close(&st);
	struct buf out;
	buf_init(&out, 0);
	rc = t->json ? rpt_summary_json(t->sum, since, now + 1, t->top, &out)
	             : rpt_summary_text(t->sum, since, now + 1, t->top, &out);
	if (rc < 0) {
		fprintf(stderr, "alignd-report: out of memory\n");
		buf_free(&out);
		return EX_UNAVAILABLE_;
	}
	fwrite(out.data, 1, out.len, stdout);
	buf_free(&out);
	return EX_OK_;
}

int report_load_config(const char *config, const char *const *sets, size_t nsets,
                       struct srv_config **cfg_r)
{
	char err[512];
	struct srv_config *c = config ? cfg_load(config, err, sizeof(err)) : cfg_new_default();
	*cfg_r = c;
	if (!c) {
		fprintf(stderr, "alignd-report: %s\n", config ? err : "out of memory");
		return EX_CONFIG_;
	}
	for (size_t i = 0; i < nsets; i++) {
		char key[128];
		const char *eq = strchr(sets[i], '=');
		if (!eq || (size_t)(eq - sets[i]) >= sizeof(key)) {
			fprintf(stderr, "alignd-report: --set wants KEY=VALUE\n");
			return EX_USAGE_;
		}
		snprintf(key, sizeof(key), "%.*s", (int)(eq - sets[i]), sets[i]);
		if (cfg_set(c, key, eq + 1, err, sizeof(err)) < 0) {
			fprintf(stderr, "alignd-report: %s\n", err);
			return EX_CONFIG_;
		}
	}
	if (cfg_finalize(c, err, sizeof(err)) < 0) {
		fprintf(stderr, "alignd-report: %s\n", err);
		return EX_CONFIG_;
	}
	return EX_OK_;
}

/* Everything after the command line; main() frees what it leaves behind. */
static int run(struct tool *t, const char *config, const char *const *sets, size_t nsets,
               const char *day, const char *since)
{
	char err[512];
	int lrc = report_load_config(config, sets, nsets, &t->cfg);
	if (lrc != EX_OK_)
		return lrc;
	if (t->sum)
		return run_summary(t, since);

	int64_t begin;
	if (day) {
		if (parse_day(day, &begin) < 0) {
			fprintf(stderr, "alignd-report: --day wants YYYY-MM-DD, not '%s'\n", day);
			return EX_USAGE_;
		}
	} else {
		begin = ((int64_t)time(NULL) / 86400 - 1) * 86400;   /* yesterday, UTC */
	}
	const char *asid = cfg_authserv_id(t->cfg);
	snprintf(t->receiver, sizeof(t->receiver), "%s", asid);
	snprintf(t->org, sizeof(t->org), "%s", *t->cfg->report_org_name ? t->cfg->report_org_name : asid);
	if (*t->cfg->report_email)
		snprintf(t->email, sizeof(t->email), "%s", t->cfg->report_email);
	else
		snprintf(t->email, sizeof(t->email), "dmarc-noreply@%s", asid);
	if (!t->out_dir) {
		static char dir[4096];
		snprintf(dir, sizeof(dir), "%s/out", t->cfg->report_dir);
		t->out_dir = dir;
	}
	if (t->status)
		return run_status(t);
	if (t->failures) {
		int frc = run_failures(t);
		close_dns(t);
		return frc;
	}

	struct store *st = NULL;
	int rc = report_open_store(t->cfg, &st, err, sizeof(err));
	if (rc != EX_OK_)
		return rc;
	rc = report_day(t, st, begin, day ? day : "yesterday");
	if (rc == EX_OK_ && !day) {
		/* earlier days with a report that failed for now */
		int64_t days[LIM_REPORT_RETRY_DAYS];
		size_t nd = ledger_retry_days(t, begin, days, LIM_REPORT_RETRY_DAYS);
		for (size_t i = 0; i < nd && rc == EX_OK_; i++) {
			char label[32];
			time_t b = (time_t)days[i];
			struct tm tm;
			gmtime_r(&b, &tm);
			strftime(label, sizeof(label), "%Y-%m-%d (retry)", &tm);
			rc = report_day(t, st, days[i], label);
		}
	}
	store_close(&st);
	close_dns(t);
	if (rc == EX_OK_ && t->temp_failures)
		rc = EX_TEMPFAIL_;
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "set", required_argument, NULL, 'S' },
		{ "day", required_argument, NULL, 'd' },
		{ "domain", required_argument, NULL, 'D' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "out", required_argument, NULL, 'o' },
		{ "summary", no_argument, NULL, 's' },
		{ "status", no_argument, NULL, 'T' },
		{ "failures", no_argument, NULL, 'F' },
		{ "since", required_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "top", required_argument, NULL, 't' },
		{ "what-if", no_argument, NULL, 'W' },
		{ "proposed", required_argument, NULL, 'P' },
		{ "as-policy", required_argument, NULL, 'A' },
		{ "chart", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *day = NULL, *since = NULL;
	const char *proposed = NULL, *as_policy = NULL, *chart = NULL;
	int summary = 0, whatif = 0;
	const char *sets[64];
	size_t nsets = 0;
	struct tool t;
	memset(&t, 0, sizeof(t));
	int c;
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'S':
			if (nsets == sizeof(sets) / sizeof(sets[0])) {
				fprintf(stderr, "alignd-report: too many --set\n");
				return EX_USAGE_;
			}
			sets[nsets++] = optarg;
			break;
		case 'd': day = optarg; break;
		case 'D': t.only_domain = optarg; break;
		case 'n': t.dry_run = 1; break;
		case 'o': t.out_dir = optarg; break;
		case 's': summary = 1; break;
		case 'T': t.status = 1; break;
		case 'F': t.failures = 1; break;
		case 'a': since = optarg; break;
		case 'W': whatif = 1; break;
		case 'P': proposed = optarg; break;
		case 'A': as_policy = optarg; break;
		case 'C': chart = optarg; break;
		case 'j': t.json = 1; break;
		case 't': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (end == optarg || *end || v > 100000) {
				fprintf(stderr, "alignd-report: --top wants a number\n");
				return EX_USAGE_;
			}
			t.top = v;
			break;
		}
		case 'h': usage(stdout); return EX_OK_;
		default: usage(stderr); return EX_USAGE_;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return EX_USAGE_;
	}
	if (!whatif && (proposed || as_policy || chart)) {
		fprintf(stderr, "alignd-report: --proposed, --as-policy and --chart go with --what-if\n");
		return EX_USAGE_;
	}
	if (whatif) {
		if (summary || t.status || t.failures || day || t.dry_run || t.out_dir) {
			fprintf(stderr, "alignd-report: --what-if reads the store and sends nothing: "
			        "no --summary, --status, --failures, --day, --dry-run or --out\n");
			return EX_USAGE_;
		}
		struct whatif_opts wo = {
			.config = config, .proposed = proposed, .sets = sets, .nsets = nsets,
			.since = since, .domain = t.only_domain, .as_policy = as_policy,
			.chart = chart, .json = t.json, .top = t.top ? t.top : 10,
		};
		return report_whatif(&wo);
	}
	if (!summary && (since || t.json || t.top)) {
		fprintf(stderr, "alignd-report: --since, --json and --top go with --summary "
		        "or --what-if\n");
		return EX_USAGE_;
	}
	if (t.failures && (summary || t.status || day || t.out_dir)) {
		fprintf(stderr, "alignd-report: --failures goes alone (with --dry-run at most)\n");
		return EX_USAGE_;
	}
	if (t.status && (summary || day || t.dry_run || t.out_dir)) {
		fprintf(stderr, "alignd-report: --status only reads the ledger\n");
		return EX_USAGE_;
	}
	if (summary && (day || t.dry_run || t.out_dir)) {
		fprintf(stderr, "alignd-report: --summary reads the store and sends nothing: "
		        "no --day, --dry-run or --out\n");
		return EX_USAGE_;
	}
	if (summary) {
		if (!t.top)
			t.top = 10;
		if (!(t.sum = rpt_summary_new())) {
			fprintf(stderr, "alignd-report: out of memory\n");
			return EX_UNAVAILABLE_;
		}
	}
	int rc = run(&t, config, sets, nsets, day, since);
	rpt_summary_free(&t.sum);
	clear_doms(&t);
	cfg_unref(&t.cfg);
	return rc;
}
