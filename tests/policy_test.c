// SPDX-License-Identifier: GPL-2.0
/*
 * Merge isolation: merge_domains (none, uid, process), merge_exec and
 * zero_pages_only. Identical pages in helper processes ("kids"); what is
 * shared and what is not is read from /proc/<pid>/pagemap, with exact
 * counters and the bytes checked after every change.
 */
#include <sys/mman.h>

#include "kselftest_harness.h"
#include "rksm_util.h"

#define PAGES 64
#define UID_A 1001
#define UID_B 1002

/* Kid function: mprotect its buffer to @arg. */
static long kid_mprotect(struct rksm_kids *k, int slot, long arg)
{
	return mprotect(k->kbuf[slot], k->pages * PAGE_SIZE, arg) ? -errno : 0;
}

/* Kid function: zero the first @arg pages of its buffer (the pages stay allocated). */
static long kid_zero(struct rksm_kids *k, int slot, long arg)
{
	for (long i = 0; i < arg; i++) {
		memset(rksm_kid_page(k, slot, i), 0, PAGE_SIZE);
		rksm_kid_seeds(k, slot)[i] = 0;
	}
	return 0;
}

/* Kid function: count pages that do not hold their seed's bytes (seed 0: zeros). */
static long kid_verify(struct rksm_kids *k, int slot, long arg)
{
	static const char zeros[PAGE_SIZE];
	long bad = 0;

	(void)arg;
	for (size_t i = 0; i < k->pages; i++) {
		const char *p = rksm_kid_page(k, slot, i);
		uint64_t seed = rksm_kid_seeds(k, slot)[i];

		if (seed ? !rksm_page_is(p, seed) : memcmp(p, zeros, PAGE_SIZE) != 0)
			bad++;
	}
	return bad;
}

FIXTURE(policy) {
	struct rksm_saved saved;
	struct rksm_kids k;
	uint64_t pfn[RKSM_MAX_KIDS][PAGES];
};

FIXTURE_SETUP(policy)
{
	ASSERT_EQ(0, access(rksm_sysfs(), F_OK)) TH_LOG("no %s", rksm_sysfs());
	ASSERT_EQ(0, rksm_engine_setup(&self->saved));
	ASSERT_EQ(0, rksm_write("merge_domains", "none"));
	ASSERT_EQ(0, rksm_write("merge_exec", "0"));
	ASSERT_EQ(0, rksm_write("zero_pages_only", "0"));
	ASSERT_EQ(0, rksm_kids_init(&self->k, PAGES, MADV_NOHUGEPAGE));
}

FIXTURE_TEARDOWN(policy)
{
	rksm_kids_kill_all(&self->k);
	rksm_engine_teardown(&self->saved);
	rksm_write("merge_domains", "none");
	rksm_write("merge_exec", "0");
	rksm_write("zero_pages_only", "0");
}

static int read_pfns(struct rksm_kids *k, int n, uint64_t pfn[][PAGES])
{
	for (int i = 0; i < n; i++) {
		int err = rksm_pfns(k->pid[i], k->kbuf[i], PAGES, pfn[i]);

		if (err)
			return err;
	}
	return 0;
}

/*
 * Wait until pages_shared and pages_sharing are @shared and @sharing (at
 * least one full scan from now, as rksm_wait_counts() does), then read the
 * PFNs of kids 0..@n-1. Returns 0, or -errno after saying what it saw.
 */
static int settle(struct rksm_kids *k, int n, uint64_t pfn[][PAGES],
		  unsigned long long shared, unsigned long long sharing)
{
	struct rksm_counters c;
	int err = rksm_wait_counts(shared, sharing, 1, 120, &c);

	if (err) {
		ksft_print_msg("want pages_shared %llu pages_sharing %llu, have %llu %llu\n",
			       shared, sharing, c.shared, c.sharing);
		return err;
	}
	return read_pfns(k, n, pfn);
}

/* How many pages kids @a and @b map at the same PFN. */
static int same_pfns(uint64_t pfn[][PAGES], int a, int b, int from, int to)
{
	int n = 0;

	for (int i = from; i < to; i++)
		n += pfn[a][i] && pfn[a][i] == pfn[b][i];
	return n;
}

static const long two_uids[] = { UID_A, UID_A, UID_B, UID_B };

/* How many pages kids of UID_A (0, 1) share with kids of UID_B (2, 3), as two_uids has them. */
static int across_uids(uint64_t pfn[][PAGES])
{
	int n = 0;

	for (int a = 0; a < 2; a++)
		for (int b = 2; b < 4; b++)
			n += same_pfns(pfn, a, b, 0, PAGES);
	return n;
}

/*
 * uid domains: two processes of each of two uids hold the same pages. Each
 * uid gets its own copy of every page; no PFN is shared across uids.
 */
