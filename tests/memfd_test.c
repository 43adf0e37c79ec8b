// SPDX-License-Identifier: GPL-2.0
/*
 * rksm's memfd knobs and hooks, by their real effects:
 *  - memfd_noexec (0, 1, 2): every memfd_create flag combination at every
 *    value: the errno, F_GET_SEALS, the mode bits, what fchmod may do, and
 *    that a refused call leaves no fd behind; the floor under a pid
 *    namespace's own vm.memfd_noexec (effective value: the larger one);
 *  - memfd_exec (any, sealed, none): fexecve, execveat and execve of a memfd
 *    holding this static binary, PROT_EXEC mmap (private and shared) and
 *    mprotect adding PROT_EXEC (the mapped code is called to prove it runs),
 *    READ_IMPLIES_EXEC, and files that are not memfds left alone;
 *  - the counters, the log line of a refusal, the knobs' parsing, and a load
 *    with memfd_hooks=0, where both knobs refuse non-default values with
 *    EOPNOTSUPP.
 * The sysctl vm.memfd_noexec of the initial pid namespace stays 0 throughout.
 */
#include <dirent.h>
#include <linux/memfd.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "rksm_util.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

#define SYSCTL "/proc/sys/vm/memfd_noexec"
/* In the environment of a child this binary execs: exit with EXEC_OK at once. */
#define CHILD_MARK "RKSM_MEMFD_EXEC_CHILD"
#define EXEC_OK 42
/* A child whose exec failed exits with EXEC_FAILED + errno. */
#define EXEC_FAILED 100

__attribute__((constructor)) static void exec_child(void)
{
	if (getenv(CHILD_MARK))
		_exit(EXEC_OK);
}

static int mfd_create(const char *name, unsigned int flags)
{
	int fd = syscall(SYS_memfd_create, name, flags);

	return fd < 0 ? -errno : fd;
}

/* Open fds of this process. */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

static int sysctl_read(void)
{
	char buf[16] = "";
	int fd = open(SYSCTL, O_RDONLY);

	if (fd < 0)
		return -errno;
	if (read(fd, buf, sizeof(buf) - 1) < 0)
		buf[0] = 0;
	close(fd);
	return buf[0] ? atoi(buf) : -EIO;
}

static void knobs_default(void)
{
	rksm_write("memfd_noexec", "0");
	rksm_write("memfd_exec", "any");
}

/*
 * What one memfd_create call must give at effective value @eff (the larger
 * of memfd_noexec and the namespace's vm.memfd_noexec): an errno, or a
 * noexec-sealed or an executable memfd.
 */
struct outcome {
	int err;
	bool noexec;
};

static struct outcome expected(int eff, unsigned int flags)
{
	unsigned int x = flags & (MFD_EXEC | MFD_NOEXEC_SEAL);
	struct outcome o = { 0, false };

	if (x == (MFD_EXEC | MFD_NOEXEC_SEAL)) {
		o.err = EINVAL;
		return o;
	}
	o.noexec = x == MFD_NOEXEC_SEAL || (x == 0 && eff >= 1);
	if (!o.noexec && eff >= 2)
		o.err = EACCES;
	return o;
}

/*
 * Make one call with @flags and check it against @eff. Returns "" if it
 * behaved, else what went wrong (in @why). Checks the errno, that a refused
 * call left no fd, the mode bits, the seals, what fchmod may do, CLOEXEC.
 */
