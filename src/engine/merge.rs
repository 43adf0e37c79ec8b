// SPDX-License-Identifier: GPL-2.0

//! The merge decision for one page, in KSM's order (the zero page, the stable tree, then the
//! unstable tree), and the merges themselves. Before it is hashed again, a page seen at the
//! last pass is tried against the stable tree by the hash it had then
//! ([`Engine::merge_by_last_hash`]).

use kernel::mm::virt::VmaRef;

use super::locs::Locs;
use super::pass::{Record, IN_UNSTABLE, STABLE_MERGED, ZERO_MERGED};
use super::slots::{Loc, MmTable, Tag};
use super::stable_tree::StableNode;
use super::unstable_tree::{Entry, SAME_HASH};
use super::Engine;
use crate::knobs::Snapshot;
use crate::merge_policy;
use crate::mm::{self, Locked, MergeError};
use crate::page::PageRef;
use crate::stable::StablePage;
use crate::stats::{self, Stat};

/// What a visit knew of a page before it hashed it.
pub(super) struct Last {
    /// The page's record from its last visit.
    pub(super) prev: Option<Record>,
    /// What the lookup by the last visit's hash ([`Engine::merge_by_last_hash`]) found.
    pub(super) by_last_hash: ByLastHash,
}

/// How a merge by the last visit's hash ended.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ByLastHash {
    /// Not tried (no such hash, or not a page for the stable tree).
    NotTried,
    /// No stable page has that hash: a page that still hashes so need not look again.
    NotFound,
    /// Merged.
    Merged,
    /// A stable page with room was found, and the merge failed for this reason.
    Failed(MergeError),
}

impl Engine {
    /// What becomes of an anonymous page with content hash `hash`, under the merge rules of
    /// `knobs.policy`; returns the record flags.
    pub(super) fn try_merge(
        &mut self,
        tag: Tag,
        addr: usize,
        page: &PageRef,
        hash: u64,
        last: Last,
        knobs: &Snapshot,
    ) -> u32 {
        let Last { prev, by_last_hash } = last;
        // Looked up already: found nothing by this very hash, or found a stable page it could
        // not merge into now (pinned, contended), which a second try would not change.
        let stable_done = match by_last_hash {
            ByLastHash::NotFound => prev.is_some_and(|r| r.hash == hash),
            ByLastHash::Failed(e) => e != MergeError::Changed,
            ByLastHash::NotTried | ByLastHash::Merged => false,
        };
        let zero_only = knobs.policy.zero_pages_only;
        if (knobs.use_zero_pages || zero_only) && hash == self.zero_hash && page.is_zero() {
            let merged = merge_in(&self.mms, self.policy.merge_exec, tag, addr, |_, vma| {
                mm::zero_page(vma, addr, page)
            })
            .is_ok();
            return if merged { ZERO_MERGED } else { 0 };
        }
        if zero_only {
            return 0;
        }
        let Some(key) = self.tree_key(tag, hash, knobs) else {
            return 0;
        };
        let loc = Loc::new(tag, addr);
        if !stable_done
            && self.merge_into_stable(tag, addr, loc, page, key, knobs.max_page_sharing)
                == Some(Ok(()))
        {
            return STABLE_MERGED;
        }
        if !page.pinned() {
            // A failed merge into a stable page split its THP: the next pass finds it again.
            return 0;
        }
        if prev.is_none_or(|r| r.hash != hash) {
            // New or volatile: wait a pass, so pages rewritten all the time are never merged.
            return 0;
        }
        let Some(loc) = loc else {
            return 0;
        };
        // A page of a THP goes the same way: the merge splits the THP only once a twin exists,
        // as in KSM.
        if self.merge_with_unstable(loc, page, key) {
            return STABLE_MERGED;
        }
        match self.unstable.insert(Entry { hash: key, loc }) {
            Ok(()) => IN_UNSTABLE,
            // No memory, or too many pages of this hash waiting: try again next pass.
            Err(_) => 0,
        }
    }

    /// Merges a page into a stable page found by the hash it had at its last visit, `prev`,
    /// without hashing it again. If the merge takes it, its bytes equal the stable page's
    /// (compared under the page-table lock), whose hash is its key: the page still hashes as
    /// it did, so it held still, and hashing it would only have found the same stable page.
    /// A page that changed since fails this merge (`merge_fail_changed`), once per visit, and
    /// goes the usual way.
    ///
    /// Pages merge in pairs through the unstable tree only once hashed again: a twin found by
    /// an old hash could have changed as the page did, and the new stable page would then go
    /// into the tree under a hash that is not its own.
    pub(super) fn merge_by_last_hash(
        &mut self,
        tag: Tag,
        addr: usize,
        page: &PageRef,
        prev: Record,
        knobs: &Snapshot,
    ) -> ByLastHash {
        let zero_only = knobs.policy.zero_pages_only;
        if zero_only || prev.merged() || prev.hash == 0 {
            return ByLastHash::NotTried;
        }
        if knobs.use_zero_pages && prev.hash == self.zero_hash {
            // The zero page's way: checked, and merged into the zero page.
            return ByLastHash::NotTried;
        }
        let Some(key) = self.tree_key(tag, prev.hash, knobs) else {
            return ByLastHash::NotTried;
        };
        let loc = Loc::new(tag, addr);
        match self.merge_into_stable(tag, addr, loc, page, key, knobs.max_page_sharing) {
            None => ByLastHash::NotFound,
            Some(Ok(())) => ByLastHash::Merged,
            Some(Err(e)) => ByLastHash::Failed(e),
        }
    }

