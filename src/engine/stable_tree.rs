// SPDX-License-Identifier: GPL-2.0

//! The stable tree: every stable page, in a red-black tree keyed by its tree key (the keyed
//! content hash combined with the merge domain, `merge_policy::tree_key`).
//!
//! Pages that share a hash sit in one bucket, sorted by content (`memcmp`). Stable pages are
//! read-only, so their order never changes. A lookup costs O(log n) integer compares to find
//! the bucket, then O(log b) page compares inside it: even a bucket of b distinct pages with one
//! hash (which a per-boot secret key makes impossible to craft) costs log b compares, not b.
//! Identical pages are adjacent in a bucket: KSM's "chain" of copies, made once a copy reaches
//! `max_page_sharing` mappings.

use core::cmp::Ordering;

use kernel::alloc::kvec::InsertError;
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};

use super::slots::Loc;
use crate::page::PageRef;
use crate::stable::StablePage;

/// How many copies of one content a lookup looks at for room, newest first. Copies deeper in a
/// chain get room back only through copy-on-write and munmap; a bound keeps a long chain (a
/// tenant with very many identical pages) from costing a lookup more than a constant.
const CHAIN_LOOKS: usize = 4;

/// How many copies of one content a lookup for a given stable page checks (newest first).
const ADOPT_LOOKS: usize = 64;

/// A stable page in the stable tree.
///
/// # Invariants
///
/// `rmap[i]` is the place of the page's reverse-map entry `i`, or `rmap` is shorter than the
/// entries. Merges make room for their record before they map the page, so the records are
/// incomplete only for a mapping above 4 PiB (no [`Loc`]); then neither they nor the page's
/// entries are pruned until the page goes, which the mapping count keeps correct.
pub(crate) struct StableNode {
    pub(crate) page: StablePage,
    /// Where rksm merged into it, one per reverse-map entry of the page. They go stale (COW,
    /// munmap, mremap) and miss what forks copied, so they are re-checked before use, pruned
    /// at each full scan once they outnumber the mappings, and the mapcount stays the ground
    /// truth.
    pub(crate) rmap: KVVec<Loc>,
}

impl StableNode {
    /// Records a merge into this page, made at `loc` (its reverse-map entry is the last).
    /// The caller made room for it before the merge.
    pub(crate) fn add_mapping(&mut self, loc: Loc) {
        if self.rmap.len() + 1 != self.page.entries() {
            return;
        }
        let _ = self.rmap.push_within_capacity(loc);
    }
}

/// The stable tree.
pub(crate) struct StableTree {
    tree: RBTree<u64, KVec<StableNode>>,
}

/// Where a lookup found a stable page: its hash and place in the bucket.
#[derive(Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) hash: u64,
    pub(crate) index: usize,
}

impl StableTree {
    pub(crate) fn new() -> Self {
        Self {
            tree: RBTree::new(),
        }
    }

    /// The range of `bucket` whose pages hold the same bytes as `page`.
    fn equal_range(bucket: &[StableNode], page: &PageRef) -> (usize, usize) {
        if let [only] = bucket {
            // The usual bucket: one page, one compare.
            return match Self::cmp(only, page) {
                Ordering::Less => (1, 1),
                Ordering::Equal => (0, 1),
                Ordering::Greater => (0, 0),
            };
        }
        if let ([first, ..], [.., last]) = (bucket, bucket) {
            // The usual bucket of several pages is a chain: copies of one content, since a
            // secret hash does not collide by accident. Its ends tell, in two compares of
            // equal pages (each a full page long), where a binary search takes 2 log b.
            if Self::cmp(first, page) == Ordering::Equal && Self::cmp(last, page) == Ordering::Equal
            {
                return (0, bucket.len());
            }
        }
        let lo = bucket.partition_point(|n| Self::cmp(n, page) == Ordering::Less);
        let hi = lo
            + bucket
                .get(lo..)
                .unwrap_or(&[])
                .partition_point(|n| Self::cmp(n, page) != Ordering::Greater);
        (lo, hi)
    }

    /// How a node's bytes compare with `page`'s. A page that is gone (freed, swapped out) sorts
    /// first, so it is never found; the next refresh drops it. Until then, in a bucket of several
    /// pages, it can break the order the binary search relies on, and a lookup may miss an equal
    /// page: a merge missed for a pass, never a wrong one (every merge compares the bytes again
    /// under the page-table lock).
    fn cmp(node: &StableNode, page: &PageRef) -> Ordering {
        node.page.cmp_content(page).unwrap_or(Ordering::Less)
    }

