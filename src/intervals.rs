// SPDX-License-Identifier: GPL-2.0

//! The interval record of a scan pass: which address ranges of one mm the
//! current pass has already covered.
//!
//! The scanner walks each mm's mergeable VMAs a budget of pages per round,
//! round-robin across mms. Between rounds the mm may map and unmap memory, so a
//! plain cursor is not enough: a pass must resume exactly where it stopped,
//! never scan a range twice, and forget ranges that were unmapped. [`Covered`]
//! records the covered ranges and [`next_to_scan`] picks where to go next.
//!
//! Scanning a range twice in a pass is the error to avoid (it double-counts
//! pages and wastes the budget); skipping a range only delays it to the next
//! pass. So whenever the fixed-size record cannot be exact, it errs on the side
//! of "covered". This file needs no kernel (no `alloc` either): the host
//! workspace tests it against a naive model (`cargo test`).

/// Number of disjoint ranges a [`Covered`] holds before it coarsens.
pub(crate) const CAPACITY: usize = 32;

/// A non-empty half-open address range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    const fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
}

/// The covered address ranges of one mm in the current pass, in at most `N`
/// half-open ranges stored inline (no allocation).
///
/// When recording a range would need more than `N` ranges, the two neighbouring
/// ranges with the smallest gap between them are merged, the gap counting as
/// covered. This may skip that gap until the next pass, but never makes the
/// scanner visit anything twice. Likewise, forgetting a range never drops
/// coverage of addresses outside it: if punching the hole would need a range
/// too many, the hole (or a smaller gap elsewhere) stays covered.
///
/// # Invariants
///
/// - `N >= 1` and `len <= N`.
/// - `spans[..len]` is sorted, disjoint, non-adjacent (touching ranges are
///   merged) and every range in it is non-empty.
#[derive(Clone, Debug)]
pub(crate) struct Covered<const N: usize = CAPACITY> {
    spans: [Span; N],
    len: usize,
}

impl<const N: usize> Covered<N> {
    /// An empty record; `const` so it can initialise statics and fields.
    pub(crate) const fn new() -> Self {
        // With no room at all, `insert` could not keep what was scanned.
        const { assert!(N > 0) };
        Covered {
            spans: [Span::new(0, 0); N],
            len: 0,
        }
    }

    /// Forgets everything: a new pass starts.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Whether nothing is covered.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `addr` is covered.
    #[cfg(test)]
    pub(crate) fn contains(&self, addr: usize) -> bool {
        self.after(addr).is_some_and(|s| s.start <= addr)
    }

