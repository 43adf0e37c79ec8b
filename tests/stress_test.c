// SPDX-License-Identifier: GPL-2.0
/*
 * Randomized stress: nothing may ever be lost or corrupted, whatever the
 * scanner does while the processes it merges change their memory under it.
 *
 * NWORKERS processes each hold NPAGES pages in three kinds of region: one
 * MADV_NOHUGEPAGE, one MADV_HUGEPAGE and 2 MiB aligned (THPs the engine
 * must split), one with no advice. Odd workers opt in with
 * prctl(PR_SET_MEMORY_MERGE), even ones with MADV_MERGEABLE. Most pages
 * hold the same content in every worker; the rest are zero-filled (written
 * or never touched), a few "popular" contents, or unique. Each page's
 * expected content (a seed, see rksm_fill_page(), plus at most one patched
 * byte) and its address live in the worker's private, non-mergeable book.
 *
 * NTHREADS threads per worker own disjoint chunks of pages and do random
 * operations on them: full-page and one-byte writes, reads that verify,
 * writes through /proc/self/mem, mprotect(PROT_READ or PROT_NONE) and
 * back, MADV_DONTNEED (zeroes), MADV_UNMERGEABLE and MADV_MERGEABLE again,
 * munmap/mmap of a subrange with new contents, mremap of a subrange to a
 * new address (sometimes MREMAP_DONTUNMAP), MADV_COLLAPSE, mlock or
 * mlock2(MLOCK_ONFAULT) and munlock, prctl(PR_SET_MEMORY_MERGE) 0 and 1,
 * and fork() of a child that checks what it inherited, writes some pages
 * and exits (taken with the other threads between operations, so the
 * child's book is consistent).
 *
 * Meanwhile the test toggles run 1/0/2 at random intervals (after each
 * run=2 nothing may be merged), changes max_page_sharing only right after
 * a run=2, compacts memory now and then, runs khugepaged fast, and flips
 * use_zero_pages, smart_scan, sleep_millisecs (0 or 1) and pages_to_scan
 * from phase to phase. At the end every worker verifies every page, with
 * the engine merging; then run=2, which must leave pages_shared and
 * pages_sharing at 0 and no two non-zero pages sharing a PFN, and every
 * worker verifies every page again. The engine must have merged
 * (pages_sharing > 0, and PFNs shared at the end), so the test cannot
 * pass vacuously.
 *
 * Variants: "mixed" does all of the above; "merged" keeps the engine
 * merging (max_page_sharing 2, no run=2 before the end).
 *
 * The seed is printed; RKSM_STRESS_SEED=N repeats a run's operations (not
 * their timing), e.g. scripts/vm-run -d build/guest -- env
 * RKSM_STRESS_SEED=N ./stress_test. RKSM_STRESS_SECS sets the stress time
 * (beyond ~60 s, build with a larger -DSTRESS_TIMEOUT).
 *
 * Runs against rksm, or against KSM with RKSM_SYSFS=/sys/kernel/mm/ksm.
 */
#include <pthread.h>
#include <stdarg.h>
#include <sys/syscall.h>

#include "kselftest_harness.h"
#include "rksm_util.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define NWORKERS 4
#define NTHREADS 3
#define MAX_KIDS 2		/* fork children alive per thread */
#define HPAGE (2UL << 20)
#define HPAGE_PAGES (HPAGE / PAGE_SIZE)
#define MAX_RANGE 64		/* pages in a partial range */

/* ---- layout: regions, split into chunks that one thread each owns ---- */

struct region_def {
	const char *name;
	int pages, chunk_pages, advice;	/* advice 0: none */
	bool align;			/* 2 MiB aligned */
};

static const struct region_def regions[] = {
	{ "nohuge", 256, 32, MADV_NOHUGEPAGE, false },
	{ "huge", 1024, 512, MADV_HUGEPAGE, true },
	{ "plain", 256, 32, 0, false },
};
#define NR_REGIONS 3
#define NPAGES (256 + 1024 + 256)
#define NCHUNKS (8 + 2 + 8)

struct chunk {
	int first, npages, region;
};

static struct chunk chunks[NCHUNKS];
static unsigned char page_chunk[NPAGES];

static void layout_init(void)
{
	int c = 0, p = 0;

	for (int r = 0; r < NR_REGIONS; r++)
		for (int k = 0; k < regions[r].pages; k += regions[r].chunk_pages) {
			chunks[c] = (struct chunk){ p, regions[r].chunk_pages, r };
			for (int i = 0; i < regions[r].chunk_pages; i++)
				page_chunk[p + i] = c;
			p += regions[r].chunk_pages;
			c++;
		}
}

/* ---- shared between the test and its workers ---- */

enum op {
	OP_WRITE, OP_BYTE, OP_READ, OP_READ_CHUNK, OP_MEMWRITE, OP_MPROTECT,
	OP_DONTNEED, OP_UNMERGE, OP_REFILL, OP_MREMAP, OP_FORK, OP_PRCTL,
	OP_SLEEP, OP_COLLAPSE, OP_MLOCK, NR_OPS
};

static const char *const op_names[NR_OPS] = {
	"write", "byte", "read", "read_chunk", "memwrite", "mprotect",
	"dontneed", "unmerge", "refill", "mremap", "fork", "prctl", "sleep",
	"collapse", "mlock",
};

/* Per mille; OP_PRCTL only for prctl workers (else a read). */
static const int op_weight[NR_OPS] = {
	260, 100, 240, 40, 60, 40, 40, 40, 40, 40, 5, 5, 70, 10, 10,
};

enum { W_INIT, W_READY, W_VERIFIED, W_DONE };

struct wshared {
	volatile int state;
	volatile long bad, forks, op_fail, collapsed;
	volatile long ops[NR_OPS];
	/* PFN of each page with non-zero expected content, else 0. */
	uint64_t pfn_final[NPAGES], pfn_unmerged[NPAGES];
};

struct ctl {
	volatile int go, stop, reverify, abort;
	uint64_t seed;
	struct wshared w[NWORKERS];
};

/* ---- PRNG ---- */

static inline uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline unsigned int rnd(uint64_t *s, unsigned int n)
{
	return n ? rng_next(s) % n : 0;
}

/* ---- a worker's state (each worker process has its own copy) ---- */

