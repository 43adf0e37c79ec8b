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
//!
//! The usual bucket holds one page, in the tree node itself. The usual bucket of several pages
//! is a chain, and knows it (its pages were compared as they went in): a lookup there compares
//! no page, as in a bucket of one. The merge compares the bytes under the page-table lock in
//! any case; these lookups only skip compares that could not change the answer.

use core::cmp::Ordering;

use kernel::alloc::kvec::InsertError;
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};

use super::locs::Locs;
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
    pub(crate) rmap: Locs,
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

/// The stable pages of one tree key.
///
/// # Invariants
///
/// `Many::nodes` is sorted by content and, if `chain`, all its pages hold the same bytes.
enum Bucket {
    /// The usual bucket: one page, in the tree node.
    One(StableNode),
    /// Several pages (or none, for a moment, in [`StableTree::retain`]).
    Many {
        nodes: KVec<StableNode>,
        /// Every page holds the same bytes: copies of one content.
        chain: bool,
    },
}

impl Bucket {
    fn nodes(&self) -> &[StableNode] {
        match self {
            Bucket::One(node) => core::slice::from_ref(node),
            Bucket::Many { nodes, .. } => nodes,
        }
    }

    fn nodes_mut(&mut self) -> &mut [StableNode] {
        match self {
            Bucket::One(node) => core::slice::from_mut(node),
            Bucket::Many { nodes, .. } => nodes,
        }
    }

    /// The range of pages that hold the same bytes as `page`: all of them in a chain or a
    /// bucket of one (not compared: see [`StableTree::find`]), else by binary search.
    fn candidates(&self, page: &PageRef) -> (usize, usize) {
        match self {
            Bucket::One(_) => (0, 1),
            Bucket::Many { nodes, chain: true } => (0, nodes.len()),
            Bucket::Many {
                nodes,
                chain: false,
            } => StableTree::equal_range(nodes, page),
        }
    }

    /// What the bucket takes besides its tree node: the buffer of several pages.
    fn buffer_bytes(&self) -> usize {
        match self {
            Bucket::One(_) => 0,
            Bucket::Many { nodes, .. } => nodes.capacity() * core::mem::size_of::<StableNode>(),
        }
    }
}

/// What one tree node takes: kmalloc's size class for the rb_node links, the key and a
/// [`Bucket`] (kmalloc-128 on 64-bit).
const NODE_BYTES: usize = {
    let size = 3 * core::mem::size_of::<usize>()
        + core::mem::size_of::<u64>()
        + core::mem::size_of::<Bucket>();
    if size <= 96 && size > 64 {
        96
    } else if size <= 192 && size > 128 {
        192
    } else {
        size.next_power_of_two()
    }
};

/// The stable tree.
pub(crate) struct StableTree {
    tree: RBTree<u64, Bucket>,
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