    /// The covered ranges as `(start, end)`, ascending, disjoint, non-adjacent.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.spans().iter().map(|s| (s.start, s.end))
    }

    /// Marks `[start, end)` covered; an empty range is ignored.
    ///
    /// Merges it with every range it overlaps or touches. If it needs a range of
    /// its own and the record is full, whichever neighbouring pair (the new
    /// range included) has the smallest gap is merged first.
    pub(crate) fn insert(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        // Each step either finishes or merges two ranges, so this ends.
        loop {
            // `i..j` are the ranges that overlap or touch `[start, end)`.
            let i = self.spans().partition_point(|s| s.end < start);
            let j = self.spans().partition_point(|s| s.start <= end);
            if i < j {
                if let (Some(first), Some(last)) = (self.get(i), self.get(j - 1)) {
                    let merged = Span::new(first.start.min(start), last.end.max(end));
                    self.set(i, merged);
                    self.remove_spans(i + 1, j);
                    return;
                }
            }
            if self.insert_at(i, Span::new(start, end)) {
                return;
            }
            // Full: cover the smallest gap. Gaps next to the new range win ties,
            // as growing a neighbour moves nothing. Neither neighbour touches it.
            let left = i.checked_sub(1).and_then(|k| Some((k, self.get(k)?)));
            let right = self.get(i);
            let pair = self.closest_pair();
            if let Some((k, s)) = left {
                let gap = start.saturating_sub(s.end);
                if right.is_none_or(|r| gap <= r.start.saturating_sub(end))
                    && pair.is_none_or(|(g, _)| gap <= g)
                {
                    self.set(k, Span::new(s.start, end));
                    return;
                }
            }
            if let Some(s) = right {
                if pair.is_none_or(|(g, _)| s.start.saturating_sub(end) <= g) {
                    self.set(i, Span::new(start, s.end));
                    return;
                }
            }
            match pair {
                Some((_, k)) => self.merge_with_next(k),
                // Unreachable with `N >= 1`: a full record has a neighbour.
                None => return,
            }
        }
    }

    /// Forgets `[start, end)`, which is no longer mapped; an empty range is ignored.
    ///
    /// If this would split a range while the record is full, either the
    /// smallest gap elsewhere is merged to make room or, when the hole is no
    /// larger than that gap, the hole simply stays covered. Keeping unmapped
    /// addresses covered is harmless (only memory mapped there later in the pass
    /// waits for the next pass); forgetting still-mapped ones could rescan them.
    #[cfg(test)]
    pub(crate) fn remove(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        // Each step either finishes or merges two ranges, so this ends.
        loop {
            // `i..j` are the ranges that overlap `[start, end)`.
            let i = self.spans().partition_point(|s| s.end <= start);
            let j = self.spans().partition_point(|s| s.start < end);
            if i >= j {
                return;
            }
            let (Some(first), Some(last)) = (self.get(i), self.get(j - 1)) else {
                return;
            };
            let left = (first.start < start).then_some(Span::new(first.start, start));
            let right = (last.end > end).then_some(Span::new(end, last.end));
            if let (Some(left), Some(right), true) = (left, right, i + 1 == j) {
                // A split: add the right piece first, so failing keeps coverage.
                if self.insert_at(j, right) {
                    self.set(i, left);
                    return;
                }
                match self.closest_pair() {
                    Some((gap, k)) if gap < end - start => self.merge_with_next(k),
                    _ => return,
                }
                continue;
            }
            // At most `j - i` pieces survive: write them over `i..j`, drop the rest.
            let mut at = i;
            for piece in [left, right].into_iter().flatten() {
                self.set(at, piece);
                at += 1;
            }
            self.remove_spans(at, j);
            return;
        }
    }

    /// Forgets every covered address outside `mapped`, the mm's mergeable VMAs
    /// as `(start, end)` ranges, sorted and disjoint.
    ///
    /// The scanner calls this at the start of each round, so ranges unmapped
    /// since the last round are forgotten and scanned if mapped again.
    ///
    /// The engine no longer calls this: it costs a walk of every VMA from address 0, and the
    /// scanner must look at each VMA once per pass, from its cursor. A range remapped into
    /// covered space therefore waits for the next pass. The tests keep it as the model of the
    /// exact record.
    #[cfg(test)]
    pub(crate) fn retain_mapped(&mut self, mapped: impl Iterator<Item = (usize, usize)>) {
        let mut hole = 0;
        for (start, end) in mapped {
            self.remove(hole, start);
            hole = hole.max(end);
        }
        self.remove(hole, usize::MAX);
    }

    /// The first address in `[from, end)` that is not covered, if any.
    pub(crate) fn next_uncovered(&self, from: usize, end: usize) -> Option<usize> {
        let addr = match self.after(from) {
            // Ranges are non-adjacent, so the end of a range is never covered.
            Some(s) if s.start <= from => s.end,
            _ => from,
        };
        (addr < end).then_some(addr)
    }

    /// The end of the uncovered run starting at `addr`: the next covered
    /// address, capped at `end`. Returns `addr` if `addr` is covered or `addr >= end`.
    pub(crate) fn uncovered_until(&self, addr: usize, end: usize) -> usize {
        self.after(addr).map_or(end, |s| s.start.min(end)).max(addr)
    }

    /// The stored ranges (`len <= N` by the invariants: the fallback is never taken).
    fn spans(&self) -> &[Span] {
        self.spans.get(..self.len).unwrap_or(&[])
    }

    /// Range `i`, if stored.
    fn get(&self, i: usize) -> Option<Span> {
        self.spans().get(i).copied()
    }

    /// Overwrites range `i`, if stored.
    fn set(&mut self, i: usize, span: Span) {
        if let Some(s) = self.spans.get_mut(..self.len).and_then(|s| s.get_mut(i)) {
            *s = span;
        }
    }

    /// The first range ending after `addr`: the one holding it, or the next one.
    fn after(&self, addr: usize) -> Option<Span> {
        self.get(self.spans().partition_point(|s| s.end <= addr))
    }

    /// Inserts `span` at index `i`, shifting the rest up; false if full.
    fn insert_at(&mut self, i: usize, span: Span) -> bool {
        if self.len >= N {
            return false;
        }
        // `i <= len < N`: the slice is non-empty, so rotating by one is fine.
        let Some(tail) = self.spans.get_mut(i..=self.len) else {
            return false;
        };
        tail.rotate_right(1);
        if let Some(slot) = tail.first_mut() {
            *slot = span;
        }
        self.len += 1;
        true
    }

    /// Removes the ranges at indices `from..to`, shifting the rest down.
    fn remove_spans(&mut self, from: usize, to: usize) {
        if let Some(tail) = self.spans.get_mut(from..self.len) {
            let n = to.saturating_sub(from).min(tail.len());
            tail.rotate_left(n);
            self.len -= n;
        }
    }

    /// The smallest gap between neighbouring ranges, and the index of the lower one.
    fn closest_pair(&self) -> Option<(usize, usize)> {
        let spans = self.spans();
        let gaps = spans.iter().zip(spans.iter().skip(1));
        gaps.enumerate()
            .map(|(k, (a, b))| (b.start.saturating_sub(a.end), k))
            .min()
    }

    /// Merges range `k` with range `k + 1`, covering the gap between them.
    fn merge_with_next(&mut self, k: usize) {
        if let (Some(a), Some(b)) = (self.get(k), self.get(k + 1)) {
            self.set(k, Span::new(a.start, b.end));
            self.remove_spans(k + 1, k + 2);
        }
    }
}