static const char *check_call(int eff, unsigned int flags, char *why, size_t len)
{
	struct outcome o = expected(eff, flags);
	int before = count_fds(), fd, seals, want_seals, cloexec;
	struct stat st;

	why[0] = 0;
	fd = mfd_create("rksm_memfd", flags);
	if (o.err) {
		if (fd != -o.err)
			snprintf(why, len, "gave %d, want -%d", fd, o.err);
		else if (count_fds() != before)
			snprintf(why, len, "refused, but %d fds became %d", before, count_fds());
		if (fd >= 0)
			close(fd);
		return why;
	}
	if (fd < 0) {
		snprintf(why, len, "failed with %d", fd);
		return why;
	}
	seals = fcntl(fd, F_GET_SEALS);
	want_seals = o.noexec ? F_SEAL_EXEC : (flags & MFD_ALLOW_SEALING) ? 0 : F_SEAL_SEAL;
	cloexec = fcntl(fd, F_GETFD) & FD_CLOEXEC;
	if (fstat(fd, &st))
		snprintf(why, len, "fstat: %s", strerror(errno));
	else if ((st.st_mode & 07777) != (o.noexec ? 0666u : 0777u))
		snprintf(why, len, "mode %04o, want %04o", st.st_mode & 07777,
			 o.noexec ? 0666u : 0777u);
	else if (seals != want_seals)
		snprintf(why, len, "seals %#x, want %#x", seals, want_seals);
	else if (!cloexec != !(flags & MFD_CLOEXEC))
		snprintf(why, len, "FD_CLOEXEC is %d", !!cloexec);
	/* F_SEAL_EXEC: the x bits can never come back. */
	else if (o.noexec && (fchmod(fd, 0777) == 0 || errno != EPERM))
		snprintf(why, len, "fchmod 0777 of a noexec-sealed memfd did not fail with EPERM");
	else if (!o.noexec && fchmod(fd, 0755))
		snprintf(why, len, "fchmod 0755 of an executable memfd: %s", strerror(errno));
	close(fd);
	if (!why[0] && count_fds() != before)
		snprintf(why, len, "%d fds became %d after close", before, count_fds());
	return why;
}

/* The flags the tests try: both exec bits, with and without sealing and CLOEXEC. */
static const unsigned int exec_bits[] = { 0, MFD_EXEC, MFD_NOEXEC_SEAL, MFD_EXEC | MFD_NOEXEC_SEAL };
static const unsigned int extra_bits[] = { 0, MFD_ALLOW_SEALING, MFD_CLOEXEC,
					   MFD_ALLOW_SEALING | MFD_CLOEXEC };
#define NR_EXEC (sizeof(exec_bits) / sizeof(exec_bits[0]))
#define NR_EXTRA (sizeof(extra_bits) / sizeof(extra_bits[0]))

struct memfd_counters {
	unsigned long long exec, noexec, refused, exec_refused, mmap_refused;
};

static void memfd_counters(struct memfd_counters *c)
{
	c->exec = rksm_get("memfd_created_exec");
	c->noexec = rksm_get("memfd_created_noexec");
	c->refused = rksm_get("memfd_create_refused");
	c->exec_refused = rksm_get("memfd_exec_refused");
	c->mmap_refused = rksm_get("memfd_mmap_exec_refused");
}

FIXTURE(memfd) {};

FIXTURE_SETUP(memfd)
{
	ASSERT_TRUE(rksm_loaded());
	ASSERT_EQ(0, sysctl_read()) TH_LOG("vm.memfd_noexec must stay 0 here");
	knobs_default();
}

FIXTURE_TEARDOWN(memfd)
{
	knobs_default();
	EXPECT_EQ(0, sysctl_read());
}

/*
 * Refuse the way @refuse does (as the current task) and find the log line
 * "refused @what (...): pid <pid> comm memfd_test".
 */
static bool refusal_logged(int (*refuse)(void), const char *what)
{
	char needle[128];
	int kmsg = rksm_kmsg_open();
	bool found;

	if (kmsg < 0)
		return false;
	snprintf(needle, sizeof(needle), "refused %s (", what);
	if (refuse() != -EACCES)
		return false;
	found = rksm_kmsg_find(kmsg, needle);
	if (!found) {
		/* An earlier burst used the rate limit (10 lines in 5 s) up. */
		sleep(6);
		refuse();
		found = rksm_kmsg_find(kmsg, needle);
	}
	close(kmsg);
	/* The same line, with the pid and comm of the task refused. */
	kmsg = rksm_kmsg_open();
	snprintf(needle, sizeof(needle), "refused %s (%s): pid %d comm memfd_test", what,
		 strcmp(what, "memfd_create(MFD_EXEC)") ? "memfd_exec=none" : "memfd_noexec=2",
		 getpid());
	if (found && refuse() == -EACCES)
		found = rksm_kmsg_find(kmsg, needle);
	close(kmsg);
	return found;
}

static int refuse_create(void)
{
	int fd = mfd_create("rksm_log", MFD_EXEC);

	if (fd >= 0)
		close(fd);
	return fd;
}

static int refuse_mmap(void)
{
	int fd = mfd_create("rksm_log", MFD_NOEXEC_SEAL), ret = 0;
	void *p;

	if (fd < 0 || ftruncate(fd, PAGE_SIZE))
		return -1;
	p = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		ret = -errno;
	else
		munmap(p, PAGE_SIZE);
	close(fd);
	return ret;
}

