// SPDX-License-Identifier: GPL-2.0
/*
 * Merged pages are KSM folios (qemu/patches/0004), so the core handles them
 * as it handles KSM's, through the reverse map rksm keeps for each:
 *
 * - move_pages() migrates a merged page: the PFN changes in every process
 *   at once, the bytes stay, the page stays shared and counted; that holds
 *   for a forked child's mapping after its parent has exited too;
 * - compaction leaves every merged page shared and intact;
 * - reclaim swaps merged pages out (all their mappings become swap entries,
 *   pswpout rises, the counters drop) and every byte comes back;
 * - MADV_HWPOISON on a merged page signals every process that maps it;
 * - MADV_UNMERGEABLE gives a process its own pages before it returns;
 * - after compaction, THPs come as readily with merged pages scattered
 *   through memory as under KSM.
 *
 * Needs the test kernel's NUMA emulation (numa=fake=2), memory cgroups,
 * zram and CONFIG_MEMORY_FAILURE; a test whose part is missing is skipped.
 * Run as root.
 */
#include <setjmp.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/syscall.h>

#include "kselftest_harness.h"
#include "rksm_util.h"

#define NKIDS 3
#define PAGES 256
#define CG "/sys/fs/cgroup"
#define CG_TEST CG "/rksm_provider"
#define ZRAM "/sys/block/zram0"
#define MPOL_MF_MOVE_ALL_ (1 << 2)

/* Set up kids 0..NKIDS-1 holding the same PAGES pages, merged. */
static int start_merged(struct rksm_kids *k, struct rksm_counters *c)
{
	int err = rksm_kids_init(k, PAGES, MADV_NOHUGEPAGE);

	if (err)
		return err;
	rksm_kids_seed_common(k, NKIDS);
	err = rksm_kids_start(k, NKIDS);
	if (err)
		return err;
	if (rksm_write("run", "1"))
		return -errno;
	return rksm_wait_counts(PAGES, PAGES * (NKIDS - 1), 2, 60, c);
}

/* Whether page i maps one PFN in every kid, for every i; PFNs into @pfn. */
static bool all_shared(struct rksm_kids *k, uint64_t *pfn)
{
	if (rksm_kids_pfns(k, NKIDS, pfn))
		return false;
	for (int s = 1; s < NKIDS; s++)
		for (int i = 0; i < PAGES; i++)
			if (!pfn[i] || pfn[s * PAGES + i] != pfn[i])
				return false;
	return true;
}

FIXTURE(provider) {
	struct rksm_saved saved;
	struct rksm_kids k;
	struct rksm_counters c;
	uint64_t pfn[NKIDS * PAGES], before[NKIDS * PAGES];
};

FIXTURE_SETUP(provider)
{
	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
	ASSERT_EQ(0, start_merged(&self->k, &self->c))
		TH_LOG("shared %llu sharing %llu", self->c.shared, self->c.sharing);
	ASSERT_TRUE(all_shared(&self->k, self->before));
}

FIXTURE_TEARDOWN(provider)
{
	rksm_kids_kill_all(&self->k);
	rksm_engine_teardown(&self->saved);
}

/* Kid function: the NUMA node of each page of its buffer, into the shared flag page. */
static long kid_nodes(struct rksm_kids *k, int slot, long arg)
{
	void *pages[PAGES];
	int status[PAGES];

	(void)arg;
	for (int i = 0; i < PAGES; i++)
		pages[i] = rksm_kid_page(k, slot, i);
	if (syscall(SYS_move_pages, 0, PAGES, pages, NULL, status, 0))
		return -errno;
	for (int i = 0; i < PAGES; i++)
		k->flag[i] = status[i];
	return 0;
}

