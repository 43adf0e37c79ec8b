/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by rksm's kselftests: sysfs knobs, waiting, module load.
 * Header-only so each test stays one static binary.
 */
#ifndef RKSM_UTIL_H
#define RKSM_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Where the rksm module puts its knobs, whatever RKSM_SYSFS says. */
#define RKSM_MODULE_DIR "/sys/kernel/mm/rksm"

/*
 * The sysfs directory the tests drive: $RKSM_SYSFS, or rksm's own. With
 * RKSM_SYSFS=/sys/kernel/mm/ksm the same tests drive the in-kernel ksmd.
 */
static inline const char *rksm_sysfs(void)
{
	const char *p = getenv("RKSM_SYSFS");

	return p && *p ? p : RKSM_MODULE_DIR;
}

#define RKSM_DIR (rksm_sysfs())

/* Path of the module inside the guest (scripts/vm-run puts it there). */
static inline const char *rksm_ko_path(void)
{
	const char *p = getenv("RKSM_KO");

	return p ? p : "/rksm.ko";
}

/* Write @val to the file @path, as one write. Returns 0 or -errno. */
static inline int rksm_write_path(const char *path, const char *val)
{
	ssize_t n;
	int fd, err = 0;

	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	n = write(fd, val, strlen(val));
	if (n < 0)
		err = -errno;
	else if ((size_t)n != strlen(val))
		err = -EIO;
	close(fd);
	return err;
}

/* Write the number @v to the file @path. Returns 0 or -errno. */
static inline int rksm_write_path_num(const char *path, unsigned long long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu\n", v);
	return rksm_write_path(path, buf);
}

/* Read the number in the file @path into *@v; false if there is none. */
static inline bool rksm_read_path_num(const char *path, unsigned long long *v)
{
	FILE *f = fopen(path, "r");
	bool ok = f && fscanf(f, "%llu", v) == 1;

	if (f)
		fclose(f);
	return ok;
}

/* Write @val to knob @name. Returns 0 or -errno. */
static inline int rksm_write(const char *name, const char *val)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", RKSM_DIR, name);
	return rksm_write_path(path, val);
}

static inline int rksm_write_num(const char *name, unsigned long long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu\n", v);
	return rksm_write(name, buf);
}

/* Read knob or counter @name into *@v. Returns 0 or -errno. */
static inline int rksm_read(const char *name, unsigned long long *v)
{
	char path[256], buf[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", RKSM_DIR, name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	*v = strtoull(buf, NULL, 10);
	return 0;
}

/* Read the text of knob @name (newline included) into @buf. Returns 0 or -errno. */
static inline int rksm_read_str(const char *name, char *buf, size_t size)
{
	char path[256];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", RKSM_DIR, name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -EIO;
	buf[n] = 0;
	return 0;
}

/*
 * The kernel log from now on: rksm_kmsg_open() skips what is there, then
 * rksm_kmsg_find() looks for @needle in what was logged since.
 */
static inline int rksm_kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0)
		lseek(fd, 0, SEEK_END);
	return fd;
}

static inline bool rksm_kmsg_find(int fd, const char *needle)
{
	char rec[2048];
	bool found = false;
	ssize_t n;

	/* One record per read; EAGAIN at the end, EPIPE if records were overwritten. */
	while ((n = read(fd, rec, sizeof(rec) - 1)) != 0) {
		if (n < 0) {
			if (errno == EPIPE)
				continue;
			break;
		}
		rec[n] = 0;
		if (strstr(rec, needle))
			found = true;
	}
	return found;
}

/* Value of knob or counter @name, or ~0ULL if it cannot be read. */
static inline unsigned long long rksm_get(const char *name)
{
	unsigned long long v = 0;

	return rksm_read(name, &v) ? ~0ULL : v;
}

static inline double rksm_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The pid of kthread @comm, or 0 if there is none. */
static inline pid_t rksm_find_kthread(const char *comm)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;

	if (!d)
		return 0;
	while (!found && (e = readdir(d))) {
		char path[300], name[64] = "";
		FILE *f;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(name, sizeof(name), f)) {
			name[strcspn(name, "\n")] = 0;
			if (!strcmp(name, comm))
				found = atoi(e->d_name);
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

/* utime + stime of @pid in clock ticks, or -1. */
static inline long rksm_cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
			 &ut, &st) != 2)
		return -1;
	return ut + st;
}

/* Load the module at @path with module parameters @params ("" for none). 0, or -errno. */
static inline int rksm_load_module_params(const char *path, const char *params)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return -errno;
	ret = syscall(SYS_finit_module, fd, params, 0) ? -errno : 0;
	close(fd);
	return ret;
}

/* Load the module at @path. 0, or -errno. */
static inline int rksm_load_module(const char *path)
{
	return rksm_load_module_params(path, "");
}

/* Unload module @name without waiting. 0, or -errno (-EWOULDBLOCK while in use). */
static inline int rksm_unload_module(const char *name)
{
	return syscall(SYS_delete_module, name, O_NONBLOCK) ? -errno : 0;
}

static inline int rksm_load(void)
{
	return rksm_load_module(rksm_ko_path());
}

