// SPDX-License-Identifier: GPL-2.0
/*
 * rksm C glue: The PTE critical section of a merge, and breaking one by a forced
 * write fault.
 * Only what Rust cannot reach (static inlines, macros, the PTE critical
 * section). Declarations for Rust: shim.h and ffi.rs.
 */
#include <linux/mm.h>
#include <linux/huge_mm.h>
#include <linux/mmu_notifier.h>
#include <linux/pgtable.h>
#include <linux/rmap.h>
#include <linux/userfaultfd_k.h>

#include "shim.h"

/* ---- merge: replace one PTE ----------------------------------------------------- */

/*
 * Replace the PTE of @vma at @addr, which maps @old (a small anonymous page
 * we hold a reference on), by a read-only mapping of @new (a stable page), or
 * of the shared zero page if @new is NULL. Only if @old's content equals
 * @new's (or is all zero) and nobody else holds a reference to @old. The
 * sequence is the one in docs/design.md ("The merge step"). mmap_lock held
 * for read. Returns 0 or an RKSM_MERGE_* reason.
 */
int rksm_replace_pte(struct vm_area_struct *vma, unsigned long addr, struct page *old,
		     struct page *new, bool *split)
{
	struct mm_struct *mm = vma->vm_mm;
	struct folio *folio = page_folio(old);
	struct folio *kfolio = new ? page_folio(new) : NULL;
	struct folio *extra = NULL;	/* our own reference on @old's folio after a split */
	struct mmu_notifier_range range;
	spinlock_t *ptl;
	pte_t *ptep, entry, newpte;
	int ret;

	*split = false;
	if (!folio_test_anon(folio) || folio_test_ksm(folio))
		return RKSM_MERGE_GONE;
	if (kfolio && !folio_trylock(kfolio))
		return RKSM_MERGE_CONTENDED;
	if (!folio_trylock(folio)) {
		ret = RKSM_MERGE_CONTENDED;
		goto out_kunlock;
	}
	if (folio_test_large(folio)) {
		struct folio *large = folio;

		/* Like KSM: split a THP when one of its pages is worth merging. */
		if (split_folio(large)) {
			ret = RKSM_MERGE_LARGE;
			goto out_unlock;
		}
		*split = true;
		/*
		 * The caller's reference and our lock stay with the first page's
		 * folio. @old has its own folio now, or was freed by the split
		 * if nothing mapped it any more: take a reference to hold it
		 * while we work (it is the "+1" of the pin check below).
		 */
		folio = page_folio(old);
		if (folio != large) {
			folio_unlock(large);
			if (!folio_try_get(folio)) {
				ret = RKSM_MERGE_GONE;
				goto out_kunlock;
			}
			extra = folio;
			if (!folio_trylock(folio)) {
				ret = RKSM_MERGE_CONTENDED;
				goto out_put;
			}
		}
	}

	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, addr, addr + PAGE_SIZE);
	mmu_notifier_invalidate_range_start(&range);

	ret = RKSM_MERGE_GONE;
	ptep = rksm_pte_lock(mm, addr, &ptl);
	if (!ptep)
		goto out_mn;
	entry = ptep_get(ptep);
	if (!pte_present(entry) || pte_pfn(entry) != page_to_pfn(old) || pte_uffd(entry))
		goto out_pte;

	/* No CPU can write @old from here on, and GUP-fast cannot take a new reference. */
	entry = ptep_clear_flush(vma, addr, ptep);
	if (folio_mapcount(folio) + 1 + folio_test_swapcache(folio) != folio_ref_count(folio)) {
		ret = RKSM_MERGE_PINNED;
		goto out_restore;
	}
	if (new ? !rksm_pages_equal(old, new) : !rksm_page_is_zero(old)) {
		ret = RKSM_MERGE_CHANGED;
		goto out_restore;
	}

	if (new) {
		folio_get(kfolio);
		folio_add_file_rmap_pte(kfolio, new, vma);
		newpte = pte_wrprotect(mk_pte(new, vma->vm_page_prot));
		add_mm_counter(mm, MM_SHMEMPAGES, 1);
	} else {
		/* Clean, unlike KSM's dirty marker: it is an ordinary zero-page PTE. */
		newpte = pte_mkspecial(pfn_pte(zero_pfn(addr), vma->vm_page_prot));
	}
	set_pte_at(mm, addr, ptep, newpte);
	folio_remove_rmap_pte(folio, old, vma);
	add_mm_counter(mm, MM_ANONPAGES, -1);
	folio_put(folio); /* the reference the PTE held */
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
out_put:
	if (extra)
		folio_put(extra);
out_kunlock:
	if (kfolio)
		folio_unlock(kfolio);
	return ret;
}

/*
 * Give @addr a private anonymous page again: a forced write fault, as a
 * write through /proc/pid/mem does, makes the kernel's COW copy the zero or
 * stable page. mmap_lock held for read (locked == NULL: GUP keeps it held).
 */
int rksm_break_cow(struct mm_struct *mm, unsigned long addr)
{
	struct page *page;
	long n = get_user_pages_remote(mm, addr, 1, FOLL_WRITE | FOLL_FORCE, &page, NULL);

	if (n != 1)
		return n < 0 ? n : -EFAULT;
	put_page(page);
	return 0;
}
