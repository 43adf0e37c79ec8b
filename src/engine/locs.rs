// SPDX-License-Identifier: GPL-2.0

//! [`Locs`]: where rksm merged into one stable page, one [`Loc`] per reverse-map entry.
//!
//! A stable page starts with two mappings (a pair), and most never get more, so the first two
//! places live in the stable page's tree node; a page that gets a third moves them to a buffer
//! of its own. A pair thereby costs one allocation fewer.

use kernel::prelude::*;

use super::slots::Loc;

/// How many places live inline.
const INLINE: usize = 2;

/// The places of a stable page's mappings.
///
/// # Invariants
///
/// In `Inline`, `len <= INLINE`, and only `locs[..len]` are places.
pub(crate) enum Locs {
    Inline { len: usize, locs: [Loc; INLINE] },
    Heap(KVVec<Loc>),
}

impl Locs {
    /// No places, room for two.
    pub(crate) fn new() -> Self {
        Locs::Inline {
            len: 0,
            locs: [Loc::EMPTY; INLINE],
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub(crate) fn as_slice(&self) -> &[Loc] {
        match self {
            Locs::Inline { len, locs } => locs.get(..*len).unwrap_or(&[]),
            Locs::Heap(v) => v,
        }
    }

    pub(crate) fn iter(&self) -> core::slice::Iter<'_, Loc> {
        self.as_slice().iter()
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Loc> {
        self.as_slice().get(i)
    }

    /// Makes room for `n` more places.
    pub(crate) fn reserve(&mut self, n: usize) -> Result {
        match self {
            Locs::Heap(v) => v.reserve(n, GFP_KERNEL).map_err(|_| ENOMEM),
            Locs::Inline { len, .. } if *len + n <= INLINE => Ok(()),
            Locs::Inline { len, locs } => {
                let mut v = KVVec::with_capacity(2 * (*len + n), GFP_KERNEL)?;
                for &loc in locs.get(..*len).unwrap_or(&[]) {
                    v.push_within_capacity(loc).map_err(|_| ENOMEM)?;
                }
                *self = Locs::Heap(v);
                Ok(())
            }
        }
    }

    /// Adds a place if there is room (see [`Locs::reserve`]); else hands it back.
    pub(crate) fn push_within_capacity(&mut self, loc: Loc) -> core::result::Result<(), Loc> {
        match self {
            Locs::Heap(v) => v.push_within_capacity(loc).map_err(|e| e.0),
            Locs::Inline { len, locs } => {
                let slot = locs.get_mut(*len).ok_or(loc)?;
                *slot = loc;
                *len += 1;
                Ok(())
            }
        }
    }

    /// Keeps the places for which `keep` is true, in order.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Loc) -> bool) {
        match self {
            Locs::Heap(v) => v.retain(|l| keep(l)),
            Locs::Inline { len, locs } => {
                let mut kept = 0;
                for i in 0..*len {
                    let Some(&loc) = locs.get(i) else { break };
                    if keep(&loc) {
                        if let Some(slot) = locs.get_mut(kept) {
                            *slot = loc;
                        }
                        kept += 1;
                    }
                }
                *len = kept;
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.retain(|_| false);
    }

    /// What the places take outside the tree node: the buffer, by capacity.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Locs::Inline { .. } => 0,
            Locs::Heap(v) => v.capacity() * core::mem::size_of::<Loc>(),
        }
    }
}