static inline int rksm_unload(void)
{
	return rksm_unload_module("rksm");
}

static inline bool rksm_loaded(void)
{
	return access(RKSM_MODULE_DIR, F_OK) == 0;
}

/* The number after "@field:" in the text file @path (kB in /proc files), or -1. */
static inline long rksm_file_field(const char *path, const char *field)
{
	char line[256];
	size_t len = strlen(field);
	long v = -1;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, len) && line[len] == ':') {
			v = atol(line + len + 1);
			break;
		}
	fclose(f);
	return v;
}

/*
 * A number from /proc/<pid>/@file: the one after "@name " on its line, or with
 * @name NULL the file's first. -1 if there is none.
 */
static inline long rksm_proc_value(pid_t pid, const char *file, const char *name)
{
	char path[64], line[128];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (v < 0 && fgets(line, sizeof(line), f)) {
		size_t len = name ? strlen(name) : 0;

		if (!name)
			v = strtol(line, NULL, 10);
		else if (!strncmp(line, name, len) && line[len] == ' ')
			v = strtol(line + len + 1, NULL, 10);
	}
	fclose(f);
	return v;
}

/* /proc/<pid>/ksm_merging_pages, or -1. */
static inline long rksm_merging_pages(pid_t pid)
{
	return rksm_proc_value(pid, "ksm_merging_pages", NULL);
}

/* A /proc/meminfo field in kB, or -1. */
static inline long rksm_meminfo(const char *field)
{
	return rksm_file_field("/proc/meminfo", field);
}

/*
 * ---------------------------------------------------------------------------
 * Merge tests: engine control, counters, pagemap and helper processes.
 * ---------------------------------------------------------------------------
 */
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#ifndef PAGE_SIZE
#define PAGE_SIZE 4096UL
#endif

/* True when RKSM_SYSFS points at the in-kernel KSM. */
static inline bool rksm_is_ksm(void)
{
	const char *d = rksm_sysfs();
	const char *b = strrchr(d, '/');

	return !strcmp(b ? b + 1 : d, "ksm");
}

/* The scanner thread of the engine under test: "ksmd" or "rksmd". */
static inline const char *rksm_thread_name(void)
{
	return rksm_is_ksm() ? "ksmd" : "rksmd";
}

/* The counters the tests look at, read one after the other. */
struct rksm_counters {
	unsigned long long shared, sharing, unshared, volatil, scanned,
		full_scans, zero_pages, chains, dups, skipped;
};

static inline void rksm_counters_read(struct rksm_counters *c)
{
	c->full_scans = rksm_get("full_scans");
	c->shared = rksm_get("pages_shared");
	c->sharing = rksm_get("pages_sharing");
	c->unshared = rksm_get("pages_unshared");
	c->volatil = rksm_get("pages_volatile");
	c->scanned = rksm_get("pages_scanned");
	c->zero_pages = rksm_get("ksm_zero_pages");
	c->chains = rksm_get("stable_node_chains");
	c->dups = rksm_get("stable_node_dups");
	c->skipped = rksm_get("pages_skipped");
}

static inline void rksm_msleep(unsigned int ms)
{
	usleep(ms * 1000);
}

/*
 * Wait until full_scans has advanced by @n from its value now. Returns 0,
 * or -ETIMEDOUT after @timeout seconds.
 */
static inline int rksm_wait_scans(unsigned int n, double timeout)
{
	unsigned long long start = rksm_get("full_scans");
	double end = rksm_now() + timeout;

	while (rksm_get("full_scans") < start + n) {
		if (rksm_now() > end)
			return -ETIMEDOUT;
		rksm_msleep(10);
	}
	return 0;
}

/*
 * Waiting for the scanner gives up early, so that an engine that does not
 * converge fails in seconds rather than at the harness timeout: after
 * RKSM_SCAN_BUDGET full scans more than asked for (KSM needs 2-3), or when
 * full_scans has not moved for RKSM_STALL_SECS (the scanner is not running).
 */
#define RKSM_SCAN_BUDGET 12
#define RKSM_STALL_SECS 10.0

struct rksm_progress {
	unsigned long long last;
	double moved;
};

/* False once full_scans has not moved for RKSM_STALL_SECS. */
static inline bool rksm_progressing(struct rksm_progress *p, unsigned long long full_scans)
{
	double now = rksm_now();

	if (!p->moved || full_scans != p->last) {
		p->last = full_scans;
		p->moved = now;
	}
	return now - p->moved < RKSM_STALL_SECS;
}

/*
 * Wait for the scanner to settle: full_scans advanced by at least
 * @min_scans from now, and pages_shared and pages_sharing unchanged during
 * the last two full scans. Returns 0 or -ETIMEDOUT (after @timeout
 * seconds, or see RKSM_SCAN_BUDGET); *@c holds the last reading either way.
 */
static inline int rksm_settle(unsigned int min_scans, double timeout,
			      struct rksm_counters *c)
{
	unsigned long long start = rksm_get("full_scans"), since;
	unsigned long long shared, sharing;
	double end = rksm_now() + timeout;
	struct rksm_progress p = { 0 };

