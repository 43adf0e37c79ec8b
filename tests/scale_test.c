// SPDX-License-Identifier: GPL-2.0
/*
 * Scale and hostility.
 *
 * big:        2 processes x 1.5 GiB (THP as the guest has it: "always"), page
 *             i alike in both and unlike every other page. Every page
 *             merges: pages_shared == pages_sharing == 393216 exactly, one
 *             PFN per pair, copy on write works, run=2 undoes it all.
 * crafted:    pages that all have one seed-0 xxh64 (tests/xxh64_craft.h),
 *             the hash-flooding attack on trees keyed by that hash: 2
 *             processes hold the same 4096 crafted pages and a third 4096
 *             other crafted pages. Only the real twins merge. The scanner's
 *             CPU time per page is reported next to that of random pages.
 * many_vmas:  2 processes x 4096 one-page VMAs (mergeable and not
 *             alternating, or all mergeable with alternating protections).
 * many_procs: 64 processes x 64 pages, the same in all.
 *
 * Every test checks exact counters, PFNs through /proc/<pid>/pagemap and
 * every byte. Runs against rksm, or against KSM with
 * RKSM_SYSFS=/sys/kernel/mm/ksm.
 */
#define RKSM_MAX_KIDS 64
#include "kselftest_harness.h"
#include "rksm_util.h"
#include "xxh64_craft.h"

/* Clean engine (rksm_engine_setup()), KSM's sharing limit, and the pace. */
static int scale_engine_setup(struct rksm_saved *s, unsigned long long pages_to_scan,
			      unsigned int sleep_ms)
{
	int err = rksm_engine_setup(s);

	if (!err)
		err = rksm_write_num("max_page_sharing", 256);
	if (!err)
		err = rksm_write_num("pages_to_scan", pages_to_scan);
	if (!err)
		err = rksm_write_num("sleep_millisecs", sleep_ms);
	return err;
}

/* The scanner thread's CPU time and pages_scanned over a stretch. */
struct meter {
	pid_t tid;
	long cpu;
	unsigned long long scanned;
	double t;
};

static void meter_start(struct meter *m)
{
	m->tid = rksm_find_kthread(rksm_thread_name());
	m->cpu = m->tid ? rksm_cpu_ticks(m->tid) : -1;
	m->scanned = rksm_get("pages_scanned");
	m->t = rksm_now();
}

/* Ends the stretch: *@m now holds the differences (cpu < 0: unknown). */
static void meter_stop(struct meter *m)
{
	long cpu = m->tid ? rksm_cpu_ticks(m->tid) : -1;

	m->cpu = cpu >= 0 && m->cpu >= 0 ? cpu - m->cpu : -1;
	m->scanned = rksm_get("pages_scanned") - m->scanned;
	m->t = rksm_now() - m->t;
}

static double meter_cpu_s(const struct meter *m)
{
	return m->cpu < 0 ? -1 : (double)m->cpu / sysconf(_SC_CLK_TCK);
}

/* Microseconds of scanner CPU per scanned page. */
static double meter_us_per_page(const struct meter *m)
{
	return m->scanned && m->cpu >= 0 ? meter_cpu_s(m) * 1e6 / m->scanned : -1;
}

/*
 * ---------------------------------------------------------------------------
 * big: 2 processes x 1.5 GiB.
 * ---------------------------------------------------------------------------
 */
#define BIG_MIB 1536UL
#define BIG_PAGES (BIG_MIB << 20 >> 12)	/* 393216 */
#define BIG_COW_STRIDE 97		/* kid 1 writes to every 97th page */
#define BIG_PAGES_TO_SCAN 25000

FIXTURE(big) {
	struct rksm_saved saved;
	struct rksm_kids k;
	uint64_t *pfn, *pfn2;
};