    /// The range of `bucket` (sorted by content) whose pages hold the same bytes as `page`:
    /// O(log b) page compares.
    fn equal_range(bucket: &[StableNode], page: &PageRef) -> (usize, usize) {
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
    /// In the usual bucket, one page or a chain of copies, no bytes are compared here: the
    /// merge compares them under the page-table lock anyway, and the key is a secret hash, so
    /// a page that merely shares it is a 2^-64 accident that costs one failed merge. Only a
    /// bucket of several contents is searched by content.
    ///
    /// Returns the stable page too, with a reference, as its mapping count was checked.
    pub(crate) fn find(
        &self,
        hash: u64,
        page: &PageRef,
        max_sharing: u32,
    ) -> Option<(Slot, PageRef)> {
        let bucket = self.tree.get(&hash)?;
        let nodes = bucket.nodes();
        let (lo, hi) = bucket.candidates(page);
        (lo..hi).rev().take(CHAIN_LOOKS).find_map(|index| {
            let own = nodes.get(index)?.page.page()?;
            (StablePage::mapcount_of(&own) < max_sharing).then_some((Slot { hash, index }, own))
        })
    }

    /// Where the stable page `page` (a mapping of it, with tree key `hash`) is in the tree. Its
    /// copies are adjacent (a chain, or found in O(log b) page compares); then at most
    /// [`ADOPT_LOOKS`] of them are checked, so a long chain costs a bounded amount.
    pub(crate) fn find_page(&self, hash: u64, page: &PageRef) -> Option<Slot> {
        let bucket = self.tree.get(&hash)?;
        let nodes = bucket.nodes();
        let (lo, hi) = bucket.candidates(page);
        (lo..hi)
            .rev()
            .take(ADOPT_LOOKS)
            .find(|&i| nodes.get(i).is_some_and(|n| n.page.is(page)))
            .map(|index| Slot { hash, index })
    }

    pub(crate) fn get(&self, slot: Slot) -> Option<&StableNode> {
        self.tree.get(&slot.hash)?.nodes().get(slot.index)
    }

    pub(crate) fn get_mut(&mut self, slot: Slot) -> Option<&mut StableNode> {
        self.tree
            .get_mut(&slot.hash)?
            .nodes_mut()
            .get_mut(slot.index)
    }

    /// Adds a stable page: last among the pages of its content. Without memory the node comes
    /// back to the caller.
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        node: StableNode,
    ) -> core::result::Result<(), StableNode> {
        let Some(bucket) = self.tree.get_mut(&hash) else {
            return match RBTreeNodeReservation::new(GFP_KERNEL) {
                Ok(reservation) => {
                    self.tree
                        .insert(reservation.into_node(hash, Bucket::One(node)));
                    Ok(())
                }
                Err(_) => Err(node),
            };
        };
        let Some(page) = node.page.page() else {
            return Err(node);
        };
        // Compared as it goes in, so that lookups need not compare.
        let (lo, at) = Self::equal_range(bucket.nodes(), &page);
        drop(page);
        let same = lo == 0 && at == bucket.nodes().len();
        match bucket {
            Bucket::Many { nodes, chain } => {
                if nodes.reserve(1, GFP_KERNEL).is_err() {
                    return Err(node);
                }
                nodes
                    .insert_within_capacity(at, node)
                    .map_err(|e| match e {
                        InsertError::IndexOutOfBounds(n) | InsertError::OutOfCapacity(n) => n,
                    })?;
                *chain &= same;
            }
            Bucket::One(_) => {
                let Ok(mut nodes) = KVec::with_capacity(2, GFP_KERNEL) else {
                    return Err(node);
                };
                let Bucket::One(first) = core::mem::replace(
                    bucket,
                    Bucket::Many {
                        nodes: KVec::new(),
                        chain: same,
                    },
                ) else {
                    return Err(node);
                };
                // Cannot fail: room for two was made above.
                let (a, b) = if at == 0 {
                    (node, first)
                } else {
                    (first, node)
                };
                let _ = nodes.push_within_capacity(a);
                let _ = nodes.push_within_capacity(b);
                *bucket = Bucket::Many { nodes, chain: same };
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
            let empty = match bucket {
                Bucket::One(node) => !keep(node),
                Bucket::Many { nodes, .. } => {
                    // A chain stays a chain; a bucket of several contents stays searched by
                    // content even if one is left.
                    let mut i = 0;
                    while let Some(node) = nodes.get_mut(i) {
                        if keep(node) {
                            i += 1;
                            continue;
                        }
                        let Ok(node) = nodes.remove(i) else {
                            break;
                        };
                        gone(node);
                    }
                    nodes.is_empty()
                }
            };
            if empty {
                // Without memory an empty bucket stays: harmless, lookups find nothing in it
                // (and a bucket of one is then kept whole, with its page).
                let _ = emptied.push(*hash, GFP_KERNEL);
            }
        }
        for hash in emptied.iter() {
            if let Some(Bucket::One(node)) = self.tree.remove(hash) {
                gone(node);
            }
        }
    }

    /// What the tree takes: a tree node per bucket and the buffer of a bucket of several, and
    /// each page's node and reverse map, by capacity.
    pub(crate) fn bytes(&self) -> usize {
        self.tree
            .values()
            .map(|b| {
                NODE_BYTES
                    + b.buffer_bytes()
                    + b.nodes()
                        .iter()
                        .map(|n| n.page.bytes() + n.rmap.heap_bytes())
                        .sum::<usize>()
            })
            .sum()
    }

    /// Every bucket, with its hash.
    pub(crate) fn buckets_with_hash(&self) -> impl Iterator<Item = (u64, &[StableNode])> {
        self.tree.iter().map(|(k, b)| (*k, b.nodes()))
    }

    /// Every bucket.
    pub(crate) fn buckets(&self) -> impl Iterator<Item = &[StableNode]> {
        self.tree.values().map(|b| b.nodes())
    }
}
