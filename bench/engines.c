/* The two DKIM engines on the bench corpus, same keys, same threads, same
 * run: messages per second through dkv_verify() for each, how many
 * signatures they agree on (the oracle over the bench corpus), the native
 * key cache's hit rate, and the body canonicalisation + SHA-256 rate of
 * checks/dkim/dkc (simple and relaxed, MB/s per core).
 *   engines INDEX.tsv KEYS.tsv THREADS SECONDS
 * Output: JSON objects on stdout; exit 1 when the engines disagree. */
#include "checks/dkim/dkc.h"
#include "checks/dkim/dkv.h"
#include "checks/msg.h"
#include "corpus_io.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct m_item *items;
static size_t n_items;
static struct dkv_keyset *keyset;
static volatile int stop_flag;

static void load_keys(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "engines: cannot open %s\n", path);
		exit(2);
	}
	keyset = dkv_keyset_new();
	static char line[16384];
	while (keyset && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\r\n")] = '\0';
		char *tab = strchr(line, '\t');
		if (!tab)
			continue;
		*tab = '\0';
		dkv_keyset_put_text(keyset, line, DNSQ_OK, DNSQ_SEC_SECURE, tab + 1);
	}
	fclose(f);
}

struct targ {
	struct dkv_lib *lib;
	size_t start;
	unsigned long msgs;
};

static void *worker(void *arg)
{
	struct targ *t = arg;
	size_t i = t->start;
	while (!stop_flag) {
		const struct m_item *it = &items[i++ % n_items];
		struct dkv_result r;
		dkv_verify(t->lib, it->data, it->len, keyset, &r, NULL);
		dkv_result_free(&r);
		t->msgs++;
	}
	return NULL;
}

static double rate(struct dkv_lib *lib, int threads, double secs)
{
	pthread_t th[64];
	struct targ ta[64];
	stop_flag = 0;
	double t0 = corpus_now_s();
	for (int i = 0; i < threads; i++) {
		ta[i] = (struct targ){ lib, (size_t)i * 997, 0 };
		pthread_create(&th[i], NULL, worker, &ta[i]);
	}
	struct timespec ts = { (time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9) };
	nanosleep(&ts, NULL);
	stop_flag = 1;
	unsigned long total = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		total += ta[i].msgs;
	}
	return (double)total / (corpus_now_s() - t0);
}

/* canonicalise + hash every body of the corpus, one thread */
static double canon_rate(int relaxed, double secs)
{
	uint64_t bytes = 0;
	double t0 = corpus_now_s(), t1 = t0;
	size_t i = 0;
	while (t1 - t0 < secs) {
		const struct m_item *it = &items[i++ % n_items];
		struct msg m;
		if (msg_parse(it->data, it->len, &m) != MSG_OK)
			continue;
		unsigned char d[DKC_DIGEST_LEN];
		uint64_t cl;
		dkc_body_hash(m.body, m.body_len, relaxed, -1, d, &cl);
		bytes += m.body_len;
		msg_free(&m);
		t1 = corpus_now_s();
	}
	return (double)bytes / (t1 - t0) / 1e6;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: engines INDEX.tsv KEYS.tsv THREADS SECONDS\n");
		return 2;
	}
	items = corpus_load(argv[1], &n_items);
	load_keys(argv[2]);
	int threads = atoi(argv[3]);
	double secs = atof(argv[4]);
	if (!items || !keyset || threads < 1 || threads > 64 || secs <= 0)
		return 2;
	char err[256];
	struct dkv_opts on = { .engine = DKV_ENGINE_NATIVE };
	struct dkv_opts oo = { .engine = DKV_ENGINE_LIBOPENDKIM };
	struct dkv_lib *nat = dkv_lib_new(&on, err, sizeof err);
	struct dkv_lib *ode = dkv_lib_new(&oo, err, sizeof err);
	if (!nat || !ode) {
		fprintf(stderr, "engines: %s\n", err);
		return 1;
	}
	/* agreement first: every signature of every message, both engines */
	unsigned long sigs = 0, agree = 0, differ = 0, passes = 0;
	for (size_t i = 0; i < n_items; i++) {
		struct dkv_result a, b;
		dkv_verify(nat, items[i].data, items[i].len, keyset, &a, NULL);
		dkv_verify(ode, items[i].data, items[i].len, keyset, &b, NULL);
		for (size_t k = 0; k < a.n && k < b.n; k++) {
			sigs++;
			if (a.sigs[k].res == b.sigs[k].res)
				agree++;
			else {
				differ++;
				if (differ <= 10)
					fprintf(stderr, "engines: message %zu sig %zu: native %s (%s), "
					        "libopendkim %s (%s)\n", i, k + 1,
					        auth_res_name(a.sigs[k].res), a.sigs[k].reason,
					        auth_res_name(b.sigs[k].res), b.sigs[k].reason);
			}
			passes += a.sigs[k].res == AUTH_PASS;
		}
		if (a.n != b.n)
			differ++;
		dkv_result_free(&a);
		dkv_result_free(&b);
	}
	double ode_rate = rate(ode, threads, secs);
	double nat_rate = rate(nat, threads, secs);
	uint64_t hits, misses;
	size_t entries;
	dkv_lib_key_stats(nat, &hits, &misses, &entries);
	printf("{\"bench\":\"dkim_engines\",\"threads\":%d,\"messages\":%zu,"
	       "\"libopendkim_msgs_s\":%.0f,\"native_msgs_s\":%.0f,\"speedup\":%.2f,"
	       "\"signatures\":%lu,\"signatures_agree\":%lu,\"signatures_differ\":%lu,"
	       "\"passes\":%lu,\"key_cache_hits\":%llu,\"key_cache_misses\":%llu,"
	       "\"key_cache_entries\":%zu}\n", threads, n_items, ode_rate, nat_rate,
	       nat_rate / ode_rate, sigs, agree, differ, passes,
	       (unsigned long long)hits, (unsigned long long)misses, entries);
	if (threads == 1)
		printf("{\"bench\":\"dkim_canon\",\"simple_mb_s\":%.0f,\"relaxed_mb_s\":%.0f}\n",
		       canon_rate(0, secs / 2), canon_rate(1, secs / 2));
	dkv_lib_free(&nat);
	dkv_lib_free(&ode);
	dkv_keyset_free(&keyset);
	return differ ? 1 : 0;
}