FIXTURE_SETUP(big)
{
	double t0;

	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	ASSERT_EQ(0, scale_engine_setup(&self->saved, BIG_PAGES_TO_SCAN, 0));
	ASSERT_EQ(0, rksm_kids_init(&self->k, BIG_PAGES, MADV_NORMAL));
	self->k.content = &rksm_content_lite;
	self->pfn = calloc(2 * BIG_PAGES, sizeof(uint64_t));
	self->pfn2 = calloc(2 * BIG_PAGES, sizeof(uint64_t));
	ASSERT_NE(NULL, self->pfn);
	ASSERT_NE(NULL, self->pfn2);
	rksm_kids_seed_common(&self->k, 2);
	t0 = rksm_now();
	ASSERT_EQ(0, rksm_kids_start_range(&self->k, 0, 2, 240));
	TH_LOG("2 processes filled %lu MiB each in %.1f s", BIG_MIB, rksm_now() - t0);
}

FIXTURE_TEARDOWN(big)
{
	rksm_kids_kill_all(&self->k);
	rksm_engine_teardown(&self->saved);
}

TEST_F_TIMEOUT(big, two_procs_1536mib, 900)
{
	const size_t n = BIG_PAGES;
	uint64_t *pfn = self->pfn, *pfn2 = self->pfn2;
	size_t cow = (n + BIG_COW_STRIDE - 1) / BIG_COW_STRIDE;
	struct rksm_counters c;
	struct meter m;
	double t0, t;
	int err;

	for (int s = 0; s < 2; s++)
		TH_LOG("kid %d: AnonHugePages %ld kB of %lu kB", s,
		       rksm_smaps_field(self->k.pid[s], self->k.buf, "AnonHugePages"),
		       BIG_MIB * 1024);
	rksm_counters_read(&c);
	ASSERT_EQ(0, c.shared);
	ASSERT_EQ(0, c.sharing);

	/* Merge: run until pages_sharing reaches n, then stop the scanner. */
	meter_start(&m);
	ASSERT_EQ(0, rksm_write("run", "1"));
	err = rksm_wait_sharing("big", n, 400, 8, 60, 10, &c);
	ASSERT_EQ(0, rksm_write("run", "0"));
	meter_stop(&m);
	rksm_counters_read(&c);
	TH_LOG("merge: %.1f s, %llu full scans, %llu pages scanned, %s CPU %.1f s (%.1f us/page)",
	       m.t, c.full_scans, m.scanned, rksm_thread_name(), meter_cpu_s(&m),
	       meter_us_per_page(&m));
	EXPECT_EQ(0, err) TH_LOG("pages_sharing did not reach %zu: shared %llu sharing %llu unshared %llu after %llu full scans",
				 n, c.shared, c.sharing, c.unshared, c.full_scans);
	/* The scanner is stopped: the counters hold still. */
	ASSERT_EQ(n, c.shared);
	ASSERT_EQ(n, c.sharing);

	/* One physical page per pair; different contents never share. */
	t0 = rksm_now();
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, 2, pfn));
	RKSM_EXPECT_ALL(n, pfn[i] != 0 && pfn[i] == pfn[n + i]);
	EXPECT_EQ(0, rksm_count_shared_pfns(pfn, n));
	ASSERT_EQ(0, rksm_kids_call_timeout(&self->k, 2, rksm_kid_verify, 0, 240));
	TH_LOG("PFNs and bytes checked in %.1f s", rksm_now() - t0);

	/* Copy on write: kid 1 writes new contents to every 97th page. */
	for (size_t i = 0; i < n; i += BIG_COW_STRIDE)
		rksm_kid_seeds(&self->k, 1)[i] = rksm_seed_own(1, i, 1);
	t0 = rksm_now();
	ASSERT_EQ(cow, rksm_kid_call_timeout(&self->k, 1, rksm_kid_sync, 0, 240));
	t = rksm_now() - t0;
	ASSERT_EQ(0, rksm_kids_call_timeout(&self->k, 2, rksm_kid_verify, 0, 240));
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, 2, pfn2));
	/* Kid 0 keeps the merged pages; kid 1 has its own copy where it wrote. */
	RKSM_EXPECT_ALL(n, pfn2[i] == pfn[i]);
	RKSM_EXPECT_ALL(n, i % BIG_COW_STRIDE ?
			pfn2[n + i] == pfn[i] :
			pfn2[n + i] != 0 && pfn2[n + i] != pfn[i]);
	TH_LOG("copy on write of %zu pages: %.2f s", cow, t);

	/* run=2 unmerges everything before it returns. */
	t0 = rksm_now();
	ASSERT_EQ(0, rksm_write("run", "2"));
	t = rksm_now() - t0;
	rksm_counters_read(&c);
	EXPECT_EQ(0, c.shared);
	EXPECT_EQ(0, c.sharing);
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, 2, pfn));
	RKSM_EXPECT_ALL(2 * n, pfn[i] != 0);
	EXPECT_EQ(0, rksm_count_shared_pfns(pfn, 2 * n));
	ASSERT_EQ(0, rksm_kids_call_timeout(&self->k, 2, rksm_kid_verify, 0, 240));
	TH_LOG("run=2: %.1f s", t);
}

