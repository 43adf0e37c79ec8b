/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The interface of rksm_mn_test.ko, shared by the module and
 * tests/mmu_notifier_test.c.
 *
 * Each open of RKSM_MN_DEV is one mmu_interval_notifier: RKSM_MN_REGISTER
 * subscribes it to [start, start + len) of the caller's mm, and from then
 * on every invalidate callback appends one struct rksm_mn_event to the
 * file's log (at most RKSM_MN_MAX_EVENTS; later ones only count as
 * dropped). read()/pread() at byte offset k * sizeof(struct rksm_mn_event)
 * return the log from event k on. RKSM_MN_UNREGISTER, or the last close,
 * removes the notifier.
 */
#ifndef RKSM_MN_TEST_H
#define RKSM_MN_TEST_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define RKSM_MN_DEV "/dev/rksm_mn_test"
#define RKSM_MN_MAX_EVENTS 8192

struct rksm_mn_range {
	__u64 start;
	__u64 len;
};

struct rksm_mn_stats {
	__u64 nr;		/* events in the log */
	__u64 dropped;		/* events that did not fit */
};

struct rksm_mn_event {
	__u64 start;		/* range->start */
	__u64 end;		/* range->end */
	__u32 event;		/* range->event: RKSM_MN_EV_* */
	__u32 flags;		/* RKSM_MN_F_* */
	__s32 pid;		/* the task that invalidated */
	__u32 pad;
};

/* The kernel's enum mmu_notifier_event; the module checks the values. */
#define RKSM_MN_EV_UNMAP	0
#define RKSM_MN_EV_CLEAR	1
#define RKSM_MN_EV_RELEASE	5

#define RKSM_MN_F_BLOCKABLE	(1U << 0)	/* mmu_notifier_range_blockable() */
#define RKSM_MN_F_KTHREAD	(1U << 1)	/* invalidated by a kernel thread */

#define RKSM_MN_REGISTER	_IOW('r', 0x60, struct rksm_mn_range)
#define RKSM_MN_STATS		_IOR('r', 0x61, struct rksm_mn_stats)
#define RKSM_MN_UNREGISTER	_IO('r', 0x62)

#endif /* RKSM_MN_TEST_H */
