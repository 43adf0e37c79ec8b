// SPDX-License-Identifier: GPL-2.0
/*
 * Merging: N processes each hold the same M pages (page i alike everywhere,
 * unlike every other page). After the scanner settles, every page is one
 * physical page in all of them, pages_shared/pages_sharing say exactly so,
 * free memory (MemFree plus the per-CPU free lists) grew by what was freed,
 * the data is intact, and run=2 undoes it all. max_page_sharing variants
 * check KSM's stable node chains.
 *
 * Runs against rksm, or against KSM with RKSM_SYSFS=/sys/kernel/mm/ksm.
 */
#include "kselftest_harness.h"
#include "rksm_util.h"

FIXTURE(merge) {
	struct rksm_saved saved;
	struct rksm_kids k;
	uint64_t *pfn;
};

FIXTURE_VARIANT(merge) {
	int nkids;
	size_t pages;
	unsigned int max_page_sharing;
	int smart_scan;
};

/* The main case: 4 processes x 512 pages, KSM's default sharing limit. */
FIXTURE_VARIANT_ADD(merge, n4_m512) {
	.nkids = 4, .pages = 512, .max_page_sharing = 256, .smart_scan = 0,
};

/* The same with smart_scan on (the default): it must not change the result. */
FIXTURE_VARIANT_ADD(merge, n4_m512_smart_scan) {
	.nkids = 4, .pages = 512, .max_page_sharing = 256, .smart_scan = 1,
};

/* max_page_sharing 2: 4 mappings per content need 2 copies (a chain of 2 dups). */
FIXTURE_VARIANT_ADD(merge, n4_max_sharing_2) {
	.nkids = 4, .pages = 256, .max_page_sharing = 2, .smart_scan = 0,
};

/* max_page_sharing 2, 5 mappings: 2 full copies, the 5th has nobody to pair with. */
FIXTURE_VARIANT_ADD(merge, n5_max_sharing_2) {
	.nkids = 5, .pages = 256, .max_page_sharing = 2, .smart_scan = 0,
};

/* max_page_sharing 3, 4 mappings: one full copy, the 4th stays alone. */
FIXTURE_VARIANT_ADD(merge, n4_max_sharing_3) {
	.nkids = 4, .pages = 256, .max_page_sharing = 3, .smart_scan = 0,
};

FIXTURE_SETUP(merge)
{
	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
	/* Only accepted while nothing is merged: set it before run=1. */
	ASSERT_EQ(0, rksm_write_num("max_page_sharing", variant->max_page_sharing));
	ASSERT_EQ(0, rksm_write_num("smart_scan", variant->smart_scan));
	ASSERT_EQ(0, rksm_kids_init(&self->k, variant->pages, MADV_NOHUGEPAGE));
	self->pfn = calloc(RKSM_MAX_KIDS * variant->pages, sizeof(uint64_t));
	ASSERT_NE(NULL, self->pfn);
	rksm_kids_seed_common(&self->k, variant->nkids);
	ASSERT_EQ(0, rksm_kids_start(&self->k, variant->nkids));
}

FIXTURE_TEARDOWN(merge)
{
	rksm_kids_kill_all(&self->k);
	rksm_engine_teardown(&self->saved);
}

/*
 * KSM's stable node chains: with max_page_sharing K, a KSM page takes at
 * most K mappings. A mapping that finds every copy full can only start a
 * new copy by pairing with another unmerged identical page, so N mappings
 * of one content end up as N / K full copies, plus one more copy of the
 * remaining N % K mappings if there are at least 2 of them; a single
 * leftover stays unmerged.
 */
static void expected(unsigned int n, unsigned int k, unsigned int *copies,
		     unsigned int *mapped)
{
	*copies = n / k;
	*mapped = n / k * k;
	if (n % k >= 2) {
		*copies += 1;
		*mapped += n % k;
	}
}

