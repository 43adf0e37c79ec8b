// SPDX-License-Identifier: GPL-2.0
/*
 * Copy-on-write after merging: a process that writes to a merged page gets
 * a private copy, holding exactly what it wrote (the rest of the page kept),
 * while everyone else keeps the old contents and the shared page. Reads
 * never unshare. The counters follow every mapping that leaves a KSM page,
 * and a page written back to its old contents merges again.
 *
 * Runs against rksm, or against KSM with RKSM_SYSFS=/sys/kernel/mm/ksm.
 */
#include "kselftest_harness.h"
#include "rksm_util.h"

#define NKIDS 4
#define PAGES 384

FIXTURE(cow) {
	struct rksm_saved saved;
	struct rksm_kids k;
	uint64_t pfn[NKIDS * PAGES], before[NKIDS * PAGES];
};

FIXTURE_SETUP(cow)
{
	struct rksm_counters c;

	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
	ASSERT_EQ(0, rksm_kids_init(&self->k, PAGES, MADV_NOHUGEPAGE));
	rksm_kids_seed_common(&self->k, NKIDS);
	ASSERT_EQ(0, rksm_kids_start(&self->k, NKIDS));
	ASSERT_EQ(0, rksm_write("run", "1"));
	ASSERT_EQ(0, rksm_wait_counts(PAGES, PAGES * (NKIDS - 1), 2, 30, &c))
		TH_LOG("shared %llu sharing %llu", c.shared, c.sharing);
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->before));
	RKSM_EXPECT_ALL(NKIDS * PAGES, self->before[i % PAGES] == self->before[i]);
	ASSERT_EQ(0, _metadata->exit_code);
}

FIXTURE_TEARDOWN(cow)
{
	rksm_kids_kill_all(&self->k);
	rksm_engine_teardown(&self->saved);
}

/*
 * Who writes page i, by i % 8: class 0 nobody, 1-4 kid (class - 1) alone,
 * 5 kids 0-1, 6 kids 0-2, 7 all four. So a merged page is left with 4, 3,
 * 2, 1 or 0 of its mappings.
 */
static bool writes(int kid, int i)
{
	switch (i % 8) {
	case 0: return false;
	case 1: case 2: case 3: case 4: return kid == i % 8 - 1;
	case 5: return kid < 2;
	case 6: return kid < 3;
	default: return true;
	}
}

TEST_F_TIMEOUT(cow, writers_get_private_copies, 90)
{
	unsigned long long want_shared = 0, want_sharing = 0;
	struct rksm_counters c;
	long bad = 0;
	long want_written[NKIDS] = { 0 };

	/* Reading every byte everywhere unshares nothing. */
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	ASSERT_EQ(0, memcmp(self->pfn, self->before, sizeof(self->pfn)));

	for (int s = 0; s < NKIDS; s++)
		for (int i = 0; i < PAGES; i++)
			if (writes(s, i)) {
				rksm_kid_seeds(&self->k, s)[i] = rksm_seed_own(s, i, 1);
				want_written[s]++;
			}
	for (int s = 0; s < NKIDS; s++) {
		ASSERT_EQ(want_written[s], rksm_kid_call(&self->k, s, rksm_kid_sync, 0));
	}

	/* Every byte everywhere is what its owner last wrote. */
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));

	/* Written pages are private; the rest still share. */
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	for (int i = 0; i < PAGES; i++) {
		int left = 0;

		for (int s = 0; s < NKIDS; s++) {
			uint64_t p = self->pfn[s * PAGES + i];

			if (!writes(s, i)) {
				left++;
				/* Still the shared page. */
				if (self->before[i] != p)
					bad++;
				continue;
			}
			/* A copy nobody else has. */
			for (int t = 0; t < NKIDS * PAGES; t++)
				if (t != s * PAGES + i && p == self->pfn[t]) {
					bad++;
					break;
				}
		}
		/*
		 * A KSM page keeps counting as shared while at least one
		 * mapping is left, even a single one.
		 */
		if (left) {
			want_shared++;
			want_sharing += left - 1;
		}
	}
	EXPECT_EQ(0, bad);

	/* Once the scanner has seen the writes, the counters follow. */
	EXPECT_EQ(0, rksm_wait_counts(want_shared, want_sharing, 2, 30, &c))
		TH_LOG("want shared %llu sharing %llu, have %llu %llu",
		       want_shared, want_sharing, c.shared, c.sharing);
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));

	/* The written pages hold unique contents: they stay private. */
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	bad = 0;
	for (int s = 0; s < NKIDS; s++)
		for (int i = 0; i < PAGES; i++)
			if (writes(s, i))
				for (int t = 0; t < NKIDS * PAGES; t++)
					if (t != s * PAGES + i &&
					    self->pfn[s * PAGES + i] == self->pfn[t])
						bad++;
	EXPECT_EQ(0, bad);
}

