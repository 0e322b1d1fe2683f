/* One shared dkv_lib used from 4 threads at once: every thread verifies
 * every message many times and must get exactly the results that a single
 * thread got first. Also run in the ASan+UBSan build.
 * Usage: dkim_threads <conformance/dkim dir>
 *        dkim_threads <dir of gen_cases.py> <now> */
#include "tests/dkim/dkvtest.h"

#include <pthread.h>
#include <stdint.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NTHREADS 4
#define ROUNDS   6
#define MAXMSG   128

struct item {
	char *data;
	size_t len;
	char name[256];
	struct dkv_result want;
};

static struct item items[MAXMSG];
static size_t nitems;
static struct dkv_lib *lib;
static struct dkv_keyset *ks;

static int add_dir(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return -1;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && nitems < MAXMSG) {
		size_t nl = strlen(e->d_name), sl = suffix ? strlen(suffix) : 0;
		if (e->d_name[0] == '.' || nl < sl ||
		    (suffix && strcmp(e->d_name + nl - sl, suffix) != 0))
			continue;
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		struct item *it = &items[nitems];
		it->data = dkvt_read_file(path, &it->len);
		if (it->data == NULL)
			continue;
		snprintf(it->name, sizeof it->name, "%s", e->d_name);
		nitems++;
	}
	closedir(d);
	return 0;
}

static int same(const struct dkv_result *a, const struct dkv_result *b)
{
	if (a->n != b->n || a->best != b->best || a->not_evaluated != b->not_evaluated)
		return 0;
	for (size_t k = 0; k < a->n; k++) {
		const struct dkv_sig *x = &a->sigs[k], *y = &b->sigs[k];
		if (x->res != y->res || strcmp(x->reason, y->reason) != 0 ||
		    x->key_bits != y->key_bits || strcmp(x->d, y->d) != 0 ||
		    x->bh_ok != y->bh_ok || x->sig_ok != y->sig_ok)
			return 0;
	}
	return 1;
}

static void *worker(void *arg)
{
	size_t id = (size_t)(uintptr_t)arg;
	size_t bad = 0;
	for (int r = 0; r < ROUNDS; r++)
		for (size_t i = 0; i < nitems; i++) {
			/* each thread walks the list from a different place */
			struct item *it = &items[(i + id * 7) % nitems];
			struct dkv_result got;
			if (dkv_verify(lib, it->data, it->len, ks, &got, NULL) != 0 ||
			    !same(&got, &it->want)) {
				printf("FAIL thread %zu: %s differs\n", id, it->name);
				bad++;
			}
			dkv_result_free(&got);
		}
	return (void *)(uintptr_t)bad;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s <conformance/dkim dir>\n", argv[0]);
		return 2;
	}
	char path[4096], err[256];
	struct dkv_opts o = { .engine = dkvt_engine() };
	ks = dkv_keyset_new();
	if (argc > 2) {
		/* messages signed by gen_cases.py for the clock it gives */
		o.fixed_time = strtoull(argv[2], NULL, 10);
		snprintf(path, sizeof path, "%s/keys.txt", argv[1]);
		if (dkvt_load_keytable(ks, path) <= 0) {
			printf("FAIL: cannot load %s\n", path);
			return 1;
		}
		add_dir(argv[1], ".eml");
	} else {
		snprintf(path, sizeof path, "%s/mail-dkim/FAKE_DNS.dat", argv[1]);
		int a = dkvt_load_keytable(ks, path);
		snprintf(path, sizeof path, "%s/rfc8463/keys.txt", argv[1]);
		int b = dkvt_load_keytable(ks, path);
		snprintf(path, sizeof path, "%s/authentication_milter/zonefile", argv[1]);
		int c = dkvt_load_zonefile(ks, path);
		if (a <= 0 || b <= 0 || c <= 0) {
			printf("FAIL: cannot load the keys under %s\n", argv[1]);
			return 1;
		}
		snprintf(path, sizeof path, "%s/mail-dkim/corpus", argv[1]);
		add_dir(path, NULL);
		snprintf(path, sizeof path, "%s/authentication_milter/messages", argv[1]);
		add_dir(path, NULL);
		snprintf(path, sizeof path, "%s/rfc8463", argv[1]);
		add_dir(path, ".msg");
	}
	if (nitems < 10) {
		printf("FAIL: only %zu messages found under %s\n", nitems, argv[1]);
		return 1;
	}
	lib = dkv_lib_new(&o, err, sizeof err);
	if (lib == NULL) {
		printf("FAIL dkv_lib_new: %s\n", err);
		return 1;
	}
	size_t passes = 0;
	for (size_t i = 0; i < nitems; i++) {
		if (dkv_verify(lib, items[i].data, items[i].len, ks, &items[i].want, NULL) != 0) {
			printf("FAIL %s: dkv_verify failed\n", items[i].name);
			return 1;
		}
		passes += items[i].want.best == AUTH_PASS;
	}
	pthread_t th[NTHREADS];
	for (size_t k = 0; k < NTHREADS; k++)
		if (pthread_create(&th[k], NULL, worker, (void *)(uintptr_t)k) != 0) {
			printf("FAIL pthread_create\n");
			return 1;
		}
	size_t bad = 0;
	for (size_t k = 0; k < NTHREADS; k++) {
		void *r;
		pthread_join(th[k], &r);
		bad += (size_t)(uintptr_t)r;
	}
	printf("dkim threads: %d threads x %d rounds x %zu messages (%zu passing), "
	       "%zu differences\n", NTHREADS, ROUNDS, nitems, passes, bad);
	for (size_t i = 0; i < nitems; i++) {
		dkv_result_free(&items[i].want);
		free(items[i].data);
	}
	dkv_lib_free(&lib);
	dkv_keyset_free(&ks);
	return bad || passes < 5 ? 1 : 0;
}
