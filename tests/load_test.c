// SPDX-License-Identifier: GPL-2.0
/*
 * Module lifecycle: load and unload 100 times in a row, sometimes while
 * rksmd is running, and check that each unload removes the directory and
 * the thread and that no memory is left behind.
 */
#include "kselftest_harness.h"
#include "rksm_util.h"

FIXTURE(load) {};
FIXTURE_SETUP(load) {}
FIXTURE_TEARDOWN(load) {}

/* A load and unload takes about 0.1 s under TCG, 0.3 s with the host busy. */
TEST_F_TIMEOUT(load, unload_100_times, 120)
{
	long slab_before, slab_after;

	if (!rksm_loaded())
		ASSERT_EQ(0, rksm_load());
	/* Earlier tests may have left merges behind, which pin the module. */
	ASSERT_EQ(0, rksm_write("run", "2"));
	ASSERT_EQ(0, rksm_unload());
	slab_before = rksm_meminfo("Slab");
	for (int i = 0; i < 100; i++) {
		ASSERT_EQ(0, rksm_load()) TH_LOG("load %d", i);
		ASSERT_TRUE(rksm_loaded());
		ASSERT_NE(0, rksm_find_kthread("rksmd"));
		if (i % 3 == 0) {
			ASSERT_EQ(0, rksm_write("sleep_millisecs", "0"));
			ASSERT_EQ(0, rksm_write("run", "1"));
		}
		ASSERT_EQ(0, rksm_unload()) TH_LOG("unload %d", i);
		ASSERT_FALSE(rksm_loaded());
		ASSERT_EQ(0, rksm_find_kthread("rksmd"));
	}
	slab_after = rksm_meminfo("Slab");
	/* 100 leaked sysfs directories or tasks would be far more than 1 MiB. */
	EXPECT_LT(slab_after - slab_before, 1024) TH_LOG("Slab grew by %ld kB", slab_after - slab_before);
	ASSERT_EQ(0, rksm_load());
	/* A fresh load starts from the defaults. */
	EXPECT_EQ(0, rksm_get("run"));
	EXPECT_EQ(20, rksm_get("sleep_millisecs"));
}

TEST(second_load_is_refused)
{
	if (!rksm_loaded())
		ASSERT_EQ(0, rksm_load());
	EXPECT_EQ(-EEXIST, rksm_load());
	EXPECT_TRUE(rksm_loaded());
}

TEST_HARNESS_MAIN
