// SPDX-License-Identifier: GPL-2.0
/*
 * rksm's C shim: the static inlines, macros and struct layouts the Rust side
 * cannot reach through the kernel crate. Each helper is one small step; the
 * decisions stay in Rust. Declarations: rust-bindings/ffi.rs.
 */
#include <linux/err.h>
#include <linux/file.h>
#include <linux/freezer.h>
#include <linux/highmem.h>
#include <linux/huge_mm.h>
#include <linux/kobject.h>
#include <linux/kthread.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/random.h>
#include <linux/rmap.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/shmem_fs.h>
#include <linux/slab.h>
#include <linux/swap.h>
#include <linux/sysfs.h>
#include <linux/userfaultfd_k.h>
#include <linux/xxhash.h>

#include "shim.h"

/* ---- sysfs: /sys/kernel/mm/rksm ------------------------------------------ */

/* Implemented in Rust (src/sysfs.rs). @ctx is what rksm_sysfs_add() was given. */
ssize_t rksm_attr_show(const void *ctx, unsigned int idx, char *buf);
ssize_t rksm_attr_store(const void *ctx, unsigned int idx, const char *buf, size_t len);

struct rksm_attr {
	struct kobj_attribute ka;
	unsigned int idx;
};

static struct kobject *rksm_kobj;
static struct rksm_attr *rksm_attrs;
static struct attribute **rksm_attr_list;
static struct attribute_group rksm_group;
static const void *rksm_sysfs_ctx;

static ssize_t shim_show(struct kobject *kobj, struct kobj_attribute *ka, char *buf)
{
	return rksm_attr_show(rksm_sysfs_ctx, container_of(ka, struct rksm_attr, ka)->idx, buf);
}

