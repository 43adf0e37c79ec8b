// SPDX-License-Identifier: GPL-2.0
/*
 * rksm C glue: rksmd's creation, stop and freezer calls, and reading KSM's run file
 * (the kernel crate has no kthread API; the waits are in src/control.rs).
 * Only what Rust cannot reach (static inlines, macros, the PTE critical
 * section). Declarations for Rust: shim.h and ffi.rs.
 */
#include <linux/err.h>
#include <linux/file.h>
#include <linux/freezer.h>
#include <linux/fs.h>
#include <linux/kthread.h>
#include <linux/sched.h>
#include <linux/sched/task.h>

#include "shim.h"

/*
 * ---- the rksmd kthread -----------------------------------------------------
 * The kernel crate has no kthread API. rksmd's waits are a Rust CondVar
 * (src/control.rs); only creation, stop and the freezer calls are here.
 */

/*
 * Start @fn(@data) as kthread "rksmd". Returns 0 and the task, or -errno.
 * The task reference taken here lets @fn return before rksm_kthread_stop().
 */
int rksm_kthread_run(int (*fn)(void *), void *data, struct task_struct **task)
{
	struct task_struct *t = kthread_create(fn, data, "rksmd");

	if (IS_ERR(t))
		return PTR_ERR(t);
	get_task_struct(t);
	wake_up_process(t);
	*task = t;
	return 0;
}

/* Stop the kthread, wait for its function to return, and drop our reference. */
void rksm_kthread_stop(struct task_struct *task)
{
	kthread_stop_put(task);
}

bool rksm_kthread_should_stop(void)
{
	return kthread_should_stop();
}

/* Called once by the kthread: let the freezer stop it (in its CondVar waits). */
void rksm_kthread_set_freezable(void)
{
	set_freezable();
}

/*
 * Freeze here if the freezer asked: it wakes a kthread that sleeps without
 * TASK_FREEZABLE (a timed CondVar wait) and expects it to call this.
 */
void rksm_try_to_freeze(void)
{
	try_to_freeze();
}

/* The calling task's CPU time in ns (as of its last tick or switch), for the advisor. */
u64 rksm_current_cpu_ns(void)
{
	return current->se.sum_exec_runtime;
}

void rksm_cond_resched(void)
{
	cond_resched();
}

/* ---- living beside KSM ------------------------------------------------------------ */

/*
 * KSM's run knob, read the way userspace reads it (KSM keeps it private).
 * The file is opened at module load, in insmod's context: a kthread cannot
 * resolve the path. 0 if it cannot be read: KSM is then not built in and
 * cannot interfere.
 */
static struct file *rksm_ksm_run_file;

void rksm_ksm_watch_start(void)
{
	struct file *f = filp_open("/sys/kernel/mm/ksm/run", O_RDONLY, 0);

	rksm_ksm_run_file = IS_ERR(f) ? NULL : f;
}

void rksm_ksm_watch_stop(void)
{
	if (rksm_ksm_run_file)
		filp_close(rksm_ksm_run_file, NULL);
	rksm_ksm_run_file = NULL;
}

int rksm_ksm_run(void)
{
	char buf[8] = "";
	loff_t pos = 0;
	ssize_t n;

	if (!rksm_ksm_run_file)
		return 0;
	/* Each read from offset 0 runs KSM's show() again. */
	n = kernel_read(rksm_ksm_run_file, buf, sizeof(buf) - 1, &pos);
	return n > 0 ? buf[0] - '0' : 0;
}
