/* Benchmark corpus loading (see corpus_io.h). */
#include "corpus_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double corpus_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *slurp(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
	if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(b);
		return NULL;
	}
	fclose(f);
	b[n] = '\0';
	*len_r = (size_t)n;
	return b;
}

struct m_item *corpus_load(const char *index, size_t *n_r)
{
	FILE *f = fopen(index, "r");
	if (!f) {
		fprintf(stderr, "bench: cannot open %s\n", index);
		exit(2);
	}
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", index);
	char *sl = strrchr(dir, '/');
	if (sl)
		*sl = '\0';
	size_t cap = 256, n = 0;
	struct m_item *items = calloc(cap, sizeof *items);
	char line[4096];
	while (items && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\r\n")] = '\0';
		char name[1024];
		struct m_item it;
		memset(&it, 0, sizeof it);
		if (sscanf(line, "%1023[^\t]\t%63[^\t]\t%255[^\t]\t%255[^\t]\t%255s",
		           name, it.ip, it.helo, it.from, it.rcpt) < 1)
			continue;
		char path[4096 + 1024 + 2];
		snprintf(path, sizeof path, "%s/%s", dir, name);
		it.data = slurp(path, &it.len);
		if (!it.data)
			continue;
		if (n == cap) {
			cap *= 2;
			struct m_item *ni = realloc(items, cap * sizeof *items);
			if (!ni) {
				free(items);
				items = NULL;
				break;
			}
			items = ni;
		}
		items[n++] = it;
	}
	fclose(f);
	if (!items || n == 0) {
		fprintf(stderr, "bench: empty corpus %s\n", index);
		exit(2);
	}
	*n_r = n;
	return items;
}