TEST_F(policy, uid_domains)
{
	rksm_kids_seed_common(&self->k, 4);
	ASSERT_EQ(0, rksm_write("merge_domains", "uid"));
	ASSERT_EQ(0, rksm_kids_start_as(&self->k, 4, two_uids));
	ASSERT_EQ(0, rksm_write("run", "1"));
	/* One stable page per content per uid, each mapped twice. */
	ASSERT_EQ(0, settle(&self->k, 4, self->pfn, 2 * PAGES, 2 * PAGES));
	EXPECT_EQ(PAGES, same_pfns(self->pfn, 0, 1, 0, PAGES));
	EXPECT_EQ(PAGES, same_pfns(self->pfn, 2, 3, 0, PAGES));
	EXPECT_EQ(0, across_uids(self->pfn));
	EXPECT_EQ(0, rksm_kids_call(&self->k, 4, kid_verify, 0));
}

/*
 * process domains: each of two processes holds every content twice. The
 * copies inside a process merge; nothing is shared between the processes.
 */
TEST_F(policy, process_domains)
{
	for (int s = 0; s < 2; s++)
		for (int i = 0; i < PAGES; i++)
			rksm_kid_seeds(&self->k, s)[i] = rksm_seed_common(i % (PAGES / 2));
	ASSERT_EQ(0, rksm_write("merge_domains", "process"));
	ASSERT_EQ(0, rksm_kids_start(&self->k, 2));
	ASSERT_EQ(0, rksm_write("run", "1"));
	/* PAGES / 2 contents in each of 2 processes, each page mapped twice. */
	ASSERT_EQ(0, settle(&self->k, 2, self->pfn, PAGES, PAGES));
	for (int s = 0; s < 2; s++) {
		for (int i = 0; i < PAGES / 2; i++) {
			EXPECT_EQ(self->pfn[s][i], self->pfn[s][i + PAGES / 2])
				TH_LOG("kid %d page %d", s, i);
		}
	}
	EXPECT_EQ(0, same_pfns(self->pfn, 0, 1, 0, PAGES));
	EXPECT_EQ(0, rksm_kids_call(&self->k, 2, kid_verify, 0));
}

/*
 * Switching from none to uid undoes the merges that crossed uids before the
 * write returns; then each uid merges again on its own.
 */
TEST_F(policy, switching_domains_unmerges)
{
	char buf[64];

	rksm_kids_seed_common(&self->k, 4);
	ASSERT_EQ(0, rksm_kids_start_as(&self->k, 4, two_uids));
	ASSERT_EQ(0, rksm_write("run", "1"));
	ASSERT_EQ(0, settle(&self->k, 4, self->pfn, PAGES, 3 * PAGES));
	ASSERT_EQ(PAGES, same_pfns(self->pfn, 0, 3, 0, PAGES));

	ASSERT_EQ(0, rksm_write("merge_domains", "uid"));
	ASSERT_EQ(0, rksm_read_str("merge_domains", buf, sizeof(buf)));
	EXPECT_STREQ("none [uid] process\n", buf);
	/* run stays 1. */
	EXPECT_EQ(1, rksm_get("run"));
	/* At once: nothing crosses the uids any more. */
	ASSERT_EQ(0, read_pfns(&self->k, 4, self->pfn));
	EXPECT_EQ(0, across_uids(self->pfn));
	EXPECT_EQ(0, rksm_kids_call(&self->k, 4, kid_verify, 0));

	ASSERT_EQ(0, settle(&self->k, 4, self->pfn, 2 * PAGES, 2 * PAGES));
	EXPECT_EQ(PAGES, same_pfns(self->pfn, 0, 1, 0, PAGES));
	EXPECT_EQ(PAGES, same_pfns(self->pfn, 2, 3, 0, PAGES));
	EXPECT_EQ(0, same_pfns(self->pfn, 1, 2, 0, PAGES));

	/* And back to none: one copy for all again. */
	ASSERT_EQ(0, rksm_write("merge_domains", "none"));
	ASSERT_EQ(0, settle(&self->k, 4, self->pfn, PAGES, 3 * PAGES));
	EXPECT_EQ(PAGES, same_pfns(self->pfn, 0, 3, 0, PAGES));
	EXPECT_EQ(0, rksm_kids_call(&self->k, 4, kid_verify, 0));
}

/*
 * merge_exec: two processes map their pages executable, two do not, all
 * with the same bytes. At 0 only the plain ones merge; at 1 all four do;
 * back at 0 the executable ones are unmerged again within a pass.
 */