TEST_F_TIMEOUT(merge, identical_pages_merge, 120)
{
	size_t m = variant->pages;
	int n = variant->nkids;
	unsigned int copies, mapped;
	unsigned long long exp_shared, exp_sharing;
	struct rksm_counters c;
	long free0, free1, freed_kb, want_kb, slack_kb;
	uint64_t *pfn = self->pfn;

	expected(n, variant->max_page_sharing, &copies, &mapped);
	exp_shared = (unsigned long long)m * copies;
	exp_sharing = (unsigned long long)m * (mapped - copies);

	rksm_counters_read(&c);
	ASSERT_EQ(0, c.shared);
	ASSERT_EQ(0, c.sharing);
	free0 = rksm_free_kb();
	ASSERT_EQ(0, rksm_write("run", "1"));

	EXPECT_EQ(0, rksm_wait_counts(exp_shared, exp_sharing, 2, 30, &c))
		TH_LOG("want shared %llu sharing %llu, have %llu %llu after %llu scans",
		       exp_shared, exp_sharing, c.shared, c.sharing, c.full_scans);
	ASSERT_EQ(exp_shared, c.shared);
	ASSERT_EQ(exp_sharing, c.sharing);
	free1 = rksm_free_kb();

	/* Page i: @copies PFNs held by @mapped processes, the rest alone. */
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, n, pfn));
	for (size_t i = 0; i < m; i++) {
		unsigned int distinct = 0, merged = 0;

		for (int a = 0; a < n; a++) {
			bool first = true, dup = false;

			ASSERT_NE(0, pfn[a * m + i]);
			for (int b = 0; b < n; b++) {
				if (b == a || pfn[b * m + i] != pfn[a * m + i])
					continue;
				dup = true;
				if (b < a)
					first = false;
			}
			distinct += first;
			merged += dup;
		}
		ASSERT_EQ(n - mapped + copies, distinct) TH_LOG("page %zu", i);
		ASSERT_EQ(mapped, merged) TH_LOG("page %zu", i);
		/* Different contents never share a page. */
		if (i > 0) {
			ASSERT_NE(pfn[i], pfn[i - 1]);
		}
	}
	ASSERT_EQ(0, rksm_kids_call(&self->k, n, rksm_kid_verify, 0));

	if (copies > 1 || variant->max_page_sharing == 2) {
		/* Each content needing 2+ copies is one chain of @copies dups. */
		unsigned long long chains = rksm_get("stable_node_chains");
		unsigned long long dups = rksm_get("stable_node_dups");

		EXPECT_EQ(copies > 1 ? m : 0, chains);
		EXPECT_EQ(copies > 1 ? m * copies : 0, dups);
	}

	/* Each sharing mapping freed one page. */
	freed_kb = free1 - free0;
	want_kb = exp_sharing * (PAGE_SIZE / 1024);
	slack_kb = want_kb / 20 + 1024;
	TH_LOG("free memory grew by %ld kB, expected %ld kB", freed_kb, want_kb);
	/* KASAN's redzones and quarantine weigh more than the pages here. */
	if (!getenv("RKSM_KASAN")) {
		EXPECT_GE(freed_kb, want_kb - slack_kb);
		EXPECT_LE(freed_kb, want_kb + slack_kb);
	}

	/* run=2 unmerges everything before it returns. */
	ASSERT_EQ(0, rksm_write("run", "2"));
	rksm_counters_read(&c);
	EXPECT_EQ(0, c.shared);
	EXPECT_EQ(0, c.sharing);
	if (!rksm_is_ksm()) {
		/* ... and gives back every byte of its metadata: nothing leaks. */
		EXPECT_EQ(0, rksm_get("metadata_bytes"));
		EXPECT_EQ(0, rksm_get("pages_tracked"));
	}
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, n, pfn));
	EXPECT_EQ(0, rksm_count_shared_pfns(pfn, n * m));
	ASSERT_EQ(0, rksm_kids_call(&self->k, n, rksm_kid_verify, 0));
}

TEST_HARNESS_MAIN
