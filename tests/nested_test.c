// SPDX-License-Identifier: GPL-2.0
/*
 * KVM-host deduplication, short: two nested QEMU guests (TCG, mem-merge=on,
 * so their RAM is MADV_MERGEABLE as on a real host) run the bare-metal
 * integrity checker (qemu/nested/baremetal.c), and rksm merges their RAM
 * while they rewrite and verify it.
 *
 * The checker fills guest-physical memory from 4 MiB up with pattern.h's
 * image: 8 pages in 10 the same in both guests, 1 zero, 1 the guest's own.
 * Guest-physical address A is host address RAM + A in each QEMU, so the
 * test reads both QEMUs' pagemaps and asserts:
 *   - most common pages are one physical page in both guests;
 *   - a guest's own page never shares a physical page with the other's;
 *   - /proc/<qemu>/ksm_merging_pages counts each guest's merges;
 *   - the checker keeps verifying every byte while it rewrites (copy on
 *     write of merged guest RAM);
 *   - run=2 unmerges it all: counters 0, no common PFN, and the guests
 *     verify again afterwards.
 * scripts/run-tests.sh packs the host's QEMU (scripts/pack-qemu.sh) and the
 * checker beside this binary; without them every test skips.
 */
#include "kselftest_harness.h"
#include "rksm_util.h"
#include "../qemu/nested/pattern.h"

#define GUESTS 2
#define GUEST_MIB 64
#define RUN_QEMU "./qemu/run-qemu"
#define CHECKER "./rksm-guest.elf"

FIXTURE(nested) {
	struct rksm_saved saved;
	pid_t pid[GUESTS];
	char log[GUESTS][32];
	uintptr_t ram[GUESTS];
	size_t pages;
	uint64_t *pfn[GUESTS];
};

static pid_t start_guest(int g, const char *log)
{
	char append[32], serial[64], mem[16];
	pid_t pid;

	snprintf(append, sizeof(append), "guest=%d", g);
	snprintf(mem, sizeof(mem), "%d", GUEST_MIB);
	snprintf(serial, sizeof(serial), "file:%s", log);
	pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR);

		dup2(fd, 0);
		execl("/bin/sh", "sh", RUN_QEMU, "-machine", "pc,mem-merge=on", "-accel", "tcg",
		      "-cpu", "qemu64", "-m", mem, "-nodefaults", "-no-user-config",
		      "-display", "none", "-no-reboot", "-serial", serial,
		      "-kernel", CHECKER, "-append", append, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/*
 * The last "rksm-guest:" line of guest @g's console: the round it reports
 * (0 before the first), -1 once it failed. @pages gets the page count from
 * the "filled" line when there is one.
 */
static long guest_round(const char *log, size_t *pages)
{
	char line[256];
	long round = 0;
	FILE *f = fopen(log, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long v, g;

		if (strstr(line, "rksm-guest: FAIL"))
			round = -1;
		else if (round >= 0 && sscanf(line, "rksm-guest: round %lu ok", &v) == 1)
			round = v;
		else if (pages && sscanf(line, "rksm-guest: guest %lu filled %lu", &g, &v) == 2)
			*pages = v;
	}
	fclose(f);
	return round;
}

/* Wait until every guest has reported @more rounds past now. */
static int wait_rounds(struct _test_data_nested *self, long more, double timeout)
{
	long want[GUESTS];
	double t0 = rksm_now();

	for (int g = 0; g < GUESTS; g++)
		want[g] = guest_round(self->log[g], NULL) + more;
	for (;;) {
		int done = 0;

		for (int g = 0; g < GUESTS; g++) {
			long r = guest_round(self->log[g], NULL);

			if (r < 0)
				return -EIO;
			done += r >= want[g];
		}
		if (done == GUESTS)
			return 0;
		if (rksm_now() - t0 > timeout)
			return -ETIMEDOUT;
		rksm_msleep(500);
	}
}

/* Start of the guest-RAM mapping: the mergeable VMA of GUEST_MIB MiB. */
static uintptr_t guest_ram(pid_t pid)
{
	char path[64], line[512];
	unsigned long lo = 0, hi = 0, found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b;

		if (rksm_vma_header(line, &a, &b)) {
			lo = a;
			hi = b;
		} else if (!strncmp(line, "VmFlags:", 8) && strstr(line, " mg") &&
			   hi - lo == (size_t)GUEST_MIB << 20) {
			found = lo;
			break;
		}
	}
	fclose(f);
	return found;
}

/* Read both guests' PFNs; count common pages on one PFN and own pages that share. */
static int read_pfns(struct _test_data_nested *self, size_t *common_same, size_t *own_same)
{
	*common_same = *own_same = 0;
	for (int g = 0; g < GUESTS; g++) {
		int err = rksm_pfns(self->pid[g], (void *)(self->ram[g] + PAT_BAREMETAL_START),
				    self->pages, self->pfn[g]);

		if (err)
			return err;
	}
	for (size_t i = 0; i < self->pages; i++) {
		bool same = self->pfn[0][i] && self->pfn[0][i] == self->pfn[1][i];

		if (pat_kind(i) == PAT_COMMON)
			*common_same += same;
		else if (pat_kind(i) == PAT_OWN)
			*own_same += same;
	}
	return 0;
}

