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

#define RKSM_DIR "/sys/kernel/mm/rksm"

/* Path of the module inside the guest (scripts/vm-run puts it there). */
static inline const char *rksm_ko_path(void)
{
	const char *p = getenv("RKSM_KO");

	return p ? p : "/rksm.ko";
}

/* Write @val to knob @name. Returns 0 or -errno. */
static inline int rksm_write(const char *name, const char *val)
{
	char path[256];
	ssize_t n;
	int fd, err = 0;

	snprintf(path, sizeof(path), RKSM_DIR "/%s", name);
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

	snprintf(path, sizeof(path), RKSM_DIR "/%s", name);
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

/* Value of knob or counter @name, or ~0ULL if it cannot be read. */
static inline unsigned long long rksm_get(const char *name)
{
	unsigned long long v;

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

static inline int rksm_load(void)
{
	int fd = open(rksm_ko_path(), O_RDONLY | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return -errno;
	ret = syscall(SYS_finit_module, fd, "", 0) ? -errno : 0;
	close(fd);
	return ret;
}

static inline int rksm_unload(void)
{
	return syscall(SYS_delete_module, "rksm", O_NONBLOCK) ? -errno : 0;
}

static inline bool rksm_loaded(void)
{
	return access(RKSM_DIR, F_OK) == 0;
}

/* A /proc/meminfo field in kB, or -1. */
static inline long rksm_meminfo(const char *field)
{
	char line[256];
	size_t len = strlen(field);
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

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

#endif /* RKSM_UTIL_H */
