// SPDX-License-Identifier: GPL-2.0
/*
 * The scan-time advisor, as KSM's: the files and their defaults, pages_to_scan
 * refused (EINVAL) while the advisor sets it, the values a mode change sets,
 * and the advisor setting pages_to_scan at the end of a full scan.
 */
#include <sys/mman.h>

#include "kselftest_harness.h"
#include "rksm_util.h"

static void restore(void)
{
	rksm_write("advisor_mode", "none");
	rksm_write("advisor_target_scan_time", "200");
	rksm_write("advisor_max_cpu", "70");
	rksm_write("advisor_min_pages_to_scan", "500");
	rksm_write("advisor_max_pages_to_scan", "30000");
}

TEST(files_and_defaults)
{
	char buf[64];

	ASSERT_EQ(0, rksm_read_str("advisor_mode", buf, sizeof(buf)));
	EXPECT_STREQ("[none] scan-time\n", buf);
	EXPECT_EQ(200, rksm_get("advisor_target_scan_time"));
	EXPECT_EQ(70, rksm_get("advisor_max_cpu"));
	EXPECT_EQ(500, rksm_get("advisor_min_pages_to_scan"));
	EXPECT_EQ(30000, rksm_get("advisor_max_pages_to_scan"));
	/* KSM's limits: a target of 0 s is refused; bad words too. */
	EXPECT_EQ(-EINVAL, rksm_write("advisor_target_scan_time", "0"));
	EXPECT_EQ(200, rksm_get("advisor_target_scan_time"));
	EXPECT_EQ(-EINVAL, rksm_write("advisor_mode", "scan_time"));
	EXPECT_EQ(-EINVAL, rksm_write("advisor_mode", "1"));
	EXPECT_EQ(-EINVAL, rksm_write("advisor_max_cpu", "-1"));
	ASSERT_EQ(0, rksm_read_str("advisor_mode", buf, sizeof(buf)));
	EXPECT_STREQ("[none] scan-time\n", buf);
}

/* While the advisor is active, pages_to_scan is its: writes get EINVAL. */
TEST(pages_to_scan_is_the_advisors)
{
	char buf[64];

	ASSERT_EQ(0, rksm_write("pages_to_scan", "1234"));
	ASSERT_EQ(0, rksm_write("advisor_min_pages_to_scan", "700"));
	ASSERT_EQ(0, rksm_write("advisor_mode", "scan-time\n"));
	ASSERT_EQ(0, rksm_read_str("advisor_mode", buf, sizeof(buf)));
	EXPECT_STREQ("none [scan-time]\n", buf);
	/* It starts from its minimum... */
	EXPECT_EQ(700, rksm_get("pages_to_scan"));
	/* ...and keeps pages_to_scan to itself. */
	EXPECT_EQ(-EINVAL, rksm_write("pages_to_scan", "100"));
	EXPECT_EQ(700, rksm_get("pages_to_scan"));
	/* Writing the mode it already has changes nothing. */
	ASSERT_EQ(0, rksm_write("advisor_mode", "scan-time"));
	EXPECT_EQ(700, rksm_get("pages_to_scan"));
	/* Back to none: KSM's default pages_to_scan, writable again. */
	ASSERT_EQ(0, rksm_write("advisor_mode", "none"));
	EXPECT_EQ(100, rksm_get("pages_to_scan"));
	EXPECT_EQ(0, rksm_write("pages_to_scan", "4000"));
	EXPECT_EQ(4000, rksm_get("pages_to_scan"));
	ASSERT_EQ(0, rksm_write("pages_to_scan", "100"));
	restore();
}

/*
 * At the end of each full scan the advisor sets pages_to_scan. With a target
 * of 200 s and scans far shorter, KSM's arithmetic asks for fewer pages than
 * the 10% CPU floor allows (pages_to_scan / cpu% * 10, at least 10), and
 * advisor_max_pages_to_scan (20) caps that: from 500, it lands in [10, 20].
 */
TEST(paces_at_the_end_of_a_full_scan)
{
	struct rksm_saved saved;
	struct rksm_kids k;
	unsigned long long pages;

	ASSERT_EQ(0, rksm_engine_setup(&saved));
	ASSERT_EQ(0, rksm_kids_init(&k, 256, MADV_NOHUGEPAGE));
	rksm_kids_seed_common(&k, 2);
	ASSERT_EQ(0, rksm_kids_start(&k, 2));
	ASSERT_EQ(0, rksm_write("advisor_min_pages_to_scan", "500"));
	ASSERT_EQ(0, rksm_write("advisor_max_pages_to_scan", "20"));
	ASSERT_EQ(0, rksm_write("advisor_mode", "scan-time"));
	ASSERT_EQ(500, rksm_get("pages_to_scan"));
	ASSERT_EQ(0, rksm_write("run", "1"));
	ASSERT_EQ(0, rksm_wait_scans(2, 60));
	pages = rksm_get("pages_to_scan");
	EXPECT_LE(10, pages);
	EXPECT_GE(20, pages);
	/* Paced, not stalled: the scans go on at the advisor's pace. */
	EXPECT_EQ(0, rksm_wait_scans(1, 60));
	EXPECT_GE(20, rksm_get("pages_to_scan"));
	rksm_kids_kill_all(&k);
	restore();
	rksm_engine_teardown(&saved);
}

TEST_HARNESS_MAIN