/*
 * ---------------------------------------------------------------------------
 * crafted: one xxh64 for all.
 * ---------------------------------------------------------------------------
 */
#define CRAFT_PAGES 4096
#define CRAFT_BIT (1ULL << 62)	/* a seed with this bit: crafted page (seed & ~bit) */

static void craft_fill(void *page, uint64_t seed)
{
	if (seed & CRAFT_BIT)
		xxh64_craft_page(page, seed & ~CRAFT_BIT);
	else
		rksm_fill_page(page, seed);
}

static bool craft_is(const void *page, uint64_t seed)
{
	if (seed & CRAFT_BIT)
		return xxh64_craft_page_is(page, seed & ~CRAFT_BIT);
	return rksm_page_is(page, seed);
}

static const struct rksm_content craft_content = { "crafted", craft_fill, craft_is };

/*
 * A phase uses kid slots first..first+2: the first two hold the same pages,
 * the third pages of its own. Random pages in slots 0-2, crafted in 3-5.
 */
enum { RANDOM_SLOTS = 0, CRAFT_SLOTS = 3 };

FIXTURE(crafted) {
	struct rksm_saved saved;
	struct rksm_kids k;
	uint64_t pfn[3 * CRAFT_PAGES];
};

FIXTURE_SETUP(crafted)
{
	const size_t m = CRAFT_PAGES;
	unsigned char *pages;
	double t0 = rksm_now();

	/* The generator first: known answers, then collisions that differ. */
	ASSERT_EQ(-1, xxh64_selftest()) TH_LOG("xxh64 test vector %d is wrong", xxh64_selftest());
	pages = malloc(2 * m * PAGE_SIZE);
	ASSERT_NE(NULL, pages);
	ASSERT_EQ(0, xxh64_craft_pages(pages, 2 * m, 1));
	free(pages);
	TH_LOG("%zu crafted pages, all xxh64 %016llx (seed 0) and all different: %.1f s",
	       2 * m, (unsigned long long)xxh64_craft_hash(), rksm_now() - t0);

	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	ASSERT_EQ(0, scale_engine_setup(&self->saved, 10000, 0));
	ASSERT_EQ(0, rksm_kids_init(&self->k, m, MADV_NOHUGEPAGE));
	self->k.content = &craft_content;
	for (size_t i = 0; i < m; i++) {
		rksm_kid_seeds(&self->k, RANDOM_SLOTS)[i] = rksm_seed_common(i);
		rksm_kid_seeds(&self->k, RANDOM_SLOTS + 1)[i] = rksm_seed_common(i);
		rksm_kid_seeds(&self->k, RANDOM_SLOTS + 2)[i] = rksm_seed_own(2, i, 0);
		rksm_kid_seeds(&self->k, CRAFT_SLOTS)[i] = CRAFT_BIT | (1 + i);
		rksm_kid_seeds(&self->k, CRAFT_SLOTS + 1)[i] = CRAFT_BIT | (1 + i);
		rksm_kid_seeds(&self->k, CRAFT_SLOTS + 2)[i] = CRAFT_BIT | (1 + m + i);
	}
}

FIXTURE_TEARDOWN(crafted)
{
	rksm_kids_kill_all(&self->k);
	rksm_engine_teardown(&self->saved);
}

/*
 * One phase: start the 3 kids at @first, merge, check, unmerge, end them.
 * Returns the scanner's CPU time per scanned page in *@m.
 */