	rksm_counters_read(c);
	shared = c->shared;
	sharing = c->sharing;
	since = c->full_scans;
	for (;;) {
		rksm_msleep(10);
		rksm_counters_read(c);
		if (c->shared != shared || c->sharing != sharing) {
			shared = c->shared;
			sharing = c->sharing;
			since = c->full_scans;
		}
		if (c->full_scans >= start + min_scans && c->full_scans >= since + 2)
			return 0;
		if (rksm_now() > end || !rksm_progressing(&p, c->full_scans) ||
		    c->full_scans > start + min_scans + RKSM_SCAN_BUDGET)
			return -ETIMEDOUT;
	}
}

/*
 * Wait until pages_shared == @shared and pages_sharing == @sharing, with
 * full_scans advanced by at least @min_scans, and still so after one more
 * full scan. Returns 0 or -ETIMEDOUT (after @timeout seconds, or see
 * RKSM_SCAN_BUDGET); *@c holds the last reading.
 */
static inline int rksm_wait_counts(unsigned long long shared,
				   unsigned long long sharing,
				   unsigned int min_scans, double timeout,
				   struct rksm_counters *c)
{
	unsigned long long start = rksm_get("full_scans"), seen = ~0ULL;
	double end = rksm_now() + timeout;
	struct rksm_progress p = { 0 };

	for (;;) {
		rksm_counters_read(c);
		if (c->shared == shared && c->sharing == sharing &&
		    c->full_scans >= start + min_scans) {
			if (seen == ~0ULL)
				seen = c->full_scans;
			else if (c->full_scans > seen)
				return 0;
		} else {
			seen = ~0ULL;
		}
		if (rksm_now() > end || !rksm_progressing(&p, c->full_scans) ||
		    c->full_scans > start + min_scans + RKSM_SCAN_BUDGET)
			return -ETIMEDOUT;
		rksm_msleep(10);
	}
}

/*
 * For scans that take many seconds each: wait until pages_sharing reaches
 * @sharing, printing the counters as TAP diagnostics every @every seconds.
 * Gives up (-ETIMEDOUT, saying why) after @timeout seconds, after
 * @max_scans full scans, when pages_sharing is above 0 but has not changed
 * for 2 full scans (stuck short of the goal), or when neither pages_scanned
 * nor full_scans moved for @stall seconds (the scanner is not running).
 * Returns 0 or -ETIMEDOUT; *@c holds the last reading.
 */
static inline int rksm_wait_sharing(const char *what, unsigned long long sharing,
				    double timeout, unsigned int max_scans,
				    double stall, double every,
				    struct rksm_counters *c)
{
	double t0 = rksm_now(), moved = t0, shown = t0;
	unsigned long long f0 = rksm_get("full_scans");
	unsigned long long last_f = f0, last_s = rksm_get("pages_scanned");
	unsigned long long last_sharing = ~0ULL, changed_f = f0;
	const char *why = NULL;

	for (;;) {
		double now;

		rksm_counters_read(c);
		now = rksm_now();
		if (c->sharing >= sharing)
			return 0;
		if (c->full_scans != last_f || c->scanned != last_s) {
			last_f = c->full_scans;
			last_s = c->scanned;
			moved = now;
		}
		if (c->sharing != last_sharing) {
			last_sharing = c->sharing;
			changed_f = c->full_scans;
		}
		if (c->sharing && c->full_scans >= changed_f + 2)
			why = "pages_sharing stuck for 2 full scans";
		else if (now - t0 > timeout)
			why = "timeout";
		else if (now - moved > stall)
			why = "the scanner stalled";
		else if (c->full_scans > f0 + max_scans)
			why = "too many full scans";
		if (why || now - shown >= every) {
			shown = now;
			printf("# %s: %5.1fs full_scans +%llu pages_scanned %llu shared %llu sharing %llu (want %llu)%s%s\n",
			       what, now - t0, c->full_scans - f0, c->scanned,
			       c->shared, c->sharing, sharing, why ? ": gave up, " : "",
			       why ? why : "");
			fflush(stdout);
		}
		if (why)
			return -ETIMEDOUT;
		rksm_msleep(50);
	}
}

/*
 * Poll until pages_shared == @shared and pages_sharing == @sharing, without
 * waiting for scans (for when no process is left for the scanner to scan).
 * Returns 0 or -ETIMEDOUT; *@c holds the last reading.
 */
static inline int rksm_poll_counts(unsigned long long shared,
				   unsigned long long sharing, double timeout,
				   struct rksm_counters *c)
{
	double end = rksm_now() + timeout;

	for (;;) {
		rksm_counters_read(c);
		if (c->shared == shared && c->sharing == sharing)
			return 0;
		if (rksm_now() > end)
			return -ETIMEDOUT;
		rksm_msleep(10);
	}
}

/* Knobs saved by rksm_engine_setup() and put back by rksm_engine_teardown(). */
static const char *const rksm_saved_knobs[] = {
	"pages_to_scan", "sleep_millisecs", "max_page_sharing", "use_zero_pages",
	"smart_scan", "stable_node_chains_prune_millisecs",
};
#define RKSM_NR_SAVED (sizeof(rksm_saved_knobs) / sizeof(rksm_saved_knobs[0]))