struct pst {
	uint64_t seed, prev;	/* content now, and before the last change */
	uint16_t poff;		/* patched byte, if patched */
	uint8_t pval, patched;
};

struct book {
	struct pst st[NPAGES];
	char *addr[NPAGES];
};

struct thr {
	int t;
	uint64_t rng, uniq;
	pid_t kids[MAX_KIDS];
	int nkids;
	pthread_t tid;
	char buf[PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));
};

static struct {
	int id;			/* -1: the test itself */
	bool prctl, child;
	struct ctl *ctl;
	struct wshared *sh;
	struct book *b;
	int memfd;
	pthread_rwlock_t forklock;
	long bad;
	int logged;
} W = { .id = -1 };

static struct thr thr[NTHREADS];

/* One line to stdout with write(2): safe in threads and fork children. */
static void __attribute__((format(printf, 1, 2))) say(const char *fmt, ...)
{
	char buf[768];
	va_list ap;
	int n;

	if (W.id < 0)
		n = snprintf(buf, sizeof(buf), "# [test] ");
	else
		n = snprintf(buf, sizeof(buf), "# [w%d%s %d] ", W.id,
			     W.child ? " child" : "", getpid());
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(1, buf, n) < 0)
		; /* nothing to do */
}

static void fail(void)
{
	__atomic_add_fetch(&W.bad, 1, __ATOMIC_RELAXED);
}

static bool may_log(void)
{
	return __atomic_add_fetch(&W.logged, 1, __ATOMIC_RELAXED) <= 12;
}

static void op_failed(const char *what, int err)
{
	__atomic_add_fetch(&W.sh->op_fail, 1, __ATOMIC_RELAXED);
	if (may_log())
		say("%s failed: %s", what, strerror(err));
}

/* A syscall that must work: the test cannot go on correctly without it. */
static void __attribute__((noreturn)) die(const char *what)
{
	say("FATAL: %s: %s", what, strerror(errno));
	_exit(3);
}

/* ---- page contents ---- */

static inline uint64_t exp_word(const struct pst *s, unsigned int w)
{
	uint64_t v = rksm_word(s->seed, w);

	if (s->patched && s->poff / 8 == w)
		((uint8_t *)&v)[s->poff % 8] = s->pval;
	return v;
}

static bool content_ok(const char *p, const struct pst *s)
{
	const uint64_t *q = (const uint64_t *)p;

	for (unsigned int w = 0; w < PAGE_SIZE / 8; w++)
		if (q[w] != exp_word(s, w))
			return false;
	return true;
}

static uint64_t pagemap_pfn(const void *addr)
{
	static __thread int fd = -1;
	static __thread pid_t fd_pid;
	uint64_t v = 0;

	if (fd < 0 || fd_pid != getpid()) {
		fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		fd_pid = getpid();
	}
	if (fd < 0 || pread(fd, &v, 8, (uintptr_t)addr / PAGE_SIZE * 8) != 8)
		return 0;
	return (v & RKSM_PM_PRESENT) ? v & RKSM_PM_PFN_MASK : 0;
}

static void mismatch(int i, const char *why)
{
	const struct pst *s = &W.b->st[i];
	const uint8_t *p = (const uint8_t *)W.b->addr[i];
	const uint64_t *q = (const uint64_t *)p;
	struct pst prev = { .seed = s->prev };
	int words = 0, first = -1, off = 0;
	bool zero = true;

	fail();
	if (!may_log())
		return;
	for (unsigned int w = 0; w < PAGE_SIZE / 8; w++) {
		if (q[w])
			zero = false;
		if (q[w] != exp_word(s, w)) {
			words++;
			if (first < 0)
				first = w;
		}
	}
	if (first < 0) {
		say("MISMATCH (%s) page %d at %p: gone by the second look", why, i, p);
		return;
	}
	for (off = first * 8; off < first * 8 + 8; off++) {
		uint64_t e = exp_word(s, first);

		if (p[off] != ((const uint8_t *)&e)[off % 8])
			break;
	}
	{
		uint64_t e = exp_word(s, off / 8);

		say("MISMATCH (%s) page %d (%s chunk %d) at %p offset 0x%x: expected 0x%02x, "
		    "actual 0x%02x (word 0x%016llx, actual 0x%016llx); %d of 512 words differ; "
		    "page is %s; seed %#llx patched %d (0x%02x at 0x%x), previous seed %#llx; pfn %#llx",
		    why, i, regions[chunks[page_chunk[i]].region].name, page_chunk[i], p, off,
		    ((const uint8_t *)&e)[off % 8], p[off], (unsigned long long)e,
		    (unsigned long long)q[off / 8], words,
		    zero ? "all zero" : content_ok((const char *)p, &prev) ?
		    "the previous content" : "something else",
		    (unsigned long long)s->seed, s->patched, s->pval, s->poff,
		    (unsigned long long)s->prev, (unsigned long long)pagemap_pfn(p));
	}
}

static bool check(int i, const char *why)
{
	if (content_ok(W.b->addr[i], &W.b->st[i]))
		return true;
	mismatch(i, why);
	return false;
}

static long verify_all(const char *why)
{
	long bad = 0;

	for (int i = 0; i < NPAGES; i++)
		bad += !check(i, why);
	return bad;
}

/* Two random chunks and some random pages (all pages would cost too much CPU). */
static void verify_some(struct thr *T, const char *why)
{
	for (int k = 0; k < 2; k++) {
		const struct chunk *c = &chunks[rnd(&T->rng, NCHUNKS)];

		for (int i = 0; i < c->npages && i < 128; i++)
			check(c->first + i, why);
	}
	for (int k = 0; k < 32; k++)
		check(rnd(&T->rng, NPAGES), why);
}

static void record_pfns(uint64_t *tab)
{
	for (int i = 0; i < NPAGES; i++) {
		const struct pst *s = &W.b->st[i];

		tab[i] = s->seed || s->patched ? pagemap_pfn(W.b->addr[i]) : 0;
	}
}

/*
 * A seed for page @i: the same as in every worker, zero, one of a few
 * "popular" contents, or one of its own.
 */
static uint64_t pick_seed(struct thr *T, int i)
{
	unsigned int r = rnd(&T->rng, 100);

	if (r < 45)
		return rksm_seed_common(i);
	if (r < 60)
		return 0;
	if (r < 75)
		return 0x100000 + rnd(&T->rng, 8);
	return (1ULL << 62) | ((uint64_t)W.id << 52) | ((uint64_t)T->t << 48) |
	       ((uint64_t)W.child << 47) | T->uniq++;
}