static int refuse_mprotect(void)
{
	int fd = mfd_create("rksm_log", MFD_NOEXEC_SEAL), ret = 0;
	void *p;

	if (fd < 0 || ftruncate(fd, PAGE_SIZE))
		return -1;
	p = mmap(NULL, PAGE_SIZE, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return -1;
	if (mprotect(p, PAGE_SIZE, PROT_READ | PROT_EXEC))
		ret = -errno;
	munmap(p, PAGE_SIZE);
	return ret;
}

static int refuse_exec(void)
{
	int fd = mfd_create("rksm_log", MFD_EXEC), self = open("/proc/self/exe", O_RDONLY);
	char *const argv[] = { "rksm-memfd-child", NULL };
	char *const envp[] = { CHILD_MARK "=1", NULL };
	char buf[65536];
	ssize_t n;
	int ret;

	if (fd < 0 || self < 0)
		return -1;
	while ((n = read(self, buf, sizeof(buf))) > 0)
		if (write(fd, buf, n) != n)
			return -1;
	close(self);
	/* Refused in this task itself: the exec fails and returns. */
	fexecve(fd, argv, envp);
	ret = -errno;
	close(fd);
	return ret;
}

/* First, while the rate limits are unspent: each kind of refusal logs a line with pid and comm. */
TEST_F(memfd, refusal_is_logged_with_pid_and_comm)
{
	ASSERT_EQ(0, rksm_write("memfd_noexec", "2"));
	ASSERT_EQ(0, rksm_write("memfd_exec", "none"));
	EXPECT_TRUE(refusal_logged(refuse_create, "memfd_create(MFD_EXEC)"));
	ASSERT_EQ(0, rksm_write("memfd_noexec", "0"));
	EXPECT_TRUE(refusal_logged(refuse_exec, "exec of a memfd"));
	EXPECT_TRUE(refusal_logged(refuse_mmap, "PROT_EXEC mmap of a memfd"));
	EXPECT_TRUE(refusal_logged(refuse_mprotect, "mprotect(PROT_EXEC) of a memfd"));
}

TEST_F(memfd, knobs_parse_and_read_back)
{
	static const char *const bad_noexec[] = { "3", "-1", "1x", "", "\n", "any", " 1", NULL };
	static const char *const bad_exec[] = { "0", "1", "2", "ANY", "Sealed", "[any]",
						"any sealed", " none", "none ", "none\n\n",
						"seal", "x", "\n", NULL };
	char buf[64];

	ASSERT_EQ(0, rksm_read_str("memfd_noexec", buf, sizeof(buf)));
	EXPECT_STREQ("0\n", buf);
	ASSERT_EQ(0, rksm_read_str("memfd_exec", buf, sizeof(buf)));
	EXPECT_STREQ("[any] sealed none\n", buf);

	ASSERT_EQ(0, rksm_write("memfd_noexec", "1\n"));
	ASSERT_EQ(0, rksm_write("memfd_exec", "sealed\n"));
	for (const char *const *b = bad_noexec; *b; b++) {
		if (!**b)
			continue; /* an empty write never reaches the kernel */
		EXPECT_EQ(-EINVAL, rksm_write("memfd_noexec", *b)) TH_LOG("'%s'", *b);
	}
	for (const char *const *b = bad_exec; *b; b++) {
		EXPECT_EQ(-EINVAL, rksm_write("memfd_exec", *b)) TH_LOG("'%s'", *b);
	}
	ASSERT_EQ(0, rksm_read_str("memfd_noexec", buf, sizeof(buf)));
	EXPECT_STREQ("1\n", buf);
	ASSERT_EQ(0, rksm_read_str("memfd_exec", buf, sizeof(buf)));
	EXPECT_STREQ("any [sealed] none\n", buf);

	ASSERT_EQ(0, rksm_write("memfd_exec", "none"));
	ASSERT_EQ(0, rksm_read_str("memfd_exec", buf, sizeof(buf)));
	EXPECT_STREQ("any sealed [none]\n", buf);
	ASSERT_EQ(0, rksm_write("memfd_noexec", "2"));
	EXPECT_EQ(2, rksm_get("memfd_noexec"));
}

TEST_F(memfd, knob_writes_are_root_only)
{
	pid_t pid;
	int status;

	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(2);
		_exit(rksm_write("memfd_exec", "none") == -EACCES &&
		      rksm_write("memfd_noexec", "2") == -EACCES ? 0 : 1);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	EXPECT_EQ(0, rksm_get("memfd_noexec"));
}

/* Every flag combination under every memfd_noexec value, with the counters. */
TEST_F(memfd, create_every_flag_combination)
{
	char why[160];

	for (int knob = 0; knob <= 2; knob++) {
		ASSERT_EQ(0, rksm_write_num("memfd_noexec", knob));
		for (size_t i = 0; i < NR_EXEC; i++) {
			for (size_t j = 0; j < NR_EXTRA; j++) {
				unsigned int flags = exec_bits[i] | extra_bits[j];
				struct outcome o = expected(knob, flags);
				struct memfd_counters a, b;

				memfd_counters(&a);
				check_call(knob, flags, why, sizeof(why));
				memfd_counters(&b);
				EXPECT_STREQ("", why)
					TH_LOG("memfd_noexec=%d flags %#x: %s", knob, flags, why);
				/* Only rksm's refusals count; the kernel's EINVAL does not. */
				EXPECT_EQ(a.refused + (o.err == EACCES), b.refused)
					TH_LOG("memfd_noexec=%d flags %#x", knob, flags);
				EXPECT_EQ(a.noexec + (!o.err && o.noexec), b.noexec)
					TH_LOG("memfd_noexec=%d flags %#x", knob, flags);
				EXPECT_EQ(a.exec + (!o.err && !o.noexec), b.exec)
					TH_LOG("memfd_noexec=%d flags %#x", knob, flags);
			}
		}
	}
}

/*
 * In a child pid namespace whose vm.memfd_noexec is @ns, check every call
 * under every memfd_noexec value: the effective value is the larger one.
 * Runs as pid 1 of the new namespace; exits with the number of failures.
 */
static int ns_child(int ns)
{
	char val[4], why[160];
	int bad = 0;

	snprintf(val, sizeof(val), "%d", ns);
	if (rksm_write_path(SYSCTL, val) || sysctl_read() != ns) {
		printf("# cannot set vm.memfd_noexec=%d in the child namespace\n", ns);
		return 100;
	}
	for (int knob = 0; knob <= 2; knob++) {
		int eff = knob > ns ? knob : ns;

		if (rksm_write_num("memfd_noexec", knob))
			return 101;
		for (size_t i = 0; i < NR_EXEC; i++) {
			for (size_t j = 0; j < NR_EXTRA; j++) {
				unsigned int flags = exec_bits[i] | extra_bits[j];

				if (*check_call(eff, flags, why, sizeof(why))) {
					printf("# ns %d, memfd_noexec=%d, flags %#x: %s\n",
					       ns, knob, flags, why);
					bad++;
				}
			}
		}
	}
	return bad;
}

TEST_F(memfd, floor_under_pid_namespace_value)
{
	for (int ns = 0; ns <= 2; ns++) {
		pid_t pid;
		int status;

		fflush(stdout);
		pid = fork();
		ASSERT_LE(0, pid);
		if (pid == 0) {
			pid_t inner;

			if (unshare(CLONE_NEWPID))
				_exit(102);
			inner = fork();
			if (inner == 0)
				_exit(ns_child(ns));
			if (inner < 0 || waitpid(inner, &status, 0) != inner || !WIFEXITED(status))
				_exit(103);
			_exit(WEXITSTATUS(status));
		}
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_TRUE(WIFEXITED(status));
		EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("namespace value %d", ns);
		/* Nothing leaked into this namespace. */
		EXPECT_EQ(0, sysctl_read());
	}
}

/*
 * In the kprobe list, how many of the three run hooks are armed, or -1 if
 * the list cannot be read; *@create tells whether the memfd_create hook is.
 */
static int run_hooks_armed(bool *create)
{
	static const char *const run[] = { "security_bprm_check+0x0", "security_mmap_file+0x0",
					   "security_file_mprotect+0x0" };
	FILE *f = fopen("/sys/kernel/debug/kprobes/list", "r");
	char line[512];
	int armed = 0;

	if (!f)
		return -1;
	*create = false;
	while (fgets(line, sizeof(line), f)) {
		bool on = !strstr(line, "[DISABLED]");

		if (strstr(line, "memfd_alloc_file+0x0"))
			*create = on;
		for (int i = 0; i < 3; i++)
			if (strstr(line, run[i]))
				armed += on;
	}
	fclose(f);
	return armed;
}

/*
 * The run hooks sit on every exec, mmap and mprotect: they are armed only
 * while memfd_exec is not "any". The memfd_create hook always is.
 */
TEST_F(memfd, run_hooks_armed_only_while_needed)
{
	bool create;

	if (run_hooks_armed(&create) < 0)
		SKIP(return, "no /sys/kernel/debug/kprobes/list");
	EXPECT_EQ(0, run_hooks_armed(&create));
	EXPECT_TRUE(create);
	ASSERT_EQ(0, rksm_write("memfd_exec", "sealed"));
	EXPECT_EQ(3, run_hooks_armed(&create));
	ASSERT_EQ(0, rksm_write("memfd_exec", "none"));
	EXPECT_EQ(3, run_hooks_armed(&create));
	ASSERT_EQ(0, rksm_write("memfd_noexec", "2"));
	EXPECT_TRUE(create);
	ASSERT_EQ(0, rksm_write("memfd_exec", "any"));
	EXPECT_EQ(0, run_hooks_armed(&create));
	EXPECT_TRUE(create);
}

/*
 * Arming and disarming while the hooks are hit: a write-sealed memfd mapped
 * PROT_EXEC must work under "any" and "sealed" alike, whatever moment the
 * probes change, while the policy flips 200 times.
 */
TEST_F_TIMEOUT(memfd, arming_races_with_calls, 120)
{
	int fd = mfd_create("rksm_race", MFD_EXEC | MFD_ALLOW_SEALING), status;
	static unsigned char page[PAGE_SIZE];
	pid_t pid;

	ASSERT_LE(0, fd);
	memset(page, 0xc3, sizeof(page));
	ASSERT_EQ(PAGE_SIZE, write(fd, page, PAGE_SIZE));
	ASSERT_EQ(0, fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE));
	fflush(stdout);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		for (;;) {
			void *p = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);

			if (p == MAP_FAILED)
				_exit(1);
			((void (*)(void))p)();
			munmap(p, PAGE_SIZE);
		}
	}
	for (int i = 0; i < 200; i++)
		ASSERT_EQ(0, rksm_write("memfd_exec", i % 2 ? "any" : "sealed"));
	kill(pid, SIGKILL);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
		TH_LOG("the mapping child failed: status %#x", status);
	close(fd);
}