struct rksm_saved {
	unsigned long long v[RKSM_NR_SAVED];
	bool ok[RKSM_NR_SAVED];
};

/*
 * Start each test from a clean, stopped engine: run=2 (unmerge all), run=0,
 * knobs saved, then fast scanning: pages_to_scan 10000, sleep_millisecs 5,
 * smart_scan 0 (so which pages a pass visits does not depend on history).
 * Returns 0 or the first -errno.
 */
static inline int rksm_engine_setup(struct rksm_saved *s)
{
	int err;

	for (size_t i = 0; i < RKSM_NR_SAVED; i++)
		s->ok[i] = !rksm_read(rksm_saved_knobs[i], &s->v[i]);
	/*
	 * rksm refuses run=1 while in-kernel KSM runs: stop KSM if a test that
	 * compares the two was killed with it running.
	 */
	if (!strcmp(rksm_sysfs(), RKSM_MODULE_DIR) &&
	    !access("/sys/kernel/mm/ksm/run", F_OK))
		rksm_write_path("/sys/kernel/mm/ksm/run", "0");
	err = rksm_write("run", "2");
	if (!err)
		err = rksm_write("run", "0");
	if (!err)
		err = rksm_write_num("pages_to_scan", 10000);
	if (!err)
		err = rksm_write_num("sleep_millisecs", 5);
	if (!err)
		err = rksm_write_num("smart_scan", 0);
	if (!err)
		err = rksm_write_num("use_zero_pages", 0);
	return err;
}

/* run=2, run=0, and the saved knobs back. */
static inline void rksm_engine_teardown(struct rksm_saved *s)
{
	rksm_write("run", "2");
	rksm_write("run", "0");
	for (size_t i = 0; i < RKSM_NR_SAVED; i++)
		if (s->ok[i])
			rksm_write_num(rksm_saved_knobs[i], s->v[i]);
}

/* pagemap: bits 0-54 PFN, bit 63 present. */
#define RKSM_PM_PRESENT (1ULL << 63)
#define RKSM_PM_PFN_MASK ((1ULL << 55) - 1)

/*
 * PFNs of the @n pages from @addr in process @pid (0: this process) into
 * @pfn; a page that is not present reads 0. Returns 0 or -errno.
 */
static inline int rksm_pfns(pid_t pid, const void *addr, size_t n, uint64_t *pfn)
{
	char path[64];
	off_t off = (uintptr_t)addr / PAGE_SIZE * 8;
	size_t done = 0;
	int fd;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	else
		snprintf(path, sizeof(path), "/proc/self/pagemap");
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	while (done < n * 8) {
		ssize_t r = pread(fd, (char *)pfn + done, n * 8 - done, off + done);

		if (r <= 0) {
			close(fd);
			return r ? -errno : -EIO;
		}
		done += r;
	}
	close(fd);
	for (size_t i = 0; i < n; i++)
		pfn[i] = (pfn[i] & RKSM_PM_PRESENT) ? pfn[i] & RKSM_PM_PFN_MASK : 0;
	return 0;
}

/* PFN of one page, 0 if not present, or -errno. */
static inline long long rksm_pfn(pid_t pid, const void *addr)
{
	uint64_t pfn;
	int err = rksm_pfns(pid, addr, 1, &pfn);

	return err ? err : (long long)pfn;
}

/*
 * The PFN of the shared zero page: read (not write) a fresh private
 * anonymous page, which maps the zero page, and look it up.
 */
static inline long long rksm_zero_pfn(void)
{
	volatile char *p = mmap(NULL, PAGE_SIZE, PROT_READ,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	long long pfn;

	if (p == MAP_FAILED)
		return -errno;
	(void)p[0];
	pfn = rksm_pfn(0, (const void *)p);
	munmap((void *)p, PAGE_SIZE);
	return pfn;
}

/* A /proc/<pid>/smaps_rollup field in kB, or -1. */
static inline long rksm_smaps_rollup(pid_t pid, const char *field)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
	return rksm_file_field(path, field);
}

/* Whether an smaps line starts a VMA ("lo-hi perms ..."); its bounds into @lo and @hi. */
static inline bool rksm_vma_header(const char *line, unsigned long *lo, unsigned long *hi)
{
	return sscanf(line, "%lx-%lx ", lo, hi) == 2 && strchr(line, '-') < strchr(line, ' ');
}

/*
 * A field (kB) of the /proc/<pid>/smaps entry of the VMA holding @addr, or
 * -1 if there is no such VMA or field.
 */
static inline long rksm_smaps_field(pid_t pid, const void *addr, const char *field)
{
	char path[64], line[512];
	size_t len = strlen(field);
	bool in = false;
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (rksm_vma_header(line, &lo, &hi)) {
			in = lo <= (uintptr_t)addr && (uintptr_t)addr < hi;
			continue;
		}
		if (in && !strncmp(line, field, len) && line[len] == ':') {
			v = atol(line + len + 1);
			break;
		}
	}
	fclose(f);
	return v;
}

/*
 * How many VMAs of process @pid lie in [@addr, @addr + @len) (whole or in
 * part), from /proc/<pid>/maps. -1 on error.
 */
