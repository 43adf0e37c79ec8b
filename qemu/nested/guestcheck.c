// SPDX-License-Identifier: GPL-2.0
/*
 * The integrity checker that `make run`'s inner guests run as /init (a
 * static binary alone in their initramfs; they boot the test kernel).
 *
 * It fills rksm_mib MiB with the checker's image (pattern.h), then for
 * rksm_secs seconds loops: each round rewrites two pages in PAT_STRIDE (pattern.h)
 * (so copy-on-write happens while the host merges) and verifies every page.
 * It reports on the console and powers the guest off:
 *   "rksm-guest: guest G filled N pages"
 *   "rksm-guest: round R ok (T s)"      every few rounds
 *   "rksm-guest: PASS guest G: R rounds, N pages verified each"
 *   "rksm-guest: FAIL guest G: page I word W round R"
 * The kernel hands the command line's rksm_guest=, rksm_mib= and rksm_secs=
 * to init as environment variables.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <time.h>
#include <unistd.h>

#include "pattern.h"


static unsigned int env(const char *name, unsigned int dflt)
{
	const char *v = getenv(name);

	return v && atoi(v) > 0 ? (unsigned int)atoi(v) : dflt;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int run(unsigned int guest, unsigned int mib, unsigned int secs)
{
	unsigned int pages = mib << 8, round;
	unsigned char *gen = calloc(pages, 1);
	pat_u32 *base = mmap(NULL, (size_t)pages << 12, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	double t0, last = 0;

	if (!gen || base == MAP_FAILED) {
		printf("rksm-guest: FAIL guest %u: no memory for %u MiB\n", guest, mib);
		return 1;
	}
	pat_fill_all(base, guest, pages);
	printf("rksm-guest: guest %u filled %u pages\n", guest, pages);
	t0 = now();
	for (round = 1; now() - t0 < secs; round++) {
		int w, bad = pat_round(base, gen, guest, pages, round, &w);

		if (bad >= 0) {
			printf("rksm-guest: FAIL guest %u: page %d word %d round %u\n", guest, bad,
			       w, round);
			return 1;
		}
		if (now() - last >= 10) {
			last = now();
			printf("rksm-guest: round %u ok (%.0f s)\n", round, last - t0);
		}
	}
	printf("rksm-guest: PASS guest %u: %u rounds, %u pages verified each\n",
	       guest, round - 1, pages);
	return 0;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	run(env("rksm_guest", 0), env("rksm_mib", 64), env("rksm_secs", 60));
	sync();
	/* QEMU runs with -no-reboot: a reboot ends it. */
	reboot(RB_AUTOBOOT);
	return 0;
}