/* ---- memfd_exec -------------------------------------------------------------------------- */

/* Copy what is left of @src into @fd. 0, or -1. */
static int copy_into(int fd, int src)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(src, buf, sizeof(buf))) > 0)
		if (write(fd, buf, n) != n)
			return -1;
	return n;
}

/* A memfd holding this static binary, executable; sealed with @seals (0: none). */
static int binary_memfd(unsigned int seals)
{
	int fd = mfd_create("rksm_binary", MFD_EXEC | MFD_ALLOW_SEALING);
	int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || self < 0 || copy_into(fd, self)) {
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	if (self >= 0)
		close(self);
	if (fd >= 0 && seals && fcntl(fd, F_ADD_SEALS, seals)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

enum how { FEXECVE, EXECVEAT, PROC_PATH, NR_HOW };
static const char *const how_name[] = { "fexecve", "execveat", "execve /proc/self/fd" };

/*
 * Execute @fd (or @path if @fd < 0) in a child. 0 if the program ran (it
 * exits with EXEC_OK), -errno if the exec failed.
 */
static int run(int fd, const char *path, enum how how)
{
	char *const argv[] = { "rksm-memfd-child", NULL };
	char *const envp[] = { CHILD_MARK "=1", NULL };
	char proc[64];
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -1000;
	if (pid == 0) {
		if (fd < 0)
			execve(path, argv, envp);
		else if (how == FEXECVE)
			fexecve(fd, argv, envp);
		else if (how == EXECVEAT)
			syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
		else {
			snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
			execve(proc, argv, envp);
		}
		_exit(EXEC_FAILED + errno);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1001;
	if (WEXITSTATUS(status) == EXEC_OK)
		return 0;
	return -(WEXITSTATUS(status) - EXEC_FAILED);
}

/* The expected result of running a memfd under @policy. */
static int verdict(const char *policy, bool write_sealed)
{
	if (!strcmp(policy, "any"))
		return 0;
	if (!strcmp(policy, "sealed") && write_sealed)
		return 0;
	return -EACCES;
}

static const char *const policies[] = { "any", "sealed", "none" };

TEST_F_TIMEOUT(memfd, exec_follows_policy, 120)
{
	/* runc's seals; F_SEAL_WRITE alone; F_SEAL_FUTURE_WRITE alone; none */
	int open_fd = binary_memfd(0);
	int runc_fd = binary_memfd(F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE);
	int future_fd = binary_memfd(F_SEAL_FUTURE_WRITE);
	struct memfd_counters a, b;
	int refusals = 0;

	ASSERT_LE(0, open_fd);
	ASSERT_LE(0, runc_fd);
	ASSERT_LE(0, future_fd);
	memfd_counters(&a);
	for (int p = 0; p < 3; p++) {
		ASSERT_EQ(0, rksm_write("memfd_exec", policies[p]));
		for (int h = 0; h < NR_HOW; h++) {
			int want;

			want = verdict(policies[p], false);
			refusals += want != 0;
			EXPECT_EQ(want, run(open_fd, NULL, h))
				TH_LOG("%s, %s of an unsealed memfd", policies[p], how_name[h]);
			want = verdict(policies[p], true);
			refusals += want != 0;
			EXPECT_EQ(want, run(runc_fd, NULL, h))
				TH_LOG("%s, %s of a write-sealed memfd", policies[p], how_name[h]);
			refusals += want != 0;
			EXPECT_EQ(want, run(future_fd, NULL, h))
				TH_LOG("%s, %s of a future-write-sealed memfd", policies[p], how_name[h]);
		}
		/* A binary that is not a memfd always runs. */
		EXPECT_EQ(0, run(-1, "/proc/self/exe", 0)) TH_LOG("%s", policies[p]);
	}
	memfd_counters(&b);
	EXPECT_EQ(a.exec_refused + refusals, b.exec_refused);
	EXPECT_EQ(a.mmap_refused, b.mmap_refused);
	close(open_fd);
	close(runc_fd);
	close(future_fd);
}

/*
 * F_SEAL_FUTURE_WRITE stops new writers only: while a shared mapping that may
 * write is left, the content can still change, so "sealed" refuses.
 */
TEST_F(memfd, future_write_seal_counts_once_writers_are_gone)
{
	int fd = binary_memfd(0);
	void *p;

	ASSERT_LE(0, fd);
	p = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE));
	ASSERT_EQ(0, rksm_write("memfd_exec", "sealed"));
	EXPECT_EQ(-EACCES, run(fd, NULL, FEXECVE));
	ASSERT_EQ(0, munmap(p, PAGE_SIZE));
	EXPECT_EQ(0, run(fd, NULL, FEXECVE));
	close(fd);
}

/* A script in a memfd: the exec of the memfd itself is what is refused. */
TEST_F(memfd, script_in_memfd)
{
	static const char script[] = "#!/bin/sh\nexit 42\n";
	int fd;

	if (access("/bin/sh", X_OK))
		SKIP(return, "no /bin/sh");
	fd = mfd_create("rksm_script", MFD_EXEC | MFD_ALLOW_SEALING);
	ASSERT_LE(0, fd);
	ASSERT_EQ((ssize_t)strlen(script), write(fd, script, strlen(script)));
	EXPECT_EQ(0, run(fd, NULL, PROC_PATH));
	ASSERT_EQ(0, rksm_write("memfd_exec", "none"));
	EXPECT_EQ(-EACCES, run(fd, NULL, PROC_PATH));
	ASSERT_EQ(0, rksm_write("memfd_exec", "sealed"));
	EXPECT_EQ(-EACCES, run(fd, NULL, PROC_PATH));
	ASSERT_EQ(0, fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE));
	EXPECT_EQ(0, run(fd, NULL, PROC_PATH));
	close(fd);
}