TEST_F_TIMEOUT(provider, move_pages_migrates, 120)
{
	void *pages[PAGES];
	int nodes[PAGES], status[PAGES], moved = 0;

	if (access("/sys/devices/system/node/node1", F_OK))
		SKIP(return, "one NUMA node (boot with numa=fake=2)");
	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, kid_nodes, 0));
	for (int i = 0; i < PAGES; i++) {
		pages[i] = rksm_kid_page(&self->k, 0, i);
		ASSERT_LE(0, self->k.flag[i]) TH_LOG("page %d: status %ld", i, self->k.flag[i]);
		nodes[i] = !self->k.flag[i];
	}
	/* Shared pages move only with MPOL_MF_MOVE_ALL (root). */
	ASSERT_EQ(0, syscall(SYS_move_pages, self->k.pid[0], PAGES, pages, nodes, status,
			     MPOL_MF_MOVE_ALL_)) TH_LOG("move_pages: %s", strerror(errno));
	for (int i = 0; i < PAGES; i++)
		moved += status[i] == nodes[i];
	EXPECT_EQ(PAGES, moved);
	/* Every process maps the new copy: the walk found every mapping. */
	ASSERT_TRUE(all_shared(&self->k, self->pfn));
	RKSM_EXPECT_ALL(PAGES, self->pfn[i] != self->before[i]);
	ASSERT_EQ(0, rksm_kid_call(&self->k, 2, kid_nodes, 0));
	RKSM_EXPECT_ALL(PAGES, self->k.flag[i] == nodes[i]);
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
	/* rksm follows the move (by pfn, as KSM does): still one stable page each. */
	ASSERT_EQ(0, rksm_wait_scans(2, 30));
	rksm_counters_read(&self->c);
	EXPECT_EQ(PAGES, self->c.shared);
	EXPECT_EQ(PAGES * (NKIDS - 1), self->c.sharing);
	/* And still merges into the moved page: a writer gets a copy, and merges back. */
	rksm_kid_seeds(&self->k, 1)[7] = rksm_seed_own(1, 7, 1);
	ASSERT_EQ(1, rksm_kid_call(&self->k, 1, rksm_kid_sync, 0));
	ASSERT_EQ(0, rksm_wait_counts(PAGES, PAGES * (NKIDS - 1) - 1, 2, 30, &self->c));
	rksm_kid_seeds(&self->k, 1)[7] = rksm_seed_common(7);
	ASSERT_EQ(1, rksm_kid_call(&self->k, 1, rksm_kid_sync, 0));
	ASSERT_EQ(0, rksm_wait_counts(PAGES, PAGES * (NKIDS - 1), 2, 30, &self->c));
	ASSERT_TRUE(all_shared(&self->k, self->pfn));
}

/* Kid function: outlive the parent (kids die with theirs otherwise). */
static long kid_outlive_parent(struct rksm_kids *k, int slot, long arg)
{
	(void)k;
	(void)slot;
	(void)arg;
	return prctl(PR_SET_PDEATHSIG, 0) ? -errno : 0;
}

/*
 * A fork copies mappings of merged pages that rksm did not make. rksm records
 * each when it scans the child, as KSM does, so that reverse-map walks find it
 * even once the parent, whose mapping it was copied from, is gone: here
 * migration has to move the child's mapping with the others'.
 */
