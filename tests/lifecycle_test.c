// SPDX-License-Identifier: GPL-2.0
/*
 * Merged pages through the life of a process: fork, exit, munmap, mremap,
 * mprotect, writes through /proc/self/mem, MADV_DONTNEED, MADV_UNMERGEABLE,
 * PR_SET_MEMORY_MERGE 0, run=2 with a forked child mapping merged pages,
 * and (rksm only) module unload while pages are merged. Each test starts
 * with 3 processes sharing 128 merged pages, checks data and counters as
 * it goes, and ends (teardown) with run=2.
 *
 * Runs against rksm, or against KSM with RKSM_SYSFS=/sys/kernel/mm/ksm.
 */
#include <sys/syscall.h>

#include "kselftest_harness.h"
#include "rksm_util.h"

#define NKIDS 3
#define PAGES 128
#define M PAGES

FIXTURE(life) {
	struct rksm_saved saved;
	struct rksm_kids k;
	uint64_t pfn[RKSM_MAX_KIDS * PAGES];
	struct rksm_counters c;
};

FIXTURE_SETUP(life)
{
	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
	ASSERT_EQ(0, rksm_kids_init(&self->k, PAGES, MADV_NOHUGEPAGE));
	rksm_kids_seed_common(&self->k, NKIDS);
	ASSERT_EQ(0, rksm_kids_start(&self->k, NKIDS));
	ASSERT_EQ(0, rksm_write("run", "1"));
	ASSERT_EQ(0, rksm_wait_counts(M, M * (NKIDS - 1), 2, 30, &self->c))
		TH_LOG("shared %llu sharing %llu", self->c.shared, self->c.sharing);
}

FIXTURE_TEARDOWN(life)
{
	rksm_kids_kill_all(&self->k);
	rksm_engine_teardown(&self->saved);
}

/* Wait for exactly @shared/@sharing, logging what there is if not. */
#define WAIT_COUNTS(_shared, _sharing) do {					\
	unsigned long long __sh = (_shared), __sg = (_sharing);			\
	EXPECT_EQ(0, rksm_wait_counts(__sh, __sg, 2, 30, &self->c))		\
		TH_LOG("want shared %llu sharing %llu, have %llu %llu",	\
		       __sh, __sg, self->c.shared, self->c.sharing);		\
} while (0)

/* All pages of slots @a and @b have the same PFNs. */
static bool same_pfns(FIXTURE_DATA(life) *self, int a, int b)
{
	for (int i = 0; i < PAGES; i++)
		if (self->pfn[a * PAGES + i] != self->pfn[b * PAGES + i] ||
		    !self->pfn[a * PAGES + i])
			return false;
	return true;
}

/* Set the seeds of @slot's pages i with i % @mod == @rem to its own gen @gen. */
static long own_pages(struct rksm_kids *k, int slot, int mod, int rem, int gen)
{
	long n = 0;

	for (int i = 0; i < PAGES; i++)
		if (i % mod == rem) {
			rksm_kid_seeds(k, slot)[i] = rksm_seed_own(slot, i, gen);
			n++;
		}
	return n;
}

TEST_F_TIMEOUT(life, fork_after_merge, 90)
{
	long n1, n2;

	/* The child maps the same KSM pages and sees the same data. */
	ASSERT_LT(0, rksm_kid_fork_into(&self->k, 0, 3));
	ASSERT_EQ(0, rksm_kid_call(&self->k, 3, rksm_kid_verify, 0));
	ASSERT_EQ(0, rksm_kid_pfns(&self->k, 0, self->pfn));
	ASSERT_EQ(0, rksm_kid_pfns(&self->k, 3, &self->pfn[3 * PAGES]));
	ASSERT_TRUE(same_pfns(self, 0, 3));
	/* Once scanned, its mappings count as sharing. */
	WAIT_COUNTS(M, M * NKIDS);

	/* Child and parent writes each split off their own pages. */
	n1 = own_pages(&self->k, 3, 4, 1, 1);
	n2 = own_pages(&self->k, 0, 4, 2, 1);
	ASSERT_EQ(n1, rksm_kid_call(&self->k, 3, rksm_kid_sync, 0));
	ASSERT_EQ(n2, rksm_kid_call(&self->k, 0, rksm_kid_sync, 0));
	for (int s = 0; s <= 3; s++) {
		ASSERT_EQ(0, rksm_kid_call(&self->k, s, rksm_kid_verify, 0)) TH_LOG("slot %d", s);
	}
	ASSERT_EQ(0, rksm_kid_pfns(&self->k, 0, self->pfn));
	ASSERT_EQ(0, rksm_kid_pfns(&self->k, 1, &self->pfn[PAGES]));
	ASSERT_EQ(0, rksm_kid_pfns(&self->k, 3, &self->pfn[3 * PAGES]));
	/* Written pages (i % 4 == 1 in the child, 2 in kid 0) moved, the rest did not. */
	RKSM_EXPECT_ALL(PAGES, (self->pfn[3 * PAGES + i] == self->pfn[i]) == (i % 4 == 0 || i % 4 == 3));
	RKSM_EXPECT_ALL(PAGES, (self->pfn[3 * PAGES + i] == self->pfn[PAGES + i]) == (i % 4 != 1));
	RKSM_EXPECT_ALL(PAGES, (self->pfn[i] == self->pfn[PAGES + i]) == (i % 4 != 2));
	WAIT_COUNTS(M, M * NKIDS - n1 - n2);
	for (int s = 0; s <= 3; s++) {
		ASSERT_EQ(0, rksm_kid_call(&self->k, s, rksm_kid_verify, 0)) TH_LOG("slot %d", s);
	}
}