/* A memfd of code pages: every byte a "ret" (0xc3), so a call to any of it returns. */
static int code_memfd(unsigned int flags, unsigned int seals)
{
	static unsigned char page[PAGE_SIZE];
	int fd = mfd_create("rksm_code", flags | MFD_ALLOW_SEALING);

	memset(page, 0xc3, sizeof(page));
	if (fd < 0)
		return -1;
	if (write(fd, page, sizeof(page)) != sizeof(page) ||
	    (seals && fcntl(fd, F_ADD_SEALS, seals))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* mmap @fd with @prot and @flags; 0 (and the code ran, if executable) or -errno. */
static int map_and_call(int fd, int prot, int flags)
{
	void *p = mmap(NULL, PAGE_SIZE, prot, flags, fd, 0);

	if (p == MAP_FAILED)
		return -errno;
	if (prot & PROT_EXEC)
		((void (*)(void))p)();
	munmap(p, PAGE_SIZE);
	return 0;
}

/* mmap @fd read-only (always allowed), then mprotect to add PROT_EXEC; 0 or -errno. */
static int mprotect_and_call(int fd, int flags)
{
	void *p = mmap(NULL, PAGE_SIZE, PROT_READ, flags, fd, 0);
	int ret = 0;

	if (p == MAP_FAILED)
		return -1000 - errno;
	if (mprotect(p, PAGE_SIZE, PROT_READ | PROT_EXEC))
		ret = -errno;
	else
		((void (*)(void))p)();
	munmap(p, PAGE_SIZE);
	return ret;
}

TEST_F(memfd, exec_mappings_follow_policy)
{
	/* A noexec-sealed memfd has no x bits, but mmap does not look at them. */
	int open_fd = code_memfd(MFD_EXEC, 0);
	int noexec_fd = code_memfd(MFD_NOEXEC_SEAL, 0);
	int sealed_fd = code_memfd(MFD_EXEC, F_SEAL_WRITE);
	int future_fd = code_memfd(MFD_NOEXEC_SEAL, F_SEAL_FUTURE_WRITE);
	static const int kinds[] = { MAP_PRIVATE, MAP_SHARED };
	struct memfd_counters a, b;
	int refusals = 0;

	ASSERT_LE(0, open_fd);
	ASSERT_LE(0, noexec_fd);
	ASSERT_LE(0, sealed_fd);
	ASSERT_LE(0, future_fd);
	memfd_counters(&a);
	for (int p = 0; p < 3; p++) {
		int unsealed = verdict(policies[p], false), sealed = verdict(policies[p], true);

		ASSERT_EQ(0, rksm_write("memfd_exec", policies[p]));
		for (int k = 0; k < 2; k++) {
			const char *kind = kinds[k] == MAP_SHARED ? "shared" : "private";

			EXPECT_EQ(unsealed, map_and_call(open_fd, PROT_READ | PROT_EXEC, kinds[k]))
				TH_LOG("%s: %s mmap of an unsealed memfd", policies[p], kind);
			EXPECT_EQ(unsealed, map_and_call(noexec_fd, PROT_READ | PROT_EXEC, kinds[k]))
				TH_LOG("%s: %s mmap of a noexec-sealed memfd", policies[p], kind);
			EXPECT_EQ(sealed, map_and_call(sealed_fd, PROT_READ | PROT_EXEC, kinds[k]))
				TH_LOG("%s: %s mmap of a write-sealed memfd", policies[p], kind);
			EXPECT_EQ(sealed, map_and_call(future_fd, PROT_READ | PROT_EXEC, kinds[k]))
				TH_LOG("%s: %s mmap of a future-write-sealed memfd", policies[p], kind);
			EXPECT_EQ(unsealed, mprotect_and_call(open_fd, kinds[k]))
				TH_LOG("%s: mprotect of a %s mapping of an unsealed memfd",
				       policies[p], kind);
			EXPECT_EQ(sealed, mprotect_and_call(sealed_fd, kinds[k]))
				TH_LOG("%s: mprotect of a %s mapping of a write-sealed memfd",
				       policies[p], kind);
			/* Without PROT_EXEC, every policy lets a memfd be mapped. */
			EXPECT_EQ(0, map_and_call(open_fd, PROT_READ, kinds[k]));
			refusals += 3 * (unsealed != 0) + 3 * (sealed != 0);
		}
	}
	memfd_counters(&b);
	EXPECT_EQ(a.mmap_refused + refusals, b.mmap_refused);
	EXPECT_EQ(a.exec_refused, b.exec_refused);
	close(open_fd);
	close(noexec_fd);
	close(sealed_fd);
	close(future_fd);
}

/* Under READ_IMPLIES_EXEC a PROT_READ mapping is executable: it counts as one. */
TEST_F(memfd, read_implies_exec_counts)
{
	int fd = code_memfd(MFD_EXEC, 0);
	pid_t pid;
	int status;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, rksm_write("memfd_exec", "none"));
	fflush(stdout);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		if (personality(READ_IMPLIES_EXEC) < 0)
			_exit(2);
		/* PROT_READ alone, refused; then allowed under "any", and it runs. */
		if (map_and_call(fd, PROT_READ, MAP_PRIVATE) != -EACCES)
			_exit(3);
		if (rksm_write("memfd_exec", "any"))
			_exit(4);
		if (map_and_call(fd, PROT_READ | PROT_EXEC, MAP_PRIVATE))
			_exit(5);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) TH_LOG("status %#x", status);
	close(fd);
}

