// SPDX-License-Identifier: GPL-2.0

//! xxh64, and pages crafted so that they all share one xxh64 (seed 0): the hash-flooding
//! workload. rksm keys its stable and unstable trees by the xxh64 (seed 0) of a page; distinct
//! pages with one hash all land in one bucket, which is searched linearly.
//!
//! xxh64 runs four accumulators over 32-byte stripes, one 8-byte lane each:
//! `acc = rotl(acc + lane * P2, 31) * P1`. Each step is invertible mod 2^64 (P1 and P2 are odd),
//! so for any state after the first 127 stripes of a page there is exactly one last stripe that
//! takes the accumulators to a chosen target state. A 4096-byte page has no tail after its 128
//! stripes, so pages of equal length and equal final state have equal hashes.

pub const P1: u64 = 0x9E37_79B1_85EB_CA87;
pub const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
pub const P3: u64 = 0x1656_67B1_9E37_79F9;
pub const P4: u64 = 0x85EB_CA77_C2B2_AE63;
pub const P5: u64 = 0x27D4_EB2F_1656_67C5;

const STRIPE: usize = 32;

fn lane(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2)).rotate_left(31).wrapping_mul(P1)
}

fn merge_round(h: u64, v: u64) -> u64 {
    (h ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
}

/// The accumulators' initial state for `seed`.
fn init(seed: u64) -> [u64; 4] {
    [seed.wrapping_add(P1).wrapping_add(P2), seed.wrapping_add(P2), seed, seed.wrapping_sub(P1)]
}

/// Runs whole stripes of `data` (its length a multiple of 32) through the accumulators.
fn stripes(mut v: [u64; 4], data: &[u8]) -> [u64; 4] {
    for s in data.chunks_exact(STRIPE) {
        for (k, acc) in v.iter_mut().enumerate() {
            *acc = round(*acc, lane(s, 8 * k));
        }
    }
    v
}

/// xxh64 of `data` with `seed` (the reference algorithm, any length).
pub fn xxh64(data: &[u8], seed: u64) -> u64 {
    let len = data.len();
    let mut h;
    let mut rest = data;
    if len >= STRIPE {
        let whole = len / STRIPE * STRIPE;
        let v = stripes(init(seed), &data[..whole]);
        rest = &data[whole..];
        h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for acc in v {
            h = merge_round(h, acc);
        }
    } else {
        h = seed.wrapping_add(P5);
    }
    h = h.wrapping_add(len as u64);
    while rest.len() >= 8 {
        h ^= round(0, lane(rest, 0));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&rest[..4]);
        h ^= u64::from(u32::from_le_bytes(w)).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// The inverse of an odd number mod 2^64 (Newton's iteration; each step doubles the correct
/// low bits, and `x = a` is already right in the low 3).
pub fn inverse(a: u64) -> u64 {
    debug_assert!(a & 1 == 1);
    let mut x = a;
    for _ in 0..5 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
    }
    x
}

/// The lane that takes accumulator `from` to `to` in one round: solves
/// `rotl(from + lane * P2, 31) * P1 == to`.
fn solve_lane(from: u64, to: u64) -> u64 {
    let sum = to.wrapping_mul(inverse(P1)).rotate_right(31);
    sum.wrapping_sub(from).wrapping_mul(inverse(P2))
}

/// The accumulator state every crafted page ends in: the state of an arbitrary fixed page.
fn target_state() -> [u64; 4] {
    let mut page = vec![0u8; crate::PAGE];
    crate::fill_page(&mut page, 0x7a7a_7a7a);
    stripes(init(0), &page)
}

/// Rewrites the last 32 bytes of `page` (4096 bytes; the first 4064 are kept) so that its
/// xxh64 with seed 0 is [`crafted_hash`]'s.
pub fn craft(page: &mut [u8]) {
    assert_eq!(page.len(), crate::PAGE);
    let last = crate::PAGE - STRIPE;
    let before = stripes(init(0), &page[..last]);
    let target = target_state();
    for k in 0..4 {
        let l = solve_lane(before[k], target[k]);
        page[last + 8 * k..last + 8 * k + 8].copy_from_slice(&l.to_le_bytes());
    }
}

/// The xxh64 (seed 0) every crafted page has.
pub fn crafted_hash() -> u64 {
    let mut page = vec![0u8; crate::PAGE];
    crate::fill_page(&mut page, 0x7a7a_7a7a);
    xxh64(&page, 0)
}

/// A crafted page for `seed`: random bytes from `fill_page`, then the collision stripe.
pub fn crafted_page(page: &mut [u8], seed: u64) {
    crate::fill_page(page, seed);
    craft(page);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_vectors() {
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
    }

    /// Every code path: stripes, then 8-byte, 4-byte and byte tails. The values come from
    /// `xxh64()` of the kernel's lib/xxhash.c, compiled on the host.
    #[test]
    fn kernel_vectors() {
        let data: Vec<u8> = (0..100u32).map(|i| (i * 7 + 3) as u8).collect();
        let want = [
            (0, 0xEF46_DB37_51D8_E999),
            (1, 0x1F25_C8D0_BC1F_4BB6),
            (3, 0x31D2_363F_52E5_64C9),
            (4, 0x9BB6_4B7D_66EE_9FDA),
            (7, 0x9A7B_1499_59CE_60D8),
            (8, 0xDAB9_9D95_C6F9_0092),
            (12, 0xD52E_4078_33AF_5133),
            (31, 0xA2AA_5F33_CC4A_6119),
            (32, 0x23C3_C17E_F790_FD97),
            (33, 0x50A7_CFC7_BA58_8784),
            (63, 0x5E3E_54B4_31C7_493C),
            (64, 0x0EB6_4B3E_F6EE_B01F),
            (100, 0xA61F_8D4C_170F_E531),
        ];
        for (len, h) in want {
            assert_eq!(xxh64(&data[..len], 0), h, "length {len}");
        }
        assert_eq!(xxh64(&data, 1), 0x8D89_57E6_8F02_C7CE);
    }

    #[test]
    fn inverses() {
        for a in [P1, P2, 1, 3, u64::MAX, 0x1234_5678_9abc_def1] {
            assert_eq!(a.wrapping_mul(inverse(a)), 1);
        }
    }

    #[test]
    fn solved_lane_reaches_the_target() {
        for (from, to) in [(0u64, 0u64), (1, u64::MAX), (P1, P2), (0xdead_beef, 0x1234)] {
            assert_eq!(round(from, solve_lane(from, to)), to);
        }
    }

    #[test]
    fn crafted_pages_collide_and_differ() {
        let want = crafted_hash();
        let mut pages = Vec::new();
        for seed in 0..64u64 {
            let mut p = vec![0u8; crate::PAGE];
            crafted_page(&mut p, seed << 40 | seed);
            assert_eq!(xxh64(&p, 0), want, "page {seed}");
            pages.push(p);
        }
        pages.sort();
        pages.dedup();
        assert_eq!(pages.len(), 64, "crafted pages must be distinct");
        // The same seed gives the same page (pages shared by two processes must merge).
        let (mut a, mut b) = (vec![0u8; crate::PAGE], vec![0u8; crate::PAGE]);
        crafted_page(&mut a, 5);
        crafted_page(&mut b, 5);
        assert_eq!(a, b);
        // Random pages of the same seeds do not collide.
        let mut r = vec![0u8; crate::PAGE];
        crate::fill_page(&mut r, 5);
        assert_ne!(xxh64(&r, 0), want);
    }
}
