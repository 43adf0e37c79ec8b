// SPDX-License-Identifier: GPL-2.0
/*
 * Transparent huge pages (THP is "always" in the test guest): two
 * processes hold the same 4 MiB, once THP-backed (MADV_HUGEPAGE, 2 MiB
 * aligned) and once not (MADV_NOHUGEPAGE). KSM splits the huge pages and
 * merges every 4 KiB page; data stays intact either way.
 *
 * Runs against rksm, or against KSM with RKSM_SYSFS=/sys/kernel/mm/ksm.
 */
#include "kselftest_harness.h"
#include "rksm_util.h"

/*
 * THE expectation for THP-backed ranges. KSM splits a huge page to merge
 * its subpages: 1. An engine that leaves huge pages alone instead would
 * set this to 0: then nothing in a THP-backed range merges and the huge
 * pages stay.
 */
#define THP_SUBPAGES_MERGE 1

#define NKIDS 2
#define PAGES 1024	/* 4 MiB: two huge pages */

FIXTURE(thp) {
	struct rksm_saved saved;
	struct rksm_kids k;
	uint64_t pfn[NKIDS * PAGES];
};

FIXTURE_VARIANT(thp) {
	int advice;
	bool huge;
	const char *mode;	/* system-wide THP mode to test under, or NULL to leave it */
};

FIXTURE_VARIANT_ADD(thp, hugepage) {
	.advice = MADV_HUGEPAGE, .huge = true,
};

FIXTURE_VARIANT_ADD(thp, nohugepage) {
	.advice = MADV_NOHUGEPAGE, .huge = false,
};

/* The same with no advice, under the system-wide modes "always" and "never". */
FIXTURE_VARIANT_ADD(thp, always) {
	.advice = MADV_NORMAL, .huge = true, .mode = "always",
};

FIXTURE_VARIANT_ADD(thp, never) {
	.advice = MADV_NORMAL, .huge = false, .mode = "never",
};

#define THP_ENABLED "/sys/kernel/mm/transparent_hugepage/enabled"

static int thp_mode(const char *mode)
{
	return rksm_write_path(THP_ENABLED, mode);
}

FIXTURE_SETUP(thp)
{
	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
	if (variant->mode)
		ASSERT_EQ(0, thp_mode(variant->mode));
	ASSERT_EQ(0, rksm_kids_init(&self->k, PAGES, variant->advice));
	ASSERT_EQ(0, (uintptr_t)self->k.buf % (2UL << 20));
	rksm_kids_seed_common(&self->k, NKIDS);
	ASSERT_EQ(0, rksm_kids_start(&self->k, NKIDS));
}

FIXTURE_TEARDOWN(thp)
{
	rksm_kids_kill_all(&self->k);
	rksm_engine_teardown(&self->saved);
	/* The guest boots with "always" (CONFIG_TRANSPARENT_HUGEPAGE_ALWAYS). */
	if (variant->mode)
		thp_mode("always");
}

static long anon_huge_kb(FIXTURE_DATA(thp) *self, int s)
{
	return rksm_smaps_field(self->k.pid[s], self->k.buf, "AnonHugePages");
}

TEST_F_TIMEOUT(thp, identical_pages_merge, 90)
{
	bool merge = !variant->huge || THP_SUBPAGES_MERGE;
	struct rksm_counters c;

	for (int s = 0; s < NKIDS; s++) {
		long kb = anon_huge_kb(self, s);

		ASSERT_LE(0, kb);
		if (variant->huge && kb < PAGES * 4)
			SKIP(return, "no THP: AnonHugePages %ld kB", kb);
		if (!variant->huge)
			ASSERT_EQ(0, kb);
	}

	ASSERT_EQ(0, rksm_write("run", "1"));
	EXPECT_EQ(0, rksm_wait_counts(merge ? PAGES : 0, merge ? PAGES * (NKIDS - 1) : 0,
				      3, 30, &c))
		TH_LOG("shared %llu sharing %llu", c.shared, c.sharing);
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	RKSM_EXPECT_ALL(PAGES, (self->pfn[i] == self->pfn[PAGES + i]) == merge);
	for (int s = 0; s < NKIDS; s++) {
		if (variant->huge && !merge) {
			EXPECT_EQ(PAGES * 4, anon_huge_kb(self, s));
		} else {
			EXPECT_EQ(0, anon_huge_kb(self, s));
		}
	}

	/* Writes after the split copy on write as usual. */
	for (int i = 0; i < PAGES; i += 7)
		rksm_kid_seeds(&self->k, 1)[i] = rksm_seed_own(1, i, 1);
	ASSERT_EQ((PAGES + 6) / 7, rksm_kid_call(&self->k, 1, rksm_kid_sync, 0));
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
	if (merge) {
		EXPECT_EQ(0, rksm_wait_counts(PAGES, PAGES * (NKIDS - 1) - (PAGES + 6) / 7,
					      2, 30, &c))
			TH_LOG("shared %llu sharing %llu", c.shared, c.sharing);
	}
}

TEST_HARNESS_MAIN