/* Kid function: flip the byte at @arg (page << 12 | offset) and check the page. */
static long poke(struct rksm_kids *k, int slot, long arg)
{
	unsigned char *p = (unsigned char *)rksm_kid_page(k, slot, arg >> 12);
	uint64_t seed = rksm_kid_seeds(k, slot)[arg >> 12];
	unsigned char copy[PAGE_SIZE];
	long bad = 0;

	p[arg & 4095] ^= 0xff;
	rksm_fill_page(copy, seed);
	copy[arg & 4095] ^= 0xff;
	for (size_t i = 0; i < PAGE_SIZE; i++)
		bad += p[i] != copy[i];
	return bad;
}

/* Kid function: undo poke(@arg). */
static long unpoke(struct rksm_kids *k, int slot, long arg)
{
	unsigned char *p = (unsigned char *)rksm_kid_page(k, slot, arg >> 12);

	p[arg & 4095] ^= 0xff;
	return rksm_page_is(p, rksm_kid_seeds(k, slot)[arg >> 12]) ? 0 : 1;
}

TEST_F_TIMEOUT(cow, one_byte_write_copies_whole_page_and_remerges, 90)
{
	static const int offs[] = { 0, 1, 2047, 4094, 4095 };
	struct rksm_counters c;

	/* Kid s flips one byte in pages s, s + 4, ...: 5 pages each. */
	for (int s = 0; s < NKIDS; s++)
		for (int j = 0; j < 5; j++) {
			long page = s + NKIDS * j;

			ASSERT_EQ(0, rksm_kid_call(&self->k, s, poke, page << 12 | offs[j]));
		}
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	/* i = kid * PAGES + page: poked pages moved, the rest did not. */
	RKSM_EXPECT_ALL(NKIDS * PAGES,
			(self->before[i % PAGES] == self->pfn[i]) !=
			(i % PAGES < NKIDS * 5 && i % PAGES % NKIDS == i / PAGES));
	/* The others' pages are untouched. */
	ASSERT_EQ(NKIDS * 5, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
	ASSERT_EQ(0, rksm_wait_counts(PAGES, PAGES * (NKIDS - 1) - NKIDS * 5, 2, 30, &c))
		TH_LOG("shared %llu sharing %llu", c.shared, c.sharing);

	/* Written back to the shared contents, the copies merge again. */
	for (int s = 0; s < NKIDS; s++)
		for (int j = 0; j < 5; j++) {
			long page = s + NKIDS * j;

			ASSERT_EQ(0, rksm_kid_call(&self->k, s, unpoke, page << 12 | offs[j]));
		}
	EXPECT_EQ(0, rksm_wait_counts(PAGES, PAGES * (NKIDS - 1), 2, 30, &c))
		TH_LOG("shared %llu sharing %llu", c.shared, c.sharing);
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	RKSM_EXPECT_ALL(NKIDS * PAGES, self->pfn[i % PAGES] == self->pfn[i]);
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
}

TEST_HARNESS_MAIN