    /// A stable page with `page`'s content (and hash) that has room for one more mapping.
    ///
    /// In the usual bucket, one page, its bytes are not compared here: the merge compares them
    /// under the page-table lock anyway, and the key is a secret hash, so a page that merely
    /// shares it is a 2^-64 accident that costs one failed merge. Only a bucket of several
    /// pages is searched by content.
    ///
    /// Returns the stable page too, with a reference, as its mapping count was checked.
    pub(crate) fn find(
        &self,
        hash: u64,
        page: &PageRef,
        max_sharing: u32,
    ) -> Option<(Slot, PageRef)> {
        let bucket = self.tree.get(&hash)?;
        let (lo, hi) = match bucket.as_slice() {
            [_] => (0, 1),
            _ => Self::equal_range(bucket, page),
        };
        (lo..hi).rev().take(CHAIN_LOOKS).find_map(|index| {
            let own = bucket.get(index)?.page.page()?;
            (StablePage::mapcount_of(&own) < max_sharing).then_some((Slot { hash, index }, own))
        })
    }

    /// Where the stable page `page` (a mapping of it, with tree key `hash`) is in the tree. Its
    /// copies are adjacent, found in O(log b) page compares; then at most [`ADOPT_LOOKS`] of
    /// them are checked, so a long chain costs a bounded amount.
    pub(crate) fn find_page(&self, hash: u64, page: &PageRef) -> Option<Slot> {
        let bucket = self.tree.get(&hash)?;
        let (lo, hi) = Self::equal_range(bucket, page);
        (lo..hi)
            .rev()
            .take(ADOPT_LOOKS)
            .find(|&i| bucket.get(i).is_some_and(|n| n.page.is(page)))
            .map(|index| Slot { hash, index })
    }

    pub(crate) fn get(&self, slot: Slot) -> Option<&StableNode> {
        self.tree.get(&slot.hash)?.get(slot.index)
    }

    pub(crate) fn get_mut(&mut self, slot: Slot) -> Option<&mut StableNode> {
        self.tree.get_mut(&slot.hash)?.get_mut(slot.index)
    }

    /// Adds a stable page: last among the pages of its content. Without memory the node comes
    /// back to the caller.
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        node: StableNode,
    ) -> core::result::Result<(), StableNode> {
        match self.tree.get_mut(&hash) {
            Some(bucket) => {
                let Some(page) = node.page.page() else {
                    return Err(node);
                };
                let (_, at) = Self::equal_range(bucket, &page);
                drop(page);
                if bucket.reserve(1, GFP_KERNEL).is_err() {
                    return Err(node);
                }
                bucket
                    .insert_within_capacity(at, node)
                    .map_err(|e| match e {
                        InsertError::IndexOutOfBounds(n) | InsertError::OutOfCapacity(n) => n,
                    })?;
            }
            None => {
                // Both allocations first, so nothing can fail once the node is in the bucket.
                let Ok(reservation) = RBTreeNodeReservation::new(GFP_KERNEL) else {
                    return Err(node);
                };
                let Ok(mut bucket) = KVec::with_capacity(1, GFP_KERNEL) else {
                    return Err(node);
                };
                bucket.push_within_capacity(node).map_err(|e| e.0)?;
                self.tree.insert(reservation.into_node(hash, bucket));
            }
        }
        Ok(())
    }

    /// Removes every stable page for which `keep` is false, handing it to `gone`.
    pub(crate) fn retain(
        &mut self,
        mut keep: impl FnMut(&mut StableNode) -> bool,
        mut gone: impl FnMut(StableNode),
    ) {
        let mut emptied: KVVec<u64> = KVVec::new();
        for (hash, bucket) in self.tree.iter_mut() {
            let mut i = 0;
            while let Some(node) = bucket.get_mut(i) {
                if keep(node) {
                    i += 1;
                    continue;
                }
                let Ok(node) = bucket.remove(i) else {
                    break;
                };
                gone(node);
            }
            if bucket.is_empty() {
                // Without memory an empty bucket stays: harmless, lookups find nothing in it.
                let _ = emptied.push(*hash, GFP_KERNEL);
            }
        }
        for hash in emptied.iter() {
            self.tree.remove(hash);
        }
    }

    /// What the tree takes: a kmalloc-64 node and the buffer per bucket, and each page's node
    /// and reverse map, by capacity.
    pub(crate) fn bytes(&self) -> usize {
        self.tree
            .values()
            .map(|b| {
                64 + b.capacity() * core::mem::size_of::<StableNode>()
                    + b.iter()
                        .map(|n| n.page.bytes() + n.rmap.capacity() * core::mem::size_of::<Loc>())
                        .sum::<usize>()
            })
            .sum()
    }

    /// Every bucket, with its hash.
    pub(crate) fn buckets_with_hash(&self) -> impl Iterator<Item = (u64, &[StableNode])> {
        self.tree.iter().map(|(k, b)| (*k, b.as_slice()))
    }

    /// Every bucket.
    pub(crate) fn buckets(&self) -> impl Iterator<Item = &[StableNode]> {
        self.tree.values().map(|b| b.as_slice())
    }
}
