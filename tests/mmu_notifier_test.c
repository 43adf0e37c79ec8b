// SPDX-License-Identifier: GPL-2.0
/*
 * Secondary MMUs (KVM's EPT, ODP RDMA, HMM devices) only learn that a PTE
 * changed through mmu notifiers. The test registers an
 * mmu_interval_notifier (through the helper module rksm_mn_test.ko, see
 * tests/mmu_notifier/) on a buffer of N pages that rksm then merges, and
 * checks that:
 *  - every page whose PTE rksmd changed (all of them: replaced by another
 *    page, or write-protected in place as the stable page) got an
 *    MMU_NOTIFY_CLEAR invalidation covering it from rksmd;
 *  - run=2, which gives every page a private copy again (a COW
 *    fault), invalidated every page once more.
 * The "stable" variant merges into rksm's stable pages (a second buffer in
 * the same process holds the same contents), the "zero" variant merges
 * zero-filled pages into the shared zero page (use_zero_pages=1).
 *
 * The helper module is loaded from ./rksm_mn_test.ko (the test runs in
 * /host in the guest, where scripts/run-tests.sh puts it), or from
 * $RKSM_MN_KO; it is unloaded again at the end of each test.
 */
#include "kselftest_harness.h"
#include "rksm_util.h"
#include "mmu_notifier/rksm_mn_test.h"

#include <sys/ioctl.h>

#define MN_PAGES 64

static const char *mn_ko_path(void)
{
	const char *p = getenv("RKSM_MN_KO");

	return p && *p ? p : "./rksm_mn_test.ko";
}

/* Load the helper module. 0, or -errno. */
static int mn_load(void)
{
	return rksm_load_module(mn_ko_path());
}

static int mn_unload(void)
{
	return rksm_unload_module("rksm_mn_test");
}

/* The events logged from index @first on into *@ev (malloc'ed). Count or -errno. */
static long mn_events(int fd, uint64_t first, struct rksm_mn_event **ev)
{
	struct rksm_mn_stats st;
	size_t size, done = 0;

	*ev = NULL;
	if (ioctl(fd, RKSM_MN_STATS, &st))
		return -errno;
	if (st.dropped)
		return -ENOSPC;
	if (st.nr <= first)
		return 0;
	size = (st.nr - first) * sizeof(**ev);
	*ev = malloc(size);
	if (!*ev)
		return -ENOMEM;
	while (done < size) {
		ssize_t r = pread(fd, (char *)*ev + done, size - done,
				  first * sizeof(**ev) + done);

		if (r <= 0) {
			free(*ev);
			*ev = NULL;
			return r ? -errno : -EIO;
		}
		done += r;
	}
	return st.nr - first;
}

static uint64_t mn_nr(int fd)
{
	struct rksm_mn_stats st = { 0 };

	return ioctl(fd, RKSM_MN_STATS, &st) ? ~0ULL : st.nr;
}

/*
 * For each of the @pages pages from @base, count the events in @ev of kind
 * @event (by @pid if @pid > 0) whose range covers the page, into @hits.
 */
static void mn_coverage(const struct rksm_mn_event *ev, long n, uint32_t event,
			pid_t pid, uintptr_t base, size_t pages, unsigned int *hits)
{
	memset(hits, 0, pages * sizeof(*hits));
	for (long e = 0; e < n; e++) {
		if (ev[e].event != event || (pid > 0 && ev[e].pid != pid))
			continue;
		for (size_t i = 0; i < pages; i++) {
			uintptr_t a = base + i * PAGE_SIZE;

			if (ev[e].start <= a && a + PAGE_SIZE <= ev[e].end)
				hits[i]++;
		}
	}
}

