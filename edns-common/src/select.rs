//! Selection logic of the patent, as pure functions over bit masks of pool
//! positions (bit i = i-th VS of the wide IP's circular pool list).

use crate::maps::{LdnsKey, LDNS_KIND_GROUP, LDNS_KIND_PREFIX, MAX_POOL};

/// Bit i set = pool position i.
pub type PoolMask = u32;

/// True for an IPv4-mapped IPv6 address (`::ffff:0:0/96`), how IPv4 LDNS
/// addresses are carried.
#[inline(always)]
pub fn is_v4_mapped(addr: &[u8; 16]) -> bool {
    // As a word, not byte by byte: the kernel reads it in two loads.
    u128::from_be_bytes(*addr) >> 32 == 0xffff
}

/// A source address no resolver can have (RFC 6890 special-purpose
/// sources, as IPv4 mapped or native IPv6): 0/8, 127/8, 224/4 and 240/4
/// (multicast, reserved, broadcast); ::, ::1, ff00::/8, and IPv4-mapped
/// addresses arriving over IPv6 (`v6` true).
#[inline(always)]
pub fn is_martian_source(addr: &[u8; 16], v6: bool) -> bool {
    if is_v4_mapped(addr) {
        let a = addr[12];
        return v6 || a == 0 || a == 127 || a >= 224;
    }
    let a = u128::from_be_bytes(*addr);
    a >> 120 == 0xff || a <= 1 // ff00::/8, :: and ::1
}

/// A destination that is a group: IPv4 224/4 and 255.255.255.255, IPv6 ff00::/8.
#[inline(always)]
pub fn is_group_destination(addr: &[u8; 16]) -> bool {
    if is_v4_mapped(addr) {
        return addr[12] >= 224 && addr[12] < 240 || (addr[12] & addr[13] & addr[14] & addr[15]) == 0xff;
    }
    addr[0] == 0xff
}

/// The response-rate-limiting key of a source: its address cut to the
/// prefix that counts as one requester (see [`mask_prefix`]).
#[inline(always)]
pub fn rrl_key(addr: &[u8; 16], v4: u8, v6: u8) -> [u8; 16] {
    mask_prefix(addr, v4, v6)
}

/// The requester side of a persistence key (Fig. 6): the LDNS address, or
/// with a persistence mask (`persist_mask_v4` / `_v6` below 32 / 128) the
/// prefix it lies in, so LDNSes in one /24 or /56 share one record.
/// An LDNS group (Fig. 5) is one requester: its members share one record
/// keyed by the group's id (`group` non-zero), before any mask applies.
#[inline(always)]
pub fn persist_ldns(addr: &[u8; 16], mask_v4: u8, mask_v6: u8, group: u32) -> LdnsKey {
    if group != 0 {
        return LdnsKey { kind: LDNS_KIND_GROUP, prefix_len: 0, _pad: [0; 2], group, addr: [0; 16] };
    }
    let v4 = is_v4_mapped(addr);
    let bits = if v4 { 96 + mask_v4.min(32) } else { mask_v6.min(128) };
    if bits >= 128 {
        return LdnsKey::addr(*addr);
    }
    LdnsKey { kind: LDNS_KIND_PREFIX, prefix_len: bits, _pad: [0; 2], group: 0, addr: mask_prefix(addr, mask_v4, mask_v6) }
}

/// What the stripe walks (both kinds) read as the requester: the LDNS
/// address, or for a member of an LDNS group the group's id as an IPv4-mapped
/// value, so that every member gets the same SAC.
#[inline(always)]
pub fn stripe_key(addr: &[u8; 16], group: u32) -> [u8; 16] {
    if group == 0 {
        return *addr;
    }
    ((0xffffu128 << 32) | group as u128).to_be_bytes()
}

/// An address cut to a prefix: IPv4 mapped to `v4` bits of the IPv4
/// address, IPv6 to `v6` bits; the rest zero.
#[inline(always)]
pub fn mask_prefix(addr: &[u8; 16], v4: u8, v6: u8) -> [u8; 16] {
    let bits = if is_v4_mapped(addr) { 96 + v4.min(32) as u32 } else { v6.min(128) as u32 };
    cut_bits(addr, bits)
}