TEST_F_TIMEOUT(life, sharer_exits, 90)
{
	/* One process's mappings go: exactly its share of pages_sharing. */
	rksm_kid_kill(&self->k, NKIDS - 1);
	WAIT_COUNTS(M, M * (NKIDS - 2));
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS - 1, rksm_kid_verify, 0));
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS - 1, self->pfn));
	EXPECT_TRUE(same_pfns(self, 0, 1));

	/*
	 * The last two go: nothing is left shared. (Nothing is left to
	 * scan either, so the scanner may well stop: do not wait for scans.)
	 */
	rksm_kid_kill(&self->k, 1);
	rksm_kid_kill(&self->k, 0);
	EXPECT_EQ(0, rksm_poll_counts(0, 0, 30, &self->c))
		TH_LOG("shared %llu sharing %llu", self->c.shared, self->c.sharing);
}

/* Kid function: munmap the second half of the buffer. */
static long unmap_half(struct rksm_kids *k, int slot, long arg)
{
	(void)arg;
	return munmap(k->kbuf[slot] + PAGES / 2 * PAGE_SIZE, PAGES / 2 * PAGE_SIZE) ? -errno : 0;
}

/* Kid function: count bad pages in the first half of the buffer. */
static long verify_half(struct rksm_kids *k, int slot, long arg)
{
	long bad = 0;

	(void)arg;
	for (int i = 0; i < PAGES / 2; i++)
		bad += !rksm_page_is(rksm_kid_page(k, slot, i), rksm_kid_seeds(k, slot)[i]);
	return bad;
}

TEST_F_TIMEOUT(life, munmap_merged_range, 90)
{
	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, unmap_half, 0));
	WAIT_COUNTS(M, M * (NKIDS - 1) - M / 2);
	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, verify_half, 0));
	for (int s = 1; s < NKIDS; s++) {
		ASSERT_EQ(0, rksm_kid_call(&self->k, s, rksm_kid_verify, 0));
	}
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	EXPECT_TRUE(same_pfns(self, 1, 2));
	RKSM_EXPECT_ALL(PAGES, self->pfn[i] == (i < PAGES / 2 ? self->pfn[PAGES + i] : 0));
}

/* Kid function: move the buffer to a new place. */
static long move_buf(struct rksm_kids *k, int slot, long arg)
{
	size_t len = k->pages * PAGE_SIZE;
	char *to = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *p;

	(void)arg;
	if (to == MAP_FAILED)
		return -errno;
	p = mremap(k->kbuf[slot], len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	if (p == MAP_FAILED)
		return -errno;
	k->kbuf[slot] = p;
	return 0;
}

TEST_F_TIMEOUT(life, mremap_merged_range, 90)
{
	long n;

	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, move_buf, 0));
	ASSERT_NE(self->k.buf, self->k.kbuf[0]);
	/* Data intact at once; the move may unmerge (KSM does), but the range
	 * stays mergeable and merges again. */
	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, rksm_kid_verify, 0));
	WAIT_COUNTS(M, M * (NKIDS - 1));
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	EXPECT_TRUE(same_pfns(self, 0, 1));
	EXPECT_TRUE(same_pfns(self, 0, 2));
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));

	/* Writes at the new address copy on write. */
	n = own_pages(&self->k, 0, 2, 0, 1);
	ASSERT_EQ(n, rksm_kid_call(&self->k, 0, rksm_kid_sync, 0));
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	RKSM_EXPECT_ALL(PAGES, (self->pfn[PAGES + i] == self->pfn[i]) == (i % 2 == 1));
	WAIT_COUNTS(M, M * (NKIDS - 1) - n);
}

/* Kid function: mprotect the buffer to @arg. */
static long protect(struct rksm_kids *k, int slot, long arg)
{
	return mprotect(k->kbuf[slot], k->pages * PAGE_SIZE, arg) ? -errno : 0;
}