static inline long rksm_count_vmas(pid_t pid, const void *addr, size_t len)
{
	uintptr_t lo0 = (uintptr_t)addr, hi0 = lo0 + len;
	char path[64], line[512];
	long n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && lo < hi0 && hi > lo0)
			n++;
	}
	fclose(f);
	return n;
}

/*
 * Free memory in kB, counting pages on the per-CPU free lists too (the
 * kernel keeps thousands of freed pages there, out of MemFree), after
 * folding the per-CPU vmstat deltas (/proc/sys/vm/stat_refresh). -1 on
 * error.
 */
static inline long rksm_free_kb(void)
{
	char line[256];
	long pcp = 0, v;
	FILE *f;
	int fd = open("/proc/sys/vm/stat_refresh", O_WRONLY);

	if (fd >= 0) {
		if (write(fd, "1", 1) < 0)
			; /* best effort */
		close(fd);
	}
	f = fopen("/proc/zoneinfo", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, " count: %ld", &v) == 1)
			pcp += v;
	fclose(f);
	v = rksm_meminfo("MemFree");
	return v < 0 ? -1 : v + pcp * (long)(PAGE_SIZE / 1024);
}

/*
 * Page contents. A page is described by a 64-bit seed: seed 0 is a page
 * of zeroes, any other seed a pseudo-random page that differs from every
 * other seed's in every 8-byte word.
 */
static inline uint64_t rksm_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static inline uint64_t rksm_word(uint64_t seed, unsigned int w)
{
	return seed ? rksm_mix(seed * 512 + w) ^ seed : 0;
}

static inline void rksm_fill_page(void *page, uint64_t seed)
{
	uint64_t *p = page;

	for (unsigned int w = 0; w < PAGE_SIZE / 8; w++)
		p[w] = rksm_word(seed, w);
}

static inline bool rksm_page_is(const void *page, uint64_t seed)
{
	const uint64_t *p = page;

	for (unsigned int w = 0; w < PAGE_SIZE / 8; w++)
		if (p[w] != rksm_word(seed, w))
			return false;
	return true;
}

/*
 * A cheaper content for big buffers: word w of the page for @seed is
 * mix(seed) + w * K (seed 0: zeroes). mix is a bijection, so pages of two
 * seeds differ in word 0; one multiply-add a word instead of a mix.
 */
#define RKSM_LITE_K 0x9e3779b97f4a7c15ULL

static inline void rksm_fill_page_lite(void *page, uint64_t seed)
{
	uint64_t *p = page, base = seed ? rksm_mix(seed) : 0;
	uint64_t step = seed ? RKSM_LITE_K : 0;

	for (unsigned int w = 0; w < PAGE_SIZE / 8; w++)
		p[w] = base + w * step;
}

static inline bool rksm_page_is_lite(const void *page, uint64_t seed)
{
	const uint64_t *p = page;
	uint64_t base = seed ? rksm_mix(seed) : 0;
	uint64_t step = seed ? RKSM_LITE_K : 0;

	for (unsigned int w = 0; w < PAGE_SIZE / 8; w++)
		if (p[w] != base + w * step)
			return false;
	return true;
}

/*
 * How a seed becomes page contents. The kids use rksm_fill_page() and
 * rksm_page_is() unless struct rksm_kids.content says otherwise.
 */
struct rksm_content {
	const char *name;
	void (*fill)(void *page, uint64_t seed);
	bool (*is)(const void *page, uint64_t seed);
};

static const struct rksm_content rksm_content_lite = {
	"lite", rksm_fill_page_lite, rksm_page_is_lite,
};

/* Seeds for "page @i, the same in every process" and "page @i of @who only". */
static inline uint64_t rksm_seed_common(size_t i)
{
	return 1 + i;
}

static inline uint64_t rksm_seed_own(unsigned int who, size_t i, unsigned int gen)
{
	return ((uint64_t)(who + 1) << 40) | ((uint64_t)gen << 32) | (i + 1);
}

/*
 * Helper processes ("kids"). Each kid is forked from the test and sits in a
 * loop running functions that the test sends it over a pipe; fork() keeps
 * the address space, so a function pointer means the same code in the kid.
 * Each kid slot has a buffer of @pages pages at kbuf[slot] (the same
 * address in every kid unless a kid moves it) and the pages' expected
 * contents as seeds in the MAP_SHARED table seed[slot * pages + i], which
 * the test writes and the kids read. Kids die with their parent
 * (PR_SET_PDEATHSIG), so an aborted test leaves none behind.
 */
#ifndef RKSM_MAX_KIDS	/* a test may define more before including this */
#define RKSM_MAX_KIDS 12
#endif

struct rksm_kids;
typedef long (*rksm_kid_fn)(struct rksm_kids *k, int slot, long arg);

struct rksm_kid_msg {
	rksm_kid_fn fn;
	long arg;
};

struct rksm_kids {
	size_t pages;
	char *buf;		/* the initial buffer, the same in every kid */
	char *volatile *kbuf;	/* shared: each slot's buffer now */
	volatile uint64_t *seed;	/* shared: [slot * pages + i] */
	volatile long *flag;	/* shared: a word for kid functions */
	const struct rksm_content *content;	/* NULL: rksm_fill_page() */
	pid_t pid[RKSM_MAX_KIDS];
	bool direct[RKSM_MAX_KIDS];	/* a child of the test (else of a kid) */
	int cmd[RKSM_MAX_KIDS][2];
	int res[RKSM_MAX_KIDS][2];
};