static void set_seed(int i, uint64_t seed)
{
	struct pst *s = &W.b->st[i];

	s->prev = s->seed;
	s->seed = seed;
	s->patched = 0;
}

/* Write page @i in full with @seed's content, directly or by one memcpy. */
static void write_page(struct thr *T, int i, uint64_t seed)
{
	if (rnd(&T->rng, 2)) {
		rksm_fill_page(W.b->addr[i], seed);
	} else {
		rksm_fill_page(T->buf, seed);
		memcpy(W.b->addr[i], T->buf, PAGE_SIZE);
	}
	set_seed(i, seed);
}

/* Write one byte of page @i (the page's patched byte, if it has one). */
static void write_byte(struct thr *T, int i)
{
	struct pst *s = &W.b->st[i];
	unsigned int off = s->patched ? s->poff : rnd(&T->rng, PAGE_SIZE);
	uint8_t val = rnd(&T->rng, 256);

	W.b->addr[i][off] = val;
	s->patched = 1;
	s->poff = off;
	s->pval = val;
}

/* Write page @i through /proc/self/mem: in full, in two halves, or one byte. */
static void mem_write(struct thr *T, int i)
{
	char *a = W.b->addr[i];
	struct pst *s = &W.b->st[i];
	unsigned int how = rnd(&T->rng, 3);
	uint64_t seed = pick_seed(T, i);
	ssize_t n, want;

	if (how == 2) {
		unsigned int off = s->patched ? s->poff : rnd(&T->rng, PAGE_SIZE);
		uint8_t val = rnd(&T->rng, 256);

		n = pwrite(W.memfd, &val, 1, (uintptr_t)a + off);
		want = 1;
		if (n == 1) {
			s->patched = 1;
			s->poff = off;
			s->pval = val;
		}
	} else {
		rksm_fill_page(T->buf, seed);
		if (how == 0) {
			n = pwrite(W.memfd, T->buf, PAGE_SIZE, (uintptr_t)a);
		} else {
			n = pwrite(W.memfd, T->buf, PAGE_SIZE / 2, (uintptr_t)a);
			if (n == PAGE_SIZE / 2)
				n += pwrite(W.memfd, T->buf + PAGE_SIZE / 2, PAGE_SIZE / 2,
					    (uintptr_t)a + PAGE_SIZE / 2);
		}
		want = PAGE_SIZE;
		if (n == want)
			set_seed(i, seed);
	}
	if (n != want) {
		op_failed("pwrite /proc/self/mem", n < 0 ? errno : EIO);
		/* Put the page back into a known state. */
		write_page(T, i, seed);
	}
	check(i, "after /proc/self/mem write");
}

/* ---- ranges ---- */

static int pick_chunk(struct thr *T)
{
	int owned = (NCHUNKS - T->t + NTHREADS - 1) / NTHREADS;

	return T->t + NTHREADS * rnd(&T->rng, owned);
}

static int pick_page(struct thr *T)
{
	const struct chunk *c = &chunks[pick_chunk(T)];

	return c->first + rnd(&T->rng, c->npages);
}

/*
 * A range of pages of one chunk of @T's, contiguous in memory now: the
 * whole chunk or part of it. Returns its length; *@start its first page.
 */
static int pick_range(struct thr *T, int *start)
{
	const struct chunk *c = &chunks[pick_chunk(T)];
	int s, len;

	if (rnd(&T->rng, 5) == 0) {
		s = c->first;
		len = c->npages;
	} else {
		int left;

		s = c->first + rnd(&T->rng, c->npages);
		left = c->first + c->npages - s;
		len = 1 + rnd(&T->rng, left < MAX_RANGE ? left : MAX_RANGE);
	}
	for (int k = 1; k < len; k++)
		if (W.b->addr[s + k] != W.b->addr[s + k - 1] + PAGE_SIZE) {
			len = k;
			break;
		}
	*start = s;
	return len;
}

/* A new private anonymous mapping, 2 MiB aligned if @align. */
static char *map_new(size_t len, int prot, bool align)
{
	size_t slack = align ? HPAGE : 0;
	char *raw = mmap(NULL, len + slack, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			 -1, 0);
	char *p;

	if (raw == MAP_FAILED || !align)
		return raw;
	p = (char *)(((uintptr_t)raw + HPAGE - 1) & ~(HPAGE - 1));
	if (p > raw)
		munmap(raw, p - raw);
	if (raw + len + slack > p + len)
		munmap(p + len, raw + len + slack - (p + len));
	return p;
}

/* The region's THP advice, and MADV_MERGEABLE unless the worker uses prctl. */
static void advise(char *p, size_t len, int region)
{
	if (regions[region].advice && madvise(p, len, regions[region].advice))
		op_failed("madvise (THP advice)", errno);
	if (!W.prctl && madvise(p, len, MADV_MERGEABLE))
		op_failed("madvise(MADV_MERGEABLE)", errno);
}

/* ---- operations ---- */

/* mprotect a range PROT_READ (and read it) or PROT_NONE, then back. */
static void op_mprotect(struct thr *T)
{
	int s, len = pick_range(T, &s);
	char *a = W.b->addr[s];
	bool none = rnd(&T->rng, 4) == 0;

	if (mprotect(a, len * PAGE_SIZE, none ? PROT_NONE : PROT_READ)) {
		op_failed("mprotect", errno);
		return;
	}
	for (int k = none ? 0 : rnd(&T->rng, 3); k > 0; k--)
		check(s + rnd(&T->rng, len), "read-only");
	if (rnd(&T->rng, 2))
		usleep(rnd(&T->rng, 3000));
	if (mprotect(a, len * PAGE_SIZE, PROT_READ | PROT_WRITE))
		die("mprotect(PROT_READ | PROT_WRITE)");
	if (rnd(&T->rng, 2))
		write_page(T, s + rnd(&T->rng, len), pick_seed(T, s));
}

static void op_dontneed(struct thr *T)
{
	int s, len = pick_range(T, &s);

	if (madvise(W.b->addr[s], len * PAGE_SIZE, MADV_DONTNEED)) {
		op_failed("madvise(MADV_DONTNEED)", errno);
		return;
	}
	for (int k = 0; k < len; k++)
		set_seed(s + k, 0);
	check(s + rnd(&T->rng, len), "after MADV_DONTNEED");
}