TEST_F_TIMEOUT(life, mprotect_then_write, 90)
{
	unsigned long long f;
	long n;

	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, protect, PROT_READ));
	/* Read-only, the pages stay merged and readable. */
	ASSERT_EQ(0, rksm_wait_scans(2, 20));
	rksm_counters_read(&self->c);
	EXPECT_EQ(M, self->c.shared);
	EXPECT_EQ(M * (NKIDS - 1), self->c.sharing);
	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, rksm_kid_verify, 0));

	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, protect, PROT_READ | PROT_WRITE));
	n = own_pages(&self->k, 0, 3, 0, 1);
	ASSERT_EQ(n, rksm_kid_call(&self->k, 0, rksm_kid_sync, 0));
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	RKSM_EXPECT_ALL(PAGES, (self->pfn[PAGES + i] == self->pfn[i]) == (i % 3 != 0));
	f = rksm_get("full_scans");
	WAIT_COUNTS(M, M * (NKIDS - 1) - n);
	EXPECT_LT(f, rksm_get("full_scans"));
}

/*
 * Kid function: write the pages whose contents differ from their seeds
 * through /proc/self/mem, each in two halves (a partial write must keep
 * the rest of the page). Returns pages written or -errno.
 */
static long mem_write(struct rksm_kids *k, int slot, long arg)
{
	char page[PAGE_SIZE];
	long n = 0;
	int fd = open("/proc/self/mem", O_RDWR);

	(void)arg;
	if (fd < 0)
		return -errno;
	for (int i = 0; i < PAGES; i++) {
		char *p = rksm_kid_page(k, slot, i);

		if (rksm_page_is(p, rksm_kid_seeds(k, slot)[i]))
			continue;
		rksm_fill_page(page, rksm_kid_seeds(k, slot)[i]);
		if (pwrite(fd, page, PAGE_SIZE / 2, (uintptr_t)p) != PAGE_SIZE / 2 ||
		    pwrite(fd, page + PAGE_SIZE / 2, PAGE_SIZE / 2,
			   (uintptr_t)p + PAGE_SIZE / 2) != PAGE_SIZE / 2) {
			close(fd);
			return -EIO;
		}
		n++;
	}
	close(fd);
	return n;
}

TEST_F_TIMEOUT(life, proc_self_mem_write, 90)
{
	long n = 0;

	/* Pages 0, 1, 8, 9, 16, 17, ... */
	for (int i = 0; i < PAGES; i += 8) {
		rksm_kid_seeds(&self->k, 0)[i] = rksm_seed_own(0, i, 1);
		rksm_kid_seeds(&self->k, 0)[i + 1] = rksm_seed_own(0, i + 1, 1);
		n += 2;
	}
	ASSERT_EQ(n, rksm_kid_call(&self->k, 0, mem_write, 0));
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	RKSM_EXPECT_ALL(PAGES, (self->pfn[PAGES + i] == self->pfn[i]) == (i % 8 >= 2));
	EXPECT_TRUE(same_pfns(self, 1, 2));
	WAIT_COUNTS(M, M * (NKIDS - 1) - n);
}

/* Kid function: madvise(@arg) on the first half of the buffer. */
static long advise_half(struct rksm_kids *k, int slot, long arg)
{
	return madvise(k->kbuf[slot], PAGES / 2 * PAGE_SIZE, arg) ? -errno : 0;
}

TEST_F_TIMEOUT(life, madv_dontneed, 90)
{
	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, advise_half, MADV_DONTNEED));
	for (int i = 0; i < PAGES / 2; i++)
		rksm_kid_seeds(&self->k, 0)[i] = 0;
	/* Reads zeroes there, the rest as before. */
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
	WAIT_COUNTS(M, M * (NKIDS - 1) - M / 2);
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	EXPECT_TRUE(same_pfns(self, 1, 2));
	RKSM_EXPECT_ALL(PAGES, i < PAGES / 2 || self->pfn[PAGES + i] == self->pfn[i]);
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
}

/* No PFN of @slot's buffer occurs anywhere else among slots 0..@n-1. */
static bool all_private(FIXTURE_DATA(life) *self, int slot, int n)
{
	for (int i = 0; i < PAGES; i++) {
		uint64_t p = self->pfn[slot * PAGES + i];

		if (!p)
			return false;
		for (int t = 0; t < n * PAGES; t++)
			if (t != slot * PAGES + i && self->pfn[t] == p)
				return false;
	}
	return true;
}