/*
 * What is not a memfd is left alone under "none": anonymous memory, and a
 * tmpfs file named like one (a user's tmpfs is not the kernel's internal mount).
 */
TEST_F(memfd, other_files_are_left_alone)
{
	const char *path = "/tmp/memfd:rksm-not-a-memfd";
	static unsigned char page[PAGE_SIZE];
	int fd, exe;
	void *anon;

	ASSERT_EQ(0, rksm_write("memfd_exec", "none"));
	/* Anonymous memory made executable, as a JIT does. */
	anon = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, anon);
	memset(anon, 0xc3, PAGE_SIZE);
	EXPECT_EQ(0, mprotect(anon, PAGE_SIZE, PROT_READ | PROT_EXEC));
	((void (*)(void))anon)();
	munmap(anon, PAGE_SIZE);

	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	ASSERT_LE(0, fd);
	exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, exe);
	ASSERT_EQ(0, copy_into(fd, exe));
	close(exe);
	close(fd);
	EXPECT_EQ(0, run(-1, path, 0));
	fd = open(path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	memset(page, 0xc3, sizeof(page));
	ASSERT_EQ(PAGE_SIZE, pwrite(fd, page, PAGE_SIZE, 0));
	EXPECT_EQ(0, map_and_call(fd, PROT_READ | PROT_EXEC, MAP_SHARED));
	close(fd);
	unlink(path);
}