static void op_unmerge(struct thr *T)
{
	int s, len = pick_range(T, &s);
	char *a = W.b->addr[s];

	if (madvise(a, len * PAGE_SIZE, MADV_UNMERGEABLE)) {
		op_failed("madvise(MADV_UNMERGEABLE)", errno);
		return;
	}
	for (int k = rnd(&T->rng, 3); k > 0; k--) {
		int i = s + rnd(&T->rng, len);

		write_page(T, i, pick_seed(T, i));
	}
	check(s + rnd(&T->rng, len), "unmergeable");
	if (rnd(&T->rng, 2))
		usleep(rnd(&T->rng, 5000));
	if (madvise(a, len * PAGE_SIZE, MADV_MERGEABLE))
		op_failed("madvise(MADV_MERGEABLE)", errno);
}

/* munmap + mmap (or mmap over) a range, and fill it again. */
static void op_refill(struct thr *T)
{
	int s, len = pick_range(T, &s);
	int region = chunks[page_chunk[s]].region;
	size_t bytes = len * PAGE_SIZE;
	bool align = regions[region].align && len % HPAGE_PAGES == 0;
	char *a = W.b->addr[s], *n;
	bool advise_first = rnd(&T->rng, 2);

	switch (rnd(&T->rng, 3)) {
	case 0:	/* replace in place, atomically */
		n = mmap(a, bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		break;
	case 1:	/* unmap, then map at the same place if it is still free */
		if (munmap(a, bytes))
			die("munmap");
		n = mmap(a, bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (n == MAP_FAILED)
			n = map_new(bytes, PROT_READ | PROT_WRITE, align);
		break;
	default: /* unmap, map elsewhere */
		if (munmap(a, bytes))
			die("munmap");
		n = map_new(bytes, PROT_READ | PROT_WRITE, align);
		break;
	}
	if (n == MAP_FAILED)
		die("mmap (refill)");
	for (int k = 0; k < len; k++) {
		W.b->addr[s + k] = n + k * PAGE_SIZE;
		set_seed(s + k, 0);
	}
	if (advise_first)
		advise(n, bytes, region);
	for (int k = 0; k < len; k++) {
		int i = s + k;
		uint64_t seed = rnd(&T->rng, 2) ? W.b->st[i].prev : pick_seed(T, i);

		/* A zero page may stay untouched (it reads as zeroes). */
		if (seed || rnd(&T->rng, 2))
			write_page(T, i, seed);
	}
	if (!advise_first)
		advise(n, bytes, region);
	check(s + rnd(&T->rng, len), "after refill");
}

/*
 * Move a range to a new address (2 MiB aligned if it is whole huge pages).
 * With MREMAP_DONTUNMAP the old range stays mapped, empty: it must read
 * zeroes, and is unmapped after.
 */
static void op_mremap(struct thr *T)
{
	int s, len = pick_range(T, &s);
	size_t bytes = len * PAGE_SIZE;
	char *a = W.b->addr[s];
	bool align = (uintptr_t)a % HPAGE == 0 && bytes % HPAGE == 0;
	bool dontunmap = rnd(&T->rng, 4) == 0;
	char *dst = map_new(bytes, PROT_NONE, align), *n;

	if (dst == MAP_FAILED)
		die("mmap (mremap target)");
	n = mremap(a, bytes, bytes,
		   MREMAP_MAYMOVE | MREMAP_FIXED | (dontunmap ? MREMAP_DONTUNMAP : 0), dst);
	if (n == MAP_FAILED) {
		/* E.g. the range spans two VMAs: nothing moved. */
		op_failed("mremap", errno);
		munmap(dst, bytes);
		check(s, "after failed mremap");
		return;
	}
	for (int k = 0; k < len; k++)
		W.b->addr[s + k] = n + k * PAGE_SIZE;
	if (dontunmap) {
		const char *old = a + rnd(&T->rng, len) * PAGE_SIZE;

		for (size_t k = 0; k < PAGE_SIZE; k++)
			if (old[k]) {
				fail();
				say("MISMATCH: byte %zu of the page at %p left behind by "
				    "MREMAP_DONTUNMAP is 0x%02x, not 0", k, old, old[k]);
				break;
			}
		if (munmap(a, bytes))
			die("munmap (after MREMAP_DONTUNMAP)");
	}
	check(s + rnd(&T->rng, len), "after mremap");
	if (rnd(&T->rng, 2)) {
		int i = s + rnd(&T->rng, len);

		write_page(T, i, pick_seed(T, i));
	}
}

/*
 * MADV_COLLAPSE of one of @T's huge chunks (or of its contiguous start):
 * khugepaged's collapse, synchronously. It may refuse (merged pages are
 * not anonymous); it must not lose data.
 */
static void op_collapse(struct thr *T)
{
	int c, s, len;
	char *a;

	for (c = T->t; c < NCHUNKS; c += NTHREADS)
		if (regions[chunks[c].region].align)
			break;
	if (c >= NCHUNKS || rnd(&T->rng, 2)) {
		/* No huge chunk: a range anywhere (only whole 2 MiB in it collapse). */
		len = pick_range(T, &s);
		if (regions[chunks[page_chunk[s]].region].advice == MADV_NOHUGEPAGE)
			return;
	} else {
		s = chunks[c].first;
		for (len = 1; len < chunks[c].npages; len++)
			if (W.b->addr[s + len] != W.b->addr[s + len - 1] + PAGE_SIZE)
				break;
	}
	a = W.b->addr[s];
	if (!madvise(a, len * PAGE_SIZE, MADV_COLLAPSE))
		__atomic_add_fetch(&W.sh->collapsed, 1, __ATOMIC_RELAXED);
	else if (errno != EAGAIN && errno != EINVAL && errno != ENOMEM)
		op_failed("madvise(MADV_COLLAPSE)", errno);
	for (int k = rnd(&T->rng, 4); k > 0; k--)
		check(s + rnd(&T->rng, len), "after MADV_COLLAPSE");
}

/*
 * mlock (which populates for write, so it unmerges), or mlock2 with
 * MLOCK_ONFAULT (merged pages stay, and get mlocked), and munlock a range.
 */
static void op_mlock(struct thr *T)
{
	int s, len = pick_range(T, &s);
	char *a = W.b->addr[s];
	bool onfault = rnd(&T->rng, 2);

	if (onfault ? mlock2(a, len * PAGE_SIZE, MLOCK_ONFAULT) : mlock(a, len * PAGE_SIZE)) {
		if (errno != EAGAIN && errno != ENOMEM)
			op_failed("mlock", errno);
		return;
	}
	check(s + rnd(&T->rng, len), "mlocked");
	if (rnd(&T->rng, 2)) {
		int i = s + rnd(&T->rng, len);

		write_page(T, i, pick_seed(T, i));
	}
	if (rnd(&T->rng, 2))
		usleep(rnd(&T->rng, onfault ? 20000 : 5000));
	if (munlock(a, len * PAGE_SIZE))
		op_failed("munlock", errno);
}

static void op_prctl(struct thr *T)
{
	if (prctl(PR_SET_MEMORY_MERGE, 0, 0, 0, 0))
		op_failed("prctl(PR_SET_MEMORY_MERGE, 0)", errno);
	if (rnd(&T->rng, 2))
		usleep(rnd(&T->rng, 3000));
	if (prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0))
		die("prctl(PR_SET_MEMORY_MERGE, 1)");
	/* That made the book mergeable again. */
	madvise(W.b, sizeof(*W.b), MADV_UNMERGEABLE);
}

static void reap(struct thr *T, int k)
{
	pid_t pid = T->kids[k];
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			say("waitpid(%d): %s", pid, strerror(errno));
			fail();
			goto out;
		}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		say("fork child %d %s %d", pid,
		    WIFEXITED(status) ? "exited with" : "killed by signal",
		    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		fail();
	}
out:
	T->kids[k] = T->kids[--T->nkids];
}

