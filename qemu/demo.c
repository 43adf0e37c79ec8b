// SPDX-License-Identifier: GPL-2.0
/*
 * The `make demo` workload: several processes whose memory overlaps opt in to
 * merging; rksm merges them while this prints what it saves; then a write
 * breaks copy-on-write and every process checks every byte it owns.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif

#define WORKERS 4
#define MIB 16
#define PAGE 4096
#define PAGES (MIB * 1024 * 1024 / PAGE)
#define DIR "/sys/kernel/mm/rksm/"

static long knob(const char *name)
{
	char path[128];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), DIR "%s", name);
	f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static void set(const char *name, const char *val)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), DIR "%s", name);
	f = fopen(path, "w");
	if (!f || fputs(val, f) < 0 || fclose(f)) {
		perror(path);
		exit(1);
	}
}

/* Page i of worker w: 3 in 4 pages are the same in every worker, the rest its own. */
static uint64_t seed(int w, long i)
{
	return i % 4 == 3 ? (uint64_t)(w + 1) << 40 | i : (uint64_t)i;
}

static void fill(char *p, uint64_t s)
{
	for (int i = 0; i < PAGE / 8; i++)
		((uint64_t *)p)[i] = s * 0x9e3779b97f4a7c15ULL + i;
}

static uint64_t pfn_of(pid_t pid, void *addr)
{
	char path[64];
	uint64_t e = 0;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	fd = open(path, O_RDONLY);
	if (fd < 0 || pread(fd, &e, 8, (uintptr_t)addr / PAGE * 8) != 8)
		e = 0;
	if (fd >= 0)
		close(fd);
	return e & ((1ULL << 55) - 1);
}

static int check(char *mem, int w, long written)
{
	char want[PAGE];

	for (long i = 0; i < PAGES; i++) {
		fill(want, seed(w, i));
		if (i == written)
			memset(want, 0xab, 64);
		if (memcmp(want, mem + i * PAGE, PAGE))
			return -1;
	}
	return 0;
}

/* A worker: fill, opt in, then wait for orders on a pipe. */
static void worker(int w, char *mem, int cmd, int done)
{
	long written = -1;	/* the page this worker wrote to, if any */
	char c;

	for (long i = 0; i < PAGES; i++)
		fill(mem + i * PAGE, seed(w, i));
	if (w == WORKERS - 1)
		prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0);	/* the whole process */
	else
		madvise(mem, PAGES * PAGE, MADV_MERGEABLE);	/* this range */
	write(done, "r", 1);
	while (read(cmd, &c, 1) == 1 && c != 'q') {
		if (c == 'w') {
			memset(mem, 0xab, 64);	/* page 0 is shared by everyone */
			written = 0;
		}
		c = check(mem, w, written) ? 'F' : 'K';
		write(done, &c, 1);
	}
	_exit(0);
}

int main(void)
{
	int cmd[WORKERS][2], done[2];
	pid_t pid[WORKERS];
	char *mem[WORKERS];
	double t0;
	struct timespec ts;
	long last = -1, same = 0;
	char c;

	pipe(done);
	for (int w = 0; w < WORKERS; w++) {
		/* No THP, so the demo shows rksm, not THP splitting. */
		mem[w] = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		madvise(mem[w], PAGES * PAGE, MADV_NOHUGEPAGE);
		pipe(cmd[w]);
		pid[w] = fork();
		if (!pid[w])
			worker(w, mem[w], cmd[w][0], done[1]);
	}
	for (int w = 0; w < WORKERS; w++)
		read(done[0], &c, 1);
	printf("%d processes x %d MiB opted in; 3 in 4 pages are the same in all of them\n",
	       WORKERS, MIB);
	printf("page 0 before: PFNs");
	for (int w = 0; w < WORKERS; w++)
		printf(" %lx", (long)pfn_of(pid[w], mem[w]));
	printf("\n\nrksm: run=1 pages_to_scan=4000 sleep_millisecs=10\n");
	printf("%6s %10s %12s %13s %10s\n", "time", "full_scans", "pages_shared",
	       "pages_sharing", "saved");
	set("pages_to_scan", "4000");
	set("sleep_millisecs", "10");
	set("run", "1");
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = ts.tv_sec + ts.tv_nsec / 1e9;
	for (int i = 0; i < 240 && same < 6; i++) {
		long sharing = knob("pages_sharing");

		clock_gettime(CLOCK_MONOTONIC, &ts);
		printf("%5.1fs %10ld %12ld %13ld %6.1f MiB\n", ts.tv_sec + ts.tv_nsec / 1e9 - t0,
		       knob("full_scans"), knob("pages_shared"), sharing,
		       sharing * (double)PAGE / (1 << 20));
		fflush(stdout);
		same = sharing == last && sharing > 0 ? same + 1 : 0;
		last = sharing;
		usleep(500000);
	}
	printf("\nexpected: pages_shared %d, pages_sharing %d (%.1f MiB saved)\n",
	       PAGES * 3 / 4, PAGES * 3 / 4 * (WORKERS - 1),
	       PAGES * 3 / 4 * (WORKERS - 1) * (double)PAGE / (1 << 20));
	printf("page 0 merged: PFNs");
	for (int w = 0; w < WORKERS; w++)
		printf(" %lx", (long)pfn_of(pid[w], mem[w]));
	printf("\n\nworker 0 writes to page 0 (copy-on-write)...\n");
	write(cmd[0][1], "w", 1);
	read(done[0], &c, 1);
	printf("page 0 after:  PFNs");
	for (int w = 0; w < WORKERS; w++)
		printf(" %lx", (long)pfn_of(pid[w], mem[w]));
	printf("\n");
	int bad = c != 'K';

	for (int w = 1; w < WORKERS; w++) {
		write(cmd[w][1], "c", 1);
		read(done[0], &c, 1);
		bad |= c != 'K';
	}
	printf("every byte of all %d MiB checked: %s\n", WORKERS * MIB,
	       bad ? "CORRUPTED" : "intact");
	printf("\nrksm: run=2 (unmerge everything)\n");
	set("run", "2");
	printf("pages_shared %ld, pages_sharing %ld\n", knob("pages_shared"), knob("pages_sharing"));
	for (int w = 0; w < WORKERS; w++) {
		write(cmd[w][1], "q", 1);
		waitpid(pid[w], NULL, 0);
	}
	return bad;
}