TEST_F(policy, merge_exec)
{
	rksm_kids_seed_common(&self->k, 4);
	ASSERT_EQ(0, rksm_kids_start(&self->k, 4));
	for (int s = 0; s < 2; s++)
		ASSERT_EQ(0, rksm_kid_call(&self->k, s, kid_mprotect,
					   PROT_READ | PROT_WRITE | PROT_EXEC));
	ASSERT_EQ(0, rksm_write("run", "1"));
	ASSERT_EQ(0, settle(&self->k, 4, self->pfn, PAGES, PAGES));
	EXPECT_EQ(PAGES, same_pfns(self->pfn, 2, 3, 0, PAGES));
	EXPECT_EQ(0, same_pfns(self->pfn, 0, 1, 0, PAGES));
	EXPECT_EQ(0, same_pfns(self->pfn, 0, 2, 0, PAGES));

	ASSERT_EQ(0, rksm_write("merge_exec", "1"));
	ASSERT_EQ(0, settle(&self->k, 4, self->pfn, PAGES, 3 * PAGES));
	EXPECT_EQ(PAGES, same_pfns(self->pfn, 0, 3, 0, PAGES));
	EXPECT_EQ(PAGES, same_pfns(self->pfn, 1, 2, 0, PAGES));

	ASSERT_EQ(0, rksm_write("merge_exec", "0"));
	ASSERT_EQ(0, settle(&self->k, 4, self->pfn, PAGES, PAGES));
	EXPECT_EQ(0, same_pfns(self->pfn, 0, 1, 0, PAGES));
	EXPECT_EQ(0, same_pfns(self->pfn, 0, 2, 0, PAGES));
	EXPECT_EQ(PAGES, same_pfns(self->pfn, 2, 3, 0, PAGES));
	EXPECT_EQ(0, rksm_kids_call(&self->k, 4, kid_verify, 0));
}

/*
 * zero_pages_only: half of each process's pages are zero-filled, half are
 * identical non-zero pages. With it on, the zero-filled ones map the zero
 * page and nothing else is merged; turned on after merging, it undoes the
 * non-zero merges within a pass.
 */
TEST_F(policy, zero_pages_only)
{
	long long zero_pfn = rksm_zero_pfn();
	struct rksm_counters c;

	ASSERT_LT(0, zero_pfn);
	rksm_kids_seed_common(&self->k, 2);
	ASSERT_EQ(0, rksm_kids_start(&self->k, 2));
	ASSERT_EQ(0, rksm_kids_call(&self->k, 2, kid_zero, PAGES / 2));
	ASSERT_EQ(0, rksm_write("use_zero_pages", "1"));
	ASSERT_EQ(0, rksm_write("run", "1"));
	/* The non-zero half: one stable page per content, 2 mappings. */
	ASSERT_EQ(0, rksm_wait_counts(PAGES / 2, PAGES / 2, 1, 120, &c))
		TH_LOG("pages_shared %llu pages_sharing %llu", c.shared, c.sharing);

	ASSERT_EQ(0, rksm_write("zero_pages_only", "1"));
	ASSERT_EQ(0, settle(&self->k, 2, self->pfn, 0, 0));
	for (int s = 0; s < 2; s++) {
		for (int i = 0; i < PAGES / 2; i++) {
			EXPECT_EQ(zero_pfn, (long long)self->pfn[s][i]) TH_LOG("kid %d page %d", s, i);
		}
	}
	EXPECT_EQ(0, same_pfns(self->pfn, 0, 1, PAGES / 2, PAGES));
	EXPECT_EQ(PAGES, rksm_get("ksm_zero_pages"));
	EXPECT_EQ(0, rksm_kids_call(&self->k, 2, kid_verify, 0));

	/* use_zero_pages does not matter: zero_pages_only merges into the zero page. */
	ASSERT_EQ(0, rksm_write("run", "2"));
	ASSERT_EQ(0, rksm_write("use_zero_pages", "0"));
	ASSERT_EQ(0, rksm_write("run", "1"));
	ASSERT_EQ(0, rksm_wait_counts(0, 0, 2, 120, &c));
	ASSERT_EQ(0, read_pfns(&self->k, 2, self->pfn));
	for (int s = 0; s < 2; s++) {
		for (int i = 0; i < PAGES / 2; i++) {
			EXPECT_EQ(zero_pfn, (long long)self->pfn[s][i]) TH_LOG("kid %d page %d", s, i);
		}
	}
	EXPECT_EQ(0, same_pfns(self->pfn, 0, 1, PAGES / 2, PAGES));
	EXPECT_EQ(PAGES, rksm_get("ksm_zero_pages"));
}

/* The word knob reads back like KSM's advisor_mode; bad input keeps the old value. */
TEST(merge_domains_knob)
{
	static const char *const bad[] = { "cgroup", "1", "[uid]", "uid process", "UID", NULL };
	char buf[64];

	ASSERT_EQ(0, rksm_read_str("merge_domains", buf, sizeof(buf)));
	ASSERT_STREQ("[none] uid process\n", buf);
	ASSERT_EQ(0, rksm_write("merge_domains", "process\n"));
	for (const char *const *b = bad; *b; b++) {
		EXPECT_EQ(-EINVAL, rksm_write("merge_domains", *b)) TH_LOG("'%s'", *b);
	}
	ASSERT_EQ(0, rksm_read_str("merge_domains", buf, sizeof(buf)));
	EXPECT_STREQ("none uid [process]\n", buf);
	ASSERT_EQ(0, rksm_write("merge_domains", "none"));
	EXPECT_EQ(-EINVAL, rksm_write("merge_exec", "2"));
	EXPECT_EQ(-EINVAL, rksm_write("zero_pages_only", "yes"));
	EXPECT_EQ(0, rksm_get("merge_exec"));
	EXPECT_EQ(0, rksm_get("zero_pages_only"));
}

TEST_HARNESS_MAIN