    /// Merges into a stable page of the same content that has room (`max_page_sharing`).
    /// `None` if there is none.
    fn merge_into_stable(
        &mut self,
        tag: Tag,
        addr: usize,
        loc: Option<Loc>,
        page: &PageRef,
        hash: u64,
        max_sharing: u32,
    ) -> Option<core::result::Result<(), MergeError>> {
        let (slot, own) = self.stable.find(hash, page, max_sharing)?;
        let merge_exec = self.policy.merge_exec;
        let node = self.stable.get_mut(slot)?;
        // Room for both records first, so that a merge is never left without one.
        if !node.page.make_room() || node.rmap.reserve(1).is_err() {
            return Some(Err(MergeError::NoRoom));
        }
        let merged = merge_in(&self.mms, merge_exec, tag, addr, |_, vma| {
            node.page.merge(vma, addr, page, &own)
        });
        if merged.is_ok() {
            stats::add(Stat::PagesSharing, 1);
            if let Some(loc) = loc {
                node.add_mapping(loc);
            }
        }
        Some(merged)
    }

    /// `page`, mapped at `addr` of the mm tagged `tag`, is a stable page that rksm did not
    /// map there (a fork copied the mapping): records the mapping, so that reverse-map walks
    /// still find it once the mapping it was copied from is gone. Best effort: a mapping not
    /// recorded only stays out of those walks (reclaim and migration then skip the page).
    pub(super) fn adopt(&mut self, tag: Tag, addr: usize, page: &PageRef, knobs: &Snapshot) {
        let (Some(loc), Some(key)) = (Loc::new(tag, addr), self.tree_key(tag, page.hash(), knobs))
        else {
            return;
        };
        let Some(slot) = self.stable.find_page(key, page) else {
            return;
        };
        let merge_exec = self.policy.merge_exec;
        let Some(node) = self.stable.get_mut(slot) else {
            return;
        };
        if node.rmap.len() != node.page.entries() || node.rmap.reserve(1).is_err() {
            return;
        }
        // Not a merge: a failure is `Gone`, which no merge counter counts.
        let adopted = merge_in(&self.mms, merge_exec, tag, addr, |_, vma| {
            if node.page.adopt(vma, addr) {
                Ok(false)
            } else {
                Err(MergeError::Gone)
            }
        });
        if adopted.is_ok() {
            node.add_mapping(loc);
        }
    }

    /// The key of content hash `hash` in the trees for the mm tagged `tag`. The trees know a
    /// page by its content and its merge domain: another domain's pages of the same content
    /// never share its key, so they are never even compared with it.
    fn tree_key(&self, tag: Tag, hash: u64, knobs: &Snapshot) -> Option<u64> {
        let owner = self.mms.get(tag)?.owner;
        Some(merge_policy::tree_key(
            hash,
            merge_policy::domain(knobs.policy.domains, owner),
        ))
    }

    /// Looks for a twin in the unstable tree; if one is found, both become mappings of a new
    /// stable page. An entry of this hash whose bytes differ is a page that changed after it
    /// went in (the hash key is secret): it leaves the tree, so each entry costs at most one
    /// compare before it is gone, and a lookup at most [`SAME_HASH`].
    fn merge_with_unstable(&mut self, loc: Loc, page: &PageRef, hash: u64) -> bool {
        for _ in 0..SAME_HASH {
            if !page.pinned() {
                return false;
            }
            let Some(entry) = self
                .unstable
                .find(hash)
                .iter()
                .find(|e| e.loc != loc)
                .copied()
            else {
                return false;
            };
            // Merging, changed, or gone (unmapped, not mergeable any more): out of the tree.
            self.unstable.remove(entry);
            let merged = match self.pair_at_twin(hash, entry.loc, (loc, page)) {
                Twin::Merged => true,
                Twin::Failed => false,
                Twin::Differs => {
                    self.leave_unstable(entry.loc, false);
                    continue;
                }
                Twin::Other(other) => self.merge_pair(loc, page, entry.loc, other, hash),
            };
            self.leave_unstable(entry.loc, merged);
            return merged;
        }
        false
    }