FIXTURE_SETUP(nested)
{
	double t0 = rksm_now();

	if (access(RUN_QEMU, X_OK) || access(CHECKER, R_OK))
		SKIP(return, "no packed QEMU or checker beside the test");
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
	ASSERT_EQ(0, rksm_write_num("pages_to_scan", 2000));
	ASSERT_EQ(0, rksm_write_num("sleep_millisecs", 20));
	for (int g = 0; g < GUESTS; g++) {
		snprintf(self->log[g], sizeof(self->log[g]), "guest%d.log", g);
		unlink(self->log[g]);
		self->pid[g] = start_guest(g, self->log[g]);
		ASSERT_LT(0, self->pid[g]);
	}
	/* Both checkers have filled their memory and verified it once. */
	for (int g = 0; g < GUESTS; g++) {
		size_t pages = 0;

		while (guest_round(self->log[g], &pages) < 1) {
			ASSERT_TRUE(rksm_pid_alive(self->pid[g]));
			ASSERT_GT(120, rksm_now() - t0) TH_LOG("guest %d did not start", g);
			rksm_msleep(500);
		}
		ASSERT_TRUE(self->pages == 0 || self->pages == pages);
		self->pages = pages;
		self->ram[g] = guest_ram(self->pid[g]);
		ASSERT_NE(0, self->ram[g]) TH_LOG("no %d MiB mergeable VMA in QEMU", GUEST_MIB);
		self->pfn[g] = calloc(pages, sizeof(uint64_t));
		ASSERT_NE(NULL, self->pfn[g]);
	}
	ASSERT_LT(GUEST_MIB * 256 / 2, self->pages);
	TH_LOG("2 guests filled %zu pages each and verified them in %.1f s",
	       self->pages, rksm_now() - t0);
}

FIXTURE_TEARDOWN(nested)
{
	for (int g = 0; g < GUESTS; g++) {
		if (self->pid[g] > 0) {
			kill(self->pid[g], SIGKILL);
			waitpid(self->pid[g], NULL, 0);
		}
		free(self->pfn[g]);
	}
	rksm_engine_teardown(&self->saved);
}

TEST_F_TIMEOUT(nested, merge_cow_unmerge, 600)
{
	size_t common = 0, common_same, own_same;
	struct rksm_counters c;
	double t0 = rksm_now();

	for (size_t i = 0; i < self->pages; i++)
		common += pat_kind(i) == PAT_COMMON;

	/* Merge: half the common pages is plenty while the guests rewrite 1 in 16 per round. */
	ASSERT_EQ(0, rksm_write("run", "1"));
	for (;;) {
		ASSERT_EQ(0, read_pfns(self, &common_same, &own_same));
		if (common_same >= common / 2)
			break;
		ASSERT_GT(240, rksm_now() - t0)
			TH_LOG("only %zu of %zu common pages merged", common_same, common);
		rksm_msleep(1000);
	}
	TH_LOG("%zu of %zu common pages on one PFN after %.1f s", common_same, common,
	       rksm_now() - t0);
	EXPECT_EQ(0, own_same);
	/* rksm adds a process's merges to its ksm_merging_pages at the end of its pass. */
	ASSERT_EQ(0, rksm_wait_scans(2, 120));
	for (int g = 0; g < GUESTS; g++) {
		long m = rksm_merging_pages(self->pid[g]);

		EXPECT_LE((long)common / 4, m);
		TH_LOG("guest %d: ksm_merging_pages %ld", g, m);
	}
	EXPECT_LE(common / 4, rksm_get("pages_sharing"));

	/* Two more rounds: merged pages rewritten (copy on write) and verified. */
	ASSERT_EQ(0, wait_rounds(self, 2, 240));

	/* run=2 unmerges every guest page before it returns. */
	ASSERT_EQ(0, rksm_write("run", "2"));
	rksm_counters_read(&c);
	EXPECT_EQ(0, c.shared);
	EXPECT_EQ(0, c.sharing);
	for (int g = 0; g < GUESTS; g++)
		EXPECT_EQ(0, rksm_merging_pages(self->pid[g]));
	ASSERT_EQ(0, read_pfns(self, &common_same, &own_same));
	EXPECT_EQ(0, common_same);
	EXPECT_EQ(0, own_same);
	ASSERT_EQ(0, wait_rounds(self, 2, 240));
	TH_LOG("guests verified %ld and %ld rounds in all", guest_round(self->log[0], NULL),
	       guest_round(self->log[1], NULL));
}

TEST_HARNESS_MAIN