static inline void *rksm_shared_alloc(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/*
 * Set up @k for kids holding @pages pages each. @advice is MADV_NOHUGEPAGE,
 * or MADV_HUGEPAGE for a 2 MiB-aligned buffer. The buffer is not touched
 * and not mergeable here: the kids do that. Returns 0 or -errno.
 */
static inline int rksm_kids_init(struct rksm_kids *k, size_t pages, int advice)
{
	size_t len = pages * PAGE_SIZE, align = 2UL << 20;
	char *raw;

	memset(k, 0, sizeof(*k));
	k->pages = pages;
	raw = mmap(NULL, len + align, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return -errno;
	k->buf = (char *)(((uintptr_t)raw + align - 1) & ~(align - 1));
	if (madvise(k->buf, len, advice))
		return -errno;
	k->kbuf = rksm_shared_alloc(RKSM_MAX_KIDS * sizeof(char *));
	k->seed = rksm_shared_alloc(RKSM_MAX_KIDS * pages * 8);
	k->flag = rksm_shared_alloc(PAGE_SIZE);
	if (!k->kbuf || !k->seed || !k->flag)
		return -ENOMEM;
	for (int i = 0; i < RKSM_MAX_KIDS; i++) {
		k->kbuf[i] = k->buf;
		if (pipe2(k->cmd[i], O_CLOEXEC) || pipe2(k->res[i], O_CLOEXEC))
			return -errno;
	}
	return 0;
}

/* Fill @page / check it for @seed, in the kids' content. */
static inline void rksm_kid_fill_page(struct rksm_kids *k, void *page, uint64_t seed)
{
	if (k->content)
		k->content->fill(page, seed);
	else
		rksm_fill_page(page, seed);
}

static inline bool rksm_kid_page_is(struct rksm_kids *k, const void *page, uint64_t seed)
{
	return k->content ? k->content->is(page, seed) : rksm_page_is(page, seed);
}

static inline volatile uint64_t *rksm_kid_seeds(struct rksm_kids *k, int slot)
{
	return &k->seed[slot * k->pages];
}

static inline char *rksm_kid_page(struct rksm_kids *k, int slot, size_t i)
{
	return k->kbuf[slot] + i * PAGE_SIZE;
}

static inline bool rksm_xfer(int fd, void *buf, size_t len, bool wr)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = wr ? write(fd, (char *)buf + done, len - done)
			       : read(fd, (char *)buf + done, len - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		done += r;
	}
	return true;
}

/* The kid's loop: run functions until told to exit (fn == NULL). */
static inline void __attribute__((noreturn))
rksm_kid_loop(struct rksm_kids *k, int slot)
{
	struct rksm_kid_msg m;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (;;) {
		long r;

		if (!rksm_xfer(k->cmd[slot][0], &m, sizeof(m), false) || !m.fn)
			_exit(0);
		r = m.fn(k, slot, m.arg);
		if (!rksm_xfer(k->res[slot][1], &r, sizeof(r), true))
			_exit(1);
	}
}

/* Fork a kid into @slot. Returns its pid or -errno. */
static inline pid_t rksm_kid_spawn(struct rksm_kids *k, int slot)
{
	pid_t parent = getpid(), pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		rksm_kid_loop(k, slot);
	}
	k->pid[slot] = pid;
	k->direct[slot] = true;
	return pid;
}

/* Send @fn(@arg) to the kid in @slot without waiting for it. */
static inline int rksm_kid_send(struct rksm_kids *k, int slot, rksm_kid_fn fn, long arg)
{
	struct rksm_kid_msg m = { fn, arg };

	return rksm_xfer(k->cmd[slot][1], &m, sizeof(m), true) ? 0 : -EPIPE;
}

static inline bool rksm_pid_alive(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] && p[2] != 'Z' && p[2] != 'X';
}

/*
 * Wait up to @timeout seconds for the result of what was sent to @slot.
 * Returns it in *@res and 0, or -ETIMEDOUT, or -ECHILD if the kid died.
 */
static inline int rksm_kid_recv(struct rksm_kids *k, int slot, long *res, double timeout)
{
	double end = rksm_now() + timeout;
	struct pollfd p = { .fd = k->res[slot][0], .events = POLLIN };

	for (;;) {
		int r = poll(&p, 1, 100);

		if (r > 0)
			return rksm_xfer(p.fd, res, sizeof(*res), false) ? 0 : -EIO;
		if (!rksm_pid_alive(k->pid[slot]))
			return -ECHILD;
		if (rksm_now() > end)
			return -ETIMEDOUT;
	}
}

/*
 * Run @fn(@arg) in the kid in @slot, waiting up to @timeout seconds.
 * Returns its result, or RKSM_KID_FAILED.
 */