static ssize_t shim_store(struct kobject *kobj, struct kobj_attribute *ka,
			  const char *buf, size_t len)
{
	return rksm_attr_store(rksm_sysfs_ctx, container_of(ka, struct rksm_attr, ka)->idx,
			       buf, len);
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
 * read-only. Show and store call back into Rust with @ctx and the index i.
 */
int rksm_sysfs_add(const char *const *names, const bool *writable, unsigned int n,
		   const void *ctx)
{
	unsigned int i;
	int err;

	rksm_sysfs_ctx = ctx;
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

void rksm_cond_resched(void)
{
	cond_resched();
}

/* ---- processes and their mms ------------------------------------------------ */

static bool rksm_mm_opted_in(struct mm_struct *mm)
{
	return mm_flags_test(MMF_VM_MERGEABLE, mm) || mm_flags_test(MMF_VM_MERGE_ANY, mm);
}

/*
 * Store up to @max mms in @out, each with an mm_count reference (mmgrab),
 * and return how many there are in all: the opted-in ones, or with @all
 * every user mm (run=2 must find merges in processes that opted out).
 * Walks the task list under RCU; task_lock keeps ->mm stable while we look.
 */
int rksm_collect_mms(struct mm_struct **out, int max, bool all)
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
		if (mm && (all || rksm_mm_opted_in(mm))) {
			if (n < max) {
				mmgrab(mm);
				out[n] = mm;
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
 * Collect up to @max present pages mapped by the PTE table of @pmd in
 * [@addr, @end) (within one pmd) into @hits, each with a folio reference.
 * *@next is where the next call should start. Returns the hit count, or 0
 * if the table went away. @stable_file: rksm's file, to tell merged pages.
 */
int rksm_scan_ptes(struct mm_struct *mm, pmd_t *pmd, unsigned long addr, unsigned long end,
		   struct file *stable_file, struct rksm_hit *hits, int max,
		   unsigned long *next)
{
	spinlock_t *ptl;
	pte_t *start, *pte;
	int n = 0;

	*next = end;
	start = pte = pte_offset_map_lock(mm, pmd, addr, &ptl);
	if (!pte)
		return 0;
	for (; addr < end; addr += PAGE_SIZE, pte++) {
		pte_t val = ptep_get(pte);
		unsigned long pfn;
		struct folio *folio;
		struct page *page;
		unsigned int kind;

		if (n == max) {
			*next = addr;
			break;
		}
		if (!pte_present(val))
			continue;
		pfn = pte_pfn(val);
		if (is_zero_pfn(pfn)) {
			hits[n++] = (struct rksm_hit){ .addr = addr, .kind = RKSM_HIT_ZERO };
			continue;
		}
		if (pte_special(val) || !pfn_valid(pfn))
			continue;
		page = pfn_to_page(pfn);
		folio = page_folio(page);
		if (folio_is_zone_device(folio) || folio_test_ksm(folio))
			continue;
		if (folio_test_anon(folio))
			kind = folio_test_large(folio) ? RKSM_HIT_ANON_LARGE : RKSM_HIT_ANON;
		else if (stable_file && folio->mapping == stable_file->f_mapping)
			kind = RKSM_HIT_STABLE;
		else
			continue;
		if (!folio_try_get(folio))
			continue;
		hits[n++] = (struct rksm_hit){ .addr = addr, .page = page, .kind = kind };
	}
	pte_unmap_unlock(start, ptl);
	return n;
}

/* Lock and return the PTE that maps @addr, or NULL. Like KSM's mm_find_pmd + map. */
static pte_t *rksm_pte_lock(struct mm_struct *mm, unsigned long addr, spinlock_t **ptl)
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

/* ---- pages ---------------------------------------------------------------------- */

/*
 * The seed of every page hash: a secret drawn once at load and never shown,
 * so a tenant cannot craft distinct pages with one hash to flood a bucket
 * (xxh64 with a known seed is easy to invert).
 */
static u64 rksm_hash_key __ro_after_init;

void rksm_hash_key_init(void)
{
	rksm_hash_key = get_random_u64();
}

u64 rksm_page_hash(struct page *page)
{
	void *p = kmap_local_page(page);
	u64 h = xxh64(p, PAGE_SIZE, rksm_hash_key);

	kunmap_local(p);
	return h;
}

bool rksm_page_is_zero(struct page *page)
{
	void *p = kmap_local_page(page);
	bool zero = !memchr_inv(p, 0, PAGE_SIZE);

	kunmap_local(p);
	return zero;
}

bool rksm_pages_equal(struct page *a, struct page *b)
{
	void *pa = kmap_local_page(a);
	void *pb = kmap_local_page(b);
	bool eq = !memcmp(pa, pb, PAGE_SIZE);

	kunmap_local(pb);
	kunmap_local(pa);
	return eq;
}

int rksm_pages_cmp(struct page *a, struct page *b)
{
	void *pa = kmap_local_page(a);
	void *pb = kmap_local_page(b);
	int c = memcmp(pa, pb, PAGE_SIZE);

	kunmap_local(pb);
	kunmap_local(pa);
	return c;
}

bool rksm_same_folio(struct page *a, struct page *b)
{
	return page_folio(a) == page_folio(b);
}

/*
 * The folio a page belongs to. While the caller holds a reference, the page
 * cannot be split from under it (a split needs no other pins), so this stays
 * the folio that reference is on.
 */
struct folio *rksm_page_folio(struct page *page)
{
	return page_folio(page);
}

/* Drop a reference a shim call took, on the folio it was taken on. */
void rksm_folio_put(struct folio *folio)
{
	folio_put(folio);
}

void rksm_lru_add_drain_all(void)
{
	lru_add_drain_all();
}

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
 * What @addr maps now: RKSM_HIT_ZERO, RKSM_HIT_STABLE (a page of
 * @stable_file), or 0 for anything else. mmap_lock held.
 */
int rksm_pte_kind(struct mm_struct *mm, unsigned long addr, struct file *stable_file)
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
		else if (stable_file && !pte_special(val) && pfn_valid(pfn) &&
			 page_folio(pfn_to_page(pfn))->mapping == stable_file->f_mapping)
			kind = RKSM_HIT_STABLE;
	}
	pte_unmap_unlock(ptep, ptl);
	return kind;
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

u64 rksm_zero_page_hash(void)
{
	return rksm_page_hash(ZERO_PAGE(0));
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

/* ---- stable pages: a private shmem file ------------------------------------- */

/*
 * rksm's stable pages are pages of this file, mapped read-only into the
 * anonymous VMAs they replace. Unevictable, since reclaim cannot find those
 * mappings (see docs/design.md, rule 4).
 */
struct file *rksm_stable_file_create(void)
{
	struct file *file = shmem_kernel_file_setup("rksm", MAX_LFS_FILESIZE,
						    mk_vma_flags(VMA_NORESERVE_BIT));

	if (IS_ERR(file))
		return NULL;
	mapping_set_unevictable(file->f_mapping);
	return file;
}

void rksm_stable_file_put(struct file *file)
{
	fput(file);
}

/*
 * Page @index of @file, filled with @src's content, with a folio reference.
 * Not movable: migration could not find its mappings. NULL on failure.
 */
struct page *rksm_stable_page_alloc(struct file *file, unsigned long index, struct page *src)
{
	struct address_space *mapping = file->f_mapping;
	struct folio *folio = shmem_read_folio_gfp(mapping, index,
						   mapping_gfp_mask(mapping) & ~__GFP_MOVABLE);

	if (IS_ERR(folio))
		return NULL;
	if (folio_test_large(folio)) {
		folio_put(folio);
		shmem_truncate_range(file_inode(file), (loff_t)index << PAGE_SHIFT,
				     ((loff_t)(index + 1) << PAGE_SHIFT) - 1);
		return NULL;
	}
	copy_highpage(folio_page(folio, 0), src);
	folio_mark_dirty(folio);
	return folio_page(folio, 0);
}

int rksm_page_mapcount(struct page *page)
{
	return folio_mapcount(page_folio(page));
}

/*
 * Drop page @index of @file, whose reference the caller gave up. Only
 * when nothing maps it: truncating a mapped page BUGs (docs/design.md,
 * rule 2). Returns false, doing nothing, if it is mapped.
 */
bool rksm_stable_page_free(struct file *file, unsigned long index, struct page *page)
{
	if (folio_mapped(page_folio(page)))
		return false;
	folio_put(page_folio(page));
	shmem_truncate_range(file_inode(file), (loff_t)index << PAGE_SHIFT,
			     ((loff_t)(index + 1) << PAGE_SHIFT) - 1);
	return true;
}

/* While stable pages exist, rksm must stay loaded: it owns their file. */
bool rksm_module_get(void)
{
	return try_module_get(THIS_MODULE);
}

void rksm_module_put(void)
{
	module_put(THIS_MODULE);
}