/*
 * A fork child: it inherited a consistent copy of memory and book (the
 * other threads were between operations). It checks some of it, writes a
 * few pages, maybe lingers so that the scanner sees it, checks again.
 */
static void __attribute__((noreturn)) child_main(struct thr *T, uint64_t rng)
{
	int n;

	W.child = true;
	W.bad = 0;
	W.logged = 0;
	T->rng = rng;
	T->nkids = 0;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* The inherited fd writes to the parent's memory: open our own. */
	W.memfd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	if (W.memfd < 0)
		die("open /proc/self/mem");
	verify_some(T, "fork child, inherited");
	n = 1 + rnd(&T->rng, 12);
	for (int j = 0; j < n; j++) {
		int i = rnd(&T->rng, NPAGES);

		switch (rnd(&T->rng, 10)) {
		case 0 ... 5:
			write_page(T, i, pick_seed(T, i));
			break;
		case 6 ... 7:
			write_byte(T, i);
			break;
		case 8:
			if (madvise(W.b->addr[i], PAGE_SIZE, MADV_DONTNEED))
				die("madvise(MADV_DONTNEED)");
			set_seed(i, 0);
			break;
		default:
			mem_write(T, i);
			break;
		}
		check(i, "fork child, after write");
	}
	if (rnd(&T->rng, 2))
		usleep(rnd(&T->rng, 300000));
	verify_some(T, "fork child, at exit");
	_exit(W.bad ? 1 : 0);
}

static void op_fork(struct thr *T)
{
	uint64_t child_rng = rng_next(&T->rng);
	pid_t pid;

	if (T->nkids == MAX_KIDS)
		reap(T, 0);
	pthread_rwlock_wrlock(&W.forklock);
	pid = fork();
	if (pid == 0)
		child_main(T, child_rng);
	pthread_rwlock_unlock(&W.forklock);
	if (pid < 0) {
		op_failed("fork", errno);
		return;
	}
	T->kids[T->nkids++] = pid;
	__atomic_add_fetch(&W.sh->forks, 1, __ATOMIC_RELAXED);
}

static int pick_op(struct thr *T)
{
	int r = rnd(&T->rng, 1000);

	for (int op = 0; op < NR_OPS; op++) {
		if (r < op_weight[op])
			return op == OP_PRCTL && !W.prctl ? OP_READ : op;
		r -= op_weight[op];
	}
	return OP_READ;
}

static void run_op(struct thr *T, int op)
{
	int i;

	switch (op) {
	case OP_WRITE:
		i = pick_page(T);
		/* Sometimes the content it has already. */
		write_page(T, i, rnd(&T->rng, 10) ? pick_seed(T, i) : W.b->st[i].seed);
		if (rnd(&T->rng, 4) == 0)
			check(i, "after write");
		break;
	case OP_BYTE:
		i = pick_page(T);
		write_byte(T, i);
		if (rnd(&T->rng, 4) == 0)
			check(i, "after byte write");
		break;
	case OP_READ:
		check(pick_page(T), "read");
		break;
	case OP_READ_CHUNK: {
		const struct chunk *c = &chunks[pick_chunk(T)];

		for (int k = 0; k < c->npages; k++)
			check(c->first + k, "read chunk");
		break;
	}
	case OP_MEMWRITE:
		mem_write(T, pick_page(T));
		break;
	case OP_MPROTECT:
		op_mprotect(T);
		break;
	case OP_DONTNEED:
		op_dontneed(T);
		break;
	case OP_UNMERGE:
		op_unmerge(T);
		break;
	case OP_REFILL:
		op_refill(T);
		break;
	case OP_MREMAP:
		op_mremap(T);
		break;
	case OP_PRCTL:
		op_prctl(T);
		break;
	case OP_SLEEP:
		usleep(rnd(&T->rng, 5000));
		break;
	case OP_COLLAPSE:
		op_collapse(T);
		break;
	case OP_MLOCK:
		op_mlock(T);
		break;
	}
}

static void *thread_main(void *arg)
{
	struct thr *T = arg;

	while (!__atomic_load_n(&W.ctl->stop, __ATOMIC_RELAXED)) {
		int op = pick_op(T);

		if (op == OP_FORK) {
			op_fork(T);
		} else {
			pthread_rwlock_rdlock(&W.forklock);
			run_op(T, op);
			pthread_rwlock_unlock(&W.forklock);
		}
		__atomic_add_fetch(&W.sh->ops[op], 1, __ATOMIC_RELAXED);
		/* Leave the scanner some CPU (TCG guests are slow). */
		usleep(2000 + rnd(&T->rng, 12000));
	}
	while (T->nkids)
		reap(T, 0);
	return NULL;
}