static void craft_phase(struct __test_metadata *_metadata, FIXTURE_DATA(crafted) *self,
			int first, const char *what, struct meter *m)
{
	const size_t n = CRAFT_PAGES;
	uint64_t *pfn = self->pfn;
	struct rksm_counters c;
	double t0 = rksm_now();

	ASSERT_EQ(0, rksm_kids_start_range(&self->k, first, 3, 120));
	TH_LOG("%s: 3 x %zu pages filled in %.1f s", what, n, rksm_now() - t0);
	rksm_counters_read(&c);
	ASSERT_EQ(0, c.shared);
	ASSERT_EQ(0, c.sharing);

	meter_start(m);
	ASSERT_EQ(0, rksm_write("run", "1"));
	EXPECT_EQ(0, rksm_wait_counts(n, n, 2, 120, &c))
		TH_LOG("%s: want shared %zu sharing %zu, have %llu %llu after %llu scans",
		       what, n, n, c.shared, c.sharing, c.full_scans);
	ASSERT_EQ(0, rksm_write("run", "0"));
	meter_stop(m);
	rksm_counters_read(&c);
	ASSERT_EQ(n, c.shared);
	ASSERT_EQ(n, c.sharing);
	TH_LOG("%s: merged in %.1f s; %s CPU %.2f s for %llu scanned pages: %.1f us/page",
	       what, m->t, rksm_thread_name(), meter_cpu_s(m), m->scanned,
	       meter_us_per_page(m));

	/*
	 * Twins share a PFN, and nothing else does: not two pages of one
	 * process, not a page of the third process with anything.
	 */
	for (int s = 0; s < 3; s++)
		ASSERT_EQ(0, rksm_kid_pfns(&self->k, first + s, &pfn[s * n]));
	RKSM_EXPECT_ALL(3 * n, pfn[i] != 0);
	RKSM_EXPECT_ALL(n, pfn[i] == pfn[n + i]);
	EXPECT_EQ(0, rksm_count_shared_pfns(pfn, n));
	EXPECT_EQ(0, rksm_count_shared_pfns(&pfn[n], 2 * n));
	for (int s = 0; s < 3; s++)
		ASSERT_EQ(0, rksm_kid_call(&self->k, first + s, rksm_kid_verify, 0));

	/* Copy on write: the second process writes new contents to every 7th page. */
	for (size_t i = 0; i < n; i += 7)
		rksm_kid_seeds(&self->k, first + 1)[i] = rksm_seed_own(1, i, 1);
	ASSERT_EQ((n + 6) / 7, rksm_kid_call(&self->k, first + 1, rksm_kid_sync, 0));
	for (int s = 0; s < 3; s++)
		ASSERT_EQ(0, rksm_kid_call(&self->k, first + s, rksm_kid_verify, 0));
	ASSERT_EQ(0, rksm_kid_pfns(&self->k, first + 1, &pfn[n]));
	RKSM_EXPECT_ALL(n, (pfn[n + i] == pfn[i]) == (i % 7 != 0));

	ASSERT_EQ(0, rksm_write("run", "2"));
	ASSERT_EQ(0, rksm_write("run", "0"));
	rksm_counters_read(&c);
	EXPECT_EQ(0, c.shared);
	EXPECT_EQ(0, c.sharing);
	for (int s = 0; s < 3; s++)
		ASSERT_EQ(0, rksm_kid_pfns(&self->k, first + s, &pfn[s * n]));
	EXPECT_EQ(0, rksm_count_shared_pfns(pfn, 3 * n));
	for (int s = 0; s < 3; s++) {
		ASSERT_EQ(0, rksm_kid_call(&self->k, first + s, rksm_kid_verify, 0));
		rksm_kid_kill(&self->k, first + s);
	}
	TH_LOG("%s: phase took %.1f s", what, rksm_now() - t0);
}

TEST_F_TIMEOUT(crafted, one_hash_4096_pairs, 300)
{
	struct meter random, crafted;

	craft_phase(_metadata, self, RANDOM_SLOTS, "random", &random);
	craft_phase(_metadata, self, CRAFT_SLOTS, "crafted", &crafted);
	if (meter_us_per_page(&random) > 0)
		TH_LOG("%s CPU per scanned page: crafted %.1f us, random %.1f us (x%.2f)",
		       rksm_thread_name(), meter_us_per_page(&crafted),
		       meter_us_per_page(&random),
		       meter_us_per_page(&crafted) / meter_us_per_page(&random));
}

