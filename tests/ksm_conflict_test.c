// SPDX-License-Identifier: GPL-2.0
/*
 * rksm and in-kernel KSM never merge at the same time: rksm refuses run=1
 * while KSM runs (EBUSY), and stops scanning by itself when KSM starts.
 * rksm only: skipped when RKSM_SYSFS points at KSM.
 */
#include "kselftest_harness.h"
#include "rksm_util.h"

#define KSM_RUN "/sys/kernel/mm/ksm/run"

static int ksm_run(const char *val)
{
	return rksm_write_path(KSM_RUN, val);
}

FIXTURE(conflict) {
	struct rksm_saved saved;
};

FIXTURE_SETUP(conflict)
{
	if (rksm_is_ksm())
		SKIP(return, "rksm only: this is about rksm stepping aside for KSM");
	if (access(KSM_RUN, W_OK))
		SKIP(return, "no in-kernel KSM");
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
}

FIXTURE_TEARDOWN(conflict)
{
	ksm_run("2");
	ksm_run("0");
	rksm_engine_teardown(&self->saved);
}

TEST_F(conflict, run_refused_while_ksm_runs)
{
	ASSERT_EQ(0, ksm_run("1"));
	EXPECT_EQ(-EBUSY, rksm_write("run", "1"));
	EXPECT_EQ(0, rksm_get("run"));
	ASSERT_EQ(0, ksm_run("0"));
	EXPECT_EQ(0, rksm_write("run", "1"));
	EXPECT_EQ(1, rksm_get("run"));
}

TEST_F_TIMEOUT(conflict, rksm_stops_when_ksm_starts, 60)
{
	unsigned long long scans;
	double end;

	ASSERT_EQ(0, rksm_write("run", "1"));
	ASSERT_EQ(0, ksm_run("1"));
	/* rksmd looks at KSM's run every 64 rounds; at 5 ms a round that is well under 30 s. */
	end = rksm_now() + 30;
	while (rksm_get("run") == 1 && rksm_now() < end)
		rksm_msleep(50);
	EXPECT_EQ(0, rksm_get("run"));
	/* And it stays stopped: no scan happens any more. */
	scans = rksm_get("full_scans");
	rksm_msleep(300);
	EXPECT_EQ(scans, rksm_get("full_scans"));
}

TEST_HARNESS_MAIN