/* Wait until @flag is set (or the test aborts); false after @secs. */
static bool wait_flag(volatile int *flag, double secs)
{
	double end = rksm_now() + secs;

	while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE)) {
		if (W.ctl->abort || rksm_now() > end)
			return false;
		rksm_msleep(5);
	}
	return true;
}

static void __attribute__((noreturn)) worker_main(struct ctl *ctl, int id)
{
	pthread_rwlockattr_t ra;
	uint64_t rng = rksm_mix(ctl->seed ^ (0x1000ULL * (id + 1)));
	struct thr *T = &thr[0];

	W.id = id;
	W.ctl = ctl;
	W.sh = &ctl->w[id];
	W.prctl = id & 1;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (W.prctl && prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0))
		die("prctl(PR_SET_MEMORY_MERGE, 1)");
	W.b = mmap(NULL, sizeof(*W.b), PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (W.b == MAP_FAILED)
		die("mmap (book)");
	madvise(W.b, sizeof(*W.b), MADV_NOHUGEPAGE);
	if (W.prctl && madvise(W.b, sizeof(*W.b), MADV_UNMERGEABLE))
		say("cannot make the book unmergeable: %s", strerror(errno));
	W.memfd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	if (W.memfd < 0)
		die("open /proc/self/mem");

	for (int t = 0; t < NTHREADS; t++) {
		thr[t].t = t;
		thr[t].rng = rksm_mix(ctl->seed ^ ((uint64_t)(id + 1) << 32) ^ (t + 1));
	}
	/* The regions, filled (the setup is thread 0's doing). */
	T->rng = rng;
	for (int r = 0, i = 0; r < NR_REGIONS; r++) {
		size_t bytes = regions[r].pages * PAGE_SIZE;
		char *p = map_new(bytes, PROT_READ | PROT_WRITE, regions[r].align);
		bool advise_first = rnd(&T->rng, 2);

		if (p == MAP_FAILED)
			die("mmap (region)");
		if (advise_first)
			advise(p, bytes, r);
		for (int k = 0; k < regions[r].pages; k++, i++) {
			uint64_t seed = pick_seed(T, i);

			W.b->addr[i] = p + k * PAGE_SIZE;
			W.b->st[i] = (struct pst){ 0 };
			if (seed || rnd(&T->rng, 2))
				write_page(T, i, seed);
			W.b->st[i].prev = 0;
		}
		if (!advise_first)
			advise(p, bytes, r);
	}
	thr[0].rng = rksm_mix(rng);
	if (verify_all("setup"))
		_exit(1);
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&W.forklock, &ra);

	__atomic_store_n(&W.sh->state, W_READY, __ATOMIC_RELEASE);
	if (!wait_flag(&ctl->go, 120))
		_exit(2);
	for (int t = 1; t < NTHREADS; t++)
		if (pthread_create(&thr[t].tid, NULL, thread_main, &thr[t]))
			die("pthread_create");
	thread_main(&thr[0]);
	for (int t = 1; t < NTHREADS; t++)
		pthread_join(thr[t].tid, NULL);

	/* Everything, while the engine goes on merging. */
	verify_all("final");
	record_pfns(W.sh->pfn_final);
	W.sh->bad = W.bad;
	__atomic_store_n(&W.sh->state, W_VERIFIED, __ATOMIC_RELEASE);
	if (!wait_flag(&ctl->reverify, 180))
		_exit(2);
	/* Everything again, after run=2. */
	verify_all("after run=2");
	record_pfns(W.sh->pfn_unmerged);
	W.sh->bad = W.bad;
	__atomic_store_n(&W.sh->state, W_DONE, __ATOMIC_RELEASE);
	_exit(W.bad ? 1 : 0);
}

/* ---- the test: drives the engine and watches the counters ---- */

struct mon {
	unsigned long long max_shared, max_sharing, max_zero, scans, last_scans;
	unsigned long long thp_split0, fails0[3];
	int run2, run2_dirty, mps_set, mps_busy, compactions;
};

static void mon_sample(struct mon *m)
{
	unsigned long long v, fs = rksm_get("full_scans");

	if (fs != ~0ULL) {
		m->scans += fs >= m->last_scans ? fs - m->last_scans : fs;
		m->last_scans = fs;
	}
	v = rksm_get("pages_shared");
	if (v != ~0ULL && v > m->max_shared)
		m->max_shared = v;
	v = rksm_get("pages_sharing");
	if (v != ~0ULL && v > m->max_sharing)
		m->max_sharing = v;
	v = rksm_get("ksm_zero_pages");
	if (v != ~0ULL && v > m->max_zero)
		m->max_zero = v;
}

static int knob(const char *name, unsigned long long v)
{
	double t = rksm_now();
	int err = rksm_write_num(name, v);

	if (err)
		say("%s=%llu: %s", name, v, strerror(-err));
	if (rksm_now() - t > 2)
		say("%s=%llu took %.1f s", name, v, rksm_now() - t);
	return err;
}

/* run=2; then nothing may be merged. Maybe a new max_page_sharing. */
static void run2(struct mon *m, uint64_t *rng)
{
	unsigned long long shared, sharing;

	if (knob("run", 2))
		return;
	m->run2++;
	shared = rksm_get("pages_shared");
	sharing = rksm_get("pages_sharing");
	if (shared || sharing) {
		m->run2_dirty++;
		say("after run=2: pages_shared %llu pages_sharing %llu", shared, sharing);
	}
	if (rnd(rng, 2)) {
		static const unsigned int mps[] = { 2, 3, 8, 256 };
		int err = rksm_write_num("max_page_sharing", mps[rnd(rng, 4)]);

		/* KSM refuses while anything is merged; rksm may not. */
		if (!err)
			m->mps_set++;
		else if (err == -EBUSY)
			m->mps_busy++;
		else
			say("max_page_sharing: %s", strerror(-err));
	}
}

static void apply_phase(int phase, uint64_t *rng, struct mon *m)
{
	static const unsigned int pts[] = { 2000, 5000, 20000 };
	int zero = phase & 1, smart = (phase >> 1) & 1, sleep = rnd(rng, 2);
	unsigned int pages = pts[rnd(rng, 3)];

	knob("use_zero_pages", zero);
	knob("smart_scan", smart);
	knob("sleep_millisecs", sleep);
	knob("pages_to_scan", pages);
	say("phase %d: use_zero_pages %d smart_scan %d sleep_millisecs %d pages_to_scan %u "
	    "(so far: %llu full scans, pages_sharing %llu, max %llu)",
	    phase, zero, smart, sleep, pages, m->scans, rksm_get("pages_sharing"),
	    m->max_sharing);
}

