// SPDX-License-Identifier: GPL-2.0
/*
 * Per-process accounting as KSM exposes it: /proc/<pid>/ksm_merging_pages and
 * /proc/<pid>/ksm_stat show rksm's merges (ksm_merging_pages, ksm_rmap_items
 * as the pages rksm tracks, ksm_process_profit from both), through copy-on-
 * write, fork and run=2.
 */
#include <sys/mman.h>

#include "kselftest_harness.h"
#include "rksm_util.h"

#define PAGES 64

static long ksm_stat(pid_t pid, const char *name)
{
	return rksm_proc_value(pid, "ksm_stat", name);
}

/* Kid function: write one byte into page @arg (copy-on-write). */
static long kid_touch(struct rksm_kids *k, int slot, long arg)
{
	rksm_kid_page(k, slot, arg)[0] ^= 1;
	rksm_kid_seeds(k, slot)[arg] = 0;
	return 0;
}

FIXTURE(procstat) {
	struct rksm_saved saved;
	struct rksm_kids k;
};

FIXTURE_SETUP(procstat)
{
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
	ASSERT_EQ(0, rksm_kids_init(&self->k, PAGES, MADV_NOHUGEPAGE));
	rksm_kids_seed_common(&self->k, 2);
	ASSERT_EQ(0, rksm_kids_start(&self->k, 2));
}

FIXTURE_TEARDOWN(procstat)
{
	rksm_kids_kill_all(&self->k);
	rksm_engine_teardown(&self->saved);
}

TEST_F(procstat, merges_cow_fork_unmerge)
{
	struct rksm_counters c;
	pid_t a = self->k.pid[0], b = self->k.pid[1], g;

	EXPECT_EQ(0, rksm_merging_pages(a));
	ASSERT_EQ(0, rksm_write("run", "1"));
	ASSERT_EQ(0, rksm_wait_counts(PAGES, PAGES, 1, 120, &c));
	/* The counters show a process's pass once it is complete: one more. */
	ASSERT_EQ(0, rksm_wait_scans(1, 60));
	for (int i = 0; i < 2; i++) {
		pid_t p = self->k.pid[i];

		EXPECT_EQ(PAGES, rksm_merging_pages(p)) TH_LOG("kid %d", i);
		EXPECT_EQ(PAGES, ksm_stat(p, "ksm_merging_pages"));
		EXPECT_EQ(PAGES, ksm_stat(p, "ksm_rmap_items"));
		/* The kernel's own formula: 64 bytes per item, KSM's rmap_item. */
		EXPECT_EQ(PAGES * 4096L - PAGES * 64L, ksm_stat(p, "ksm_process_profit"));
	}

	/* Copy-on-write: a written page is no longer merged, as of the next pass. */
	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, kid_touch, 3));
	ASSERT_EQ(0, rksm_wait_scans(2, 60));
	EXPECT_EQ(PAGES - 1, rksm_merging_pages(a));
	EXPECT_EQ(PAGES, rksm_merging_pages(b));

	/* A forked child starts from 0 (the kernel's ksm_fork()), then shows what it maps. */
	g = rksm_kid_fork_into(&self->k, 1, 2);
	ASSERT_LT(0, g);
	ASSERT_EQ(0, rksm_wait_scans(2, 60));
	EXPECT_EQ(PAGES, rksm_merging_pages(g));
	EXPECT_EQ(PAGES, ksm_stat(g, "ksm_rmap_items"));

	/* run=2: everything back to 0. */
	ASSERT_EQ(0, rksm_write("run", "2"));
	for (int i = 0; i < 3; i++) {
		EXPECT_EQ(0, rksm_merging_pages(self->k.pid[i])) TH_LOG("kid %d", i);
		EXPECT_EQ(0, ksm_stat(self->k.pid[i], "ksm_rmap_items")) TH_LOG("kid %d", i);
	}
}

TEST_HARNESS_MAIN
