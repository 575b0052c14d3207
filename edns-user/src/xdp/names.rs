//! NAME_SLOTS: where the XDP program looks a query's name up. Open
//! addressing over the top bits of the name hash with linear probing
//! ([`edns_common::name_slot`]), sized so that every name lies within
//! [`NAME_PROBES`] slots of its home and the table is at most a quarter full.

use edns_common::{name_slot, NAME_PROBES};

/// The largest table tried: 2^24 slots (64 MiB of u32), far past the
/// data plane's wide-IP capacity at a quarter full.
const MAX_BITS: u32 = 24;

/// The slots for names given as (hash, wide IP id): 2^bits of them, each
/// 0 or an id + 1, and the ids of names no table up to 2^[`MAX_BITS`]
/// slots placed within their probes (never seen: it takes five names
/// sharing the top 24 bits of their hash; those are answered in userspace).
pub fn slots(names: &[(u64, u32)]) -> (u32, Vec<u32>, Vec<u32>) {
    // A quarter full at most (and 16 slots at least): most lookups, hits
    // and misses alike, end at their first slot.
    let mut bits = (names.len().max(4) * 4).next_power_of_two().trailing_zeros();
    loop {
        let (t, unplaced) = place(names, bits);
        if unplaced.is_empty() || bits == MAX_BITS {
            return (bits, t, unplaced);
        }
        bits += 1;
    }
}

fn place(names: &[(u64, u32)], bits: u32) -> (Vec<u32>, Vec<u32>) {
    let mut t = vec![0u32; 1 << bits];
    let mut unplaced = Vec::new();
    for &(hash, id) in names {
        match (0..NAME_PROBES).map(|p| name_slot(hash, bits, p) as usize).find(|&s| t[s] == 0) {
            Some(free) => t[free] = id + 1,
            None => unplaced.push(id),
        }
    }
    (t, unplaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the XDP program does: the probes from the home slot, up to an empty one.
    fn find(bits: u32, t: &[u32], hash: u64, id: u32) -> bool {
        (0..NAME_PROBES).map(|p| t[name_slot(hash, bits, p) as usize]).take_while(|&v| v != 0).any(|v| v == id + 1)
    }

    #[test]
    fn every_name_is_found_within_its_probes_and_the_table_is_at_most_a_quarter_full() {
        for n in [0usize, 1, 5, 100, 100_006] {
            let names: Vec<(u64, u32)> = (0..n as u32).map(|i| (edns_common::mix64(i as u64 + 1), i)).collect();
            let (bits, t, unplaced) = slots(&names);
            assert!(unplaced.is_empty());
            assert_eq!(t.len(), 1 << bits);
            assert!(t.len() >= 4 * n && t.len() >= 16, "{n} names in {} slots", t.len());
            assert!(names.iter().all(|&(h, id)| find(bits, &t, h, id)), "{n} names");
        }
    }

    #[test]
    fn names_of_one_hash_each_get_a_slot_and_the_table_grows_when_probes_run_out() {
        // Six names whose hashes share their top bits: four probes hold
        // four of them at any size; the table grows to its largest, and
        // the other two are left to userspace.
        let same: Vec<(u64, u32)> = (0..6).map(|i| (0xdead_beef_0000_0000 | i, i as u32)).collect();
        let (bits, t, unplaced) = slots(&same);
        assert_eq!((bits, unplaced), (MAX_BITS, vec![4, 5]));
        assert!(same[..4].iter().all(|&(h, id)| find(bits, &t, h, id)));
        // Four of one hash and a crowd elsewhere: all placed, each found.
        let mut names: Vec<(u64, u32)> = (0..4).map(|i| (7u64 << 40, i)).collect();
        names.extend((4..64).map(|i| (edns_common::mix64(i as u64), i)));
        let (bits, t, unplaced) = slots(&names);
        assert!(unplaced.is_empty());
        assert!(names.iter().all(|&(h, id)| find(bits, &t, h, id)));
    }
}