/// Where to scan next: the lowest uncovered address in `mapped` (the mm's
/// mergeable VMAs as sorted, disjoint `(start, end)` ranges) at or above
/// `cursor`, else the lowest one overall, so ranges mapped below the cursor
/// during the pass are still found.
///
/// Returns `(addr, run_end)`, where `run_end > addr` ends the uncovered run
/// inside `addr`'s VMA, or `None` once everything mapped is covered: the pass
/// is complete.
pub(crate) fn next_to_scan<const N: usize>(
    covered: &Covered<N>,
    mapped: impl Iterator<Item = (usize, usize)> + Clone,
    cursor: usize,
) -> Option<(usize, usize)> {
    let find = |from: usize| {
        mapped.clone().find_map(|(start, end)| {
            let addr = covered.next_uncovered(start.max(from), end)?;
            Some((addr, covered.uncovered_until(addr, end)))
        })
    };
    find(cursor).or_else(|| if cursor > 0 { find(0) } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const PAGE: usize = 4096;
    const GIB: usize = 1 << 30;

    fn check<const N: usize>(c: &Covered<N>) {
        assert!(c.len <= N);
        assert_eq!(c.is_empty(), c.len == 0);
        let v = spans(c);
        assert!(v.iter().all(|&(s, e)| s < e), "empty range in {v:?}");
        assert!(
            v.windows(2).all(|w| w[0].1 < w[1].0),
            "unsorted or touching: {v:?}"
        );
    }

    fn spans<const N: usize>(c: &Covered<N>) -> Vec<(usize, usize)> {
        c.iter().collect()
    }

    fn of<const N: usize>(ranges: &[(usize, usize)]) -> Covered<N> {
        let mut c = Covered::new();
        for &(s, e) in ranges {
            c.insert(s, e);
        }
        check(&c);
        c
    }

    #[test]
    fn new_is_empty() {
        static EMPTY: Covered = Covered::new();
        assert!(EMPTY.is_empty());
        assert!(!EMPTY.contains(0));
        assert_eq!(EMPTY.iter().count(), 0);
        assert_eq!(EMPTY.next_uncovered(0, 10), Some(0));
        assert_eq!(EMPTY.uncovered_until(3, 10), 10);
        let mut c = of::<CAPACITY>(&[(0, 10), (20, 30)]);
        c.clear();
        assert!(c.is_empty() && !c.contains(5));
    }

    #[test]
    fn empty_ranges_are_ignored() {
        let mut c = of::<CAPACITY>(&[(5, 5), (9, 3)]);
        assert!(c.is_empty());
        c.insert(10, 20);
        c.remove(15, 15);
        c.remove(18, 12);
        assert_eq!(spans(&c), [(10, 20)]);
    }

    #[test]
    fn insert_merges_overlapping_and_adjacent() {
        let mut c = of::<CAPACITY>(&[(10, 20), (20, 30)]);
        assert_eq!(spans(&c), [(10, 30)]);
        c.insert(5, 10);
        c.insert(40, 50);
        c.insert(60, 70);
        assert_eq!(spans(&c), [(5, 30), (40, 50), (60, 70)]);
        c.insert(12, 14);
        assert_eq!(spans(&c), [(5, 30), (40, 50), (60, 70)]);
        c.insert(25, 61);
        assert_eq!(spans(&c), [(5, 70)]);
        let c = of::<CAPACITY>(&[(0, 1), (2, 3), (1, 2)]);
        assert_eq!(spans(&c), [(0, 3)]);
        assert!(c.contains(0) && c.contains(2) && !c.contains(3));
    }

    #[test]
    fn remove_trims_and_splits() {
        let mut c = of::<CAPACITY>(&[(0, 100)]);
        c.remove(40, 60);
        assert_eq!(spans(&c), [(0, 40), (60, 100)]);
        c.remove(0, 10);
        c.remove(90, 200);
        assert_eq!(spans(&c), [(10, 40), (60, 90)]);
        c.remove(40, 60);
        assert_eq!(spans(&c), [(10, 40), (60, 90)]);
        c.remove(30, 70);
        assert_eq!(spans(&c), [(10, 30), (70, 90)]);
        c.insert(100, 110);
        c.remove(20, 105);
        assert_eq!(spans(&c), [(10, 20), (105, 110)]);
        c.remove(0, usize::MAX);
        assert!(c.is_empty());
    }

    #[test]
    fn full_insert_covers_the_smallest_gap() {
        let mut c = of::<4>(&[(0, 1), (10, 11), (20, 21), (30, 31)]);
        // Gap 1 to the left neighbour beats 7 to the right and 9 between others.
        c.insert(12, 13);
        assert_eq!(spans(&c), [(0, 1), (10, 13), (20, 21), (30, 31)]);
        // Gap 2 to the right neighbour is the smallest.
        c.insert(27, 28);
        assert_eq!(spans(&c), [(0, 1), (10, 13), (20, 21), (27, 31)]);
        // Far away: the inner gap 6 (21..27) is the smallest.
        c.insert(100, 101);
        assert_eq!(spans(&c), [(0, 1), (10, 13), (20, 31), (100, 101)]);
        let mut one = of::<1>(&[(50, 60), (10, 20), (70, 80)]);
        assert_eq!(spans(&one), [(10, 80)]);
        one.insert(90, 91);
        assert_eq!(spans(&one), [(10, 91)]);
    }

    #[test]
    fn full_split_keeps_coverage() {
        // No room and the hole is smaller than every gap: the hole stays covered.
        let mut c = of::<2>(&[(0, 100), (200, 300)]);
        c.remove(40, 60);
        assert_eq!(spans(&c), [(0, 100), (200, 300)]);
        // A smaller gap elsewhere is merged to make room for the split.
        let mut c = of::<3>(&[(0, 100), (102, 110), (200, 300)]);
        c.remove(240, 260);
        assert_eq!(spans(&c), [(0, 110), (200, 240), (260, 300)]);
        // The merged pair may be the one being split.
        let mut c = of::<3>(&[(0, 100), (102, 110), (200, 300)]);
        c.remove(40, 60);
        assert_eq!(spans(&c), [(0, 40), (60, 110), (200, 300)]);
    }

    #[test]
    fn usize_max_boundaries() {
        let top = usize::MAX;
        let mut c = of::<CAPACITY>(&[(top - 10, top)]);
        assert!(c.contains(top - 1) && !c.contains(top) && !c.contains(top - 11));
        assert_eq!(c.next_uncovered(top - 10, top), None);
        assert_eq!(c.next_uncovered(top - 20, top), Some(top - 20));
        assert_eq!(c.uncovered_until(top - 20, top), top - 10);
        assert_eq!(c.uncovered_until(top - 5, top), top - 5);
        c.remove(top - 5, top);
        assert_eq!(spans(&c), [(top - 10, top - 5)]);
        c.retain_mapped([(top - 8, top)].into_iter());
        assert_eq!(spans(&c), [(top - 8, top - 5)]);
        c.insert(0, top);
        assert_eq!(spans(&c), [(0, top)]);
        assert_eq!(next_to_scan(&c, [(0, top)].into_iter(), top - 1), None);
        c.retain_mapped(core::iter::empty());
        assert!(c.is_empty());
    }

    #[test]
    fn sparse_terabyte_vma() {
        let base = 0x7f00_0000_0000;
        let vma = (base, base + (1 << 40));
        let touched = (0..1024).map(|k| base + k * GIB);
        // Exact while there is room.
        let mut c = Covered::<CAPACITY>::new();
        for a in touched.clone().take(CAPACITY) {
            c.insert(a, a + PAGE);
        }
        assert_eq!(c.len, CAPACITY);
        assert_eq!(c.next_uncovered(base, vma.1), Some(base + PAGE));
        assert_eq!(c.uncovered_until(base + PAGE, vma.1), base + GIB);
        // Past capacity: coarser, still covering every touched page, nothing outside.
        for a in touched.clone().skip(CAPACITY) {
            c.insert(a, a + PAGE);
            check(&c);
        }
        assert!(touched
            .clone()
            .all(|a| c.contains(a) && c.contains(a + PAGE - 1)));
        let last = base + 1023 * GIB + PAGE;
        assert_eq!(c.iter().next().map(|r| r.0), Some(base));
        assert_eq!(c.iter().last().map(|r| r.1), Some(last));
        assert_eq!(
            next_to_scan(&c, [vma].into_iter(), last - 1),
            Some((last, vma.1))
        );
        let (a, end) = next_to_scan(&c, [vma].into_iter(), 0).unwrap_or_default();
        assert!(a < end && (a..end).step_by(PAGE).all(|p| !c.contains(p)));
        c.retain_mapped([(base + GIB, base + 2 * GIB)].into_iter());
        assert!(c
            .iter()
            .all(|(s, e)| s >= base + GIB && e <= base + 2 * GIB));
    }

    #[test]
    fn retain_mapped_forgets_unmapped() {
        let mut c = of::<CAPACITY>(&[(0, 100), (150, 160)]);
        c.retain_mapped([(10, 20), (20, 40), (90, 155)].into_iter());
        assert_eq!(spans(&c), [(10, 40), (90, 100), (150, 155)]);
        c.retain_mapped([(0, usize::MAX)].into_iter());
        assert_eq!(spans(&c), [(10, 40), (90, 100), (150, 155)]);
    }

    #[test]
    fn uncovered_queries() {
        let c = of::<CAPACITY>(&[(10, 20), (30, 40)]);
        assert_eq!(c.next_uncovered(0, 100), Some(0));
        assert_eq!(c.next_uncovered(10, 100), Some(20));
        assert_eq!(c.next_uncovered(15, 20), None);
        assert_eq!(c.next_uncovered(30, 40), None);
        assert_eq!(c.next_uncovered(50, 50), None);
        assert_eq!(c.uncovered_until(0, 100), 10);
        assert_eq!(c.uncovered_until(20, 25), 25);
        assert_eq!(c.uncovered_until(40, 100), 100);
        assert_eq!(c.uncovered_until(12, 100), 12);
        assert_eq!(c.uncovered_until(60, 50), 60);
    }

    #[test]
    fn next_to_scan_resumes_and_wraps() {
        let vmas = [(0, 10), (10, 20), (40, 60)];
        let mut c = of::<CAPACITY>(&[(0, 5)]);
        // A run stops at its VMA's end even if the next VMA touches it.
        assert_eq!(next_to_scan(&c, vmas.into_iter(), 0), Some((5, 10)));
        c.insert(5, 8);
        // Resumes exactly where the last round stopped.
        assert_eq!(next_to_scan(&c, vmas.into_iter(), 8), Some((8, 10)));
        c.insert(40, 45);
        assert_eq!(next_to_scan(&c, vmas.into_iter(), 41), Some((45, 60)));
        c.insert(45, 60);
        // Nothing above the cursor: wrap to what is left below.
        assert_eq!(next_to_scan(&c, vmas.into_iter(), 60), Some((8, 10)));
        c.insert(8, 20);
        assert_eq!(next_to_scan(&c, vmas.into_iter(), 60), None);
        assert_eq!(next_to_scan(&c, core::iter::empty(), 0), None);
    }

    /// Addresses of the model universe are `base + 0..U`, page size 1.
    const U: usize = 256;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(usize, usize),
        Remove(usize, usize),
        Retain(Vec<(usize, usize)>),
        Clear,
    }

    fn range() -> impl Strategy<Value = (usize, usize)> {
        prop_oneof![
            (0..=U, 0..40usize).prop_map(|(a, n)| (a, (a + n).min(U))),
            (0..=U, 0..=U),
        ]
    }

    /// Sorted, disjoint, possibly touching and possibly empty ranges.
    fn layout(max: usize) -> impl Strategy<Value = Vec<(usize, usize)>> {
        prop::collection::vec(0..=U, 0..max).prop_map(|mut v| {
            v.sort_unstable();
            v.chunks_exact(2).map(|p| (p[0], p[1])).collect()
        })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => range().prop_map(|(a, b)| Op::Insert(a, b)),
            3 => range().prop_map(|(a, b)| Op::Remove(a, b)),
            1 => layout(16).prop_map(Op::Retain),
            1 => Just(Op::Clear),
        ]
    }

    fn base() -> impl Strategy<Value = usize> {
        prop_oneof![Just(0), Just(usize::MAX - U)]
    }

    fn shift(base: usize, v: &[(usize, usize)]) -> Vec<(usize, usize)> {
        v.iter().map(|&(s, e)| (base + s, base + e)).collect()
    }

    /// Applies `ops` to a record and to the exact model; checks the invariants
    /// and that the record never forgets what the model covers.
    fn run_ops<const N: usize>(ops: &[Op], base: usize, exact: bool) {
        let mut c = Covered::<N>::new();
        let mut model = BTreeSet::new();
        for op in ops {
            match op {
                Op::Insert(a, b) => {
                    c.insert(base + a, base + b);
                    model.extend(*a..*b);
                }
                Op::Remove(a, b) => {
                    c.remove(base + a, base + b);
                    model.retain(|x| !(a..b).contains(&x));
                }
                Op::Retain(m) => {
                    c.retain_mapped(shift(base, m).into_iter());
                    model.retain(|x| m.iter().any(|(s, e)| (s..e).contains(&x)));
                }
                Op::Clear => {
                    c.clear();
                    model.clear();
                }
            }
            check(&c);
            assert!(
                model.iter().all(|&x| c.contains(base + x)),
                "{op:?} lost coverage"
            );
            if !exact {
                continue;
            }
            let pages: BTreeSet<usize> = c.iter().flat_map(|(s, e)| s - base..e - base).collect();
            assert_eq!(pages, model, "after {op:?}");
            let end = base + U;
            for x in 0..=U {
                assert_eq!(c.contains(base + x), model.contains(&x));
                let next = (x..U).find(|y| !model.contains(y));
                assert_eq!(c.next_uncovered(base + x, end), next.map(|y| base + y));
                let until = if model.contains(&x) {
                    x
                } else {
                    (x..U).find(|y| model.contains(y)).unwrap_or(U)
                };
                assert_eq!(c.uncovered_until(base + x, end), base + until);
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Event {
        Munmap(usize, usize),
        Mmap(usize, usize),
    }

    fn events(rounds: usize) -> impl Strategy<Value = Vec<(usize, Event)>> {
        let event = prop_oneof![
            range().prop_map(|(a, b)| Event::Munmap(a, b)),
            range().prop_map(|(a, b)| Event::Mmap(a, b)),
        ];
        prop::collection::vec((0..rounds, event), 0..12)
    }

    /// Many tiny VMAs separated by small holes, to overflow a small record.
    fn tiny_vmas() -> impl Strategy<Value = Vec<(usize, usize)>> {
        prop::collection::vec((0..4usize, 1..4usize), 1..60).prop_map(|v| {
            let mut at = 0;
            let mut out = Vec::new();
            for (hole, len) in v {
                let start = (at + hole).min(U);
                at = (start + len).min(U);
                out.push((start, at));
            }
            out
        })
    }

    fn munmap(vmas: &mut Vec<(usize, usize)>, a: usize, b: usize) {
        let old = std::mem::take(vmas);
        for (s, e) in old {
            for piece in [(s, e.min(a)), (s.max(b), e)] {
                if piece.0 < piece.1 {
                    vmas.push(piece);
                }
            }
        }
    }

    /// One scan pass under budgets and map changes between rounds.
    ///
    /// Checks that no page is scanned twice unless unmapped in between, that the
    /// pass ends, that everything mapped is covered when it does and, if
    /// `exact`, that every page mapped throughout the pass was scanned.
    fn simulate<const N: usize>(
        vmas: &[(usize, usize)],
        budgets: &[usize],
        events: &[(usize, Event)],
        cursor: usize,
        base: usize,
        exact: bool,
    ) {
        let page = |v: &[(usize, usize)]| -> BTreeSet<usize> {
            v.iter().flat_map(|&(s, e)| s..e).collect()
        };
        let mut vmas: Vec<(usize, usize)> = vmas.iter().copied().filter(|r| r.0 < r.1).collect();
        let mut c = Covered::<N>::new();
        let mut cursor = base + cursor;
        let mut scanned = BTreeSet::new();
        let mut steady = page(&vmas);
        let last_event = events.iter().map(|e| e.0 + 1).max().unwrap_or(0);
        for round in 0.. {
            assert!(round <= last_event + U + 1, "pass does not end");
            let mapped = shift(base, &vmas);
            c.retain_mapped(mapped.iter().copied());
            let mut budget = budgets[round % budgets.len()];
            while budget > 0 {
                let Some((a, end)) = next_to_scan(&c, mapped.iter().copied(), cursor) else {
                    let all = page(&mapped);
                    assert!(all.iter().all(|&p| c.contains(p)), "pass ended early");
                    if exact {
                        let steady: Vec<_> = steady.iter().map(|p| base + p).collect();
                        assert!(steady.iter().all(|p| scanned.contains(p)), "page missed");
                    }
                    return;
                };
                assert!(a < end && (a..end).all(|p| page(&mapped).contains(&p)));
                let n = budget.min(end - a);
                for p in a..a + n {
                    assert!(scanned.insert(p), "page {p:#x} scanned twice");
                }
                c.insert(a, a + n);
                check(&c);
                cursor = a + n;
                budget -= n;
            }
            for (_, event) in events.iter().filter(|e| e.0 == round) {
                match *event {
                    Event::Munmap(a, b) => {
                        munmap(&mut vmas, a, b);
                        steady.retain(|x| !(a..b).contains(x));
                        scanned.retain(|p| !(base + a..base + b).contains(p));
                    }
                    Event::Mmap(a, b) => {
                        // Only into holes: replacing a mapping in place is munmap + mmap.
                        let holes = page(&vmas);
                        vmas.extend((a..b).filter(|x| !holes.contains(x)).map(|x| (x, x + 1)));
                        vmas.sort_unstable();
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn matches_model_with_room(ops in prop::collection::vec(op(), 1..40), base in base()) {
            run_ops::<{ U / 2 + 1 }>(&ops, base, true);
        }

        #[test]
        fn invariants_hold_on_overflow(ops in prop::collection::vec(op(), 1..60), base in base()) {
            run_ops::<1>(&ops, base, false);
            run_ops::<3>(&ops, base, false);
            run_ops::<CAPACITY>(&ops, base, false);
        }

        #[test]
        fn next_to_scan_matches_model(
            ops in prop::collection::vec(op(), 0..20),
            vmas in layout(24),
            cursor in 0..=U,
        ) {
            let mut c = Covered::<{ U / 2 + 1 }>::new();
            for op in &ops {
                match op {
                    Op::Insert(a, b) => c.insert(*a, *b),
                    Op::Remove(a, b) => c.remove(*a, *b),
                    Op::Retain(m) => c.retain_mapped(m.iter().copied()),
                    Op::Clear => c.clear(),
                }
            }
            let free = |&(s, e): &(usize, usize)| (s..e).filter(|&x| !c.contains(x)).map(move |x| (x, e));
            let all: Vec<(usize, usize)> = vmas.iter().flat_map(free).collect();
            let want = all.iter().find(|p| p.0 >= cursor).or(all.first()).map(|&(a, e)| {
                (a, (a..e).find(|&x| c.contains(x)).unwrap_or(e))
            });
            prop_assert_eq!(next_to_scan(&c, vmas.iter().copied(), cursor), want);
        }

        #[test]
        fn scanner_pass_with_room(
            vmas in layout(24),
            budgets in prop::collection::vec(1..64usize, 1..8),
            events in events(40),
            cursor in 0..=U,
            base in base(),
        ) {
            simulate::<{ U / 2 + 1 }>(&vmas, &budgets, &events, cursor, base, true);
        }

        #[test]
        fn scanner_pass_on_overflow(
            vmas in tiny_vmas(),
            budgets in prop::collection::vec(1..8usize, 1..8),
            events in events(40),
            cursor in 0..=U,
            base in base(),
        ) {
            simulate::<2>(&vmas, &budgets, &events, cursor, base, false);
            simulate::<CAPACITY>(&vmas, &budgets, &events, cursor, base, false);
        }
    }
}