/*
 * With memfd_hooks=0 (as on a kernel where the hooks cannot be placed) the
 * knobs refuse non-default values with EOPNOTSUPP, keep bad input EINVAL,
 * and nothing is refused. Then rksm is loaded again as before.
 */
TEST_F_TIMEOUT(memfd, without_hooks_knobs_refuse_eopnotsupp, 120)
{
	int kmsg = rksm_kmsg_open(), fd;
	char buf[64];

	ASSERT_LE(0, kmsg);
	/* Earlier tests may have left merges behind, which pin the module. */
	ASSERT_EQ(0, rksm_write("run", "2"));
	ASSERT_EQ(0, rksm_unload());
	ASSERT_EQ(0, rksm_load_module_params(rksm_ko_path(), "memfd_hooks=0"));
	EXPECT_TRUE(rksm_kmsg_find(kmsg, "memfd_noexec refuses values other than 0"));

	EXPECT_EQ(-EOPNOTSUPP, rksm_write("memfd_noexec", "1"));
	EXPECT_EQ(-EOPNOTSUPP, rksm_write("memfd_noexec", "2"));
	EXPECT_EQ(-EINVAL, rksm_write("memfd_noexec", "3"));
	EXPECT_EQ(0, rksm_write("memfd_noexec", "0"));
	EXPECT_EQ(0, rksm_get("memfd_noexec"));
	EXPECT_EQ(-EOPNOTSUPP, rksm_write("memfd_exec", "sealed"));
	EXPECT_EQ(-EOPNOTSUPP, rksm_write("memfd_exec", "none"));
	EXPECT_EQ(-EINVAL, rksm_write("memfd_exec", "never"));
	EXPECT_EQ(0, rksm_write("memfd_exec", "any"));
	ASSERT_EQ(0, rksm_read_str("memfd_exec", buf, sizeof(buf)));
	EXPECT_STREQ("[any] sealed none\n", buf);
	/* The other knobs work as ever. */
	EXPECT_EQ(0, rksm_write("pages_to_scan", "100"));

	fd = mfd_create("rksm_nohooks", MFD_EXEC);
	EXPECT_LE(0, fd);
	EXPECT_EQ(0, rksm_get("memfd_created_exec"));
	if (fd >= 0)
		close(fd);

	ASSERT_EQ(0, rksm_unload());
	ASSERT_EQ(0, rksm_load());
	EXPECT_EQ(0, rksm_write("memfd_noexec", "1"));
	EXPECT_EQ(0, rksm_write("memfd_exec", "sealed"));
	close(kmsg);
}

TEST_HARNESS_MAIN