/* Log the events from @ev that are not @event from @pid (for diagnosis). */
static void mn_log_others(struct __test_metadata *_metadata,
			  const struct rksm_mn_event *ev, long n, uint32_t event,
			  pid_t pid)
{
	for (long e = 0; e < n; e++)
		if (ev[e].event != event || (pid > 0 && ev[e].pid != pid))
			TH_LOG("other event: [%llx, %llx) event %u pid %d flags %x",
			       (unsigned long long)ev[e].start,
			       (unsigned long long)ev[e].end, ev[e].event,
			       ev[e].pid, ev[e].flags);
}

FIXTURE(mn) {
	struct rksm_saved saved;
	bool loaded;
	int fd;
	char *a, *b;		/* a: watched, b: the same contents */
	uint64_t pfn0[MN_PAGES], pfn1[MN_PAGES], pfnb[MN_PAGES];
	unsigned int hits[MN_PAGES];
};

FIXTURE_VARIANT(mn) {
	bool zero;
};

/* Page i of a and b hold the same pseudo-random data: rksm's stable pages. */
FIXTURE_VARIANT_ADD(mn, stable) {
	.zero = false,
};

/* Zero-filled pages with use_zero_pages=1: the shared zero page. */
FIXTURE_VARIANT_ADD(mn, zero) {
	.zero = true,
};

static uint64_t mn_seed(const FIXTURE_VARIANT(mn) *variant, size_t i)
{
	return variant->zero ? 0 : rksm_seed_common(i);
}

FIXTURE_SETUP(mn)
{
	struct rksm_mn_range r;
	char *buf;
	int err;

	self->fd = -1;
	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	err = mn_load();
	ASSERT_EQ(0, err) TH_LOG("loading %s: %s", mn_ko_path(), strerror(-err));
	self->loaded = true;
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
	ASSERT_EQ(0, rksm_write_num("use_zero_pages", variant->zero));

	/* One VMA: a, then b. Written (so private pages), then mergeable. */
	buf = mmap(NULL, 2 * MN_PAGES * PAGE_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, buf);
	ASSERT_EQ(0, madvise(buf, 2 * MN_PAGES * PAGE_SIZE, MADV_NOHUGEPAGE));
	self->a = buf;
	self->b = buf + MN_PAGES * PAGE_SIZE;
	for (size_t i = 0; i < MN_PAGES; i++) {
		rksm_fill_page(self->a + i * PAGE_SIZE, mn_seed(variant, i));
		rksm_fill_page(self->b + i * PAGE_SIZE, mn_seed(variant, i));
	}
	ASSERT_EQ(0, madvise(buf, 2 * MN_PAGES * PAGE_SIZE, MADV_MERGEABLE));
	ASSERT_EQ(0, rksm_pfns(0, self->a, MN_PAGES, self->pfn0));

	self->fd = open(RKSM_MN_DEV, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->fd) TH_LOG("%s: %s", RKSM_MN_DEV, strerror(errno));
	r.start = (uintptr_t)self->a;
	r.len = MN_PAGES * PAGE_SIZE;
	ASSERT_EQ(0, ioctl(self->fd, RKSM_MN_REGISTER, &r))
		TH_LOG("RKSM_MN_REGISTER: %s", strerror(errno));
}

FIXTURE_TEARDOWN(mn)
{
	if (self->fd >= 0) {
		EXPECT_EQ(0, ioctl(self->fd, RKSM_MN_UNREGISTER));
		close(self->fd);
	}
	if (self->loaded)
		EXPECT_EQ(0, mn_unload());
	rksm_engine_teardown(&self->saved);
}