#define RKSM_KID_FAILED (-0x7ffffffffffffff0L)
static inline long rksm_kid_call_timeout(struct rksm_kids *k, int slot, rksm_kid_fn fn,
					 long arg, double timeout)
{
	long r;

	if (rksm_kid_send(k, slot, fn, arg) || rksm_kid_recv(k, slot, &r, timeout))
		return RKSM_KID_FAILED;
	return r;
}

/* Run @fn(@arg) in the kid in @slot. Returns its result, or RKSM_KID_FAILED. */
static inline long rksm_kid_call(struct rksm_kids *k, int slot, rksm_kid_fn fn, long arg)
{
	return rksm_kid_call_timeout(k, slot, fn, arg, 60);
}

/*
 * Run @fn(@arg) in kids 0..@n-1 in parallel, giving each @timeout seconds.
 * Returns the sum of results, or RKSM_KID_FAILED.
 */
static inline long rksm_kids_call_timeout(struct rksm_kids *k, int n, rksm_kid_fn fn,
					  long arg, double timeout)
{
	long sum = 0, r;

	for (int i = 0; i < n; i++)
		if (rksm_kid_send(k, i, fn, arg))
			return RKSM_KID_FAILED;
	for (int i = 0; i < n; i++) {
		if (rksm_kid_recv(k, i, &r, timeout))
			return RKSM_KID_FAILED;
		if (r == RKSM_KID_FAILED)
			return r;
		sum += r;
	}
	return sum;
}

/* Run @fn(@arg) in kids 0..@n-1 in parallel. Returns the sum of results. */
static inline long rksm_kids_call(struct rksm_kids *k, int n, rksm_kid_fn fn, long arg)
{
	return rksm_kids_call_timeout(k, n, fn, arg, 60);
}

/* Kill the kid in @slot (SIGKILL) and reap it if it is ours. */
static inline void rksm_kid_kill(struct rksm_kids *k, int slot)
{
	if (k->pid[slot] <= 0)
		return;
	kill(k->pid[slot], SIGKILL);
	if (k->direct[slot])
		waitpid(k->pid[slot], NULL, 0);
	else
		for (int i = 0; i < 500 && rksm_pid_alive(k->pid[slot]); i++)
			rksm_msleep(10);
	k->pid[slot] = 0;
}

static inline void rksm_kids_kill_all(struct rksm_kids *k)
{
	/* Grandchildren first: their parent kid may be killed below. */
	for (int i = RKSM_MAX_KIDS - 1; i >= 0; i--)
		if (k->pid[i] > 0 && !k->direct[i])
			rksm_kid_kill(k, i);
	for (int i = 0; i < RKSM_MAX_KIDS; i++)
		rksm_kid_kill(k, i);
}

/* Kid function: make the buffer hold its seeds (writing only what differs). */
static inline long rksm_kid_sync(struct rksm_kids *k, int slot, long arg)
{
	long written = 0;

	(void)arg;
	for (size_t i = 0; i < k->pages; i++) {
		char *p = rksm_kid_page(k, slot, i);
		uint64_t seed = rksm_kid_seeds(k, slot)[i];

		if (!rksm_kid_page_is(k, p, seed)) {
			rksm_kid_fill_page(k, p, seed);
			written++;
		}
	}
	return written;
}

/* Kid function: write every page from its seeds (zero pages too). */
static inline long rksm_kid_fill(struct rksm_kids *k, int slot, long arg)
{
	(void)arg;
	for (size_t i = 0; i < k->pages; i++)
		rksm_kid_fill_page(k, rksm_kid_page(k, slot, i), rksm_kid_seeds(k, slot)[i]);
	return k->pages;
}

/* Kid function: count pages whose contents are not what the seeds say. */
static inline long rksm_kid_verify(struct rksm_kids *k, int slot, long arg)
{
	long bad = 0;

	(void)arg;
	for (size_t i = 0; i < k->pages; i++)
		if (!rksm_kid_page_is(k, rksm_kid_page(k, slot, i), rksm_kid_seeds(k, slot)[i]))
			bad++;
	return bad;
}

/* Kid function: madvise(@arg) on its whole buffer. 0 or -errno. */
static inline long rksm_kid_madvise(struct rksm_kids *k, int slot, long arg)
{
	return madvise(k->kbuf[slot], k->pages * PAGE_SIZE, arg) ? -errno : 0;
}

/* Kid function: prctl(PR_SET_MEMORY_MERGE, @arg). 0 or -errno. */
static inline long rksm_kid_prctl_merge(struct rksm_kids *k, int slot, long arg)
{
	(void)k;
	(void)slot;
	return prctl(PR_SET_MEMORY_MERGE, arg, 0, 0, 0) ? -errno : 0;
}

/* Kid function: fork a grandchild that serves slot @arg. Returns its pid. */
static inline long rksm_kid_fork(struct rksm_kids *k, int slot, long arg)
{
	pid_t pid;

	(void)slot;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0)
		rksm_kid_loop(k, arg);
	return pid;
}

/* Have the kid in @slot fork a new kid into @newslot, with its seeds. */
static inline pid_t rksm_kid_fork_into(struct rksm_kids *k, int slot, int newslot)
{
	long pid;

	for (size_t i = 0; i < k->pages; i++)
		rksm_kid_seeds(k, newslot)[i] = rksm_kid_seeds(k, slot)[i];
	k->kbuf[newslot] = k->kbuf[slot];
	pid = rksm_kid_call(k, slot, rksm_kid_fork, newslot);
	if (pid <= 0)
		return pid == RKSM_KID_FAILED ? -EIO : pid;
	k->pid[newslot] = pid;
	k->direct[newslot] = false;
	return pid;
}

