// SPDX-License-Identifier: GPL-2.0
/*
 * /sys/kernel/mm/rksm: names and defaults follow /sys/kernel/mm/ksm, bad
 * input gets -EINVAL and keeps the old value, writes are root-only, and run
 * starts and stops rksmd.
 */
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "rksm_util.h"

struct knob {
	const char *name;
	unsigned long long def;
	unsigned long long good; /* a valid non-default value */
	const char *const *bad;  /* out of range for this knob */
};

static const char *const bad_run[] = { "3", "4294967296", NULL };
static const char *const bad_u32[] = { "4294967296", NULL };
static const char *const bad_sharing[] = { "0", "1", "2147483648", NULL };
static const char *const bad_bool[] = { "2", "yes", "-0", NULL };
static const char *const bad_nodes[] = { "2", NULL };

static const struct knob knobs[] = {
	{ "run", 0, 0, bad_run }, /* run itself is tested below */
	{ "pages_to_scan", 100, 4000, bad_u32 },
	{ "sleep_millisecs", 20, 5, bad_u32 },
	{ "max_page_sharing", 256, 16, bad_sharing },
	{ "use_zero_pages", 0, 1, bad_bool },
	{ "smart_scan", 1, 0, bad_bool },
	{ "stable_node_chains_prune_millisecs", 2000, 100, bad_u32 },
	{ "merge_across_nodes", 1, 1, bad_nodes },
};

/* Invalid for every knob. (An empty write never reaches the kernel.) */
static const char *const bad_all[] = {
	"\n", "abc", "-1", "1x", "1 2", " 1", "0x10", "1\n\n", "+",
	"99999999999999999999999999", "18446744073709551616", NULL,
};

TEST(knobs_exist_with_ksm_defaults)
{
	for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
		unsigned long long v;

		ASSERT_EQ(0, rksm_read(knobs[i].name, &v)) TH_LOG("%s", knobs[i].name);
		EXPECT_EQ(knobs[i].def, v) TH_LOG("%s", knobs[i].name);
	}
}

static void check_rejected(struct __test_metadata *_metadata, const char *name,
			   const char *val, unsigned long long old)
{
	EXPECT_EQ(-EINVAL, rksm_write(name, val)) TH_LOG("%s <- '%s'", name, val);
	EXPECT_EQ(old, rksm_get(name)) TH_LOG("%s changed after '%s'", name, val);
}

TEST(bad_input_is_einval_and_keeps_old_value)
{
	for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
		const struct knob *k = &knobs[i];
		unsigned long long old;

		/* Start from a non-default value so "reset to default" is caught too. */
		ASSERT_EQ(0, rksm_write_num(k->name, k->good)) TH_LOG("%s", k->name);
		old = rksm_get(k->name);
		ASSERT_EQ(k->good, old);
		for (const char *const *b = bad_all; *b; b++)
			check_rejected(_metadata, k->name, *b, old);
		for (const char *const *b = k->bad; *b; b++)
			check_rejected(_metadata, k->name, *b, old);
		ASSERT_EQ(0, rksm_write_num(k->name, k->def));
	}
}

TEST(accepts_what_ksm_accepts)
{
	EXPECT_EQ(0, rksm_write("sleep_millisecs", "0"));
	EXPECT_EQ(0, rksm_get("sleep_millisecs"));
	EXPECT_EQ(0, rksm_write("sleep_millisecs", "+7\n"));
	EXPECT_EQ(7, rksm_get("sleep_millisecs"));
	EXPECT_EQ(0, rksm_write("sleep_millisecs", "4294967295"));
	EXPECT_EQ(4294967295ULL, rksm_get("sleep_millisecs"));
	EXPECT_EQ(0, rksm_write("sleep_millisecs", "20"));
	EXPECT_EQ(0, rksm_write("use_zero_pages", "y"));
	EXPECT_EQ(1, rksm_get("use_zero_pages"));
	EXPECT_EQ(0, rksm_write("use_zero_pages", "off"));
	EXPECT_EQ(0, rksm_get("use_zero_pages"));
	EXPECT_EQ(0, rksm_write("max_page_sharing", "2"));
	EXPECT_EQ(2, rksm_get("max_page_sharing"));
	EXPECT_EQ(0, rksm_write("max_page_sharing", "256"));
}

TEST(writes_are_root_only)
{
	pid_t pid = fork();
	int status;

	ASSERT_GE(pid, 0);
	if (pid == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(2);
		_exit(rksm_write("pages_to_scan", "5") == -EACCES ? 0 : 1);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	EXPECT_EQ(100, rksm_get("pages_to_scan"));
}

TEST(run_starts_and_stops_rksmd)
{
	pid_t pid = rksm_find_kthread("rksmd");

	ASSERT_NE(0, pid) TH_LOG("no rksmd kthread");
	EXPECT_EQ(0, rksm_write("run", "1"));
	EXPECT_EQ(1, rksm_get("run"));
	usleep(100 * 1000);
	EXPECT_EQ(0, rksm_write("run", "0\n"));
	EXPECT_EQ(0, rksm_get("run"));
	/* 2 unmerges everything before the write returns, and reads back as 2, as in KSM. */
	EXPECT_EQ(0, rksm_write("run", "2"));
	EXPECT_EQ(2, rksm_get("run"));
	EXPECT_EQ(0, rksm_get("full_scans"));
	EXPECT_EQ(0, rksm_write("run", "0"));
	EXPECT_EQ(pid, rksm_find_kthread("rksmd"));
}

TEST(rksmd_sleeps_while_stopped)
{
	pid_t pid = rksm_find_kthread("rksmd");
	long before;

	ASSERT_NE(0, pid);
	ASSERT_EQ(0, rksm_write("run", "0"));
	before = rksm_cpu_ticks(pid);
	ASSERT_GE(before, 0);
	sleep(1);
	/* Not one 10 ms tick in a second: it sleeps, it does not poll. */
	EXPECT_EQ(before, rksm_cpu_ticks(pid));
}

/* KSM's counters, and rksm's own, exist and are read-only, even for root. */
TEST(counters_exist_and_are_read_only)
{
	static const char *const counters[] = {
		"pages_scanned", "pages_shared", "pages_sharing", "pages_unshared",
		"pages_volatile", "pages_skipped", "full_scans", "stable_node_chains",
		"stable_node_dups", "general_profit", "ksm_zero_pages", "pages_tracked",
		"metadata_bytes",
		"thp_pages_skipped", "thp_split", "merge_fail_pinned", "merge_fail_changed",
		"merge_fail_contended",
	};

	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		unsigned long long v;
		int err;

		EXPECT_EQ(0, rksm_read(counters[i], &v)) TH_LOG("%s", counters[i]);
		err = rksm_write(counters[i], "0");
		EXPECT_TRUE(err == -EACCES || err == -EIO || err == -EPERM)
			TH_LOG("%s: write gave %d", counters[i], err);
	}
}

TEST_HARNESS_MAIN