TEST_F_TIMEOUT(mn, replaced_ptes_are_invalidated, 90)
{
	size_t m = MN_PAGES;
	uintptr_t base = (uintptr_t)self->a;
	struct rksm_mn_event *ev;
	struct rksm_counters c;
	unsigned long long shared = variant->zero ? 0 : m;
	unsigned long long sharing = variant->zero ? 0 : m;
	long long zero_pfn = rksm_zero_pfn();
	uint64_t mark;
	pid_t rksmd;
	long n;

	ASSERT_LT(0, zero_pfn);
	/* Nothing has touched the range since it was registered. */
	ASSERT_EQ(0, mn_nr(self->fd));

	ASSERT_EQ(0, rksm_write("run", "1"));
	rksmd = rksm_find_kthread(rksm_thread_name());
	ASSERT_LT(0, rksmd);
	if (variant->zero) {
		/* Every page of a and of b maps the zero page. */
		ASSERT_EQ(0, rksm_wait_scans(2, 30));
		for (double end = rksm_now() + 30;
		     rksm_get("ksm_zero_pages") < 2 * m && rksm_now() < end;)
			rksm_msleep(10);
		rksm_counters_read(&c);
		EXPECT_EQ(2 * m, c.zero_pages);
	}
	EXPECT_EQ(0, rksm_wait_counts(shared, sharing, 2, 30, &c))
		TH_LOG("want shared %llu sharing %llu, have %llu %llu after %llu scans",
		       shared, sharing, c.shared, c.sharing, c.full_scans);

	/*
	 * Every PTE of a changed: to the zero page (a new PFN), or to one page
	 * that a and b share. That page is a's own, write-protected in place, or
	 * b's, which replaced a's: which of the two depends on which was scanned
	 * first. Either is a change of a's PTE that a secondary MMU must hear of.
	 */
	ASSERT_EQ(0, rksm_pfns(0, self->a, m, self->pfn1));
	ASSERT_EQ(0, rksm_pfns(0, self->b, m, self->pfnb));
	if (variant->zero) {
		RKSM_EXPECT_ALL(m, self->pfn0[i] && self->pfn1[i] != self->pfn0[i]);
		RKSM_EXPECT_ALL(m, self->pfn1[i] == (uint64_t)zero_pfn);
	} else {
		RKSM_EXPECT_ALL(m, self->pfn1[i] && self->pfn1[i] == self->pfnb[i]);
	}

	/* ... and rksmd announced each change with MMU_NOTIFY_CLEAR. */
	n = mn_events(self->fd, 0, &ev);
	ASSERT_LE(0, n) TH_LOG("reading the log: %s", strerror(-n));
	mn_coverage(ev, n, RKSM_MN_EV_CLEAR, rksmd, base, m, self->hits);
	TH_LOG("merge: %ld invalidations of the range", n);
	RKSM_EXPECT_ALL(m, self->hits[i] >= 1);
	mn_log_others(_metadata, ev, n, RKSM_MN_EV_CLEAR, rksmd);
	free(ev);
	ASSERT_EQ(0, rksm_pfns(0, self->a, m, self->pfn0));
	for (size_t i = 0; i < m; i++)
		ASSERT_TRUE(rksm_page_is(self->a + i * PAGE_SIZE, mn_seed(variant, i)));

	/* run=2: a private copy of every page again, each one invalidated. */
	mark = mn_nr(self->fd);
	ASSERT_NE(~0ULL, mark);
	ASSERT_EQ(0, rksm_write("run", "2"));
	ASSERT_EQ(0, rksm_pfns(0, self->a, m, self->pfn1));
	RKSM_EXPECT_ALL(m, self->pfn1[i] && self->pfn1[i] != self->pfn0[i]);
	n = mn_events(self->fd, mark, &ev);
	ASSERT_LE(0, n) TH_LOG("reading the log: %s", strerror(-n));
	mn_coverage(ev, n, RKSM_MN_EV_CLEAR, 0, base, m, self->hits);
	TH_LOG("unmerge: %ld invalidations of the range", n);
	RKSM_EXPECT_ALL(m, self->hits[i] >= 1);
	mn_log_others(_metadata, ev, n, RKSM_MN_EV_CLEAR, 0);
	free(ev);
	for (size_t i = 0; i < m; i++)
		ASSERT_TRUE(rksm_page_is(self->a + i * PAGE_SIZE, mn_seed(variant, i)));
}

TEST_HARNESS_MAIN