/// The first `bits` bits of `addr`; the rest zero.
#[inline(always)]
pub fn cut_bits(addr: &[u8; 16], bits: u32) -> [u8; 16] {
    // In 64-bit halves, not byte by byte: the kernel keeps the address in
    // two registers and builds keys from them in words (edns-ebpf's select).
    let keep = |from: u32| -> u128 {
        match bits.saturating_sub(from) {
            0 => 0,
            n if n >= 64 => u64::MAX as u128,
            n => (u64::MAX << (64 - n)) as u128,
        }
    };
    (u128::from_be_bytes(*addr) & (keep(0) << 64 | keep(64))).to_be_bytes()
}

/// GCRA: may a response go out at `now` when the prefix's theoretical
/// arrival time is `tat`? Each response costs `interval`; a prefix may run
/// `tolerance` ahead of now (the burst). Returns the new `tat` when allowed.
#[inline(always)]
pub fn rrl_allow(tat: u64, now: u64, interval: u64, tolerance: u64) -> Option<u64> {
    let t = if tat > now { tat } else { now };
    if t - now > tolerance {
        return None;
    }
    Some(t + interval)
}

/// The LDNS address read as a big-endian integer, modulo `n` (n > 0).
/// IPv4 (mapped) addresses are read as their 32-bit value, so 127.0.0.1 is
/// 2130706433 as Fig. 3 says; IPv6 as the full 128-bit value, reduced 32 bits
/// at a time because BPF has no 128-bit division.
#[inline(always)]
pub fn ldns_mod(addr: &[u8; 16], n: u32) -> u32 {
    if n == 0 {
        return 0; // callers never pass 0; this keeps a panic path out of BPF code
    }
    let n = n as u64;
    let word = |i: usize| u32::from_be_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]]) as u64;
    // Unrolled with constant indices: no bounds-check panic paths in BPF code.
    if is_v4_mapped(addr) {
        // 32-bit division: the cheaper instruction.
        return (word(12) as u32) % (n as u32);
    }
    let mut r = word(0) % n;
    r = ((r << 32) | word(4)) % n;
    r = ((r << 32) | word(8)) % n;
    r = ((r << 32) | word(12)) % n;
    r as u32
}

/// Position of the `x`-th (1-based) set bit of `mask`, walking from the head
/// of the list; `None` when `mask` has fewer than `x` bits. A binary search
/// over halves, quarters, ... by population count, in arithmetic rather than
/// branches: the BPF verifier then sees one path instead of one per outcome.
#[inline(always)]
pub fn nth_set_bit(mask: PoolMask, x: u32) -> Option<u32> {
    if x == 0 || x > mask.count_ones() {
        return None;
    }
    let mut m = mask;
    let mut x = x;
    let mut pos = 0u32;
    let mut width = 16u32;
    while width > 0 {
        let c = (m & ((1u32 << width) - 1)).count_ones();
        // all ones when the x-th bit lies above the lower `width` bits
        let above = 0u32.wrapping_sub(c.wrapping_sub(x) >> 31);
        x -= c & above;
        pos += width & above;
        m >>= width & above;
        width >>= 1;
    }
    Some(pos)
}

/// Result of the Fig. 3 static stripe walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stripe {
    /// Chosen pool position, or `None` when N reached 0 (the caller then falls
    /// back to round robin over the whole pool, regardless of availability).
    pub pos: Option<u32>,
    /// Candidates found marked up but not available; the caller marks them down
    /// (Fig. 3 block 325), which persists for later requests.
    pub marked_down: PoolMask,
}

