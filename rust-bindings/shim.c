// SPDX-License-Identifier: GPL-2.0
/*
 * rksm's C shim: the static inlines, macros and struct layouts the Rust side
 * cannot reach through the kernel crate. Each helper is one small step; the
 * decisions stay in Rust. Declarations: rust-bindings/ffi.rs.
 */
#include <linux/err.h>
#include <linux/freezer.h>
#include <linux/kobject.h>
#include <linux/kthread.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/sysfs.h>
#include <linux/wait.h>

/* ---- sysfs: /sys/kernel/mm/rksm ------------------------------------------ */

/* Implemented in Rust (src/sysfs.rs). */
ssize_t rksm_attr_show(unsigned int idx, char *buf);
ssize_t rksm_attr_store(unsigned int idx, const char *buf, size_t len);

struct rksm_attr {
	struct kobj_attribute ka;
	unsigned int idx;
};

static struct kobject *rksm_kobj;
static struct rksm_attr *rksm_attrs;
static struct attribute **rksm_attr_list;
static struct attribute_group rksm_group;

static ssize_t shim_show(struct kobject *kobj, struct kobj_attribute *ka, char *buf)
{
	return rksm_attr_show(container_of(ka, struct rksm_attr, ka)->idx, buf);
}

static ssize_t shim_store(struct kobject *kobj, struct kobj_attribute *ka,
			  const char *buf, size_t len)
{
	return rksm_attr_store(container_of(ka, struct rksm_attr, ka)->idx, buf, len);
}

static void rksm_sysfs_free(void)
{
	kfree(rksm_attr_list);
	kfree(rksm_attrs);
	rksm_attr_list = NULL;
	rksm_attrs = NULL;
}

/*
 * Create /sys/kernel/mm/rksm with @n files. @names[i] must live until
 * rksm_sysfs_remove(); file i is read-write for root if @writable[i], else
 * read-only. Show and store call back into Rust with the index i.
 */
int rksm_sysfs_add(const char *const *names, const bool *writable, unsigned int n)
{
	unsigned int i;
	int err;

	rksm_attrs = kcalloc(n, sizeof(*rksm_attrs), GFP_KERNEL);
	rksm_attr_list = kcalloc(n + 1, sizeof(*rksm_attr_list), GFP_KERNEL);
	if (!rksm_attrs || !rksm_attr_list) {
		rksm_sysfs_free();
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		struct rksm_attr *a = &rksm_attrs[i];

		sysfs_attr_init(&a->ka.attr);
		a->ka.attr.name = names[i];
		a->ka.attr.mode = writable[i] ? 0644 : 0444;
		a->ka.show = shim_show;
		a->ka.store = writable[i] ? shim_store : NULL;
		a->idx = i;
		rksm_attr_list[i] = &a->ka.attr;
	}
	rksm_group.name = "rksm";
	rksm_group.attrs = rksm_attr_list;

	/* A named group on mm_kobj is the directory /sys/kernel/mm/rksm. */
	rksm_kobj = mm_kobj;
	err = sysfs_create_group(rksm_kobj, &rksm_group);
	if (err)
		rksm_sysfs_free();
	return err;
}

/* Remove the directory; waits for running show/store calls to finish. */
void rksm_sysfs_remove(void)
{
	sysfs_remove_group(rksm_kobj, &rksm_group);
	rksm_sysfs_free();
}

/* ---- the rksmd kthread ----------------------------------------------------- */

static DECLARE_WAIT_QUEUE_HEAD(rksm_scanner_wq);
static atomic_t rksm_scanner_kicked = ATOMIC_INIT(0);

/* Start @fn(@data) as kthread "rksmd". Returns 0 and the task, or -errno. */
int rksm_kthread_run(int (*fn)(void *), void *data, struct task_struct **task)
{
	struct task_struct *t = kthread_run(fn, data, "rksmd");

	if (IS_ERR(t))
		return PTR_ERR(t);
	*task = t;
	return 0;
}

/* Stop the kthread and wait for its function to return. */
void rksm_kthread_stop(struct task_struct *task)
{
	kthread_stop(task);
}

bool rksm_kthread_should_stop(void)
{
	return kthread_should_stop();
}

/* Called once by the kthread: let the freezer stop it at rksm_scanner_wait(). */
void rksm_kthread_set_freezable(void)
{
	set_freezable();
}

/*
 * Sleep until rksm_scanner_kick(), kthread_stop(), or @msecs elapse
 * (@msecs == UINT_MAX: no timeout). Freezable, so suspend is not blocked.
 */
void rksm_scanner_wait(unsigned int msecs)
{
	long timeout = msecs == UINT_MAX ? MAX_SCHEDULE_TIMEOUT : msecs_to_jiffies(msecs);

	wait_event_freezable_timeout(rksm_scanner_wq,
				     kthread_should_stop() ||
				     atomic_xchg(&rksm_scanner_kicked, 0),
				     timeout);
}

void rksm_scanner_kick(void)
{
	atomic_set(&rksm_scanner_kicked, 1);
	wake_up_interruptible(&rksm_scanner_wq);
}

void rksm_cond_resched(void)
{
	cond_resched();
}