TEST_F_TIMEOUT(provider, forked_mapping_adopted, 180)
{
	const int child = NKIDS;
	uint64_t p1[PAGES], pc[PAGES];
	void *pages[PAGES];
	int nodes[PAGES], status[PAGES], moved = 0;

	if (access("/sys/devices/system/node/node1", F_OK))
		SKIP(return, "one NUMA node (boot with numa=fake=2)");
	ASSERT_LT(0, rksm_kid_fork_into(&self->k, 0, child));
	ASSERT_EQ(0, rksm_wait_counts(PAGES, PAGES * NKIDS, 2, 60, &self->c))
		TH_LOG("shared %llu sharing %llu", self->c.shared, self->c.sharing);
	/* Two full scans: the child is found, then scanned. */
	ASSERT_EQ(0, rksm_wait_scans(2, 60));
	/* The parent goes; its records go at the next full scan. */
	ASSERT_EQ(0, rksm_kid_call(&self->k, child, kid_outlive_parent, 0));
	rksm_kid_kill(&self->k, 0);
	ASSERT_TRUE(rksm_pid_alive(self->k.pid[child]));
	ASSERT_EQ(0, rksm_wait_counts(PAGES, PAGES * (NKIDS - 1), 2, 60, &self->c))
		TH_LOG("shared %llu sharing %llu", self->c.shared, self->c.sharing);
	ASSERT_EQ(0, rksm_wait_scans(2, 60));

	ASSERT_EQ(0, rksm_kid_call(&self->k, child, kid_nodes, 0));
	for (int i = 0; i < PAGES; i++) {
		pages[i] = rksm_kid_page(&self->k, child, i);
		ASSERT_LE(0, self->k.flag[i]) TH_LOG("page %d: status %ld", i, self->k.flag[i]);
		nodes[i] = !self->k.flag[i];
	}
	ASSERT_EQ(0, syscall(SYS_move_pages, self->k.pid[child], PAGES, pages, nodes, status,
			     MPOL_MF_MOVE_ALL_)) TH_LOG("move_pages: %s", strerror(errno));
	for (int i = 0; i < PAGES; i++)
		moved += status[i] == nodes[i];
	/* Without the child's record its mapping would pin the page: -EBUSY. */
	EXPECT_EQ(PAGES, moved) TH_LOG("page 0: status %d", status[0]);
	ASSERT_EQ(0, rksm_kid_pfns(&self->k, 1, p1));
	ASSERT_EQ(0, rksm_kid_pfns(&self->k, child, pc));
	RKSM_EXPECT_ALL(PAGES, pc[i] && pc[i] == p1[i] && pc[i] != self->before[i]);
	ASSERT_EQ(0, rksm_kid_call(&self->k, child, rksm_kid_verify, 0));
	ASSERT_EQ(0, rksm_kid_call(&self->k, 1, rksm_kid_verify, 0));
	ASSERT_EQ(0, rksm_kid_call(&self->k, 2, rksm_kid_verify, 0));
}

TEST_F_TIMEOUT(provider, compaction_keeps_sharing, 120)
{
	int moved = 0;

	ASSERT_EQ(0, rksm_write_path("/proc/sys/vm/compact_memory", "1"));
	ASSERT_TRUE(all_shared(&self->k, self->pfn));
	for (int i = 0; i < PAGES; i++)
		moved += self->pfn[i] != self->before[i];
	TH_LOG("compaction moved %d of %d merged pages", moved, PAGES);
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
	ASSERT_EQ(0, rksm_wait_scans(2, 30));
	rksm_counters_read(&self->c);
	EXPECT_EQ(PAGES, self->c.shared);
	EXPECT_EQ(PAGES * (NKIDS - 1), self->c.sharing);
}

TEST_F_TIMEOUT(provider, madv_unmergeable_at_once, 90)
{
	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, rksm_kid_madvise, MADV_UNMERGEABLE));
	/* Before any scan: the kernel's break_ksm did it, as for KSM. */
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	RKSM_EXPECT_ALL(PAGES, self->pfn[i] && self->pfn[i] != self->pfn[PAGES + i]);
	RKSM_EXPECT_ALL(PAGES, self->pfn[PAGES + i] == self->before[PAGES + i]);
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
	ASSERT_EQ(0, rksm_wait_counts(PAGES, PAGES * (NKIDS - 2), 2, 30, &self->c));
}

/* SIGBUS caught by a kid: where and why. */
static volatile long bus_code, bus_page;
static sigjmp_buf bus_jmp;

static void on_bus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	bus_code = si->si_code;
	bus_page = (long)si->si_addr;
}

/* Kid function: catch SIGBUS from now on, recording it in flag[slot]. */
static long kid_catch_bus(struct rksm_kids *k, int slot, long arg)
{
	struct sigaction sa = { .sa_sigaction = on_bus, .sa_flags = SA_SIGINFO };

	(void)arg;
	k->flag[slot] = 0;
	bus_code = 0;
	return sigaction(SIGBUS, &sa, NULL) ? -errno : 0;
}

