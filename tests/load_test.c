// SPDX-License-Identifier: GPL-2.0
/*
 * Module lifecycle: load and unload 100 times in a row, sometimes while
 * rksmd is running or the memfd knobs refuse things, and check that each
 * unload removes the directory, the thread and every memfd hook (gone from
 * the kprobe list, and nothing is refused any more), and that no memory is
 * left behind.
 */
#include <cpuid.h>
#include <linux/memfd.h>
#include <sched.h>
#include <sys/mman.h>

#include "kselftest_harness.h"
#include "rksm_util.h"

#define KPROBE_LIST "/sys/kernel/debug/kprobes/list"

static const char *const memfd_hooks[] = {
	"memfd_alloc_file+0x0", "security_bprm_check+0x0", "security_mmap_file+0x0",
	"security_file_mprotect+0x0",
};

/* How many of rksm's memfd hooks the kprobe list shows, or -1 if it cannot be read. */
static int hooks_listed(void)
{
	char line[512];
	int n = 0;
	FILE *f = fopen(KPROBE_LIST, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		for (size_t i = 0; i < sizeof(memfd_hooks) / sizeof(memfd_hooks[0]); i++)
			if (strstr(line, memfd_hooks[i]))
				n++;
	fclose(f);
	return n;
}

/*
 * Whether the memfd hooks refuse: an MFD_EXEC memfd_create (memfd_noexec=2)
 * and a PROT_EXEC mmap of a memfd (memfd_exec=none). 1: both refused, 0: both
 * allowed, -1: anything else.
 */
static int created_err, map_err; /* what the last memfd_refused() saw */

static int memfd_refused(void)
{
	int fd = syscall(SYS_memfd_create, "rksm_load", MFD_EXEC);
	void *p;

	created_err = fd < 0 ? errno : 0;
	map_err = 0;

	if (fd < 0)
		fd = syscall(SYS_memfd_create, "rksm_load", MFD_NOEXEC_SEAL);
	if (fd < 0 || ftruncate(fd, 4096))
		return -1;
	p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		map_err = errno;
	else
		munmap(p, 4096);
	close(fd);
	if (created_err == EACCES && map_err == EACCES)
		return 1;
	return !created_err && !map_err ? 0 : -1;
}

/* Whether the guest runs under KVM (CPUID's hypervisor leaf says "KVMKVMKVM"). */
static bool under_kvm(void)
{
	unsigned int eax, sig[3];
	char name[13];

	__cpuid(0x40000000, eax, sig[0], sig[1], sig[2]);
	memcpy(name, sig, 12);
	name[12] = 0;
	return !strcmp(name, "KVMKVMKVM");
}

FIXTURE(load) {};
FIXTURE_SETUP(load) {}
FIXTURE_TEARDOWN(load) {}

/*
 * A process that keeps every memfd hook busy (memfd_create, PROT_EXEC mmap,
 * mprotect, exec of a memfd) until killed, so that loads and unloads place
 * and remove the probes while their handlers run. What is refused or not
 * does not matter here; the kernel must stay quiet.
 */
static pid_t hammer_start(void)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	for (;;) {
		int fd = syscall(SYS_memfd_create, "rksm_hammer", MFD_NOEXEC_SEAL);
		void *p;

		if (fd < 0 || ftruncate(fd, 4096))
			_exit(1);
		p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
		if (p != MAP_FAILED)
			munmap(p, 4096);
		p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED) {
			mprotect(p, 4096, PROT_READ | PROT_EXEC);
			munmap(p, 4096);
		}
		close(fd);
		fd = syscall(SYS_memfd_create, "rksm_hammer", MFD_EXEC);
		if (fd >= 0) {
			/* Empty: the exec fails either way, after the hook has run. */
			char *const argv[] = { "rksm-hammer", NULL };

			fexecve(fd, argv, argv + 1);
			close(fd);
		}
	}
}

