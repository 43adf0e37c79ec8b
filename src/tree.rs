// SPDX-License-Identifier: GPL-2.0

//! The stable and unstable trees: red-black trees keyed by a page's xxh64.
//!
//! The key is the hash alone. Content comparison stays out of `Ord`, because an unstable page
//! can change after it is inserted, which would corrupt a tree ordered by content. Entries
//! that share a hash sit in a short bucket and are told apart by `memcmp` at lookup. A lookup
//! thus costs log n integer compares plus one page compare; KSM pays log n page compares.
//! A stable bucket also holds KSM's "chain": several stable copies of one content once
//! `max_page_sharing` is reached.

use kernel::prelude::*;
use kernel::rbtree::RBTree;

/// A red-black tree of buckets keyed by content hash.
pub(crate) struct HashTree<T> {
    tree: RBTree<u64, KVec<T>>,
    len: usize,
}

impl<T> HashTree<T> {
    pub(crate) fn new() -> Self {
        Self {
            tree: RBTree::new(),
            len: 0,
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The entries with this hash.
    pub(crate) fn bucket(&self, hash: u64) -> &[T] {
        self.tree.get(&hash).map_or(&[], |b| b.as_slice())
    }

    /// The entries with this hash, mutable.
    pub(crate) fn bucket_mut(&mut self, hash: u64) -> &mut [T] {
        self.tree
            .get_mut(&hash)
            .map_or(&mut [], |b| b.as_mut_slice())
    }

    pub(crate) fn insert(&mut self, hash: u64, entry: T) -> Result {
        match self.tree.get_mut(&hash) {
            Some(bucket) => bucket.push(entry, GFP_KERNEL)?,
            None => {
                let mut bucket = KVec::with_capacity(1, GFP_KERNEL)?;
                bucket.push(entry, GFP_KERNEL)?;
                self.tree.try_create_and_insert(hash, bucket, GFP_KERNEL)?;
            }
        }
        self.len += 1;
        Ok(())
    }

    /// Removes and returns entry `i` of the bucket for `hash`.
    pub(crate) fn remove(&mut self, hash: u64, i: usize) -> Option<T> {
        let bucket = self.tree.get_mut(&hash)?;
        let entry = bucket.remove(i).ok()?;
        if bucket.is_empty() {
            self.tree.remove(&hash);
        }
        self.len -= 1;
        Some(entry)
    }

    /// Removes every entry for which `keep` is false, handing it to `gone`.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&mut T) -> bool, mut gone: impl FnMut(T)) {
        let mut emptied = 0;
        for bucket in self.tree.values_mut() {
            let mut i = 0;
            while let Some(entry) = bucket.get_mut(i) {
                if keep(entry) {
                    i += 1;
                    continue;
                }
                let Ok(entry) = bucket.remove(i) else {
                    break;
                };
                self.len -= 1;
                gone(entry);
            }
            emptied += usize::from(bucket.is_empty());
        }
        // Drop empty buckets. Without memory for the list they stay: an empty bucket is
        // harmless, lookups just find nothing in it.
        let Ok(mut keys) = KVec::<u64>::with_capacity(emptied, GFP_KERNEL) else {
            return;
        };
        for (key, bucket) in self.tree.iter() {
            if bucket.is_empty() {
                let _ = keys.push_within_capacity(*key);
            }
        }
        for key in keys.iter() {
            self.tree.remove(key);
        }
    }

    /// Every bucket.
    pub(crate) fn buckets(&self) -> impl Iterator<Item = &[T]> {
        self.tree.values().map(|b| b.as_slice())
    }

    /// Removes everything.
    pub(crate) fn clear(&mut self) {
        self.tree = RBTree::new();
        self.len = 0;
    }
}