/* Kid function: report the SIGBUS it got (0: none): its si_code, and the page. */
static long kid_bus(struct rksm_kids *k, int slot, long arg)
{
	(void)arg;
	if (!bus_code)
		return 0;
	k->flag[slot] = (bus_page - (long)rksm_kid_page(k, slot, 0)) / (long)PAGE_SIZE;
	return bus_code;
}

static void on_bus_jump(int sig)
{
	(void)sig;
	siglongjmp(bus_jmp, 1);
}

/* Kid function: read page @arg; 1 if that raises SIGBUS, else 0. */
static long kid_touch(struct rksm_kids *k, int slot, long arg)
{
	struct sigaction sa = { .sa_handler = on_bus_jump }, old;
	volatile char c;
	long r = 0;

	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(bus_jmp, 1))
		r = 1;
	else
		c = *rksm_kid_page(k, slot, arg);
	(void)c;
	sigaction(SIGBUS, &old, NULL);
	return r;
}

/* Kid function: MADV_HWPOISON page @arg. 0 or -errno. */
static long kid_poison(struct rksm_kids *k, int slot, long arg)
{
	return madvise(rksm_kid_page(k, slot, arg), PAGE_SIZE, MADV_HWPOISON) ? -errno : 0;
}

TEST_F_TIMEOUT(provider, hwpoison_signals_every_mapper, 90)
{
	const int bad = 5;

	if (access("/proc/sys/vm/memory_failure_early_kill", F_OK))
		SKIP(return, "no CONFIG_MEMORY_FAILURE");
	for (int s = 0; s < NKIDS; s++)
		ASSERT_EQ(0, rksm_kid_call(&self->k, s, kid_catch_bus, 0));
	/* Early kill: memory-failure signals whoever maps the page, found by collect_procs. */
	ASSERT_EQ(0, rksm_write_path("/proc/sys/vm/memory_failure_early_kill", "1"));
	ASSERT_EQ(0, rksm_kid_call(&self->k, 0, kid_poison, bad));
	ASSERT_EQ(0, rksm_write_path("/proc/sys/vm/memory_failure_early_kill", "0"));
	for (int s = 1; s < NKIDS; s++) {
		EXPECT_EQ(BUS_MCEERR_AO, rksm_kid_call(&self->k, s, kid_bus, 0))
			TH_LOG("kid %d got no SIGBUS for the poisoned page", s);
		EXPECT_EQ(bad, self->k.flag[s]);
	}
	/* Its mappings are gone everywhere; every other page is as it was. */
	for (int s = 0; s < NKIDS; s++) {
		EXPECT_EQ(1, rksm_kid_call(&self->k, s, kid_touch, bad));
		EXPECT_EQ(0, rksm_kid_call(&self->k, s, kid_touch, bad + 1));
	}
	ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
	RKSM_EXPECT_ALL(PAGES, i == bad || self->pfn[i] == self->before[i]);
	ASSERT_EQ(0, rksm_wait_counts(PAGES - 1, (PAGES - 1) * (NKIDS - 1), 2, 30, &self->c));
}

/* ---- swap: a zram device and a memory cgroup to reclaim from -------------------- */

static int write_file(const char *path, const char *val)
{
	return rksm_write_path(path, val);
}

/* A /proc/vmstat counter ("name value" lines), or -1. */
static long vmstat(const char *name)
{
	char key[64];
	long v, found = -1;
	FILE *f = fopen("/proc/vmstat", "r");

	if (!f)
		return -1;
	while (fscanf(f, "%63s %ld", key, &v) == 2)
		if (!strcmp(key, name)) {
			found = v;
			break;
		}
	fclose(f);
	return found;
}

/* A swap area on zram0, as mkswap writes it (version 1, no bad pages). */
static int zram_swapon(size_t bytes)
{
	char size[32], *hdr = calloc(1, PAGE_SIZE);
	uint32_t *v = (uint32_t *)(hdr + 1024);
	int fd, err = 0;

	if (!hdr)
		return -ENOMEM;
	snprintf(size, sizeof(size), "%zu", bytes);
	if (write_file(ZRAM "/disksize", size)) {
		free(hdr);
		return -errno;
	}
	v[0] = 1;			/* version */
	v[1] = bytes / PAGE_SIZE - 1;	/* last_page */
	memcpy(hdr + PAGE_SIZE - 10, "SWAPSPACE2", 10);
	fd = open("/dev/zram0", O_WRONLY);
	if (fd < 0 || pwrite(fd, hdr, PAGE_SIZE, 0) != (ssize_t)PAGE_SIZE || fsync(fd))
		err = -errno;
	if (fd >= 0)
		close(fd);
	free(hdr);
	if (!err && swapon("/dev/zram0", 0))
		err = -errno;
	return err;
}