/// Fig. 3: N = VSs marked up; X = (LDNS mod N) + 1; walk the circular list
/// from its head decrementing X at each VS marked up; the candidate is where
/// X reaches 0. An unavailable candidate is marked down, N -= 1, recompute.
#[inline(always)]
pub fn stripe(ldns: &[u8; 16], marked_up: PoolMask, available: PoolMask) -> Stripe {
    let mut marked = marked_up;
    let mut marked_down = 0;
    let mut round = 0;
    // Each round marks one VS down, so MAX_POOL rounds always suffice.
    while round < MAX_POOL {
        let n = marked.count_ones();
        if n == 0 {
            break;
        }
        let x = ldns_mod(ldns, n) + 1;
        // Marked from the head without a gap (a healthy pool): the x-th
        // is at x - 1, no bit search.
        let pos = if marked & marked.wrapping_add(1) == 0 {
            (x - 1) & 31
        } else {
            match nth_set_bit(marked, x) {
                Some(p) => p & 31,
                None => break, // unreachable: x <= n
            }
        };
        if available & (1 << pos) != 0 {
            return Stripe { pos: Some(pos), marked_down };
        }
        marked &= !(1 << pos);
        marked_down |= 1 << pos;
        round += 1;
    }
    Stripe { pos: None, marked_down }
}

/// SplitMix64's finalizer (Steele, Lea, Flood 2014): every input bit moves
/// about half the output bits, which rendezvous scores need.
#[inline(always)]
pub fn mix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The LDNS's share of every rendezvous score, computed once per request.
#[inline(always)]
pub fn ldns_hash(addr: &[u8; 16]) -> u64 {
    let hi = u64::from_be_bytes([addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7]]);
    let lo = u64::from_be_bytes([addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15]]);
    mix64(mix64(hi) ^ lo)
}

