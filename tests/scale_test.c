// SPDX-License-Identifier: GPL-2.0
/*
 * Scale and hostility.
 *
 * many_procs: 64 processes x 64 pages, the same in all.
 * many_vmas:  2 processes x 4096 one-page VMAs (mergeable and not
 *             alternating, or all mergeable with alternating protections).
 * crafted:    pages that all have one seed-0 xxh64 (tests/xxh64_craft.h),
 *             the hash-flooding attack on trees keyed by that hash: 2
 *             processes hold the same 4096 crafted pages, a third 4096
 *             other crafted pages. Only the real twins merge. The scanner's
 *             CPU time per page is reported next to that of random pages.
 * big:        2 processes x 1.5 GiB (THP as the guest has it: "always"),
 *             page i alike in both and unlike every other page: more than
 *             1 GiB per process, past the 262144 records a 4 MiB kmalloc'd
 *             array would hold. Every page merges: pages_shared ==
 *             pages_sharing == 393216 exactly, one PFN per pair, copy on
 *             write works, run=2 undoes it all.
 *             RKSM_SCALE_BIG_MIB=N uses N MiB per process instead.
 *
 * Every test checks exact counters (with the scanner stopped), PFNs through
 * /proc/<pid>/pagemap and every byte, and prints its timings. Runs against
 * rksm, or against KSM with RKSM_SYSFS=/sys/kernel/mm/ksm.
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

/* The scanner thread's CPU time, pages_scanned and full_scans over a stretch. */
struct meter {
	pid_t tid;
	long cpu;
	unsigned long long scanned, full_scans;
	double t;
};

static void meter_start(struct meter *m)
{
	m->tid = rksm_find_kthread(rksm_thread_name());
	m->cpu = m->tid ? rksm_cpu_ticks(m->tid) : -1;
	m->scanned = rksm_get("pages_scanned");
	m->full_scans = rksm_get("full_scans");
	m->t = rksm_now();
}

/* Ends the stretch: *@m now holds the differences (cpu < 0: unknown). */
static void meter_stop(struct meter *m)
{
	long cpu = m->tid ? rksm_cpu_ticks(m->tid) : -1;

	m->cpu = cpu >= 0 && m->cpu >= 0 ? cpu - m->cpu : -1;
	m->scanned = rksm_get("pages_scanned") - m->scanned;
	m->full_scans = rksm_get("full_scans") - m->full_scans;
	m->t = rksm_now() - m->t;
}

static double meter_cpu_s(const struct meter *m)
{
	return m->cpu < 0 ? -1 : (double)m->cpu / sysconf(_SC_CLK_TCK);
}

/* Microseconds of scanner CPU per scanned page, or -1. */
static double meter_us_per_page(const struct meter *m)
{
	return m->scanned && m->cpu >= 0 ? meter_cpu_s(m) * 1e6 / m->scanned : -1;
}

/*
 * Merge: from a clean engine, run=1 until pages_sharing reaches @sharing
 * (rksm_wait_sharing(): at most @timeout seconds), then run=0 so that the
 * counters hold still, and check pages_shared and pages_sharing exactly.
 * *@m gets the scanner's CPU time; with @baseline, the CPU time per page is
 * also reported against it (a diagnostic, not a check).
 */
