// SPDX-License-Identifier: GPL-2.0
/*
 * /sys/kernel/mm/rksm: names and defaults follow /sys/kernel/mm/ksm, bad
 * input gets -EINVAL and keeps the old value, writes are root-only, run
 * starts and stops rksmd, and racing writes of run leave a consistent state.
 */
#include <sched.h>
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
static const char *const bad_noexec[] = { "3", "4294967296", NULL };

static const struct knob knobs[] = {
	{ "run", 0, 0, bad_run }, /* run itself is tested below */
	{ "pages_to_scan", 100, 4000, bad_u32 },
	{ "sleep_millisecs", 20, 5, bad_u32 },
	{ "max_page_sharing", 256, 16, bad_sharing },
	{ "use_zero_pages", 0, 1, bad_bool },
	{ "smart_scan", 1, 0, bad_bool },
	{ "stable_node_chains_prune_millisecs", 2000, 100, bad_u32 },
	{ "merge_across_nodes", 1, 1, bad_nodes },
	{ "memfd_noexec", 0, 1, bad_noexec },
	{ "merge_exec", 0, 1, bad_bool },
	{ "zero_pages_only", 0, 1, bad_bool },
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

/* A word knob reads back like KSM's advisor_mode; a number is not a word. */
TEST(word_knob_reads_back_with_brackets)
{
	char buf[64];

	ASSERT_EQ(0, rksm_read_str("memfd_exec", buf, sizeof(buf)));
	EXPECT_STREQ("[any] sealed none\n", buf);
	ASSERT_EQ(0, rksm_write("memfd_exec", "none\n"));
	ASSERT_EQ(0, rksm_read_str("memfd_exec", buf, sizeof(buf)));
	EXPECT_STREQ("any sealed [none]\n", buf);
	for (const char *const *b = bad_all; *b; b++) {
		EXPECT_EQ(-EINVAL, rksm_write("memfd_exec", *b)) TH_LOG("'%s'", *b);
	}
	EXPECT_EQ(-EINVAL, rksm_write("memfd_exec", "0"));
	EXPECT_EQ(-EINVAL, rksm_write("memfd_exec", "[none]"));
	ASSERT_EQ(0, rksm_read_str("memfd_exec", buf, sizeof(buf)));
	EXPECT_STREQ("any sealed [none]\n", buf);
	ASSERT_EQ(0, rksm_write("memfd_exec", "any"));
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
		"merge_fail_contended", "memfd_created_exec", "memfd_created_noexec",
		"memfd_create_refused", "memfd_exec_refused", "memfd_mmap_exec_refused",
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

/*
 * Writes of run are serialized as a whole, as KSM's ksm_thread_mutex
 * serializes them: run=2 returns once everything is unmerged, and a run=1
 * that races with it takes effect either before that unmerge or after run
 * reads 2. So once the writers are done, run reads 2 only if nothing is
 * merged. Two processes hold the same pages, merged before each round of
 * racing writes.
 *
 * Two kinds of rounds alternate:
 *  - targeted: a run=2 writer in SCHED_IDLE, starved by CPU hogs, and a
 *    run=1 written while its write is in progress (run no longer reads 1).
 *    If the run=1 took effect during the run=2 write, rksmd merges again
 *    while the starved writer has yet to set run=2: run ends at 2 with
 *    merges in place. Serialized, the run=1 lands after the run=2.
 *  - free-running: each writer writes its value a few times with random
 *    pauses, so either may write last.
 */
#define RACE_KIDS 2
#define RACE_PAGES 64
#define RACE_ROUNDS 8	/* the old, unserialized code failed in round 0 */
#define RACE_HOGS 2

FIXTURE(run_race) {
	struct rksm_saved saved;
	struct rksm_kids k;
	pid_t hog[RACE_HOGS];
	uint64_t pfn[RACE_KIDS * RACE_PAGES];
};

FIXTURE_SETUP(run_race)
{
	memset(self->hog, 0, sizeof(self->hog));
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
	ASSERT_EQ(0, rksm_write_num("sleep_millisecs", 0));
	ASSERT_EQ(0, rksm_kids_init(&self->k, RACE_PAGES, MADV_NOHUGEPAGE));
	rksm_kids_seed_common(&self->k, RACE_KIDS);
	ASSERT_EQ(0, rksm_kids_start(&self->k, RACE_KIDS));
}

static void race_hogs_stop(FIXTURE_DATA(run_race) *self)
{
	for (int i = 0; i < RACE_HOGS; i++) {
		if (self->hog[i] <= 0)
			continue;
		kill(self->hog[i], SIGKILL);
		waitpid(self->hog[i], NULL, 0);
		self->hog[i] = 0;
	}
}

FIXTURE_TEARDOWN(run_race)
{
	race_hogs_stop(self);
	rksm_kids_kill_all(&self->k);
	rksm_engine_teardown(&self->saved);
}

/* Fork a child that writes @val to run @n times (random pauses if @n > 1). */
static pid_t race_writer(const char *val, int n, bool idle, unsigned int seed)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (idle) {
		struct sched_param sp = { 0 };

		if (sched_setscheduler(0, SCHED_IDLE, &sp))
			_exit(3);
	}
	srand(seed);
	for (int i = 0; i < n; i++) {
		if (n > 1)
			usleep(rand() % 3000);
		if (rksm_write("run", val))
			_exit(1);
	}
	_exit(0);
}

static bool race_writer_ok(pid_t pid)
{
	int status;

	return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	       WEXITSTATUS(status) == 0;
}

/* If run reads 2, nothing may be merged: not by the counters, not by the PFNs. */
static bool race_check(struct __test_metadata *_metadata,
		       FIXTURE_DATA(run_race) *self, int round)
{
	struct rksm_counters c;

	if (rksm_get("run") != 2)
		return false;
	rksm_counters_read(&c);
	EXPECT_EQ(0, c.shared) TH_LOG("round %d: run reads 2, pages_shared %llu",
				      round, c.shared);
	EXPECT_EQ(0, c.sharing) TH_LOG("round %d: run reads 2, pages_sharing %llu",
				       round, c.sharing);
	EXPECT_EQ(0, rksm_kids_pfns(&self->k, RACE_KIDS, self->pfn));
	EXPECT_EQ(0, rksm_count_shared_pfns(self->pfn, RACE_KIDS * RACE_PAGES))
		TH_LOG("round %d: run reads 2, but pages share PFNs", round);
	return true;
}

TEST_F_TIMEOUT(run_race, racing_run_writes_end_consistent, 600)
{
	struct rksm_counters c;
	int ended_at_2 = 0;

	for (int round = 0; round < RACE_ROUNDS && __test_passed(_metadata); round++) {
		pid_t one, two, reaped;
		int status;

		/* Merged before every round, so run=2 has something to undo. */
		ASSERT_EQ(0, rksm_write("run", "1"));
		/* With sleep_millisecs 0 passes fly by: poll the counts, not the scans. */
		ASSERT_EQ(0, rksm_poll_counts(RACE_PAGES, RACE_PAGES, 60, &c))
			TH_LOG("round %d: shared %llu sharing %llu", round, c.shared, c.sharing);

		if (round % 2 == 0) {
			double end;

			for (int i = 0; i < RACE_HOGS; i++) {
				self->hog[i] = fork();
				ASSERT_LE(0, self->hog[i]);
				if (self->hog[i] == 0) {
					prctl(PR_SET_PDEATHSIG, SIGKILL);
					for (;;)
						;
				}
			}
			two = race_writer("2", 1, true, 0);
			ASSERT_LT(0, two);
			/* run=2's write has begun once run no longer reads 1. */
			end = rksm_now() + 60;
			while (rksm_get("run") == 1 && rksm_now() < end)
				;
			ASSERT_EQ(0, rksm_write("run", "1"));
			/* Spin until the run=2 writer is done, so it stays starved. */
			while ((reaped = waitpid(two, &status, WNOHANG)) == 0 && rksm_now() < end)
				;
			race_hogs_stop(self);
			if (reaped == 0)
				reaped = waitpid(two, &status, 0);
			ASSERT_EQ(two, reaped);
			ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
				TH_LOG("round %d: the run=2 writer failed (status %#x)", round, status);
		} else {
			one = race_writer("1", 4, false, 2 * round + 1);
			two = race_writer("2", 4, false, 2 * round + 2);
			ASSERT_TRUE(race_writer_ok(one));
			ASSERT_TRUE(race_writer_ok(two));
		}
		ended_at_2 += race_check(_metadata, self, round);
	}
	TH_LOG("%d of %d rounds ended with run 2", ended_at_2, RACE_ROUNDS);

	/* A last run=2 on its own unmerges everything. */
	ASSERT_EQ(0, rksm_write("run", "2"));
	ASSERT_EQ(2, rksm_get("run"));
	rksm_counters_read(&c);
	EXPECT_EQ(0, c.shared);
	EXPECT_EQ(0, c.sharing);
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, RACE_KIDS, self->pfn));
	EXPECT_EQ(0, rksm_count_shared_pfns(self->pfn, RACE_KIDS * RACE_PAGES));
}

TEST_HARNESS_MAIN
