/* An allocation-failure injector for tests, loaded with LD_PRELOAD into
 * the real daemon.
 *
 * While the file named by FAILALLOC_CTL exists, every FAILALLOC_EVERY-th
 * allocation (malloc, calloc, realloc, strdup, strndup, posix_memalign)
 * made directly by code of the main executable returns NULL. Allocations
 * made inside shared libraries (libuv, libunbound, OpenSSL, libc itself)
 * are left alone: what they do without memory is theirs, and what the
 * daemon does when its own allocation fails is what this tests. The
 * counter is deterministic, so a failing run repeats with the same
 * FAILALLOC_EVERY and the same requests.
 *
 * FAILALLOC_COUNT names a file where the number of failed allocations is
 * written whenever the control file is found gone, so that a test can
 * check that failures were injected at all.
 *
 * Not for sanitizer builds: their runtime must own malloc. */
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHECK_INTERVAL_NS 20000000ull   /* how often the control file is looked at */

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static int (*real_memalign)(void **, size_t, size_t);

static uintptr_t text_lo, text_hi;   /* the main executable's code */
static uintptr_t load_base;          /* for addr2line offsets */
static int trace;                    /* FAILALLOC_TRACE: log each failure */
static const char *ctl_path, *count_path;
static unsigned long every;
static atomic_ulong counter, failed;
static atomic_int armed;
static atomic_ullong next_check_ns;

/* dlsym() may allocate before real_calloc is known */
static char boot_heap[4096];
static size_t boot_used;

static int find_text(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	(void)data;
	/* the first object is the main program */
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *p = &info->dlpi_phdr[i];
		if (p->p_type == PT_LOAD && (p->p_flags & PF_X)) {
			load_base = info->dlpi_addr;
			text_lo = info->dlpi_addr + p->p_vaddr;
			text_hi = text_lo + p->p_memsz;
			break;
		}
	}
	return 1;
}

static void resolve(void)
{
	static int resolving;
	if (resolving)
		return;
	resolving = 1;
	real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
	real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
	real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	real_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
	resolving = 0;
}

/* Libraries' constructors may allocate before this one runs: the real
 * functions are also resolved on first use. */
__attribute__((constructor)) static void failalloc_init(void)
{
	if (!real_malloc)
		resolve();
	dl_iterate_phdr(find_text, NULL);
	ctl_path = getenv("FAILALLOC_CTL");
	count_path = getenv("FAILALLOC_COUNT");
	const char *e = getenv("FAILALLOC_EVERY");
	every = e ? strtoul(e, NULL, 10) : 0;
	trace = getenv("FAILALLOC_TRACE") != NULL;
}

static void write_count(void)
{
	if (!count_path)
		return;
	char buf[32];
	int n = snprintf(buf, sizeof buf, "%lu\n", atomic_load(&failed));
	int fd = open(count_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		if (write(fd, buf, (size_t)n) != n) {
			/* the test reads a short file as no count */
		}
		close(fd);
	}
}

static int should_fail(void *caller)
{
	uintptr_t pc = (uintptr_t)caller;
	if (!ctl_path || every == 0 || pc < text_lo || pc >= text_hi)
		return 0;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	unsigned long long now = (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
	if (now >= atomic_load(&next_check_ns)) {
		atomic_store(&next_check_ns, now + CHECK_INTERVAL_NS);
		struct stat st;
		int on = stat(ctl_path, &st) == 0;
		if (atomic_exchange(&armed, on) && !on)
			write_count();
	}
	if (!atomic_load(&armed))
		return 0;
	if (atomic_fetch_add(&counter, 1) % every != every - 1)
		return 0;
	unsigned long k = atomic_fetch_add(&failed, 1) + 1;
	if (trace) {
		/* addr2line -e EXECUTABLE OFFSET names the caller */
		char buf[96];
		int n = snprintf(buf, sizeof buf, "failalloc: failure %lu at +0x%lx\n", k,
		                 (unsigned long)(pc - load_base));
		if (write(2, buf, (size_t)n) != n) {
			/* tracing is best effort */
		}
	}
	return 1;
}

void *malloc(size_t n)
{
	if (!real_malloc)
		resolve();
	if (!real_malloc) {
		/* only dlsym() calls this early */
		n = (n + 15) & ~(size_t)15;
		if (boot_used + n > sizeof boot_heap)
			return NULL;
		void *p = boot_heap + boot_used;
		boot_used += n;
		return p;
	}
	if (should_fail(__builtin_return_address(0)))
		return NULL;
	return real_malloc(n);
}

void *calloc(size_t n, size_t m)
{
	if (!real_calloc)
		resolve();
	if (!real_calloc) {
		if (m && n > SIZE_MAX / m)
			return NULL;
		return malloc(n * m);   /* the boot heap is zeroed */
	}
	if (should_fail(__builtin_return_address(0)))
		return NULL;
	return real_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
	if (!real_realloc)
		resolve();
	if ((char *)p >= boot_heap && (char *)p < boot_heap + sizeof boot_heap) {
		void *q = malloc(n);
		size_t have = (size_t)(boot_heap + sizeof boot_heap - (char *)p);
		if (q)
			memcpy(q, p, n < have ? n : have);
		return q;
	}
	if (should_fail(__builtin_return_address(0)))
		return NULL;
	return real_realloc(p, n);
}

void free(void *p)
{
	static void (*real_free)(void *);
	if ((char *)p >= boot_heap && (char *)p < boot_heap + sizeof boot_heap)
		return;
	if (!real_free)
		real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
	real_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
	if (!real_memalign)
		resolve();
	if (should_fail(__builtin_return_address(0)))
		return 12;   /* ENOMEM */
	return real_memalign(out, align, n);
}

char *strdup(const char *s)
{
	if (should_fail(__builtin_return_address(0)))
		return NULL;
	size_t n = strlen(s) + 1;
	char *d = malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

char *strndup(const char *s, size_t max)
{
	if (should_fail(__builtin_return_address(0)))
		return NULL;
	size_t n = strnlen(s, max);
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}
