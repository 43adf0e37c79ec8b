// SPDX-License-Identifier: GPL-2.0
/*
 * rksm_mn_test: records the mmu notifier invalidations a process range
 * receives, so that tests/mmu_notifier_test.c can check that every PTE
 * rksm replaces (and every COW copy run=2 forces) is announced to
 * secondary MMUs such as KVM's EPT. See rksm_mn_test.h for the interface.
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "rksm_mn_test.h"

static_assert(RKSM_MN_EV_UNMAP == MMU_NOTIFY_UNMAP);
static_assert(RKSM_MN_EV_CLEAR == MMU_NOTIFY_CLEAR);
static_assert(RKSM_MN_EV_RELEASE == MMU_NOTIFY_RELEASE);

struct rksm_mn {
	struct mmu_interval_notifier notifier;
	struct mutex reg_lock;		/* registered */
	bool registered;
	spinlock_t lock;		/* nr, dropped, log; the notifier's seq */
	u64 nr;
	u64 dropped;
	struct rksm_mn_event *log;	/* entries below nr never change */
};

/*
 * May run in a context that must not sleep (!mmu_notifier_range_blockable):
 * it only takes a spinlock.
 */
static bool rksm_mn_invalidate(struct mmu_interval_notifier *sub,
			       const struct mmu_notifier_range *range,
			       unsigned long cur_seq)
{
	struct rksm_mn *mn = container_of(sub, struct rksm_mn, notifier);
	struct rksm_mn_event *e;

	spin_lock(&mn->lock);
	mmu_interval_set_seq(sub, cur_seq);
	if (mn->nr < RKSM_MN_MAX_EVENTS) {
		e = &mn->log[mn->nr];
		e->start = range->start;
		e->end = range->end;
		e->event = range->event;
		e->flags = 0;
		if (mmu_notifier_range_blockable(range))
			e->flags |= RKSM_MN_F_BLOCKABLE;
		if (current->flags & PF_KTHREAD)
			e->flags |= RKSM_MN_F_KTHREAD;
		e->pid = task_pid_nr(current);
		e->pad = 0;
		mn->nr++;
	} else {
		mn->dropped++;
	}
	spin_unlock(&mn->lock);
	return true;
}

static const struct mmu_interval_notifier_ops rksm_mn_ops = {
	.invalidate = rksm_mn_invalidate,
};

static int rksm_mn_register(struct rksm_mn *mn, const struct rksm_mn_range *r)
{
	int ret;

	if (!current->mm)
		return -EINVAL;
	if (!r->len || !PAGE_ALIGNED(r->start) || !PAGE_ALIGNED(r->len) ||
	    r->start + r->len < r->start || r->start + r->len > TASK_SIZE)
		return -EINVAL;

	mutex_lock(&mn->reg_lock);
	if (mn->registered) {
		ret = -EBUSY;
	} else {
		ret = mmu_interval_notifier_insert(&mn->notifier, current->mm,
						   r->start, r->len, &rksm_mn_ops);
		mn->registered = !ret;
	}
	mutex_unlock(&mn->reg_lock);
	return ret;
}

static void rksm_mn_unregister(struct rksm_mn *mn)
{
	mutex_lock(&mn->reg_lock);
	if (mn->registered) {
		mmu_interval_notifier_remove(&mn->notifier);
		mn->registered = false;
	}
	mutex_unlock(&mn->reg_lock);
}

static long rksm_mn_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct rksm_mn *mn = file->private_data;
	struct rksm_mn_stats stats;
	struct rksm_mn_range r;

	switch (cmd) {
	case RKSM_MN_REGISTER:
		if (copy_from_user(&r, (void __user *)arg, sizeof(r)))
			return -EFAULT;
		return rksm_mn_register(mn, &r);
	case RKSM_MN_UNREGISTER:
		rksm_mn_unregister(mn);
		return 0;
	case RKSM_MN_STATS:
		spin_lock(&mn->lock);
		stats.nr = mn->nr;
		stats.dropped = mn->dropped;
		spin_unlock(&mn->lock);
		return copy_to_user((void __user *)arg, &stats, sizeof(stats)) ?
		       -EFAULT : 0;
	default:
		return -ENOTTY;
	}
}

static ssize_t rksm_mn_read(struct file *file, char __user *buf, size_t count,
			    loff_t *ppos)
{
	struct rksm_mn *mn = file->private_data;
	size_t size;

	if (*ppos < 0)
		return -EINVAL;
	spin_lock(&mn->lock);
	size = mn->nr * sizeof(*mn->log);
	spin_unlock(&mn->lock);
	if (*ppos >= size)
		return 0;
	count = min_t(size_t, count, size - *ppos);
	if (copy_to_user(buf, (char *)mn->log + *ppos, count))
		return -EFAULT;
	*ppos += count;
	return count;
}

static int rksm_mn_open(struct inode *inode, struct file *file)
{
	struct rksm_mn *mn = kzalloc(sizeof(*mn), GFP_KERNEL);

	if (!mn)
		return -ENOMEM;
	mn->log = vcalloc(RKSM_MN_MAX_EVENTS, sizeof(*mn->log));
	if (!mn->log) {
		kfree(mn);
		return -ENOMEM;
	}
	mutex_init(&mn->reg_lock);
	spin_lock_init(&mn->lock);
	file->private_data = mn;
	return 0;
}

static int rksm_mn_release(struct inode *inode, struct file *file)
{
	struct rksm_mn *mn = file->private_data;

	rksm_mn_unregister(mn);
	vfree(mn->log);
	kfree(mn);
	return 0;
}

static const struct file_operations rksm_mn_fops = {
	.owner = THIS_MODULE,
	.open = rksm_mn_open,
	.release = rksm_mn_release,
	.read = rksm_mn_read,
	.unlocked_ioctl = rksm_mn_ioctl,
};

static struct miscdevice rksm_mn_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "rksm_mn_test",
	.fops = &rksm_mn_fops,
};

module_misc_device(rksm_mn_dev);

MODULE_DESCRIPTION("rksm test helper: log mmu_interval_notifier invalidations");
MODULE_LICENSE("GPL");