    /// The usual pair: under one hold of its mm's lock, finds the twin at `twin_loc`, compares
    /// it with `second`'s page and makes it the stable page in place; then maps that in place
    /// of `second`'s page. Two mmap lock holds, where finding the twin first and then making
    /// `second`'s page stable takes three. [`Twin::Other`] hands the twin back when it cannot
    /// be the stable page: a fork shares it, or it shares a THP with `second`'s page.
    fn pair_at_twin(&mut self, hash: u64, twin_loc: Loc, second: (Loc, &PageRef)) -> Twin {
        let (loc, page) = second;
        let Ok(mut stable) = StablePage::new() else {
            return Twin::Failed;
        };
        let mut rmap = Locs::new();
        let (twin_tag, twin_addr) = (twin_loc.tag(), twin_loc.addr());
        let mut outcome = Twin::Differs;
        let made = merge_in(
            &self.mms,
            self.policy.merge_exec,
            twin_tag,
            twin_addr,
            |locked, vma| {
                let twin = locked
                    .anon_page_at(twin_addr)
                    .filter(|t| t.same_content(page))
                    .ok_or(MergeError::Gone)?;
                if twin.same_folio(page) {
                    outcome = Twin::Other(twin);
                    return Err(MergeError::Shared);
                }
                let made = stable.make(vma, twin_addr, &twin);
                if made == Err(MergeError::Shared) {
                    outcome = Twin::Other(twin);
                } else if made.is_err() {
                    outcome = Twin::Failed;
                }
                made
            },
        );
        if made.is_err() {
            return outcome;
        }
        let _ = rmap.push_within_capacity(twin_loc);
        let merge_exec = self.policy.merge_exec;
        let own = stable.page();
        let merged = own.as_ref().is_some_and(|own| {
            merge_in(&self.mms, merge_exec, loc.tag(), loc.addr(), |_, vma| {
                stable.merge(vma, loc.addr(), page, own)
            })
            .is_ok()
        });
        if !merged {
            drop(own);
            // Undone: the twin gets a private page again, and the stable page goes with it.
            self.unmerge_at(twin_tag, twin_addr);
            if !stable.try_detach(false) {
                self.insert_stable(hash, stable, rmap, None);
            }
            return Twin::Failed;
        }
        let _ = rmap.push_within_capacity(loc);
        self.insert_stable(hash, stable, rmap, own.as_ref());
        Twin::Merged
    }

    /// The page at `loc` left the unstable tree: its record no longer counts in
    /// `pages_unshared`, and records the merge if it `merged` (else its next visit would take
    /// the stable page for one a fork copied).
    fn leave_unstable(&mut self, loc: Loc, merged: bool) {
        if let Some(slot) = self.mms.get_mut(loc.tag()) {
            if slot.pass.leave_unstable(loc.addr(), merged) {
                stats::add(Stat::PagesUnshared, -1);
            }
        }
    }

    /// Merges `page` and its twin `other` into one stable page, as KSM's
    /// try_to_merge_two_pages does: `page` becomes the stable page in place, unless a fork
    /// shares it with other processes (they did not ask for merging), and then `other` does.
    fn merge_pair(
        &mut self,
        loc: Loc,
        page: &PageRef,
        other_loc: Loc,
        other: PageRef,
        hash: u64,
    ) -> bool {
        // Twins inside one THP: making the first stable splits it, which needs our reference
        // on it to be the only extra one. Let the second go, and find it again after the split.
        let other = if page.same_folio(&other) {
            drop(other);
            None
        } else {
            Some(other)
        };
        match self.pair(hash, (loc, page), (other_loc, other.as_ref())) {
            Ok(()) => true,
            // The first attempt may have split `page`'s THP (`pair` checks `pinned`).
            Err(MergeError::Shared) => other
                .as_ref()
                .is_some_and(|o| self.pair(hash, (other_loc, o), (loc, Some(page))).is_ok()),
            Err(_) => false,
        }
    }