static void scale_merge(struct __test_metadata *_metadata, const char *what,
			unsigned long long shared, unsigned long long sharing,
			double timeout, struct meter *m, const struct meter *baseline)
{
	struct rksm_counters c;
	int err;

	rksm_counters_read(&c);
	ASSERT_EQ(0, c.shared);
	ASSERT_EQ(0, c.sharing);
	meter_start(m);
	ASSERT_EQ(0, rksm_write("run", "1"));
	err = rksm_wait_sharing(what, sharing, timeout, 8, 30, 10, &c);
	/*
	 * pages_sharing counts merges as they are made and is recounted from
	 * the mapcounts at the end of each full scan. Merges can also be
	 * undone behind the scanner's back before that: khugepaged collapses
	 * a range that is partly merged (up to max_ptes_shared = 256 merged
	 * pages) back into a THP, copying the merged pages, as it does with
	 * KSM's. Once (1 run in 6) the recount then found 124 of the pairs
	 * single again, short of the count the wait had seen. So if the
	 * counters are not exactly as expected when the wait ends, they are
	 * read again after the end of the full scan in progress, and waited
	 * for again if they fell short (the next scan merges those again).
	 */
	for (int round = 0; !err && round < 4; round++) {
		rksm_counters_read(&c);
		if (c.shared == shared && c.sharing == sharing)
			break;
		TH_LOG("%s: shared %llu sharing %llu, want %llu %llu: reading them after a recount",
		       what, c.shared, c.sharing, shared, sharing);
		err = rksm_wait_scans(1, timeout);
		if (!err)
			err = rksm_wait_sharing(what, sharing, timeout, 8, 30, 10, &c);
	}
	/* run=0 returns once the scanner has stopped. */
	ASSERT_EQ(0, rksm_write("run", "0"));
	meter_stop(m);
	rksm_counters_read(&c);
	TH_LOG("%s: %s after %.1f s: %llu full scans, %llu pages scanned, %s CPU %.2f s (%.1f us/page)",
	       what, err ? "gave up" : "merged", m->t, m->full_scans, m->scanned,
	       rksm_thread_name(), meter_cpu_s(m), meter_us_per_page(m));
	if (baseline && meter_us_per_page(baseline) > 0 && meter_us_per_page(m) > 0)
		TH_LOG("%s CPU per scanned page: %s %.1f us, random %.1f us (x%.2f)",
		       rksm_thread_name(), what, meter_us_per_page(m),
		       meter_us_per_page(baseline),
		       meter_us_per_page(m) / meter_us_per_page(baseline));
	EXPECT_EQ(0, err) TH_LOG("%s: want shared %llu sharing %llu, have %llu %llu, unshared %llu",
				 what, shared, sharing, c.shared, c.sharing, c.unshared);
	ASSERT_EQ(shared, c.shared);
	ASSERT_EQ(sharing, c.sharing);
}

/* A small batch, so that run=0 (which waits for it) returns soon even on a slow engine. */
#define SMALL_PAGES_TO_SCAN 256

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
	ASSERT_EQ(0, scale_engine_setup(&self->saved, SMALL_PAGES_TO_SCAN, 0));
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