static void zram_swapoff(void)
{
	swapoff("/dev/zram0");
	write_file(ZRAM "/reset", "1");
}

/* Put this process (and so the kids it forks) in a memory cgroup of its own. */
static int cgroup_enter(void)
{
	if (access(CG "/cgroup.procs", F_OK) && mount("none", CG, "cgroup2", 0, NULL))
		return -errno;
	if (write_file(CG "/cgroup.subtree_control", "+memory"))
		return -errno;
	if (mkdir(CG_TEST, 0755) && errno != EEXIST)
		return -errno;
	return write_file(CG_TEST "/cgroup.procs", "0") ? -errno : 0;
}

static void cgroup_leave(void)
{
	write_file(CG "/cgroup.procs", "0");
	rmdir(CG_TEST);
}

FIXTURE(swap) {
	struct rksm_saved saved;
	struct rksm_kids k;
	struct rksm_counters c;
	bool swap_on, in_cgroup;
	uint64_t pfn[NKIDS * PAGES];
};

FIXTURE_SETUP(swap)
{
	int err;

	if (access(ZRAM, F_OK) || access(CG, F_OK))
		SKIP(return, "no zram or no cgroup file system");
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
	err = zram_swapon(64UL << 20);
	ASSERT_EQ(0, err) TH_LOG("zram swap: %s", strerror(-err));
	self->swap_on = true;
	err = cgroup_enter();
	ASSERT_EQ(0, err) TH_LOG("memory cgroup: %s", strerror(-err));
	self->in_cgroup = true;
	ASSERT_EQ(0, start_merged(&self->k, &self->c))
		TH_LOG("shared %llu sharing %llu", self->c.shared, self->c.sharing);
}

FIXTURE_TEARDOWN(swap)
{
	rksm_kids_kill_all(&self->k);
	if (self->in_cgroup)
		cgroup_leave();
	if (self->swap_on)
		zram_swapoff();
	rksm_engine_teardown(&self->saved);
}

TEST_F_TIMEOUT(swap, merged_pages_swap_out_and_back, 180)
{
	long out0 = vmstat("pswpout"), out;
	int swapped = 0;

	/*
	 * Reclaim anonymous memory only, from the kids' cgroup: 8 MiB is more
	 * than all of it. A page with young PTEs (the walk checks every
	 * mapping) is aged, not taken: clear_refs makes them old first, and a
	 * page activated in one round is deactivated in the next.
	 */
	for (int round = 0; round < 16 && swapped < PAGES; round++) {
		for (int s = 0; s < NKIDS; s++) {
			char path[64];

			snprintf(path, sizeof(path), "/proc/%d/clear_refs", self->k.pid[s]);
			ASSERT_EQ(0, write_file(path, "1"));
		}
		write_file(CG_TEST "/memory.reclaim", "8M swappiness=max");
		ASSERT_EQ(0, rksm_kids_pfns(&self->k, NKIDS, self->pfn));
		/* A merged page is out only once the walk unmapped it from every kid. */
		swapped = 0;
		for (int i = 0; i < PAGES; i++) {
			bool out_everywhere = true;

			for (int s = 0; s < NKIDS; s++)
				out_everywhere &= !self->pfn[s * PAGES + i];
			swapped += out_everywhere;
		}
	}
	out = vmstat("pswpout");
	TH_LOG("pswpout +%ld; %d of %d merged pages swapped out of all %d kids", out - out0,
	       swapped, PAGES, NKIDS);
	EXPECT_EQ(PAGES, swapped);
	EXPECT_LE(swapped, out - out0);
	/* They no longer count as merged... */
	ASSERT_EQ(0, rksm_wait_scans(2, 30));
	rksm_counters_read(&self->c);
	EXPECT_GE(PAGES - swapped, (long long)self->c.shared);
	/* ...every byte comes back, and they merge again. */
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
	ASSERT_EQ(0, rksm_wait_counts(PAGES, PAGES * (NKIDS - 1), 2, 60, &self->c));
	ASSERT_TRUE(all_shared(&self->k, self->pfn));
	ASSERT_EQ(0, rksm_kids_call(&self->k, NKIDS, rksm_kid_verify, 0));
}