/* A load and unload takes about 0.1 s under TCG, 0.3 s with the host busy. */
TEST_F_TIMEOUT(load, unload_100_times, 120)
{
	long slab_before, slab_after;
	int listed, status;
	pid_t hammer;

	if (!rksm_loaded())
		ASSERT_EQ(0, rksm_load());
	/* Earlier tests may have left merges behind, which pin the module. */
	ASSERT_EQ(0, rksm_write("run", "2"));
	ASSERT_EQ(0, rksm_unload());
	/* With rksm unloaded, no hook is listed and nothing is refused. */
	ASSERT_EQ(0, memfd_refused());
	listed = hooks_listed();
	if (listed < 0)
		TH_LOG("no %s: the kprobe list is not checked", KPROBE_LIST);
	else
		ASSERT_EQ(0, listed);
	slab_before = rksm_meminfo("Slab");
	/*
	 * Under TCG, a vCPU can go on running the translation of code that
	 * another vCPU has just patched: seen here as an armed kprobe whose
	 * int3 is in memory but never hit (nmissed 0), and as an "Oops: int3"
	 * at a probed function after the probe was removed and its byte put
	 * back. Real CPUs and KVM follow text_poke's cross-modifying-code
	 * protocol. So unless this is KVM, the test and its hammer share one
	 * CPU: every probe is placed, armed and removed on the CPU that runs
	 * the probed code, with the hammer preempted anywhere in its syscalls.
	 */
	if (!under_kvm()) {
		cpu_set_t one;

		CPU_ZERO(&one);
		CPU_SET(0, &one);
		ASSERT_EQ(0, sched_setaffinity(0, sizeof(one), &one));
		TH_LOG("not KVM: the test and the hammer share CPU 0");
	}
	hammer = hammer_start();
	ASSERT_LT(0, hammer);
	for (int i = 0; i < 100; i++) {
		ASSERT_EQ(0, rksm_load()) TH_LOG("load %d", i);
		ASSERT_TRUE(rksm_loaded());
		ASSERT_NE(0, rksm_find_kthread("rksmd"));
		if (listed >= 0)
			ASSERT_EQ(4, hooks_listed()) TH_LOG("load %d", i);
		if (i % 3 == 0) {
			ASSERT_EQ(0, rksm_write("sleep_millisecs", "0"));
			ASSERT_EQ(0, rksm_write("run", "1"));
		}
		if (i % 3 == 1) {
			/* Unloaded below with the knobs refusing. */
			ASSERT_EQ(0, rksm_write("memfd_noexec", "2"));
			ASSERT_EQ(0, rksm_write("memfd_exec", "none"));
			ASSERT_EQ(1, memfd_refused())
				TH_LOG("load %d: memfd_create errno %d, mmap errno %d", i,
				       created_err, map_err);
		}
		ASSERT_EQ(0, rksm_unload()) TH_LOG("unload %d", i);
		ASSERT_FALSE(rksm_loaded());
		ASSERT_EQ(0, rksm_find_kthread("rksmd"));
		if (listed >= 0)
			ASSERT_EQ(0, hooks_listed()) TH_LOG("unload %d", i);
		if (i % 3 == 1)
			ASSERT_EQ(0, memfd_refused())
				TH_LOG("unload %d: memfd_create errno %d, mmap errno %d", i,
				       created_err, map_err);
	}
	kill(hammer, SIGKILL);
	ASSERT_EQ(hammer, waitpid(hammer, &status, 0));
	/* It ran all along: killed, not exited with an error. */
	EXPECT_TRUE(WIFSIGNALED(status)) TH_LOG("hammer status %#x", status);
	slab_after = rksm_meminfo("Slab");
	/*
	 * 100 leaked sysfs directories or tasks would be far more than 1 MiB.
	 * KASAN's quarantine holds freed objects back for a while: 4 MiB there.
	 */
	EXPECT_LT(slab_after - slab_before, getenv("RKSM_KASAN") ? 4096 : 1024)
		TH_LOG("Slab grew by %ld kB", slab_after - slab_before);
	ASSERT_EQ(0, rksm_load());
	/* A fresh load starts from the defaults. */
	EXPECT_EQ(0, rksm_get("run"));
	EXPECT_EQ(20, rksm_get("sleep_millisecs"));
	EXPECT_EQ(0, rksm_get("memfd_noexec"));
	EXPECT_EQ(0, memfd_refused());
}

TEST(second_load_is_refused)
{
	if (!rksm_loaded())
		ASSERT_EQ(0, rksm_load());
	EXPECT_EQ(-EEXIST, rksm_load());
	EXPECT_TRUE(rksm_loaded());
}

TEST_HARNESS_MAIN