TEST_F_TIMEOUT(many_procs, same_64_pages, 180)
{
	const size_t n = PROC_PAGES;
	uint64_t *pfn = self->pfn;
	struct rksm_counters c;
	struct meter m;

	scale_merge(_metadata, "many_procs", n, (PROCS - 1) * n, 60, &m, NULL);

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
	RKSM_EXPECT_ALL(PROCS * n, pfn[i] != 0);
	EXPECT_EQ(0, rksm_count_shared_pfns(pfn, PROCS * n));
	ASSERT_EQ(0, rksm_kids_call(&self->k, PROCS, rksm_kid_verify, 0));
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
	ASSERT_EQ(0, scale_engine_setup(&self->saved, SMALL_PAGES_TO_SCAN, 0));
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

TEST_F_TIMEOUT(many_vmas, one_page_vmas, 180)
{
	const size_t n = VMA_PAGES;
	size_t merging = variant->alt_prot ? n : n / 2;
	uint64_t *pfn = self->pfn;
	struct rksm_counters c;
	struct meter m;

	/* The VMAs really are one page each. */
	for (int s = 0; s < 2; s++)
		ASSERT_EQ(n, rksm_count_vmas(self->k.pid[s], self->k.buf, n * PAGE_SIZE));

	scale_merge(_metadata, "many_vmas", merging, merging, 60, &m, NULL);

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
	ASSERT_EQ(0, scale_engine_setup(&self->saved, SMALL_PAGES_TO_SCAN, 0));
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
 * One phase: start the 3 kids at @first, merge, check, copy on write,
 * unmerge, end them. The scanner's CPU time goes to *@m.
 */
static void craft_phase(struct __test_metadata *_metadata, FIXTURE_DATA(crafted) *self,
			int first, const char *what, struct meter *m,
			const struct meter *baseline)
{
	const size_t n = CRAFT_PAGES;
	uint64_t *pfn = self->pfn;
	struct rksm_counters c;
	double t0 = rksm_now();

	ASSERT_EQ(0, rksm_kids_start_range(&self->k, first, 3, 120));
	TH_LOG("%s: 3 x %zu pages filled in %.1f s", what, n, rksm_now() - t0);
	scale_merge(_metadata, what, n, n, 60, m, baseline);

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

	craft_phase(_metadata, self, RANDOM_SLOTS, "random", &random, NULL);
	craft_phase(_metadata, self, CRAFT_SLOTS, "crafted", &crafted, &random);
}

/*
 * ---------------------------------------------------------------------------
 * big: 2 processes x 1.5 GiB.
 * ---------------------------------------------------------------------------
 */
#define BIG_MIB 1536UL
#define BIG_COW_STRIDE 97		/* kid 1 writes to every 97th page */
#define BIG_PAGES_TO_SCAN 25000

/* khugepaged's collapses, logged while the big merge runs (each would undo merges). */
#define PAGES_COLLAPSED "/sys/kernel/mm/transparent_hugepage/khugepaged/pages_collapsed"

FIXTURE(big) {
	struct rksm_saved saved;
	struct rksm_kids k;
	size_t mib, n;
	uint64_t *pfn, *pfn2;
};

FIXTURE_SETUP(big)
{
	const char *env = getenv("RKSM_SCALE_BIG_MIB");
	double t0;

	self->mib = env && atol(env) > 0 ? (size_t)atol(env) : BIG_MIB;
	self->n = self->mib << 20 >> 12;
	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	ASSERT_EQ(0, scale_engine_setup(&self->saved, BIG_PAGES_TO_SCAN, 0));
	ASSERT_EQ(0, rksm_kids_init(&self->k, self->n, MADV_NORMAL));
	self->k.content = &rksm_content_lite;
	self->pfn = calloc(2 * self->n, sizeof(uint64_t));
	self->pfn2 = calloc(2 * self->n, sizeof(uint64_t));
	ASSERT_NE(NULL, self->pfn);
	ASSERT_NE(NULL, self->pfn2);
	rksm_kids_seed_common(&self->k, 2);
	t0 = rksm_now();
	ASSERT_EQ(0, rksm_kids_start_range(&self->k, 0, 2, 300));
	TH_LOG("2 processes filled %zu MiB each in %.1f s", self->mib, rksm_now() - t0);
}

FIXTURE_TEARDOWN(big)
{
	double t0 = rksm_now();

	rksm_kids_kill_all(&self->k);
	rksm_engine_teardown(&self->saved);
	TH_LOG("teardown: %.1f s", rksm_now() - t0);
}

TEST_F_TIMEOUT(big, two_procs_1536mib, 1200)
{
	const size_t n = self->n;
	uint64_t *pfn = self->pfn, *pfn2 = self->pfn2;
	size_t cow = (n + BIG_COW_STRIDE - 1) / BIG_COW_STRIDE;
	unsigned long long collapsed0 = 0, collapsed1 = 0;
	struct rksm_counters c;
	bool have_collapsed;
	struct meter m;
	double t0, t;

	for (int s = 0; s < 2; s++)
		TH_LOG("kid %d: AnonHugePages %ld kB of %zu kB", s,
		       rksm_smaps_field(self->k.pid[s], self->k.buf, "AnonHugePages"),
		       self->mib * 1024);

	have_collapsed = rksm_read_path_num(PAGES_COLLAPSED, &collapsed0);
	scale_merge(_metadata, "big", n, n, 600, &m, NULL);
	if (have_collapsed && rksm_read_path_num(PAGES_COLLAPSED, &collapsed1))
		TH_LOG("khugepaged collapsed %llu ranges while it merged", collapsed1 - collapsed0);

	/* One physical page per pair; different contents never share. */
	t0 = rksm_now();
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, 2, pfn));
	RKSM_EXPECT_ALL(n, pfn[i] != 0 && pfn[i] == pfn[n + i]);
	EXPECT_EQ(0, rksm_count_shared_pfns(pfn, n));
	ASSERT_EQ(0, rksm_kids_call_timeout(&self->k, 2, rksm_kid_verify, 0, 300));
	TH_LOG("PFNs and bytes checked in %.1f s", rksm_now() - t0);

	/* Copy on write: kid 1 writes new contents to every 97th page. */
	for (size_t i = 0; i < n; i += BIG_COW_STRIDE)
		rksm_kid_seeds(&self->k, 1)[i] = rksm_seed_own(1, i, 1);
	t0 = rksm_now();
	ASSERT_EQ(cow, rksm_kid_call_timeout(&self->k, 1, rksm_kid_sync, 0, 300));
	t = rksm_now() - t0;
	ASSERT_EQ(0, rksm_kids_call_timeout(&self->k, 2, rksm_kid_verify, 0, 300));
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, 2, pfn2));
	/* Kid 0 keeps the merged pages; kid 1 has its own copy where it wrote. */
	RKSM_EXPECT_ALL(n, pfn2[i] == pfn[i]);
	RKSM_EXPECT_ALL(n, i % BIG_COW_STRIDE ?
			pfn2[n + i] == pfn[i] :
			pfn2[n + i] != 0 && pfn2[n + i] != pfn[i]);
	TH_LOG("copy on write of %zu pages: %.1f s", cow, t);

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
	ASSERT_EQ(0, rksm_kids_call_timeout(&self->k, 2, rksm_kid_verify, 0, 300));
	TH_LOG("run=2: %.1f s", t);
}

TEST_HARNESS_MAIN