/*
 * ---------------------------------------------------------------------------
 * THP after compaction, rksm against KSM in the same boot.
 * ---------------------------------------------------------------------------
 */
#define FRAG_GROUP 8 /* in every 8 pages, one equal pair */
#define THP_SIZE (2UL << 20)
#define MPOL_BIND_ 2
#define KSM_DIR "/sys/kernel/mm/ksm"

static long node1_free_kb(void)
{
	return rksm_file_field("/sys/devices/system/node/node1/meminfo", "Node 1 MemFree");
}

/*
 * On node 1 only: fill @pages pages, keep one equal pair in every
 * FRAG_GROUP, drop the rest, and let the engine at @dir merge the pairs,
 * so that its merged pages sit in every 2 MiB block the fill used. Then
 * compact_memory, and fault in THPs for 90% of the node's free memory.
 * Returns the share of that region backed by THPs; checks that merged pages
 * moved for them, and that the merges and their bytes survived.
 */
static double thp_share(struct __test_metadata *_metadata, const char *dir, size_t pages)
{
	const size_t pairs = pages / FRAG_GROUP;
	unsigned long mask = 1UL << 1;
	size_t size, len = pages * PAGE_SIZE;
	char *frag, *map, *thp;
	uint64_t *pfn, *now;
	size_t moved = 0;
	long thp_kb;
	double t0 = rksm_now();

	setenv("RKSM_SYSFS", dir, 1);
	ASSERT_EQ(0, rksm_write("run", "2"));
	ASSERT_EQ(0, rksm_write("run", "0"));
	ASSERT_EQ(0, rksm_write_num("pages_to_scan", 10000));
	ASSERT_EQ(0, rksm_write_num("sleep_millisecs", 5));
	ASSERT_EQ(0, syscall(SYS_set_mempolicy, MPOL_BIND_, &mask, 64));

	frag = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, frag);
	ASSERT_EQ(0, madvise(frag, len, MADV_NOHUGEPAGE));
	ASSERT_EQ(0, madvise(frag, len, MADV_MERGEABLE));
	for (size_t i = 0; i < pages; i++)
		rksm_fill_page_lite(frag + i * PAGE_SIZE,
				    i % FRAG_GROUP < 2 ? rksm_seed_common(i / FRAG_GROUP) :
							  rksm_seed_own(0, i, 0));
	for (size_t i = 0; i < pages; i += FRAG_GROUP)
		ASSERT_EQ(0, madvise(frag + (i + 2) * PAGE_SIZE, (FRAG_GROUP - 2) * PAGE_SIZE,
				     MADV_DONTNEED));
	ASSERT_EQ(0, rksm_write("run", "1"));
	while (rksm_get("pages_sharing") < pairs) {
		ASSERT_GT(120, rksm_now() - t0)
			TH_LOG("%s: pages_sharing %llu of %zu", dir, rksm_get("pages_sharing"), pairs);
		rksm_msleep(200);
	}
	ASSERT_EQ(0, rksm_write("run", "0"));
	ASSERT_EQ(pairs, rksm_get("pages_shared"));
	pfn = calloc(pages, sizeof(*pfn));
	now = calloc(pages, sizeof(*now));
	ASSERT_NE(NULL, pfn);
	ASSERT_NE(NULL, now);
	ASSERT_EQ(0, rksm_pfns(0, frag, pages, pfn));

	ASSERT_EQ(0, rksm_write_path("/proc/sys/vm/compact_memory", "1"));
	size = (size_t)node1_free_kb() * 1024 / 10 * 9 / THP_SIZE * THP_SIZE;
	ASSERT_LT(8 * THP_SIZE, size);
	map = mmap(NULL, size + THP_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	ASSERT_NE(MAP_FAILED, map);
	thp = (char *)(((uintptr_t)map + THP_SIZE - 1) & ~(THP_SIZE - 1));
	ASSERT_EQ(0, madvise(thp, size, MADV_HUGEPAGE));
	for (size_t off = 0; off < size; off += PAGE_SIZE)
		thp[off] = 1;
	thp_kb = rksm_smaps_field(getpid(), thp, "AnonHugePages");

	/*
	 * The THPs needed the blocks the merged pages sat in: merged pages
	 * moved, and each pair still maps one page.
	 */
	ASSERT_EQ(0, rksm_pfns(0, frag, pages, now));
	for (size_t i = 0; i < pages; i += FRAG_GROUP) {
		EXPECT_TRUE(pfn[i] != 0 && pfn[i] == pfn[i + 1]);
		EXPECT_TRUE(now[i] != 0 && now[i] == now[i + 1]);
		moved += now[i] != pfn[i];
	}
	free(pfn);
	free(now);
	EXPECT_LT(0, moved);
	EXPECT_EQ(pairs, rksm_get("pages_shared"));
	for (size_t i = 0; i < pages; i += FRAG_GROUP) {
		EXPECT_TRUE(rksm_page_is_lite(frag + i * PAGE_SIZE, rksm_seed_common(i / FRAG_GROUP)));
		EXPECT_TRUE(rksm_page_is_lite(frag + (i + 1) * PAGE_SIZE,
					      rksm_seed_common(i / FRAG_GROUP)));
	}
	munmap(map, size + THP_SIZE);
	munmap(frag, len);
	ASSERT_EQ(0, syscall(SYS_set_mempolicy, 0, NULL, 0));
	ASSERT_EQ(0, rksm_write("run", "2"));
	ASSERT_EQ(0, rksm_write("run", "0"));
	TH_LOG("%s: %zu merged pages in %zu MiB, %zu of them moved; THPs for %ld of %zu MiB after compaction (%.1f s)",
	       dir, pairs, len >> 20, moved, thp_kb >> 10, size >> 20, rksm_now() - t0);
	return (double)thp_kb * 1024 / size;
}

