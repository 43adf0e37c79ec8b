// SPDX-License-Identifier: GPL-2.0
/*
 * rksm C glue: Stable pages as KSM folios (qemu/patches/0004): finding one
 * again by pfn, the reverse-map entries the core walks, and letting one go.
 * Making one is a PTE critical section: replace.c.
 * Only what Rust cannot reach (static inlines, macros, the PTE critical
 * section). Declarations for Rust: shim.h and ffi.rs.
 */
#include <linux/ksm.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/rmap.h>

#include "shim.h"

/* ffi.rs mirrors both structs. */
static_assert(sizeof(struct ksm_provider_rmap) == 32);
static_assert(offsetof(struct ksm_provider_rmap, index) == 24);
static_assert(sizeof(struct ksm_provider_node) == 24);
static_assert(offsetof(struct ksm_provider_node, rmap) == 16);

/*
 * get_anon_vma()/put_anon_vma() are static inlines of mm/internal.h, which a
 * module cannot include; these are the same two lines (mm/internal.h, 7.3).
 * __put_anon_vma is exported to rksm by qemu/patches/0004.
 */
void __put_anon_vma(struct anon_vma *anon_vma);

static void rksm_get_anon_vma(struct anon_vma *anon_vma)
{
	atomic_inc(&anon_vma->refcount);
}

static void rksm_put_anon_vma(struct anon_vma *anon_vma)
{
	if (atomic_dec_and_test(&anon_vma->refcount))
		__put_anon_vma(anon_vma);
}

#define RKSM_PROVIDED	(FOLIO_MAPPING_KSM | FOLIO_MAPPING_KSM_PROVIDED)

static void *rksm_node_mapping(const struct ksm_provider_node *node)
{
	return (void *)((unsigned long)node | RKSM_PROVIDED);
}

/*
 * Make locked @folio the stable page of @node, whose reverse map lists its
 * mappings already. Under the folio lock, which every walk of the node takes
 * first.
 */
void rksm_stable_mark(struct folio *folio, struct ksm_provider_node *node)
{
	WRITE_ONCE(node->kpfn, folio_pfn(folio));
	WRITE_ONCE(folio->mapping, rksm_node_mapping(node));
}

/* Record that @vma maps the stable page at @addr, as KSM's rmap_item does. */
void rksm_rmap_fill(struct ksm_provider_rmap *r, struct vm_area_struct *vma,
			   unsigned long addr)
{
	r->mm = vma->vm_mm;
	r->anon_vma = vma->anon_vma;
	rksm_get_anon_vma(vma->anon_vma);
	r->address = addr;
	r->index = linear_anon_page_index(vma, addr);
}

/* Drop the anon_vma reference of an entry no folio's walk can reach any more. */
void rksm_rmap_put(struct ksm_provider_rmap *r)
{
	rksm_put_anon_vma(r->anon_vma);
}

/*
 * The folio of @node, with a reference, locked if @lock (a trylock). NULL if
 * it is busy (*@stale false) or gone: freed, or no longer ours (*@stale true).
 * KSM's ksm_get_folio() protocol (mm/ksm.c): the pfn is read first, migration
 * updates it before the old folio's mapping goes stale, and a swapcache folio
 * may have its count frozen for a moment.
 */
struct page *rksm_stable_get(struct ksm_provider_node *node, bool lock, bool *stale)
{
	void *expected = rksm_node_mapping(node);
	struct folio *folio;
	unsigned long kpfn;

	*stale = false;
again:
	kpfn = READ_ONCE(node->kpfn);
	if (!kpfn || !pfn_valid(kpfn))
		goto stale;
	folio = pfn_folio(kpfn);
	if (READ_ONCE(folio->mapping) != expected)
		goto stale;
	while (!folio_try_get(folio)) {
		if (!folio_test_swapcache(folio))
			goto stale;
		cpu_relax();
	}
	if (READ_ONCE(folio->mapping) != expected) {
		folio_put(folio);
		goto stale;
	}
	if (lock) {
		if (!folio_trylock(folio)) {
			folio_put(folio);
			return NULL;
		}
		if (READ_ONCE(folio->mapping) != expected) {
			folio_unlock(folio);
			folio_put(folio);
			goto stale;
		}
	}
	return folio_page(folio, 0);
stale:
	smp_rmb();
	if (READ_ONCE(node->kpfn) != kpfn)
		goto again;
	*stale = true;
	return NULL;
}

/* Undo rksm_stable_get(): unlock if it locked, drop the reference. */
void rksm_stable_put(struct page *page, bool locked)
{
	struct folio *folio = page_folio(page);

	if (locked)
		folio_unlock(folio);
	folio_put(folio);
}

/*
 * Whether @page (rksm_stable_get() locked it) may go: nothing maps it and, unless
 * @force, no swap entry may still fault it back in as this stable page. If
 * so, it becomes a KSM folio without a node, which swap-in copies, as KSM's
 * remove_stable_node() leaves it, and no folio points to the node any more.
 */
bool rksm_stable_detach(struct page *page, bool force)
{
	struct folio *folio = page_folio(page);

	if (folio_mapped(folio) || (!force && folio_test_swapcache(folio)))
		return false;
	WRITE_ONCE(folio->mapping, (void *)FOLIO_MAPPING_KSM);
	return true;
}

int rksm_stable_mapcount(struct page *page)
{
	return folio_mapcount(page_folio(page));
}

/* Whether @page's folio is the stable page of @node (a reference held on it). */
bool rksm_stable_is(const struct ksm_provider_node *node, struct page *page)
{
	return READ_ONCE(page_folio(page)->mapping) == rksm_node_mapping(node);
}

/* Whether @page's folio is one of rksm's stable pages. */
bool rksm_page_is_stable(struct page *page)
{
	return folio_ksm_provided(page_folio(page));
}

/* While stable pages exist, rksm stays loaded: run=2 undoes them first. */
bool rksm_module_get(void)
{
	return try_module_get(THIS_MODULE);
}

void rksm_module_put(void)
{
	module_put(THIS_MODULE);
}
