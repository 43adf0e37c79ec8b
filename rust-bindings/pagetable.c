// SPDX-License-Identifier: GPL-2.0
/*
 * rksm C glue: Reading page tables: the walk that skips empty levels, the PTE scan in
 * batches, and looking up what one address maps.
 * Only what Rust cannot reach (static inlines, macros, the PTE critical
 * section). Declarations for Rust: shim.h and ffi.rs.
 */
#include <linux/ksm.h>
#include <linux/mm.h>
#include <linux/huge_mm.h>
#include <linux/pgtable.h>
#include <linux/rmap.h>

#include "shim.h"

/* ---- page-table walk ------------------------------------------------------------ */
/*
 * Each level helper returns the entry for @addr, or NULL when it is empty or
 * bad, so the walker skips the whole range it covers with one check. Bad
 * entries are skipped, never cleared: that is the fault path's business.
 */

pgd_t *rksm_pgd(struct mm_struct *mm, unsigned long addr)
{
	pgd_t *pgd = pgd_offset(mm, addr);

	return pgd_none(*pgd) || pgd_bad(*pgd) ? NULL : pgd;
}

p4d_t *rksm_p4d(pgd_t *pgd, unsigned long addr)
{
	p4d_t *p4d = p4d_offset(pgd, addr);

	return p4d_none(*p4d) || p4d_bad(*p4d) ? NULL : p4d;
}

pud_t *rksm_pud(p4d_t *p4d, unsigned long addr)
{
	pud_t *pud = pud_offset(p4d, addr);
	pud_t val = pudp_get(pud);

	return pud_none(val) || !pud_present(val) || pud_leaf(val) || pud_bad(val) ? NULL : pud;
}

pmd_t *rksm_pmd(pud_t *pud, unsigned long addr)
{
	return pmd_offset(pud, addr);
}

int rksm_pmd_kind(pmd_t *pmd)
{
	pmd_t val = pmdp_get_lockless(pmd);

	if (pmd_none(val) || !pmd_present(val))
		return RKSM_PMD_NONE;
	if (pmd_trans_huge(val))
		return RKSM_PMD_HUGE;
	return pmd_bad(val) ? RKSM_PMD_NONE : RKSM_PMD_TABLE;
}

/*
 * The first address in [@addr, @end) (inside one pud) whose pmd is populated,
 * or @end: one check per empty pmd, in one call rather than one call each.
 */
unsigned long rksm_pmd_skip_empty(pud_t *pud, unsigned long addr, unsigned long end)
{
	pmd_t *pmd = pmd_offset(pud, addr);

	for (; addr < end; pmd++, addr = pmd_addr_end(addr, end))
		if (rksm_pmd_kind(pmd) != RKSM_PMD_NONE)
			break;
	return addr;
}

unsigned long rksm_pgd_end(unsigned long addr, unsigned long end)
{
	return pgd_addr_end(addr, end);
}

unsigned long rksm_p4d_end(unsigned long addr, unsigned long end)
{
	return p4d_addr_end(addr, end);
}

unsigned long rksm_pud_end(unsigned long addr, unsigned long end)
{
	return pud_addr_end(addr, end);
}

unsigned long rksm_pmd_end(unsigned long addr, unsigned long end)
{
	return pmd_addr_end(addr, end);
}

/*
 * Collect up to @max present pages mapped by the PTE table of @pmd into @hits,
 * each with a folio reference: those in the @nranges ranges [@ranges[2i],
 * @ranges[2i + 1]), in address order, all within this one pmd (each inside
 * one VMA; several small VMAs cost one map and lock of the table, not one
 * each), from @addr on. *@next is where the next call should start: the end
 * of the last range once all are done. Returns the hit count, or 0 if the
 * table went away.
 */
int rksm_scan_ptes(struct mm_struct *mm, pmd_t *pmd, const unsigned long *ranges, int nranges,
		   unsigned long addr, struct rksm_hit *hits, int max,
		   unsigned long *next)
{
	unsigned long base;
	spinlock_t *ptl;
	pte_t *start;
	int n = 0, r;

	if (nranges <= 0)
		return 0;
	base = ranges[0];
	*next = ranges[2 * nranges - 1];
	start = pte_offset_map_lock(mm, pmd, base, &ptl);
	if (!start)
		return 0;
	for (r = 0; r < nranges; r++) {
		unsigned long a = max(addr, ranges[2 * r]), end = ranges[2 * r + 1];
		pte_t *pte = start + ((a - base) >> PAGE_SHIFT);

		for (; a < end; a += PAGE_SIZE, pte++) {
			pte_t val = ptep_get(pte);
			unsigned long pfn;
			struct folio *folio;
			struct page *page;
			unsigned int kind;

			if (n == max) {
				*next = a;
				goto out;
			}
			if (!pte_present(val))
				continue;
			pfn = pte_pfn(val);
			if (is_zero_pfn(pfn)) {
				hits[n++] = (struct rksm_hit){ .addr = a, .kind = RKSM_HIT_ZERO };
				continue;
			}
			if (pte_special(val) || !pfn_valid(pfn))
				continue;
			page = pfn_to_page(pfn);
			folio = page_folio(page);
			if (folio_is_zone_device(folio))
				continue;
			/* KSM's own folios are neither candidates nor ours. */
			if (folio_ksm_provided(folio))
				kind = RKSM_HIT_STABLE;
			else if (folio_test_anon(folio) && !folio_test_ksm(folio))
				kind = folio_test_large(folio) ? RKSM_HIT_ANON_LARGE : RKSM_HIT_ANON;
			else
				continue;
			if (!folio_try_get(folio))
				continue;
			hits[n++] = (struct rksm_hit){ .addr = a, .page = page, .kind = kind };
		}
	}
out:
	pte_unmap_unlock(start, ptl);
	return n;
}

