// SPDX-License-Identifier: GPL-2.0
/*
 * A huge, sparse mergeable range: 1 TiB reserved, one page populated every
 * GiB. The scanner must walk it in reasonable time (only populated pages
 * cost anything), count exactly the populated pages in pages_scanned on
 * every full pass, and merge none of them (they all differ). Reports the
 * scanner thread's CPU time per pass.
 *
 * Runs against rksm, or against KSM with RKSM_SYSFS=/sys/kernel/mm/ksm.
 */
#include "kselftest_harness.h"
#include "rksm_util.h"

#define SPAN (1ULL << 40)
#define STEP (1ULL << 30)
#define POPULATED (SPAN / STEP)
#define PASSES 20

FIXTURE(walk) {
	struct rksm_saved saved;
	char *map;
};

FIXTURE_SETUP(walk)
{
	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
	self->map = mmap(NULL, SPAN, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_NE(MAP_FAILED, self->map);
	ASSERT_EQ(0, madvise(self->map, SPAN, MADV_NOHUGEPAGE));
	for (unsigned long long off = 0; off < SPAN; off += STEP)
		rksm_fill_page(self->map + off, rksm_seed_own(0, off / STEP, 0));
	/* This test process is the only mergeable mm in the guest. */
	ASSERT_EQ(0, madvise(self->map, SPAN, MADV_MERGEABLE));
}

FIXTURE_TEARDOWN(walk)
{
	rksm_engine_teardown(&self->saved);
	if (self->map && self->map != MAP_FAILED)
		munmap(self->map, SPAN);
}

TEST_F_TIMEOUT(walk, sparse_terabyte, 150)
{
	unsigned long long s0, s1, f0, f1;
	const char *thread = rksm_thread_name();
	pid_t tid = rksm_find_kthread(thread);
	double t0, first;
	long cpu0, cpu1;

	ASSERT_NE(0, tid) TH_LOG("no %s thread", thread);

	/* Hang guard: the first two full passes within 60 s. */
	t0 = rksm_now();
	ASSERT_EQ(0, rksm_write("run", "1"));
	ASSERT_EQ(0, rksm_wait_scans(2, 60)) TH_LOG("2 full passes took over 60 s");
	first = rksm_now() - t0;
	TH_LOG("first 2 full passes over 1 TiB: %.2f s", first);

	/*
	 * Count over PASSES passes. Writing run=0 waits for the scanner's
	 * current batch, and with pages_to_scan above the populated pages
	 * every batch ends at a pass boundary, so the counters read between
	 * run=0 and run=1 are at one.
	 */
	ASSERT_EQ(0, rksm_write("run", "0"));
	s0 = rksm_get("pages_scanned");
	f0 = rksm_get("full_scans");
	cpu0 = rksm_cpu_ticks(tid);
	ASSERT_EQ(0, rksm_write("run", "1"));
	ASSERT_EQ(0, rksm_wait_scans(PASSES, 90)) TH_LOG("%d passes took over 90 s", PASSES);
	ASSERT_EQ(0, rksm_write("run", "0"));
	cpu1 = rksm_cpu_ticks(tid);
	s1 = rksm_get("pages_scanned");
	f1 = rksm_get("full_scans");
	ASSERT_GE(f1 - f0, PASSES);
	ASSERT_GE(cpu0, 0);
	ASSERT_GE(cpu1, 0);

	TH_LOG("%s CPU per pass: %.2f ms (%ld ticks over %llu passes)", thread,
	       (cpu1 - cpu0) * 1000.0 / sysconf(_SC_CLK_TCK) / (f1 - f0),
	       cpu1 - cpu0, f1 - f0);
	TH_LOG("pages_scanned: %llu over %llu passes", s1 - s0, f1 - f0);
	EXPECT_EQ((f1 - f0) * POPULATED, s1 - s0);

	/* All different: nothing merges. */
	EXPECT_EQ(0, rksm_get("pages_shared"));
	EXPECT_EQ(0, rksm_get("pages_sharing"));
	for (unsigned long long off = 0; off < SPAN; off += STEP)
		ASSERT_TRUE(rksm_page_is(self->map + off, rksm_seed_own(0, off / STEP, 0)));
}

TEST_HARNESS_MAIN
