// SPDX-License-Identifier: GPL-2.0
/*
 * rksm C glue: Stable pages: the private shmem file they live in, and the module
 * reference that keeps it loaded while any exists.
 * Only what Rust cannot reach (static inlines, macros, the PTE critical
 * section). Declarations for Rust: shim.h and ffi.rs.
 */
#include <linux/mm.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/shmem_fs.h>

#include "shim.h"

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