/*
 * ---------------------------------------------------------------------------
 * many_vmas: 2 processes x 4096 one-page VMAs.
 * ---------------------------------------------------------------------------
 */
#define VMA_PAGES 4096

FIXTURE(many_vmas) {
	struct rksm_saved saved;
	struct rksm_kids k;
	uint64_t pfn[2 * VMA_PAGES];
};

FIXTURE_VARIANT(many_vmas) {
	/*
	 * false: even pages MADV_MERGEABLE, odd ones not (2048 mergeable
	 * VMAs). true: all mergeable, odd pages PROT_READ (4096 mergeable
	 * VMAs, half of them read-only).
	 */
	bool alt_prot;
};

FIXTURE_VARIANT_ADD(many_vmas, alt_mergeable) {
	.alt_prot = false,
};

FIXTURE_VARIANT_ADD(many_vmas, alt_prot) {
	.alt_prot = true,
};

/* Kid function: cut the buffer into one-page VMAs (see the variant). */
static long kid_cut_vmas(struct rksm_kids *k, int slot, long alt_prot)
{
	char *buf = k->kbuf[slot];

	if (alt_prot && madvise(buf, k->pages * PAGE_SIZE, MADV_MERGEABLE))
		return -errno;
	for (size_t i = 0; i < k->pages; i++) {
		char *p = buf + i * PAGE_SIZE;

		if (alt_prot && i % 2 && mprotect(p, PAGE_SIZE, PROT_READ))
			return -errno;
		if (!alt_prot && i % 2 == 0 && madvise(p, PAGE_SIZE, MADV_MERGEABLE))
			return -errno;
	}
	return 0;
}

FIXTURE_SETUP(many_vmas)
{
	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	ASSERT_EQ(0, scale_engine_setup(&self->saved, 10000, 0));
	ASSERT_EQ(0, rksm_kids_init(&self->k, VMA_PAGES, MADV_NOHUGEPAGE));
	rksm_kids_seed_common(&self->k, 2);
	for (int s = 0; s < 2; s++) {
		ASSERT_LT(0, rksm_kid_spawn(&self->k, s));
		ASSERT_EQ(VMA_PAGES, rksm_kid_call(&self->k, s, rksm_kid_fill, 0));
		ASSERT_EQ(0, rksm_kid_call(&self->k, s, kid_cut_vmas, variant->alt_prot));
	}
}

FIXTURE_TEARDOWN(many_vmas)
{
	rksm_kids_kill_all(&self->k);
	rksm_engine_teardown(&self->saved);
}

TEST_F_TIMEOUT(many_vmas, one_page_vmas, 120)
{
	const size_t n = VMA_PAGES;
	size_t merging = variant->alt_prot ? n : n / 2;
	uint64_t *pfn = self->pfn;
	struct rksm_counters c;
	struct meter m;

	/* The VMAs really are one page each. */
	for (int s = 0; s < 2; s++)
		ASSERT_EQ(n, rksm_count_vmas(self->k.pid[s], self->k.buf, n * PAGE_SIZE));

	meter_start(&m);
	ASSERT_EQ(0, rksm_write("run", "1"));
	EXPECT_EQ(0, rksm_wait_counts(merging, merging, 2, 60, &c))
		TH_LOG("want shared %zu sharing %zu, have %llu %llu after %llu scans",
		       merging, merging, c.shared, c.sharing, c.full_scans);
	ASSERT_EQ(0, rksm_write("run", "0"));
	meter_stop(&m);
	rksm_counters_read(&c);
	ASSERT_EQ(merging, c.shared);
	ASSERT_EQ(merging, c.sharing);
	TH_LOG("%zu VMAs x 2: merged in %.1f s, %s CPU %.2f s (%.1f us/page)", n, m.t,
	       rksm_thread_name(), meter_cpu_s(&m), meter_us_per_page(&m));

	ASSERT_EQ(0, rksm_kids_pfns(&self->k, 2, pfn));
	RKSM_EXPECT_ALL(2 * n, pfn[i] != 0);
	/* Mergeable pages pair up, the others stay apart. */
	RKSM_EXPECT_ALL(n, (pfn[i] == pfn[n + i]) == (variant->alt_prot || i % 2 == 0));
	EXPECT_EQ(0, rksm_count_shared_pfns(pfn, n));
	ASSERT_EQ(0, rksm_kids_call(&self->k, 2, rksm_kid_verify, 0));
	for (int s = 0; s < 2; s++)
		EXPECT_EQ(n, rksm_count_vmas(self->k.pid[s], self->k.buf, n * PAGE_SIZE));

	ASSERT_EQ(0, rksm_write("run", "2"));
	rksm_counters_read(&c);
	EXPECT_EQ(0, c.shared);
	EXPECT_EQ(0, c.sharing);
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, 2, pfn));
	EXPECT_EQ(0, rksm_count_shared_pfns(pfn, 2 * n));
	ASSERT_EQ(0, rksm_kids_call(&self->k, 2, rksm_kid_verify, 0));
}