/* Lock and return the PTE that maps @addr, or NULL. Like KSM's mm_find_pmd + map. */
pte_t *rksm_pte_lock(struct mm_struct *mm, unsigned long addr, spinlock_t **ptl)
{
	pgd_t *pgd = rksm_pgd(mm, addr);
	p4d_t *p4d = pgd ? rksm_p4d(pgd, addr) : NULL;
	pud_t *pud = p4d ? rksm_pud(p4d, addr) : NULL;
	pmd_t *pmd = pud ? pmd_offset(pud, addr) : NULL;

	if (!pmd || rksm_pmd_kind(pmd) != RKSM_PMD_TABLE)
		return NULL;
	return pte_offset_map_lock(mm, pmd, addr, ptl);
}

/*
 * The page at @addr inside the anonymous THP that @pmd maps, with a folio
 * reference, or NULL if the pmd changed. The huge zero folio is not
 * anonymous, so the anon check skips it.
 */
static struct page *rksm_huge_page_get(struct mm_struct *mm, pmd_t *pmd, unsigned long addr)
{
	spinlock_t *ptl = pmd_lock(mm, pmd);
	pmd_t val = pmdp_get(pmd);
	struct page *page = NULL;

	if (pmd_present(val) && pmd_trans_huge(val)) {
		struct page *p = pmd_page(val) + ((addr & ~PMD_MASK) >> PAGE_SHIFT);
		struct folio *folio = page_folio(p);

		if (folio_test_anon(folio) && folio_try_get(folio))
			page = p;
	}
	spin_unlock(ptl);
	return page;
}

/*
 * One page of the THP @pmd maps, as one RKSM_HIT_ANON_LARGE hit: 1, or 0
 * if the pmd changed. One at a time, because splitting the THP to merge a
 * page needs the caller to hold a single reference on it.
 */
int rksm_scan_huge_pmd(struct mm_struct *mm, pmd_t *pmd, unsigned long addr,
		       struct rksm_hit *hit)
{
	struct page *page = rksm_huge_page_get(mm, pmd, addr);

	if (!page)
		return 0;
	*hit = (struct rksm_hit){ .addr = addr, .page = page, .kind = RKSM_HIT_ANON_LARGE };
	return 1;
}

/*
 * The anonymous page mapped at @addr, with a folio reference, or NULL.
 * mmap_lock held. Used to find an unstable-tree page again.
 */
struct page *rksm_anon_page_at(struct mm_struct *mm, unsigned long addr)
{
	pgd_t *pgd = rksm_pgd(mm, addr);
	p4d_t *p4d = pgd ? rksm_p4d(pgd, addr) : NULL;
	pud_t *pud = p4d ? rksm_pud(p4d, addr) : NULL;
	pmd_t *pmd = pud ? pmd_offset(pud, addr) : NULL;
	struct page *page = NULL;
	spinlock_t *ptl;
	pte_t *ptep;
	pte_t val;

	if (!pmd)
		return NULL;
	if (rksm_pmd_kind(pmd) == RKSM_PMD_HUGE)
		return rksm_huge_page_get(mm, pmd, addr);
	ptep = pte_offset_map_lock(mm, pmd, addr, &ptl);
	if (!ptep)
		return NULL;
	val = ptep_get(ptep);
	if (pte_present(val) && !pte_special(val) && pfn_valid(pte_pfn(val))) {
		struct page *p = pfn_to_page(pte_pfn(val));
		struct folio *folio = page_folio(p);

		if (folio_test_anon(folio) && !folio_test_ksm(folio) &&
		    !folio_is_zone_device(folio) && folio_try_get(folio))
			page = p;
	}
	pte_unmap_unlock(ptep, ptl);
	return page;
}

/*
 * What @addr maps now: RKSM_HIT_ZERO, RKSM_HIT_STABLE (one of rksm's stable
 * pages), RKSM_HIT_SWAP (a swap or migration entry, which may fault a stable
 * page back in), or 0 for anything else. mmap_lock held.
 */
int rksm_pte_kind(struct mm_struct *mm, unsigned long addr)
{
	spinlock_t *ptl;
	pte_t *ptep = rksm_pte_lock(mm, addr, &ptl);
	int kind = 0;
	pte_t val;

	if (!ptep)
		return 0;
	val = ptep_get(ptep);
	if (pte_present(val)) {
		unsigned long pfn = pte_pfn(val);

		if (is_zero_pfn(pfn))
			kind = RKSM_HIT_ZERO;
		else if (!pte_special(val) && pfn_valid(pfn) &&
			 folio_ksm_provided(page_folio(pfn_to_page(pfn))))
			kind = RKSM_HIT_STABLE;
	} else if (!pte_none(val)) {
		kind = RKSM_HIT_SWAP;
	}
	pte_unmap_unlock(ptep, ptl);
	return kind;
}