/// Consistent stripe: rendezvous (highest random weight) hashing of the LDNS
/// over the VSs up. Each VS scores mix64(LDNS hash ^ VS id spread); the
/// highest score wins (ties: the earlier position). When a VS goes down only
/// the LDNSes it held move, about 1/N of them, where the patent's stripe
/// recomputes X modulo N - 1 and moves most. Scores use global VS ids, so
/// reordering a pool moves nobody. `None` when no VS is up.
#[inline(always)]
pub fn rendezvous(ldns_hash: u64, pool_vs: &[u32; MAX_POOL], up: PoolMask) -> Option<u32> {
    let mut best: u64 = 0;
    let mut found: u32 = 0;
    let mut pick: u32 = 0;
    let mut pos = 0usize;
    while pos < MAX_POOL {
        if up & (1 << pos) != 0 {
            let score = mix64(ldns_hash ^ (pool_vs[pos] as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            if found == 0 || score > best {
                best = score;
                pick = pos as u32;
                found = 1;
            }
        }
        pos += 1;
    }
    if found == 0 {
        None
    } else {
        Some(pick)
    }
}

/// Round robin over the whole pool, regardless of availability: Fig. 3's
/// fallback at N = 0. `counter` is the wide IP's shared counter value.
#[inline(always)]
pub fn round_robin_any(counter: u64, pool_len: u32) -> u32 {
    if pool_len == 0 {
        return 0;
    }
    (counter % pool_len as u64) as u32
}

/// Round robin among the VSs that are up (dynamic mode's balancing method
/// `round_robin`); `None` when none is up.
#[inline(always)]
pub fn round_robin_up(counter: u64, up: PoolMask) -> Option<u32> {
    let n = up.count_ones();
    if n == 0 {
        return None;
    }
    nth_set_bit(up, (counter % n as u64) as u32 + 1)
}

/// Topology: the first pool position managed by `sac` (the LPM match) whose
/// VS is up. `None` means no such VS: the caller falls back to the stripe walk.
#[inline(always)]
pub fn topology_pick(sac: u32, pool_sac: &[u32; MAX_POOL], pool_len: u32, up: PoolMask) -> Option<u32> {
    let mut pos = 0;
    while pos < MAX_POOL as u32 {
        if pos >= pool_len {
            break;
        }
        if pool_sac[pos as usize] == sac && up & (1 << pos) != 0 {
            return Some(pos);
        }
        pos += 1;
    }
    None
}

/// Fig. 9 block 920: a record is timely while now <= timestamp + TTL.
#[inline(always)]
pub fn is_timely(now_ns: u64, last_ns: u64, ttl_secs: u32) -> bool {
    now_ns <= last_ns.saturating_add(ttl_secs as u64 * 1_000_000_000)
}

/// Mask of the first `pool_len` positions.
#[inline(always)]
pub fn pool_mask(pool_len: u32) -> PoolMask {
    if pool_len >= 32 {
        u32::MAX
    } else {
        (1u32 << pool_len) - 1
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
        let mut x = [0u8; 16];
        x[10] = 0xff;
        x[11] = 0xff;
        x[12..].copy_from_slice(&[a, b, c, d]);
        x
    }

    /// The patent's walk, written literally: a circular list, X decremented
    /// at each VS marked up, candidate where X hits zero.
    fn literal_walk(ip: u32, marked: &[bool]) -> Option<usize> {
        let n = marked.iter().filter(|m| **m).count() as u32;
        if n == 0 {
            return None;
        }
        let mut x = ip % n + 1;
        let mut i = 0usize;
        loop {
            if marked[i % marked.len()] {
                x -= 1;
                if x == 0 {
                    return Some(i % marked.len());
                }
            }
            i += 1;
        }
    }

    #[test]
    fn ldns_mod_reads_ipv4_as_big_endian_u32() {
        assert_eq!(ldns_mod(&v4(127, 0, 0, 1), 1_000_000_007), 2130706433 % 1_000_000_007);
        assert_eq!(ldns_mod(&v4(127, 0, 0, 1), 3), 2130706433 % 3);
        assert_eq!(ldns_mod(&v4(255, 255, 255, 255), 7), u32::MAX % 7);
    }

    #[test]
    fn ldns_mod_reads_ipv6_as_u128() {
        let a: u128 = 0x2001_0db8_0000_0000_0000_0000_dead_beef;
        for n in [1u32, 2, 3, 7, 1000, 65537, u32::MAX] {
            assert_eq!(ldns_mod(&a.to_be_bytes(), n) as u128, a % n as u128, "n={n}");
        }
    }

    #[test]
    fn stripe_matches_the_literal_circular_walk_for_every_mask() {
        let ips = [0u32, 1, 2, 3, 2130706433, 0xc0000201, u32::MAX, 123456789];
        for len in 1..=5usize {
            for m in 0u32..(1 << len) {
                for &ip in &ips {
                    let marked: Vec<bool> = (0..len).map(|i| m & (1 << i) != 0).collect();
                    let want = literal_walk(ip, &marked).map(|p| p as u32);
                    let got = stripe(&v4((ip >> 24) as u8, (ip >> 16) as u8, (ip >> 8) as u8, ip as u8), m, u32::MAX);
                    assert_eq!(got.pos, want, "ip={ip} mask={m:b}");
                    assert_eq!(got.marked_down, 0);
                }
            }
        }
    }

    #[test]
    fn stripe_marks_unavailable_candidate_down_and_recomputes_with_n_minus_1() {
        // 127.0.0.1 = 2130706433; pool of 3 all marked up: 2130706433 % 3 = 2, X = 3 -> pos 2.
        let ip = v4(127, 0, 0, 1);
        assert_eq!(stripe(&ip, 0b111, 0b111).pos, Some(2));
        // pos 2 unavailable: marked down, N = 2, X = 2130706433 % 2 + 1 = 2 -> second of {0,1} = 1.
        let s = stripe(&ip, 0b111, 0b011);
        assert_eq!(s, Stripe { pos: Some(1), marked_down: 0b100 });
    }

    #[test]
    fn stripe_reports_fallback_when_every_candidate_is_unavailable() {
        let s = stripe(&v4(10, 0, 0, 9), 0b111, 0);
        assert_eq!(s, Stripe { pos: None, marked_down: 0b111 });
        assert_eq!(stripe(&v4(10, 0, 0, 9), 0, u32::MAX), Stripe { pos: None, marked_down: 0 });
    }

    #[test]
    fn round_robin_up_cycles_over_up_positions_only() {
        let picks: Vec<u32> = (0..6).map(|c| round_robin_up(c, 0b1010).unwrap()).collect();
        assert_eq!(picks, [1, 3, 1, 3, 1, 3]);
        assert_eq!(round_robin_up(5, 0), None);
        assert_eq!(round_robin_any(7, 3), 1);
    }

    #[test]
    fn topology_pick_takes_first_up_vs_of_the_matched_sac() {
        let mut sacs = [u32::MAX; MAX_POOL];
        sacs[..4].copy_from_slice(&[0, 0, 1, 1]);
        assert_eq!(topology_pick(1, &sacs, 4, 0b1111), Some(2));
        assert_eq!(topology_pick(1, &sacs, 4, 0b1011), Some(3));
        assert_eq!(topology_pick(1, &sacs, 4, 0b0011), None);
        assert_eq!(topology_pick(2, &sacs, 4, 0b1111), None);
    }

    fn pool_of(n: u32) -> [u32; MAX_POOL] {
        let mut p = [u32::MAX; MAX_POOL];
        for (i, v) in p.iter_mut().enumerate().take(n as usize) {
            *v = 100 + i as u32;
        }
        p
    }

    #[test]
    fn rendezvous_picks_only_vs_up_and_none_when_all_down() {
        let pool = pool_of(6);
        for ip in 0..2000u32 {
            let h = ldns_hash(&v4((ip >> 8) as u8, ip as u8, 7, 1));
            let pos = rendezvous(h, &pool, 0b101101).unwrap();
            assert!(0b101101 & (1 << pos) != 0);
        }
        assert_eq!(rendezvous(ldns_hash(&v4(1, 2, 3, 4)), &pool, 0), None);
    }

    /// Share of `ldns` whose pick changes when position `down` of an
    /// all-up pool of `n` goes down, for a picker over (address, up mask).
    fn moved_share(n: u32, down: u32, pick: impl Fn(&[u8; 16], PoolMask) -> u32) -> f64 {
        let all = pool_mask(n);
        let mut moved = 0;
        let total = 10_000u32;
        for i in 0..total {
            // Spread over the IPv4 space, as real resolvers are.
            let ip = i.wrapping_mul(2_654_435_761);
            let a = v4((ip >> 24) as u8, (ip >> 16) as u8, (ip >> 8) as u8, ip as u8);
            if pick(&a, all) != pick(&a, all & !(1 << down)) {
                moved += 1;
            }
        }
        moved as f64 / total as f64
    }

    /// The measurement: 10,000 LDNS addresses, one of N VSs down.
    /// Consistent stripe moves ≈ 1/N (only the LDNSes the dead VS held);
    /// the patent's stripe recomputes modulo N - 1 and moves most of them.
    #[test]
    fn one_vs_down_moves_about_one_nth_of_ldnses_with_consistent_stripe_and_most_with_the_patent_stripe() {
        for n in [3u32, 5, 8] {
            let pool = pool_of(n);
            let consistent = moved_share(n, n / 2, |a, up| rendezvous(ldns_hash(a), &pool, up).unwrap());
            let patent = moved_share(n, n / 2, |a, up| stripe(a, up, up).pos.unwrap());
            std::println!("moved share, 1 of {n} VSs down: stripe_consistent {consistent:.3} (1/N = {:.3}), stripe {patent:.3}", 1.0 / n as f64);
            assert!((consistent - 1.0 / n as f64).abs() < 0.02, "n={n}: consistent moved {consistent}");
            assert!(patent > 0.5, "n={n}: patent stripe moved {patent}");
        }
    }

    #[test]
    fn martian_sources_are_the_rfc_6890_ranges_no_resolver_has() {
        for a in [[0, 1, 2, 3], [127, 0, 0, 1], [224, 0, 0, 251], [239, 1, 1, 1], [240, 0, 0, 1], [255, 255, 255, 255]] {
            assert!(is_martian_source(&v4(a[0], a[1], a[2], a[3]), false), "{a:?}");
        }
        for a in [[1, 0, 0, 0], [10, 0, 0, 1], [126, 255, 255, 255], [128, 0, 0, 1], [223, 255, 255, 255], [198, 18, 0, 2]] {
            assert!(!is_martian_source(&v4(a[0], a[1], a[2], a[3]), false), "{a:?}");
        }
        assert!(is_martian_source(&v4(192, 0, 2, 1), true), "IPv4-mapped over IPv6");
        let v6 = |s: u128| s.to_be_bytes();
        assert!(is_martian_source(&v6(0), true) && is_martian_source(&v6(1), true));
        assert!(is_martian_source(&v6(0xff02 << 112 | 1), true));
        assert!(!is_martian_source(&v6(2), true) && !is_martian_source(&v6(0x2001_0db8 << 96 | 1), true));
        assert!(is_group_destination(&v4(224, 0, 0, 1)) && is_group_destination(&v4(255, 255, 255, 255)));
        assert!(!is_group_destination(&v4(198, 18, 0, 1)) && !is_group_destination(&v4(240, 0, 0, 1)));
        assert!(is_group_destination(&v6(0xff02 << 112 | 1)) && !is_group_destination(&v6(0xfd00 << 112 | 1)));
    }

    #[test]
    fn rrl_keys_cut_sources_to_their_prefix_and_gcra_allows_a_burst_then_the_rate() {
        assert_eq!(rrl_key(&v4(198, 18, 3, 7), 24, 56), v4(198, 18, 3, 0));
        assert_eq!(rrl_key(&v4(198, 18, 3, 7), 20, 56), v4(198, 18, 0, 0));
        let a = 0x2001_0db8_1234_56ff_0000_0000_0000_0001u128.to_be_bytes();
        assert_eq!(rrl_key(&a, 24, 56), 0x2001_0db8_1234_5600_0000_0000_0000_0000u128.to_be_bytes());
        // 10 per second, burst 3: three at once, then one per 100 ms.
        let (interval, tolerance) = (100_000_000, 2 * 100_000_000);
        let mut tat = 0;
        let now = 5_000_000_000;
        for _ in 0..3 {
            tat = rrl_allow(tat, now, interval, tolerance).expect("within the burst");
        }
        assert_eq!(rrl_allow(tat, now, interval, tolerance), None);
        assert_eq!(rrl_allow(tat, now + 99_000_000, interval, tolerance), None);
        assert!(rrl_allow(tat, now + 100_000_000, interval, tolerance).is_some());
    }

    #[test]
    fn persistence_masks_make_one_key_per_prefix_and_full_masks_the_address() {
        let a = persist_ldns(&v4(198, 18, 3, 7), 24, 56, 0);
        assert_eq!(a, persist_ldns(&v4(198, 18, 3, 200), 24, 56, 0));
        assert_ne!(a, persist_ldns(&v4(198, 18, 4, 7), 24, 56, 0));
        assert_eq!((a.kind, a.prefix_len, a.addr), (LDNS_KIND_PREFIX, 120, v4(198, 18, 3, 0)));
        assert_eq!(persist_ldns(&v4(198, 18, 3, 7), 32, 128, 0), LdnsKey::addr(v4(198, 18, 3, 7)));
        let six = 0x2001_0db8_0000_1234_5678_0000_0000_0001u128.to_be_bytes();
        assert_eq!(persist_ldns(&six, 24, 56, 0).addr, 0x2001_0db8_0000_1200_0000_0000_0000_0000u128.to_be_bytes());
        // A group member: the group, whatever the address and masks.
        assert_eq!(persist_ldns(&six, 24, 56, 7), persist_ldns(&v4(1, 2, 3, 4), 32, 128, 7));
        assert_eq!(stripe_key(&six, 7), v4(0, 0, 0, 7));
        assert_eq!(stripe_key(&six, 0), six);
    }

    #[test]
    fn cut_bits_keeps_exactly_the_first_bits_at_every_length() {
        let a = 0xfedc_ba98_7654_3210_0123_4567_89ab_cdefu128;
        for bits in 0..=130u32 {
            let keep = if bits == 0 { 0 } else if bits >= 128 { u128::MAX } else { u128::MAX << (128 - bits) };
            assert_eq!(cut_bits(&a.to_be_bytes(), bits), (a & keep).to_be_bytes(), "{bits} bits");
        }
    }

    #[test]
    fn timeliness_is_inclusive_of_the_ttl_edge() {
        assert!(is_timely(10_000_000_000, 0, 10));
        assert!(!is_timely(10_000_000_001, 0, 10));
        assert!(is_timely(5, u64::MAX - 1, u32::MAX));
    }
}
