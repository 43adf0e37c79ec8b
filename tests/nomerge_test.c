// SPDX-License-Identifier: GPL-2.0
/*
 * What must not merge, or merges specially: pages that differ (even in one
 * byte), pages that keep changing, zero-filled pages (the shared zero page
 * with use_zero_pages=1, an ordinary KSM page without), and a page with an
 * extra reference (pinned by vmsplice into a pipe). Each test also has
 * pages that do merge, so "nothing merged" cannot pass by a scanner that
 * does nothing.
 *
 * Runs against rksm, or against KSM with RKSM_SYSFS=/sys/kernel/mm/ksm.
 */
#include <sys/uio.h>

#include "kselftest_harness.h"
#include "rksm_util.h"

FIXTURE(nomerge) {
	struct rksm_saved saved;
	struct rksm_kids k;
	uint64_t *pfn;
};

FIXTURE_SETUP(nomerge)
{
	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
	self->pfn = calloc(RKSM_MAX_KIDS * 512, sizeof(uint64_t));
	ASSERT_NE(NULL, self->pfn);
}

FIXTURE_TEARDOWN(nomerge)
{
	rksm_kids_kill_all(&self->k);
	rksm_engine_teardown(&self->saved);
}

/* The same, with use_zero_pages variants. */
FIXTURE(zero) {
	struct rksm_saved saved;
	struct rksm_kids k;
	uint64_t *pfn;
};

FIXTURE_VARIANT(zero) {
	int use_zero_pages;
};

FIXTURE_VARIANT_ADD(zero, use_zero_pages_0) {
	.use_zero_pages = 0,
};

FIXTURE_VARIANT_ADD(zero, use_zero_pages_1) {
	.use_zero_pages = 1,
};

FIXTURE_SETUP(zero)
{
	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
	self->pfn = calloc(RKSM_MAX_KIDS * 512, sizeof(uint64_t));
	ASSERT_NE(NULL, self->pfn);
}

FIXTURE_TEARDOWN(zero)
{
	rksm_kids_kill_all(&self->k);
	rksm_engine_teardown(&self->saved);
}

/* Where near_fill() changes a byte in page @i. */
static size_t near_off(size_t i)
{
	switch (i % 4) {
	case 0: return 0;
	case 1: return PAGE_SIZE - 1;
	case 2: return PAGE_SIZE / 2;
	default: return (i * 131) % PAGE_SIZE;
	}
}

#define NEAR_KIDS 4
#define NEAR_PAGES 256
#define NEAR_SAME 16	/* the last pages are the same everywhere: they merge */

/*
 * Page i of kid s: below NEAR_PAGES / 2 its own contents; then the common
 * page i with one byte XORed with s (kid 0 keeps it as is), so the copies
 * differ only there; the last NEAR_SAME pages are common.
 */
static void near_page(unsigned char *buf, int s, size_t i)
{
	if (i < NEAR_PAGES / 2) {
		rksm_fill_page(buf, rksm_seed_own(s, i, 0));
		return;
	}
	rksm_fill_page(buf, rksm_seed_common(i));
	if (i < NEAR_PAGES - NEAR_SAME)
		buf[near_off(i)] ^= s;
}

static long near_fill(struct rksm_kids *k, int slot, long arg)
{
	(void)arg;
	for (size_t i = 0; i < k->pages; i++)
		near_page((unsigned char *)rksm_kid_page(k, slot, i), slot, i);
	return madvise(k->kbuf[slot], k->pages * PAGE_SIZE, MADV_MERGEABLE) ? -errno : 0;
}

static long near_verify(struct rksm_kids *k, int slot, long arg)
{
	unsigned char want[PAGE_SIZE];
	long bad = 0;

	(void)arg;
	for (size_t i = 0; i < k->pages; i++) {
		near_page(want, slot, i);
		bad += !!memcmp(want, rksm_kid_page(k, slot, i), PAGE_SIZE);
	}
	return bad;
}