/*
 * Two fills, merges and compactions of most of node 1: far over the
 * harness's default 30 s on a slow machine (about 40 s here, 190 s on the
 * KASAN kernel).
 */
FIXTURE(thp) {};
FIXTURE_SETUP(thp) {}
FIXTURE_TEARDOWN(thp) {}

TEST_F_TIMEOUT(thp, after_compaction_as_ksm, 600)
{
	struct rksm_saved saved;
	double rksm_share, ksm_share;
	size_t pages;

	if (access("/sys/devices/system/node/node1", F_OK))
		SKIP(return, "one NUMA node (boot with numa=fake=2)");
	if (access(KSM_DIR, F_OK) || !strcmp(rksm_sysfs(), KSM_DIR))
		SKIP(return, "compares rksm with in-kernel KSM");
	ASSERT_EQ(0, rksm_engine_setup(&saved));
	/* Most of node 1: merged pages end up in nearly every block the THPs need. */
	pages = (size_t)node1_free_kb() * 1024 / 10 * 7 / PAGE_SIZE / FRAG_GROUP * FRAG_GROUP;
	rksm_share = thp_share(_metadata, RKSM_MODULE_DIR, pages);
	ksm_share = thp_share(_metadata, KSM_DIR, pages);
	setenv("RKSM_SYSFS", RKSM_MODULE_DIR, 1);
	rksm_engine_teardown(&saved);
	TH_LOG("THP share after compaction: rksm %.2f, KSM %.2f", rksm_share, ksm_share);
	EXPECT_LE(ksm_share - 0.10, rksm_share);
	EXPECT_LT(0.5, rksm_share);
}

TEST_HARNESS_MAIN
