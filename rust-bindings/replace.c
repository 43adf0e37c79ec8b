// SPDX-License-Identifier: GPL-2.0
/*
 * rksm C glue: The PTE critical sections of a merge (a page becomes a stable
 * page in place; a page is replaced by a stable or the zero page), and
 * breaking one by a forced write fault.
 * Only what Rust cannot reach (static inlines, macros, the PTE critical
 * section). Declarations for Rust: shim.h and ffi.rs.
 */
#include <linux/mm.h>
#include <linux/huge_mm.h>
#include <linux/ksm.h>
#include <linux/mmu_notifier.h>
#include <linux/pgtable.h>
#include <linux/rmap.h>
#include <linux/userfaultfd_k.h>

#include "shim.h"

/*
 * Lock @old's folio (we hold a reference), splitting it first if it is
 * large, as KSM does when one of its pages is worth merging. On success the
 * folio that now holds @old is locked; *@extra is a reference we took on it
 * after a split, to drop after unlocking. Returns 0 or RKSM_MERGE_*.
 */
static int rksm_lock_small(struct page *old, struct folio **lockedp, struct folio **extra, bool *split)
{
	struct folio *folio = page_folio(old);

	*extra = NULL;
	*split = false;
	if (!folio_test_anon(folio) || folio_test_ksm(folio))
		return RKSM_MERGE_GONE;
	if (!folio_trylock(folio))
		return RKSM_MERGE_CONTENDED;
	if (folio_test_large(folio)) {
		struct folio *large = folio;

		if (split_folio(large)) {
			folio_unlock(large);
			return RKSM_MERGE_LARGE;
		}
		*split = true;
		/*
		 * The caller's reference and our lock stay with the first
		 * page's folio. @old has its own folio now, or was freed by
		 * the split if nothing mapped it any more: take a reference to
		 * hold it while we work (it is the "+1" of the pin checks).
		 */
		folio = page_folio(old);
		if (folio != large) {
			folio_unlock(large);
			if (!folio_try_get(folio))
				return RKSM_MERGE_GONE;
			if (!folio_trylock(folio)) {
				folio_put(folio);
				return RKSM_MERGE_CONTENDED;
			}
			*extra = folio;
		}
	}
	*lockedp = folio;
	return 0;
}

/*
 * The start of both merge steps, with the folios locked: lock the PTE at
 * @addr, check that it still maps @page (present, no uffd-wp), clear it and
 * flush the TLB, so that no CPU can write @page and GUP-fast cannot take a new
 * reference, then check that nobody else holds one (mapcount + ours + swap
 * cache). Returns the locked PTE, the old entry in *@orig; or NULL with
 * *@ret set and the PTE restored and unlocked. The caller brackets it with
 * the mmu notifier range.
 */
static pte_t *rksm_pte_isolate(struct vm_area_struct *vma, unsigned long addr,
			       struct page *page, spinlock_t **ptl, pte_t *orig, int *ret)
{
	struct folio *folio = page_folio(page);
	pte_t *ptep = rksm_pte_lock(vma->vm_mm, addr, ptl);
	pte_t entry;

	*ret = RKSM_MERGE_GONE;
	if (!ptep)
		return NULL;
	entry = ptep_get(ptep);
	if (!pte_present(entry) || pte_pfn(entry) != page_to_pfn(page) || pte_uffd(entry))
		goto out_unlock;
	flush_cache_page(vma, addr, page_to_pfn(page));
	entry = ptep_clear_flush(vma, addr, ptep);
	if (folio_mapcount(folio) + 1 + folio_test_swapcache(folio) != folio_ref_count(folio)) {
		*ret = RKSM_MERGE_PINNED;
		set_pte_at(vma->vm_mm, addr, ptep, entry);
		goto out_unlock;
	}
	*orig = entry;
	return ptep;
out_unlock:
	pte_unmap_unlock(ptep, *ptl);
	return NULL;
}

/* ---- merge: replace one PTE ----------------------------------------------------- */

/*
 * Replace the PTE of @vma at @addr, which maps @old (a small anonymous page
 * we hold a reference on), by a read-only mapping of @new (rksm's stable
 * page for @node, referenced by the caller), or of the shared zero page if
 * @new is NULL. Only if @old's content equals @new's (or is all zero) and
 * nobody else holds a reference to @old. The mapping becomes a reverse-map
 * entry of @node, under @new's folio lock; @room is how many entries
 * @node->rmap has room for. The sequence is the one in docs/design.md ("The
 * merge step"). mmap_lock held for read. Returns 0 or an RKSM_MERGE_* reason.
 */