TEST_F_TIMEOUT(life, madv_unmergeable, 90)
{
	/*
	 * KSM unmerges before madvise returns; rksm may leave it to its
	 * next pass. Either way, within a few full scans the process's
	 * pages are its own again, and stay so.
	 */
	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, rksm_kid_madvise, MADV_UNMERGEABLE));
	WAIT_COUNTS(M, M * (NKIDS - 2));
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	EXPECT_TRUE(all_private(self, 0, NKIDS));
	EXPECT_TRUE(same_pfns(self, 1, 2));
	ASSERT_EQ(0, rksm_wait_scans(3, 20));
	rksm_counters_read(&self->c);
	EXPECT_EQ(M, self->c.shared);
	EXPECT_EQ(M * (NKIDS - 2), self->c.sharing);
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));

	/* A part of a range can be unmerged too. */
	ASSERT_EQ(0, rksm_kid_call(&self->k, 1, advise_half, MADV_UNMERGEABLE));
	WAIT_COUNTS(M, M * (NKIDS - 2) - M / 2);
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
}

/* Kid function: PR_GET_MEMORY_MERGE. */
static long get_merge(struct rksm_kids *k, int slot, long arg)
{
	(void)k;
	(void)slot;
	(void)arg;
	return prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0);
}

TEST_F_TIMEOUT(life, prctl_memory_merge_off, 90)
{
	/* Kid 0 opts out of the range, then opts in by prctl alone. */
	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, rksm_kid_madvise, MADV_UNMERGEABLE));
	WAIT_COUNTS(M, M * (NKIDS - 2));
	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, rksm_kid_prctl_merge, 1));
	ASSERT_EQ(1, rksm_kid_call(&self->k, 0, get_merge, 0));
	/* All of its anonymous memory is mergeable now: at least the range merges. */
	EXPECT_EQ(0, rksm_settle(3, 30, &self->c));
	EXPECT_LE(M, self->c.shared);
	EXPECT_LE(M * (NKIDS - 1), self->c.sharing);
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	EXPECT_TRUE(same_pfns(self, 0, 1));

	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, rksm_kid_prctl_merge, 0));
	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, get_merge, 0));
	WAIT_COUNTS(M, M * (NKIDS - 2));
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	EXPECT_TRUE(all_private(self, 0, NKIDS));
	EXPECT_TRUE(same_pfns(self, 1, 2));
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
}

TEST_F_TIMEOUT(life, run2_with_forked_child, 90)
{
	const int n = NKIDS + 2;

	/* One child the scanner has seen, one it has not yet. */
	ASSERT_LT(0, rksm_kid_fork_into(&self->k, 0, NKIDS));
	WAIT_COUNTS(M, M * NKIDS);
	ASSERT_LT(0, rksm_kid_fork_into(&self->k, 1, NKIDS + 1));

	ASSERT_EQ(0, rksm_write("run", "2"));
	rksm_counters_read(&self->c);
	EXPECT_EQ(0, self->c.shared);
	EXPECT_EQ(0, self->c.sharing);
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, n, self->pfn));
	EXPECT_EQ(0, rksm_count_shared_pfns(self->pfn, n * PAGES));
	for (int s = 0; s < n; s++) {
		ASSERT_EQ(0, rksm_kid_call(&self->k, s, rksm_kid_verify, 0)) TH_LOG("slot %d", s);
	}
}

TEST_F_TIMEOUT(life, module_busy_while_merged, 90)
{
	if (rksm_is_ksm())
		SKIP(return, "rksm only: KSM is not a module");
	ASSERT_TRUE(rksm_loaded());

	/* Merged pages pin the module: delete_module(O_NONBLOCK) says "in use". */
	EXPECT_EQ(-EWOULDBLOCK, rksm_unload());
	ASSERT_TRUE(rksm_loaded());
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
	ASSERT_EQ(0, rksm_wait_scans(2, 20));
	rksm_counters_read(&self->c);
	EXPECT_EQ(M, self->c.shared);
	EXPECT_EQ(M * (NKIDS - 1), self->c.sharing);

	/* After run=2 nothing is merged and the module can go. */
	ASSERT_EQ(0, rksm_write("run", "2"));
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	EXPECT_EQ(0, rksm_count_shared_pfns(self->pfn, NKIDS * PAGES));
	EXPECT_EQ(0, rksm_unload());
	EXPECT_FALSE(rksm_loaded());
	EXPECT_EQ(0, rksm_find_kthread("rksmd"));
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));

	/* And comes back. */
	ASSERT_EQ(0, rksm_load());
	ASSERT_TRUE(rksm_loaded());
	EXPECT_NE(0, rksm_find_kthread("rksmd"));
	EXPECT_EQ(0, rksm_get("run"));
	EXPECT_EQ(0, rksm_get("pages_shared"));
	EXPECT_EQ(0, rksm_get("pages_sharing"));
}

TEST_HARNESS_MAIN
