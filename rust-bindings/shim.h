/* SPDX-License-Identifier: GPL-2.0 */
/* Constants, structs and functions shared by the C glue here and ffi.rs (keep both in sync). */
#ifndef RKSM_SHIM_H
#define RKSM_SHIM_H

/* rksm_vma_kind() */
#define RKSM_VMA_MERGEABLE	1 /* VM_MERGEABLE, private anonymous, has an anon_vma */
#define RKSM_VMA_ANON		2 /* private anonymous, not mergeable (may hold old merges) */
#define RKSM_VMA_OTHER		0

/* rksm_pmd_kind() */
#define RKSM_PMD_NONE		0 /* empty, not present or bad: nothing to scan */
#define RKSM_PMD_TABLE		1 /* points to a PTE table */
#define RKSM_PMD_HUGE		2 /* maps a THP */

/* struct rksm_hit.kind */
#define RKSM_HIT_ANON		1 /* small anonymous page: a merge candidate */
#define RKSM_HIT_ANON_LARGE	2 /* subpage of a large anonymous folio */
#define RKSM_HIT_STABLE		3 /* one of rksm's stable pages: already merged */
#define RKSM_HIT_ZERO		4 /* the shared zero page */
#define RKSM_HIT_SWAP		5 /* a swap or migration entry (rksm_pte_kind only) */

/* One present PTE found by rksm_scan_ptes(). @page holds a reference unless ZERO. */
struct rksm_hit {
	unsigned long addr;
	struct page *page;
	unsigned int kind;
};

/* rksm_replace_pte() results, besides 0 */
#define RKSM_MERGE_GONE		1 /* the PTE no longer maps the page */
#define RKSM_MERGE_PINNED	2 /* extra references: GUP pin, I/O, swap cache race */
#define RKSM_MERGE_CHANGED	3 /* the content differs now */
#define RKSM_MERGE_CONTENDED	4 /* folio lock held by someone else */
#define RKSM_MERGE_LARGE	5 /* the page is part of a large folio that could not be split */
#define RKSM_MERGE_NO_ROOM	6 /* the stable page's reverse map is full: grow it, try again */
#define RKSM_MERGE_SHARED	7 /* mapped by other processes too (a fork): cannot become stable */

/* rksm_memfd_hooks_register(): which hooks are in place (a bit mask) */
#define RKSM_MEMFD_HOOK_CREATE	1 /* memfd_alloc_file: memfd_noexec */
#define RKSM_MEMFD_HOOK_RUN	2 /* security_bprm_check, _mmap_file, _file_mprotect: memfd_exec */

/* What a memfd hook saw: rksm_memfd_on_run(@what), rksm_memfd_log_refusal(@what) */
#define RKSM_MEMFD_EXEC		0 /* execve, execveat, fexecve of a memfd */
#define RKSM_MEMFD_MMAP		1 /* mmap of a memfd with PROT_EXEC */
#define RKSM_MEMFD_MPROTECT	2 /* mprotect adding PROT_EXEC to a mapping of a memfd */
#define RKSM_MEMFD_CREATE	3 /* memfd_create of an executable memfd */

/* Every function the C files here export to the Rust side (declared again in ffi.rs). */
struct file;
struct ksm_provider_node;
struct ksm_provider_rmap;
struct mm_struct;
struct page;
struct task_struct;
struct vm_area_struct;

int rksm_sysfs_add(const char *const *names, const bool *writable, unsigned int n,
		   const void *ctx);