TEST_F_TIMEOUT(nomerge, different_pages_never_merge, 90)
{
	const size_t m = NEAR_PAGES;
	struct rksm_counters c;

	ASSERT_EQ(0, rksm_kids_init(&self->k, m, MADV_NOHUGEPAGE));
	for (int s = 0; s < NEAR_KIDS; s++) {
		ASSERT_LT(0, rksm_kid_spawn(&self->k, s));
		ASSERT_EQ(0, rksm_kid_call(&self->k, s, near_fill, 0));
	}
	ASSERT_EQ(0, rksm_write("run", "1"));
	/* Only the NEAR_SAME common pages merge, through several full scans. */
	ASSERT_EQ(0, rksm_wait_counts(NEAR_SAME, NEAR_SAME * (NEAR_KIDS - 1), 4, 30, &c))
		TH_LOG("shared %llu sharing %llu", c.shared, c.sharing);
	ASSERT_EQ(0, rksm_wait_scans(2, 20));
	rksm_counters_read(&c);
	EXPECT_EQ(NEAR_SAME, c.shared);
	EXPECT_EQ(NEAR_SAME * (NEAR_KIDS - 1), c.sharing);
	/* Every unmerged page sits in the unstable tree, none is volatile. */
	EXPECT_EQ((m - NEAR_SAME) * NEAR_KIDS, c.unshared);
	EXPECT_EQ(0, c.volatil);

	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NEAR_KIDS, self->pfn));
	EXPECT_EQ(NEAR_SAME * NEAR_KIDS, rksm_count_shared_pfns(self->pfn, NEAR_KIDS * m));
	RKSM_EXPECT_ALL(NEAR_KIDS * m, i % m < m - NEAR_SAME || self->pfn[i % m] == self->pfn[i]);
	EXPECT_EQ(0, rksm_kids_call(&self->k, NEAR_KIDS, near_verify, 0));
}

#define VOL_KIDS 2
#define VOL_SAME 64	/* pages 0..63 are common and quiet: they merge */
#define VOL_PAGES 96	/* pages 64..95 change all the time */

/*
 * Kid function: until *flag is set, keep rewriting the volatile pages:
 * the common contents with a counter in the first word that only ever
 * grows. Each kid's counter starts in its own range, so two kids never
 * hold the same volatile page at the same time. Returns the rounds done.
 */
static long churn(struct rksm_kids *k, int slot, long arg)
{
	uint64_t n = (uint64_t)(slot + 1) << 40;
	long rounds = 0;

	(void)arg;
	while (!k->flag[0]) {
		n++;
		for (size_t i = VOL_SAME; i < VOL_PAGES; i++)
			*(volatile uint64_t *)rksm_kid_page(k, slot, i) = n;
		rounds++;
	}
	return rounds;
}

TEST_F_TIMEOUT(nomerge, volatile_pages_never_merge, 90)
{
	unsigned long long f0, vmax = 0;
	struct rksm_counters c;
	double end;
	long rounds;

	ASSERT_EQ(0, rksm_kids_init(&self->k, VOL_PAGES, MADV_NOHUGEPAGE));
	rksm_kids_seed_common(&self->k, VOL_KIDS);
	ASSERT_EQ(0, rksm_kids_start(&self->k, VOL_KIDS));
	for (int s = 0; s < VOL_KIDS; s++) {
		ASSERT_EQ(0, rksm_kid_send(&self->k, s, churn, 0));
	}
	ASSERT_EQ(0, rksm_write("run", "1"));
	ASSERT_EQ(0, rksm_wait_counts(VOL_SAME, VOL_SAME * (VOL_KIDS - 1), 2, 30, &c))
		TH_LOG("shared %llu sharing %llu", c.shared, c.sharing);

	/* Through 6 more full scans, no volatile page merges, even briefly. */
	f0 = c.full_scans;
	end = rksm_now() + 30;
	while (c.full_scans < f0 + 6) {
		ASSERT_LT(rksm_now(), end) TH_LOG("6 full scans took over 30 s");
		rksm_msleep(5);
		rksm_counters_read(&c);
		ASSERT_EQ(VOL_SAME, c.shared);
		ASSERT_EQ(VOL_SAME * (VOL_KIDS - 1), c.sharing);
		if (c.volatil > vmax)
			vmax = c.volatil;
	}
	/* Pages that changed since the last look are counted as volatile. */
	TH_LOG("pages_volatile peaked at %llu of %d", vmax,
	       (VOL_PAGES - VOL_SAME) * VOL_KIDS);
	EXPECT_GE(vmax, (VOL_PAGES - VOL_SAME) * VOL_KIDS / 2);

	ASSERT_EQ(0, rksm_kids_pfns(&self->k, VOL_KIDS, self->pfn));
	self->k.flag[0] = 1;
	for (int s = 0; s < VOL_KIDS; s++) {
		ASSERT_EQ(0, rksm_kid_recv(&self->k, s, &rounds, 30));
		TH_LOG("kid %d rewrote its volatile pages %ld times", s, rounds);
		EXPECT_LT(100, rounds);
	}
	/* VOL_KIDS is 2: only the quiet pages are shared. */
	RKSM_EXPECT_ALL(VOL_PAGES, (self->pfn[i] == self->pfn[VOL_PAGES + i]) == (i < VOL_SAME));
}