int rksm_replace_pte(struct vm_area_struct *vma, unsigned long addr, struct page *old,
		     struct page *new, struct ksm_provider_node *node, unsigned int room,
		     bool *split)
{
	struct mm_struct *mm = vma->vm_mm;
	struct folio *kfolio = new ? page_folio(new) : NULL;
	struct folio *folio, *extra;
	struct mmu_notifier_range range;
	spinlock_t *ptl;
	pte_t *ptep, entry, newpte;
	int ret;

	*split = false;
	if (kfolio) {
		if (!folio_trylock(kfolio))
			return RKSM_MERGE_CONTENDED;
		/* Migrated, or let go, since the caller found it. */
		ret = RKSM_MERGE_GONE;
		if (!folio_ksm_provided(kfolio) || folio_provider_node(kfolio) != node)
			goto out_kunlock;
		ret = RKSM_MERGE_NO_ROOM;
		if (node->nr >= room)
			goto out_kunlock;
	}
	ret = rksm_lock_small(old, &folio, &extra, split);
	if (ret)
		goto out_kunlock;

	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, addr, addr + PAGE_SIZE);
	mmu_notifier_invalidate_range_start(&range);

	ptep = rksm_pte_isolate(vma, addr, old, &ptl, &entry, &ret);
	if (!ptep)
		goto out_mn;
	if (new ? !rksm_pages_equal(old, new) : !rksm_page_is_zero(old)) {
		ret = RKSM_MERGE_CHANGED;
		goto out_restore;
	}

	if (new) {
		/* As KSM's replace_page(): another mapping of a KSM folio. */
		folio_get(kfolio);
		folio_add_anon_rmap_pte(kfolio, new, vma, addr, RMAP_NONE);
		newpte = pte_wrprotect(mk_pte(new, vma->vm_page_prot));
		rksm_rmap_fill(&node->rmap[node->nr], vma, addr);
		node->nr++;
	} else {
		/* Clean, unlike KSM's dirty marker: it is an ordinary zero-page PTE. */
		newpte = pte_mkspecial(pfn_pte(zero_pfn(addr), vma->vm_page_prot));
		add_mm_counter(mm, MM_ANONPAGES, -1);
	}
	set_pte_at(mm, addr, ptep, newpte);
	folio_remove_rmap_pte(folio, old, vma);
	folio_put(folio); /* the reference the PTE held */
	ret = 0;
	goto out_pte;

out_restore:
	set_pte_at(mm, addr, ptep, entry);
out_pte:
	pte_unmap_unlock(ptep, ptl);
out_mn:
	mmu_notifier_invalidate_range_end(&range);
	folio_unlock(folio);
	if (extra)
		folio_put(extra);
out_kunlock:
	if (kfolio)
		folio_unlock(kfolio);
	return ret;
}

/*
 * Make @page, mapped at @addr of @vma, the stable page of @node, in place:
 * write-protect its PTE as KSM's write_protect_page() does, record the
 * mapping as @node's first reverse-map entry (@node->rmap has room for it),
 * and mark the folio as rksm's KSM folio. We hold a reference on @page;
 * mmap_lock held for read. Returns 0 or RKSM_MERGE_*.
 */
int rksm_stable_make(struct vm_area_struct *vma, unsigned long addr, struct page *page,
		     struct ksm_provider_node *node, bool *split)
{
	struct mm_struct *mm = vma->vm_mm;
	struct mmu_notifier_range range;
	struct folio *folio, *extra;
	spinlock_t *ptl;
	pte_t *ptep, entry;
	int ret;

	ret = rksm_lock_small(page, &folio, &extra, split);
	if (ret)
		return ret;
	/*
	 * Unlike KSM, not a page a fork still shares: the other processes
	 * never asked for merging, and would count as sharing it.
	 */
	ret = RKSM_MERGE_SHARED;
	if (folio_mapcount(folio) != 1)
		goto out_unlock;

	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, addr, addr + PAGE_SIZE);
	mmu_notifier_invalidate_range_start(&range);

	ptep = rksm_pte_isolate(vma, addr, page, &ptl, &entry, &ret);
	if (!ptep)
		goto out_mn;
	/* As KSM's write_protect_page(): see folio_try_share_anon_rmap_pte(). */
	ret = RKSM_MERGE_PINNED;
	if (PageAnonExclusive(page) && folio_try_share_anon_rmap_pte(folio, page))
		goto out_restore;
	if (pte_dirty(entry))
		folio_mark_dirty(folio);
	entry = pte_mkclean(pte_wrprotect(entry));
	set_pte_at(mm, addr, ptep, entry);

	rksm_rmap_fill(&node->rmap[node->nr], vma, addr);
	node->nr++;
	rksm_stable_mark(folio, node);
	ret = 0;
	goto out_pte;

out_restore:
	set_pte_at(mm, addr, ptep, entry);
out_pte:
	pte_unmap_unlock(ptep, ptl);
out_mn:
	mmu_notifier_invalidate_range_end(&range);
out_unlock:
	folio_unlock(folio);
	if (extra)
		folio_put(extra);
	return ret;
}

/*
 * Give @addr a private anonymous page again, as KSM's break_ksm() does: an
 * unsharing fault makes the kernel's COW copy the stable or zero page into a
 * page of the process's own, still read-only (nothing is written, so nothing
 * is dirtied). The fault may back out (a racing update of the PTE): callers
 * look again and retry, as KSM's loop does. A VMA that is not a COW mapping
 * (rksm merges only in private anonymous ones) takes a forced write fault
 * through GUP instead, as a write through /proc/pid/mem does. mmap_lock held
 * for read; the fault never drops it (no FAULT_FLAG_ALLOW_RETRY).
 */
int rksm_break_cow(struct mm_struct *mm, unsigned long addr)
{
	struct vm_area_struct *vma = vma_lookup(mm, addr);
	struct page *page;
	vm_fault_t ret;
	long n;

	if (!vma)
		return -EFAULT;
	if (vma_is_cow_mapping(vma)) {
		ret = handle_mm_fault(vma, addr, FAULT_FLAG_UNSHARE | FAULT_FLAG_REMOTE, NULL);
		if (ret & VM_FAULT_OOM)
			return -ENOMEM;
		return ret & (VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV) ? -EFAULT : 0;
	}
	n = get_user_pages_remote(mm, addr, 1, FOLL_WRITE | FOLL_FORCE, &page, NULL);
	if (n != 1)
		return n < 0 ? n : -EFAULT;
	put_page(page);
	return 0;
}
