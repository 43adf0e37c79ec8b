// SPDX-License-Identifier: GPL-2.0
/*
 * rksm C glue: Finding the opted-in mms, and what rksm may do with a VMA.
 * Only what Rust cannot reach (static inlines, macros, the PTE critical
 * section). Declarations for Rust: shim.h and ffi.rs.
 */
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/sched/mm.h>
#include <linux/cred.h>
#include <linux/sched/signal.h>
#include <linux/userfaultfd_k.h>

#include "shim.h"

/* ---- processes and their mms ------------------------------------------------ */

static bool rksm_mm_opted_in(struct mm_struct *mm)
{
	return mm_flags_test(MMF_VM_MERGEABLE, mm) || mm_flags_test(MMF_VM_MERGE_ANY, mm);
}

/*
 * Store up to @max mms in @out, each with an mm_count reference (mmgrab),
 * and the real uid (in the initial user namespace) of the process each was
 * found in at the same index of @uids; return how many opted-in mms there are
 * in all. Walks the task list under RCU; task_lock keeps ->mm stable while we
 * look.
 */
int rksm_collect_mms(struct mm_struct **out, unsigned int *uids, int max)
{
	struct task_struct *p;
	int n = 0;

	rcu_read_lock();
	for_each_process(p) {
		struct mm_struct *mm;

		if (p->flags & PF_KTHREAD)
			continue;
		task_lock(p);
		mm = p->mm;
		if (mm && rksm_mm_opted_in(mm)) {
			if (n < max) {
				mmgrab(mm);
				out[n] = mm;
				uids[n] = __kuid_val(task_uid(p));
			}
			n++;
		}
		task_unlock(p);
	}
	rcu_read_unlock();
	return n;
}

bool rksm_mm_opted_in_now(struct mm_struct *mm)
{
	return rksm_mm_opted_in(mm);
}

/*
 * Add @merging and @items (either may be negative) to @mm's ksm_merging_pages
 * and ksm_rmap_items, the per-process counters /proc/<pid>/ksm_stat and
 * ksm_merging_pages show. Only ksmd writes them otherwise, and ksmd and rksmd
 * never run at once (rksm refuses run=1 while KSM runs and steps aside when
 * it starts), so a plain read-add-write does; rksm adds and takes back its own
 * share, so KSM's stays counted. Fork zeroes both in the child (ksm_fork()),
 * where rksm starts from zero too. ksm_zero_pages is left alone: the kernel
 * adds a child's copy of it to KSM's global count at fork and takes it back
 * only for the dirty zero-page PTEs KSM makes, which rksm does not.
 */
void rksm_mm_ksm_stat_add(struct mm_struct *mm, long merging, long items)
{
#ifdef CONFIG_KSM
	WRITE_ONCE(mm->ksm_merging_pages, READ_ONCE(mm->ksm_merging_pages) + merging);
	WRITE_ONCE(mm->ksm_rmap_items, READ_ONCE(mm->ksm_rmap_items) + items);
#endif
}

void rksm_mmdrop(struct mm_struct *mm)
{
	mmdrop(mm);
}

/* ---- VMAs ----------------------------------------------------------------------- */

/* The first VMA that ends above @addr, or NULL. mmap_lock held. */
struct vm_area_struct *rksm_vma_next(struct mm_struct *mm, unsigned long addr)
{
	return find_vma(mm, addr);
}

int rksm_vma_kind(struct vm_area_struct *vma)
{
	vm_flags_t bad = VM_SHARED | VM_MAYSHARE | VM_PFNMAP | VM_IO | VM_MIXEDMAP |
			 VM_HUGETLB | VM_DROPPABLE;

	if (vma->vm_file || (vma->vm_flags & bad) || !vma->anon_vma || userfaultfd_armed(vma))
		return RKSM_VMA_OTHER;
	return (vma->vm_flags & VM_MERGEABLE) ? RKSM_VMA_MERGEABLE : RKSM_VMA_ANON;
}