#define ZERO_KIDS 2
#define ZERO_PAGES 64	/* even pages zero-filled, odd pages common contents */

/*
 * Zero-filled pages: with use_zero_pages=1 they are replaced by the shared
 * zero page, counted in ksm_zero_pages and not in pages_shared/sharing; with
 * use_zero_pages=0 they are one more content that merges like any other.
 */
TEST_F_TIMEOUT(zero, zero_filled_pages, 90)
{
	const unsigned long long zeros = ZERO_PAGES / 2 * ZERO_KIDS;
	unsigned long long shared = ZERO_PAGES / 2, sharing = ZERO_PAGES / 2 * (ZERO_KIDS - 1);
	long long zero_pfn = rksm_zero_pfn();
	struct rksm_counters c;

	ASSERT_LT(0, zero_pfn);
	ASSERT_EQ(0, rksm_write_num("use_zero_pages", variant->use_zero_pages));
	ASSERT_EQ(0, rksm_kids_init(&self->k, ZERO_PAGES, MADV_NOHUGEPAGE));
	for (int s = 0; s < ZERO_KIDS; s++)
		for (int i = 0; i < ZERO_PAGES; i++)
			rksm_kid_seeds(&self->k, s)[i] = i % 2 ? rksm_seed_common(i) : 0;
	ASSERT_EQ(0, rksm_kids_start(&self->k, ZERO_KIDS));
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, ZERO_KIDS, self->pfn));
	for (int i = 0; i < ZERO_KIDS * ZERO_PAGES; i++) {
		ASSERT_NE((uint64_t)zero_pfn, self->pfn[i]);
	}

	if (!variant->use_zero_pages) {
		/* One more KSM page, mapped by all the zero-filled pages. */
		shared += 1;
		sharing += zeros - 1;
	}
	ASSERT_EQ(0, rksm_write("run", "1"));
	EXPECT_EQ(0, rksm_wait_counts(shared, sharing, 2, 30, &c))
		TH_LOG("want shared %llu sharing %llu, have %llu %llu",
		       shared, sharing, c.shared, c.sharing);
	rksm_counters_read(&c);
	EXPECT_EQ(variant->use_zero_pages ? zeros : 0, c.zero_pages);

	ASSERT_EQ(0, rksm_kids_pfns(&self->k, ZERO_KIDS, self->pfn));
	/* i = kid * ZERO_PAGES + page; even pages are zero-filled. */
	RKSM_EXPECT_ALL(ZERO_KIDS * ZERO_PAGES, self->pfn[i % ZERO_PAGES] == self->pfn[i]);
	RKSM_EXPECT_ALL(ZERO_KIDS * ZERO_PAGES, (self->pfn[i] == (uint64_t)zero_pfn) ==
			(i % 2 == 0 && variant->use_zero_pages));
	ASSERT_EQ(0, rksm_kids_call(&self->k, ZERO_KIDS, rksm_kid_verify, 0));

	/* Writing to a page merged with the zero page gives a private copy. */
	rksm_kid_seeds(&self->k, 0)[0] = rksm_seed_own(0, 0, 1);
	ASSERT_EQ(1, rksm_kid_call(&self->k, 0, rksm_kid_sync, 0));
	EXPECT_NE((uint64_t)zero_pfn, rksm_pfn(self->k.pid[0], self->k.buf));
	EXPECT_NE(self->pfn[ZERO_PAGES], rksm_pfn(self->k.pid[0], self->k.buf));
	ASSERT_EQ(0, rksm_kids_call(&self->k, ZERO_KIDS, rksm_kid_verify, 0));
	if (!variant->use_zero_pages)
		sharing--;
	EXPECT_EQ(0, rksm_wait_counts(shared, sharing, 2, 30, &c))
		TH_LOG("want shared %llu sharing %llu, have %llu %llu",
		       shared, sharing, c.shared, c.sharing);
	EXPECT_EQ(variant->use_zero_pages ? zeros - 1 : 0, rksm_get("ksm_zero_pages"));
}

