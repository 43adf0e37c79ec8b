// SPDX-License-Identifier: GPL-2.0
/*
 * rksm C glue: Page contents (the keyed hash, compares) and folio references.
 * Only what Rust cannot reach (static inlines, macros, the PTE critical
 * section). Declarations for Rust: shim.h and ffi.rs.
 */
#include <linux/mm.h>
#include <linux/folio_batch.h>
#include <linux/highmem.h>
#include <linux/random.h>
#include <linux/swap.h>
#include <linux/xxhash.h>

#include "shim.h"

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

/*
 * Whether two pages hold the same bytes, or a page only zeros. An equality
 * test needs no order, so these read 64 bytes per step and branch once per
 * step, where memcmp() (the generic one x86-64 uses) branches on every word
 * and memchr_inv() on every word too. Every merge compares equal pages in
 * full, once or twice: in the bench VM memcmp() took about 4 us a page, more
 * than hashing it (docs/design.md, "Comparing pages").
 */
static bool rksm_words_equal(const u64 *x, const u64 *y)
{
	unsigned int i;

	for (i = 0; i < PAGE_SIZE / sizeof(u64); i += 8) {
		u64 d = (x[i] ^ y[i]) | (x[i + 1] ^ y[i + 1]) |
			(x[i + 2] ^ y[i + 2]) | (x[i + 3] ^ y[i + 3]) |
			(x[i + 4] ^ y[i + 4]) | (x[i + 5] ^ y[i + 5]) |
			(x[i + 6] ^ y[i + 6]) | (x[i + 7] ^ y[i + 7]);

		if (d)
			return false;
	}
	return true;
}

static bool rksm_words_zero(const u64 *x)
{
	unsigned int i;

	for (i = 0; i < PAGE_SIZE / sizeof(u64); i += 8) {
		if (x[i] | x[i + 1] | x[i + 2] | x[i + 3] |
		    x[i + 4] | x[i + 5] | x[i + 6] | x[i + 7])
			return false;
	}
	return true;
}

bool rksm_page_is_zero(struct page *page)
{
	void *p = kmap_local_page(page);
	bool zero = rksm_words_zero(p);

	kunmap_local(p);
	return zero;
}

bool rksm_pages_equal(struct page *a, struct page *b)
{
	void *pa = kmap_local_page(a);
	void *pb = kmap_local_page(b);
	bool eq = rksm_words_equal(pa, pb);

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

/*
 * Drop a reference on each of @nr folios as one batch: the pages rksm merged
 * away, whose last reference is usually the walk's. folios_put() frees them
 * together (one memcg uncharge, one trip to the per-CPU free lists), where a
 * folio_put() each frees them one by one.
 */
void rksm_folios_put(struct folio **folios, unsigned int nr)
{
	struct folio_batch fbatch;
	unsigned int i;

	folio_batch_init(&fbatch);
	for (i = 0; i < nr; i++) {
		/* Full: put these (which empties the batch) and go on. */
		if (!folio_batch_add(&fbatch, folios[i]))
			folios_put(&fbatch);
	}
	if (folio_batch_count(&fbatch))
		folios_put(&fbatch);
}

void rksm_lru_add_drain_all(void)
{
	lru_add_drain_all();
}

u64 rksm_zero_page_hash(void)
{
	return rksm_page_hash(ZERO_PAGE(0));
}