/* Kid function: take real, effective and saved uid @arg (and keep dying with the test). */
static inline long rksm_kid_setuid(struct rksm_kids *k, int slot, long arg)
{
	(void)k;
	(void)slot;
	if (setresuid(arg, arg, arg))
		return -errno;
	/* A change of credentials clears the parent-death signal. */
	return prctl(PR_SET_PDEATHSIG, SIGKILL) ? -errno : 0;
}

/*
 * Spawn kids 0..@n-1, each taking uid @uids[i] if @uids is given and
 * @uids[i] is not 0, filling its buffer from its seeds and then opting in
 * with MADV_MERGEABLE (in slot order). Returns 0 or -errno.
 */
static inline int rksm_kids_start_as(struct rksm_kids *k, int n, const long *uids)
{
	for (int i = 0; i < n; i++) {
		if (rksm_kid_spawn(k, i) < 0)
			return -ECHILD;
		if (uids && uids[i] && rksm_kid_call(k, i, rksm_kid_setuid, uids[i]))
			return -EPERM;
		if (rksm_kid_call(k, i, rksm_kid_fill, 0) != (long)k->pages)
			return -EIO;
	}
	for (int i = 0; i < n; i++)
		if (rksm_kid_call(k, i, rksm_kid_madvise, MADV_MERGEABLE))
			return -EIO;
	return 0;
}

/* rksm_kids_start_as() with every kid as the test's uid. */
static inline int rksm_kids_start(struct rksm_kids *k, int n)
{
	return rksm_kids_start_as(k, n, NULL);
}

/*
 * rksm_kids_start() for big buffers: spawn kids @first..@first+@n-1, have
 * them fill their buffers in parallel (@timeout seconds), then opt in with
 * MADV_MERGEABLE in slot order. Returns 0 or -errno.
 */
static inline int rksm_kids_start_range(struct rksm_kids *k, int first, int n,
					double timeout)
{
	long r;

	for (int i = first; i < first + n; i++)
		if (rksm_kid_spawn(k, i) < 0 ||
		    rksm_kid_send(k, i, rksm_kid_fill, 0))
			return -ECHILD;
	for (int i = first; i < first + n; i++)
		if (rksm_kid_recv(k, i, &r, timeout) || r != (long)k->pages)
			return -EIO;
	for (int i = first; i < first + n; i++)
		if (rksm_kid_call(k, i, rksm_kid_madvise, MADV_MERGEABLE))
			return -EIO;
	return 0;
}

/* Set seeds of slots 0..@n-1 to "page i is the same everywhere". */
static inline void rksm_kids_seed_common(struct rksm_kids *k, int n)
{
	for (int s = 0; s < n; s++)
		for (size_t i = 0; i < k->pages; i++)
			rksm_kid_seeds(k, s)[i] = rksm_seed_common(i);
}

/* PFNs of the buffer of @slot. Returns 0 or -errno. */
static inline int rksm_kid_pfns(struct rksm_kids *k, int slot, uint64_t *pfn)
{
	return rksm_pfns(k->pid[slot], k->kbuf[slot], k->pages, pfn);
}

/* PFNs of slots 0..@n-1 into @tab[slot * pages + i]. Returns 0 or -errno. */
static inline int rksm_kids_pfns(struct rksm_kids *k, int n, uint64_t *tab)
{
	for (int s = 0; s < n; s++) {
		int err = rksm_kid_pfns(k, s, &tab[s * k->pages]);

		if (err)
			return err;
	}
	return 0;
}

static inline int rksm_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* How many of the @total PFNs in @tab are present and occur more than once. */
static inline size_t rksm_count_shared_pfns(const uint64_t *tab, size_t total)
{
	uint64_t *s = malloc(total * sizeof(*s));
	size_t shared = 0;

	if (!s)
		return ~(size_t)0;
	memcpy(s, tab, total * sizeof(*s));
	qsort(s, total, sizeof(*s), rksm_u64_cmp);
	for (size_t i = 0; i < total; i++)
		if (s[i] && ((i > 0 && s[i - 1] == s[i]) ||
			     (i + 1 < total && s[i + 1] == s[i])))
			shared++;
	free(s);
	return shared;
}

/*
 * For test files (needs kselftest_harness.h): check @cond for every i in
 * [0, @n) and report one failure for all of them, naming the first i.
 */
#define RKSM_EXPECT_ALL(n, cond) do {						\
	long __bad = 0, __first = -1;						\
	for (long i = 0; i < (long)(n); i++)					\
		if (!(cond)) {							\
			__bad++;						\
			if (__first < 0)					\
				__first = i;					\
		}								\
	EXPECT_EQ(0, __bad) TH_LOG("'%s' fails for %ld of %ld, first at i = %ld",	\
				   #cond, __bad, (long)(n), __first);		\
} while (0)

#endif /* RKSM_UTIL_H */