/* Non-zero PFNs that occur more than once in the workers' tables. */
static size_t shared_pfns(struct ctl *ctl, bool final)
{
	static uint64_t all[NWORKERS * NPAGES];

	for (int w = 0; w < NWORKERS; w++)
		memcpy(&all[w * NPAGES], final ? ctl->w[w].pfn_final : ctl->w[w].pfn_unmerged,
		       sizeof(ctl->w[w].pfn_final));
	return rksm_count_shared_pfns(all, NWORKERS * NPAGES);
}

static uint64_t stress_seed(void)
{
	const char *s = getenv("RKSM_STRESS_SEED");
	struct timespec ts;

	if (s && *s)
		return strtoull(s, NULL, 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	return rksm_mix(ts.tv_sec * 1000000000ULL + ts.tv_nsec + getpid()) >> 16;
}

#define KHUGEPAGED "/sys/kernel/mm/transparent_hugepage/khugepaged/"

/* khugepaged, fast: it collapses what the engine is splitting and merging. */
static const struct {
	const char *name;
	unsigned long long fast;
} khugepaged_knobs[] = {
	{ KHUGEPAGED "scan_sleep_millisecs", 100 },
	{ KHUGEPAGED "alloc_sleep_millisecs", 100 },
	{ KHUGEPAGED "pages_to_scan", 4096 },
};
#define NR_KH 3


FIXTURE(stress) {
	struct rksm_saved saved;
	struct ctl *ctl;
	pid_t pid[NWORKERS];
	unsigned long long kh[NR_KH];
	bool kh_ok[NR_KH];
};

FIXTURE_VARIANT(stress) {
	int seconds;		/* of random operations */
	int phase_seconds;
	/* Weights of the test's actions (percent): run=0, run=2, knobs, compaction; else run=1. */
	int run0, run2, knobs, compact;
	unsigned int max_page_sharing;	/* at the start; 0: leave it */
};

/* Everything, run=2 included, at random. */
FIXTURE_VARIANT_ADD(stress, mixed) {
	.seconds = 30, .phase_seconds = 5,
	.run0 = 12, .run2 = 13, .knobs = 15, .compact = 3,
};

/*
 * Merged most of the time, in chains (max_page_sharing 2), while the
 * workers fork, remap and write: run=2 only at the end.
 */
FIXTURE_VARIANT_ADD(stress, merged) {
	.seconds = 25, .phase_seconds = 6,
	.run0 = 8, .run2 = 0, .knobs = 10, .compact = 3, .max_page_sharing = 2,
};

FIXTURE_SETUP(stress)
{
	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
	self->ctl = rksm_shared_alloc(sizeof(*self->ctl));
	ASSERT_NE(NULL, self->ctl);
	layout_init();
	for (int k = 0; k < NR_KH; k++) {
		self->kh_ok[k] = rksm_read_path_num(khugepaged_knobs[k].name, &self->kh[k]);
		if (self->kh_ok[k])
			rksm_write_path_num(khugepaged_knobs[k].name, khugepaged_knobs[k].fast);
	}
}

FIXTURE_TEARDOWN(stress)
{
	if (self->ctl)
		self->ctl->abort = 1;
	for (int w = 0; w < NWORKERS; w++)
		if (self->pid[w] > 0) {
			kill(self->pid[w], SIGKILL);
			waitpid(self->pid[w], NULL, 0);
		}
	rksm_engine_teardown(&self->saved);
	for (int k = 0; k < NR_KH; k++)
		if (self->kh_ok[k])
			rksm_write_path_num(khugepaged_knobs[k].name, self->kh[k]);
}

/* Reap worker @w if it exited; false if it exited before reaching @state. */
static bool worker_alive(FIXTURE_DATA(stress) *self, int w, int state, int *status)
{
	pid_t r;

	if (self->pid[w] <= 0)
		return self->ctl->w[w].state >= state;
	r = waitpid(self->pid[w], status, WNOHANG);
	if (r != self->pid[w])
		return true;
	self->pid[w] = 0;
	return self->ctl->w[w].state >= state;
}

/* Longer runs (RKSM_STRESS_SECS) need a build with a larger STRESS_TIMEOUT. */
#ifndef STRESS_TIMEOUT
#define STRESS_TIMEOUT 120
#endif

TEST_F_TIMEOUT(stress, random_ops, STRESS_TIMEOUT)
{
	struct ctl *ctl = self->ctl;
	uint64_t seed = stress_seed(), rng;
	int status[NWORKERS] = { 0 }, seconds = variant->seconds, phase = 0, died = -1;
	const char *secs = getenv("RKSM_STRESS_SECS");
	double t0, end, next_action, next_phase;
	unsigned long long thp_rksm0 = 0;
	pid_t kthread = rksm_find_kthread(rksm_thread_name());
	long ticks0 = kthread ? rksm_cpu_ticks(kthread) : -1;
	struct rksm_counters c;
	struct mon m = { 0 };
	long ops[NR_OPS] = { 0 }, forks = 0, op_fail = 0, collapsed = 0;
	size_t sh_final, sh_unmerged;
	char line[512];
	int n;

	if (secs && *secs)
		seconds = atoi(secs);
	ksft_print_msg("seed %llu (RKSM_STRESS_SEED=%llu repeats it), %d s, engine %s\n",
		       (unsigned long long)seed, (unsigned long long)seed, seconds, rksm_sysfs());
	fflush(stdout);
	ctl->seed = seed;
	rng = rksm_mix(seed);
	if (!rksm_is_ksm())
		thp_rksm0 = rksm_get("thp_split");

	for (int w = 0; w < NWORKERS; w++) {
		pid_t pid;

		fflush(stdout);
		fflush(stderr);
		pid = fork();
		ASSERT_LE(0, pid);
		if (pid == 0)
			worker_main(ctl, w);
		self->pid[w] = pid;
	}
	end = rksm_now() + 60;
	for (int w = 0; w < NWORKERS; w++)
		while (ctl->w[w].state < W_READY) {
			ASSERT_TRUE(worker_alive(self, w, W_READY, &status[w]))
				TH_LOG("worker %d failed its setup", w);
			ASSERT_LT(rksm_now(), end) TH_LOG("worker %d setup timed out", w);
			rksm_msleep(10);
		}

	if (variant->max_page_sharing)
		knob("max_page_sharing", variant->max_page_sharing);
	apply_phase(phase, &rng, &m);
	knob("run", 1);
	m.last_scans = rksm_get("full_scans");
	__atomic_store_n(&ctl->go, 1, __ATOMIC_RELEASE);
	t0 = rksm_now();
	end = t0 + seconds;
	next_action = t0 + 0.5;
	next_phase = t0 + variant->phase_seconds;
	while (rksm_now() < end && died < 0) {
		double now = rksm_now();

		mon_sample(&m);
		if (now >= next_phase) {
			apply_phase(++phase, &rng, &m);
			next_phase = now + variant->phase_seconds;
		}
		if (now >= next_action) {
			int r = rnd(&rng, 100);

			if ((r -= variant->run0) < 0) {
				knob("run", 0);
			} else if ((r -= variant->run2) < 0) {
				run2(&m, &rng);
				if (rnd(&rng, 3))
					knob("run", 1);
			} else if ((r -= variant->knobs) < 0) {
				if (rnd(&rng, 2))
					knob("sleep_millisecs", rnd(&rng, 2));
				else
					knob("pages_to_scan", 1000 + rnd(&rng, 20000));
			} else if ((r -= variant->compact) < 0) {
				/* Compaction migrates pages the engine is merging. */
				rksm_write_path("/proc/sys/vm/compact_memory", "1");
				m.compactions++;
			} else {
				knob("run", 1);
			}
			next_action = rksm_now() + (100 + rnd(&rng, 900)) / 1000.0;
		}
		for (int w = 0; w < NWORKERS; w++)
			if (!worker_alive(self, w, W_VERIFIED, &status[w]))
				died = w;
		rksm_msleep(20);
	}
	EXPECT_EQ(-1, died) TH_LOG("worker %d died during the stress (status %#x)",
				    died, status[died < 0 ? 0 : died]);

	/* Merge for a while undisturbed, then stop: the workers verify everything. */
	knob("run", 1);
	knob("sleep_millisecs", 0);
	end = rksm_now() + 20;
	for (unsigned long long s0 = m.scans; m.scans < s0 + 2 && rksm_now() < end;) {
		rksm_msleep(20);
		mon_sample(&m);
	}
	__atomic_store_n(&ctl->stop, 1, __ATOMIC_RELEASE);
	end = rksm_now() + 90;
	for (int w = 0; w < NWORKERS; w++)
		while (ctl->w[w].state < W_VERIFIED && worker_alive(self, w, W_VERIFIED, &status[w]) &&
		       rksm_now() < end) {
			mon_sample(&m);
			rksm_msleep(20);
		}
	mon_sample(&m);
	sh_final = shared_pfns(ctl, true);
	if (ticks0 >= 0)
		say("%s used %.1f s of CPU in %.1f s", rksm_thread_name(),
		    (double)(rksm_cpu_ticks(kthread) - ticks0) / sysconf(_SC_CLK_TCK),
		    rksm_now() - t0);

	/* Unmerge everything: nothing may stay merged. */
	ASSERT_EQ(0, rksm_write("run", "2"));
	rksm_counters_read(&c);
	EXPECT_EQ(0, c.shared);
	EXPECT_EQ(0, c.sharing);
	__atomic_store_n(&ctl->reverify, 1, __ATOMIC_RELEASE);
	end = rksm_now() + 60;
	for (int w = 0; w < NWORKERS; w++) {
		while (self->pid[w] > 0 && rksm_now() < end) {
			if (waitpid(self->pid[w], &status[w], WNOHANG) == self->pid[w])
				self->pid[w] = 0;
			else
				rksm_msleep(10);
		}
		EXPECT_EQ(0, self->pid[w]) TH_LOG("worker %d did not finish", w);
		EXPECT_TRUE(WIFEXITED(status[w]) && WEXITSTATUS(status[w]) == 0)
			TH_LOG("worker %d: status %#x, %ld bad pages (state %d)", w, status[w],
			       ctl->w[w].bad, ctl->w[w].state);
		EXPECT_EQ(W_DONE, ctl->w[w].state);
		for (int op = 0; op < NR_OPS; op++)
			ops[op] += ctl->w[w].ops[op];
		forks += ctl->w[w].forks;
		op_fail += ctl->w[w].op_fail;
		collapsed += ctl->w[w].collapsed;
	}
	sh_unmerged = shared_pfns(ctl, false);
	rksm_counters_read(&c);

	n = 0;
	for (int op = 0; op < NR_OPS; op++)
		n += snprintf(line + n, sizeof(line) - n, " %s %ld", op_names[op], ops[op]);
	say("ops:%s; %ld fork children; %ld collapsed; %ld operations refused", line, forks,
	    collapsed, op_fail);
	say("full scans %llu, max pages_shared %llu pages_sharing %llu ksm_zero_pages %llu; "
	    "%d run=2 (%d left merges), max_page_sharing set %d refused %d; %d compactions",
	    m.scans, m.max_shared, m.max_sharing, m.max_zero, m.run2, m.run2_dirty,
	    m.mps_set, m.mps_busy, m.compactions);
	say("shared PFNs at the end %zu, after run=2 %zu", sh_final, sh_unmerged);
	if (!rksm_is_ksm())
		say("rksm: thp_split +%llu merge_fail_pinned %llu changed %llu contended %llu",
		    rksm_get("thp_split") - thp_rksm0, rksm_get("merge_fail_pinned"),
		    rksm_get("merge_fail_changed"), rksm_get("merge_fail_contended"));

	/* Nothing stayed merged after any run=2, nor at the end. */
	EXPECT_EQ(0, m.run2_dirty);
	EXPECT_EQ(0, sh_unmerged);
	EXPECT_EQ(0, c.shared);
	EXPECT_EQ(0, c.sharing);
	/* And the engine did merge: the test did not pass for want of merging. */
	EXPECT_LT(2, m.scans);
	EXPECT_LT(0, m.max_sharing);
	EXPECT_LT(0, sh_final);
	EXPECT_LT(0, forks);
}

TEST_HARNESS_MAIN