    /// Makes `first`'s page a stable page in place and maps it in place of `second`'s too (found
    /// again at its place if `None`). If the second merge fails, the first is undone.
    /// `Err(MergeError::Shared)`: nothing was done, the first page is shared by a fork.
    fn pair(
        &mut self,
        hash: u64,
        first: (Loc, &PageRef),
        second: (Loc, Option<&PageRef>),
    ) -> core::result::Result<(), MergeError> {
        let (loc, page) = first;
        let (other_loc, other) = second;
        let (tag, addr) = (loc.tag(), loc.addr());
        let (other_tag, other_addr) = (other_loc.tag(), other_loc.addr());
        let mut stable = StablePage::new().map_err(|_| MergeError::Gone)?;
        // The records' room first, so that a merge is never left without its record.
        let mut rmap = Locs::new();
        let merge_exec = self.policy.merge_exec;
        merge_in(&self.mms, merge_exec, tag, addr, |_, vma| {
            stable.make(vma, addr, page)
        })?;
        let found;
        let other = match other {
            Some(o) => Some(o),
            None => {
                found = self.page_at(other_tag, other_addr);
                found.as_ref()
            }
        };
        let merged = stable.page().is_some_and(|own| {
            other.is_some_and(|o| {
                merge_in(&self.mms, merge_exec, other_tag, other_addr, |_, vma| {
                    stable.merge(vma, other_addr, o, &own)
                })
                .is_ok()
            })
        });
        if !merged {
            self.unmerge_at(tag, addr);
            if !stable.try_detach(false) {
                // Still mapped (the undo failed): keep it as a stable page after all.
                let _ = rmap.push_within_capacity(loc);
                self.insert_stable(hash, stable, rmap, None);
            }
            return Err(MergeError::Gone);
        }
        let _ = rmap.push_within_capacity(loc);
        let _ = rmap.push_within_capacity(other_loc);
        self.insert_stable(hash, stable, rmap, None);
        Ok(())
    }

    /// Adds a new stable page with the records of its mappings, `rmap`.
    /// `own` is the page, if the caller holds it ([`StablePage::page`]): its mappings are
    /// counted without finding it again.
    fn insert_stable(
        &mut self,
        hash: u64,
        page: StablePage,
        mut rmap: Locs,
        own: Option<&PageRef>,
    ) {
        if rmap.len() != page.entries() {
            // Cannot happen (one record per entry, room made first); if it did, the records
            // would be incomplete, which StableNode allows.
            rmap.clear();
        }
        let mappings = own
            .map(StablePage::mapcount_of)
            .or_else(|| page.mapcount())
            .unwrap_or(0);
        let mappings = i64::from(mappings);
        match self.stable.insert(hash, StableNode { page, rmap }) {
            Ok(()) => {
                stats::add(Stat::PagesShared, 1);
                stats::add(Stat::PagesSharing, mappings - 1);
            }
            Err(node) => {
                // Out of memory for the tree (or the page is gone already): dropping the node
                // lets the page go if nothing maps it, and leaks the node if something does.
                // Those mappings stay merged until written or unmapped; run=2's sweep, which
                // looks for any stable page's mappings, breaks them too.
                drop(node);
            }
        }
    }

    /// The anonymous page at `addr` of the mm tagged `tag`, with a reference.
    pub(super) fn page_at(&self, tag: Tag, addr: usize) -> Option<PageRef> {
        let user = self.mms.get(tag)?.mm.mmget_not_zero()?;
        let locked = Locked::new(&user);
        locked.mergeable_vma(addr, self.policy.merge_exec)?;
        locked.anon_page_at(addr)
    }

    /// Breaks the merge at `addr` of the mm tagged `tag`.
    pub(super) fn unmerge_at(&self, tag: Tag, addr: usize) {
        if let Some(user) = self.mms.get(tag).and_then(|s| s.mm.mmget_not_zero()) {
            let _ = Locked::new(&user).break_cow(addr);
        }
    }
}

/// Runs the merge `op` on the mergeable VMA at `addr` of the mm tagged `tag`, under its mmap
/// lock (which `op` gets too, to look at other addresses). Counts why not, if not.
fn merge_in(
    mms: &MmTable,
    merge_exec: bool,
    tag: Tag,
    addr: usize,
    op: impl FnOnce(&Locked<'_>, &VmaRef) -> core::result::Result<bool, MergeError>,
) -> core::result::Result<(), MergeError> {
    let user = mms
        .get(tag)
        .and_then(|s| s.mm.mmget_not_zero())
        .ok_or(MergeError::Gone)?;
    let locked = Locked::new(&user);
    let vma = locked
        .mergeable_vma(addr, merge_exec)
        .ok_or(MergeError::Gone)?;
    let err = match op(&locked, vma) {
        Ok(split) => {
            if split {
                stats::add(Stat::ThpSplit, 1);
            }
            return Ok(());
        }
        Err(e) => e,
    };
    let reason = match err {
        MergeError::Pinned => Stat::MergeFailPinned,
        MergeError::Changed => Stat::MergeFailChanged,
        MergeError::Contended | MergeError::NoRoom => Stat::MergeFailContended,
        MergeError::Gone | MergeError::Large | MergeError::Shared => return Err(err),
    };
    stats::add(reason, 1);
    Err(err)
}

/// How [`Engine::pair_at_twin`] ended.
enum Twin {
    /// Both pages map the new stable page.
    Merged,
    /// The twin is gone or its bytes differ: the next entry of the hash may be the one.
    Differs,
    /// The pages are twins but did not merge (pinned, contended, no memory).
    Failed,
    /// The twin cannot be the stable page; here it is, for the other order.
    Other(PageRef),
}