void rksm_sysfs_remove(void);
int rksm_kthread_run(int (*fn)(void *), void *data, struct task_struct **task);
void rksm_kthread_stop(struct task_struct *task);
bool rksm_kthread_should_stop(void);
void rksm_kthread_set_freezable(void);
void rksm_try_to_freeze(void);
void rksm_cond_resched(void);
u64 rksm_current_cpu_ns(void);
void rksm_mm_ksm_stat_add(struct mm_struct *mm, long merging, long items);
int rksm_collect_mms(struct mm_struct **out, unsigned int *uids, int max);
bool rksm_mm_opted_in_now(struct mm_struct *mm);
void rksm_mmdrop(struct mm_struct *mm);
struct vm_area_struct *rksm_vma_next(struct mm_struct *mm, unsigned long addr);
int rksm_vma_kind(struct vm_area_struct *vma);
pgd_t *rksm_pgd(struct mm_struct *mm, unsigned long addr);
p4d_t *rksm_p4d(pgd_t *pgd, unsigned long addr);
pud_t *rksm_pud(p4d_t *p4d, unsigned long addr);
pmd_t *rksm_pmd(pud_t *pud, unsigned long addr);
int rksm_pmd_kind(pmd_t *pmd);
unsigned long rksm_pmd_skip_empty(pud_t *pud, unsigned long addr, unsigned long end);
unsigned long rksm_pgd_end(unsigned long addr, unsigned long end);
unsigned long rksm_p4d_end(unsigned long addr, unsigned long end);
unsigned long rksm_pud_end(unsigned long addr, unsigned long end);
unsigned long rksm_pmd_end(unsigned long addr, unsigned long end);
int rksm_scan_ptes(struct mm_struct *mm, pmd_t *pmd, const unsigned long *ranges, int nranges,
		   unsigned long addr, struct rksm_hit *hits, int max,
		   unsigned long *next);
int rksm_scan_huge_pmd(struct mm_struct *mm, pmd_t *pmd, unsigned long addr,
		       struct rksm_hit *hit);
struct page *rksm_anon_page_at(struct mm_struct *mm, unsigned long addr);
u64 rksm_page_hash(struct page *page);
void rksm_hash_key_init(void);
int rksm_pages_cmp(struct page *a, struct page *b);
bool rksm_page_is_zero(struct page *page);
bool rksm_pages_equal(struct page *a, struct page *b);
bool rksm_same_folio(struct page *a, struct page *b);
struct folio *rksm_page_folio(struct page *page);
void rksm_folio_put(struct folio *folio);
void rksm_folios_put(struct folio **folios, unsigned int nr);
void rksm_lru_add_drain_all(void);
int rksm_replace_pte(struct vm_area_struct *vma, unsigned long addr, struct page *old,
		     struct page *new, struct ksm_provider_node *node, unsigned int room,
		     bool *split);
int rksm_stable_make(struct vm_area_struct *vma, unsigned long addr, struct page *page,
		     struct ksm_provider_node *node, bool *split);
int rksm_pte_kind(struct mm_struct *mm, unsigned long addr);
int rksm_break_cow(struct mm_struct *mm, unsigned long addr);
u64 rksm_zero_page_hash(void);
void rksm_ksm_watch_start(void);
void rksm_ksm_watch_stop(void);
int rksm_ksm_run(void);
void rksm_rmap_put(struct ksm_provider_rmap *r);
struct page *rksm_stable_get(struct ksm_provider_node *node, bool lock, bool *stale);
void rksm_stable_put(struct page *page, bool locked);
bool rksm_stable_detach(struct page *page, bool force);
int rksm_stable_mapcount(struct page *page);
bool rksm_stable_is(const struct ksm_provider_node *node, struct page *page);
bool rksm_page_is_stable(struct page *page);
bool rksm_module_get(void);
void rksm_module_put(void);
unsigned int rksm_memfd_hooks_register(void);
void rksm_memfd_hooks_unregister(void);
int rksm_memfd_hooks_arm(bool on);
void rksm_memfd_log_refusal(int what, unsigned int policy);

/* C-only: shared between the C files, not called from Rust. */
pte_t *rksm_pte_lock(struct mm_struct *mm, unsigned long addr, spinlock_t **ptl);
void rksm_rmap_fill(struct ksm_provider_rmap *r, struct vm_area_struct *vma, unsigned long addr);
struct folio;
void rksm_stable_mark(struct folio *folio, struct ksm_provider_node *node);

#endif /* RKSM_SHIM_H */