/*
 * ---------------------------------------------------------------------------
 * many_procs: 64 processes x 64 pages.
 * ---------------------------------------------------------------------------
 */
#define PROCS 64
#define PROC_PAGES 64

FIXTURE(many_procs) {
	struct rksm_saved saved;
	struct rksm_kids k;
	uint64_t pfn[PROCS * PROC_PAGES];
};

FIXTURE_SETUP(many_procs)
{
	double t0 = rksm_now();

	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	ASSERT_EQ(0, scale_engine_setup(&self->saved, 10000, 0));
	ASSERT_EQ(0, rksm_kids_init(&self->k, PROC_PAGES, MADV_NOHUGEPAGE));
	rksm_kids_seed_common(&self->k, PROCS);
	ASSERT_EQ(0, rksm_kids_start(&self->k, PROCS));
	TH_LOG("%d processes started in %.1f s", PROCS, rksm_now() - t0);
}

FIXTURE_TEARDOWN(many_procs)
{
	rksm_kids_kill_all(&self->k);
	rksm_engine_teardown(&self->saved);
}

TEST_F_TIMEOUT(many_procs, same_64_pages, 120)
{
	const size_t n = PROC_PAGES;
	uint64_t *pfn = self->pfn;
	struct rksm_counters c;
	struct meter m;

	meter_start(&m);
	ASSERT_EQ(0, rksm_write("run", "1"));
	EXPECT_EQ(0, rksm_wait_counts(n, (PROCS - 1) * n, 2, 60, &c))
		TH_LOG("want shared %zu sharing %zu, have %llu %llu after %llu scans",
		       n, (PROCS - 1) * n, c.shared, c.sharing, c.full_scans);
	ASSERT_EQ(0, rksm_write("run", "0"));
	meter_stop(&m);
	rksm_counters_read(&c);
	ASSERT_EQ(n, c.shared);
	ASSERT_EQ((PROCS - 1) * n, c.sharing);
	TH_LOG("merged in %.1f s, %s CPU %.2f s", m.t, rksm_thread_name(), meter_cpu_s(&m));

	/* Page i: one PFN in all 64 processes, and not page j's. */
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, PROCS, pfn));
	RKSM_EXPECT_ALL(PROCS * n, pfn[i] != 0 && pfn[i] == pfn[i % n]);
	EXPECT_EQ(0, rksm_count_shared_pfns(pfn, n));
	ASSERT_EQ(0, rksm_kids_call(&self->k, PROCS, rksm_kid_verify, 0));

	ASSERT_EQ(0, rksm_write("run", "2"));
	rksm_counters_read(&c);
	EXPECT_EQ(0, c.shared);
	EXPECT_EQ(0, c.sharing);
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, PROCS, pfn));
	EXPECT_EQ(0, rksm_count_shared_pfns(pfn, PROCS * n));
	ASSERT_EQ(0, rksm_kids_call(&self->k, PROCS, rksm_kid_verify, 0));
}

TEST_HARNESS_MAIN