#define PIN_KIDS 3
#define PIN_PAGES 64
#define PIN_PAGE 10

static int pin_pipe[2];

/* Kid function: vmsplice page @arg into a pipe and leave it there. */
static long pin(struct rksm_kids *k, int slot, long arg)
{
	struct iovec iov = { rksm_kid_page(k, slot, arg), PAGE_SIZE };

	if (pipe(pin_pipe))
		return -errno;
	return vmsplice(pin_pipe[1], &iov, 1, 0) == PAGE_SIZE ? 0 : -EIO;
}

/*
 * A page someone else holds a reference to (here a pipe, via vmsplice)
 * cannot be write-protected safely: it must not be merged, while its
 * identical copies in the other processes merge. The pinning process
 * opts in last, so under KSM its page is not the one the others find in
 * the unstable tree first.
 */
TEST_F_TIMEOUT(nomerge, pinned_page_not_merged, 90)
{
	const int last = PIN_KIDS - 1;
	struct rksm_counters c;

	ASSERT_EQ(0, rksm_kids_init(&self->k, PIN_PAGES, MADV_NOHUGEPAGE));
	rksm_kids_seed_common(&self->k, PIN_KIDS);
	for (int s = 0; s < PIN_KIDS; s++) {
		ASSERT_LT(0, rksm_kid_spawn(&self->k, s));
		ASSERT_EQ(PIN_PAGES, rksm_kid_call(&self->k, s, rksm_kid_fill, 0));
	}
	ASSERT_EQ(0, rksm_kid_call(&self->k, last, pin, PIN_PAGE));
	for (int s = 0; s < PIN_KIDS; s++) {
		ASSERT_EQ(0, rksm_kid_call(&self->k, s, rksm_kid_madvise, MADV_MERGEABLE));
	}
	ASSERT_EQ(0, rksm_write("run", "1"));
	EXPECT_EQ(0, rksm_wait_counts(PIN_PAGES, PIN_PAGES * (PIN_KIDS - 1) - 1, 3, 30, &c))
		TH_LOG("shared %llu sharing %llu", c.shared, c.sharing);
	ASSERT_EQ(0, rksm_wait_scans(2, 20));
	rksm_counters_read(&c);
	EXPECT_EQ(PIN_PAGES, c.shared);
	EXPECT_EQ(PIN_PAGES * (PIN_KIDS - 1) - 1, c.sharing);

	ASSERT_EQ(0, rksm_kids_pfns(&self->k, PIN_KIDS, self->pfn));
	/* i = kid * PIN_PAGES + page: all shared but the pinned page. */
	RKSM_EXPECT_ALL(PIN_KIDS * PIN_PAGES, (self->pfn[i % PIN_PAGES] == self->pfn[i]) !=
			(i == last * PIN_PAGES + PIN_PAGE));
	ASSERT_EQ(0, rksm_kids_call(&self->k, PIN_KIDS, rksm_kid_verify, 0));
}

TEST_HARNESS_MAIN
