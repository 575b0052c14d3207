//! Persistence records on the wire and the merge rule, pure: every node
//! computes the same winner from the same entries.
//!
//! A node publishes, under its own key space, its view of each record it
//! created or refreshed: the record's identity (generation, creation time,
//! creator, VS) and its own last request and hit count. For one key the
//! entries of all nodes merge as follows:
//! - entries with the same identity are one incarnation: its last request is
//!   the latest of them, its hits their sum;
//! - an incarnation whose last request is older than the TTL in force is
//!   expired and takes no part;
//! - of the rest the highest generation wins (a record made again after the
//!   previous one expired or lost its VS supersedes it); within a
//!   generation the one created first, ties to the lower node id (two nodes
//!   balancing one requester at once).

use std::collections::BTreeMap;

/// One node's view of a record; times are wall-clock milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub generation: u32,
    pub created_ms: u64,
    pub creator: u32,
    /// The VS by name ("sac/vs"): names, not ids, are what nodes share.
    pub vs: String,
    pub last_ms: u64,
    /// Requests this node answered from the record.
    pub hits: u64,
}

/// Who the record is: entries that agree on it are one incarnation.
pub type Identity = (u32, u64, u32);

impl Entry {
    pub fn identity(&self) -> Identity {
        (self.generation, self.created_ms, self.creator)
    }

    /// "GENERATION CREATED CREATOR LAST HITS VS".
    pub fn to_wire(&self) -> String {
        format!("{} {} {} {} {} {}", self.generation, self.created_ms, self.creator, self.last_ms, self.hits, self.vs)
    }

    pub fn from_wire(s: &str) -> Option<Entry> {
        let mut f = s.splitn(6, ' ');
        let mut num = || f.next()?.parse::<u64>().ok();
        let (generation, created_ms, creator, last_ms, hits) = (num()? as u32, num()?, num()? as u32, num()?, num()?);
        let vs = f.next()?.to_string();
        Some(Entry { generation, created_ms, creator, vs, last_ms, hits })
    }
}

/// The merge rule over the entries of one key, at wall time `now_ms`
/// with the TTL in force: the record every node keeps (its last request the
/// latest, its hits the sum of its entries'); `None` when nothing is timely.
pub fn merge<'a>(entries: impl IntoIterator<Item = &'a Entry>, now_ms: u64, ttl_secs: u32) -> Option<Entry> {
    let mut incarnations: BTreeMap<Identity, Entry> = BTreeMap::new();
    for e in entries {
        let m = incarnations.entry(e.identity()).or_insert_with(|| Entry { last_ms: 0, hits: 0, ..e.clone() });
        m.last_ms = m.last_ms.max(e.last_ms);
        m.hits += e.hits;
    }
    incarnations
        .into_values()
        .filter(|m| now_ms <= m.last_ms.saturating_add(ttl_secs as u64 * 1000))
        .min_by_key(|m| (std::cmp::Reverse(m.generation), m.created_ms, m.creator))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(generation: u32, created_ms: u64, creator: u32, vs: &str, last_ms: u64, hits: u64) -> Entry {
        Entry { generation, created_ms, creator, vs: vs.into(), last_ms, hits }
    }

    #[test]
    fn entries_round_trip_the_wire() {
        let x = e(3, 1_764_000_000_123, 2, "east/vs1", 1_764_000_001_000, 17);
        assert_eq!(Entry::from_wire(&x.to_wire()), Some(x));
        assert_eq!(Entry::from_wire("1 2 3"), None);
    }

    #[test]
    fn the_first_created_wins_ties_go_to_the_lower_node_and_refreshes_and_hits_add_up() {
        let a = e(0, 1000, 1, "east/vs1", 5000, 3);
        let b = e(0, 1000, 2, "west/vs1", 6000, 1);
        let c = e(0, 999, 3, "west/vs2", 1500, 1);
        // c was created first.
        let m = merge([&a, &b, &c], 7000, 600).unwrap();
        assert_eq!((m.creator, m.vs.as_str()), (3, "west/vs2"));
        // Without c: a and b at the same millisecond, node 1 wins.
        assert_eq!(merge([&b, &a], 7000, 600).unwrap().creator, 1);
        // Another node's refresh of a's record: one incarnation, latest
        // time stamp, hits summed.
        let a2 = e(0, 1000, 1, "east/vs1", 9000, 5);
        let m = merge([&a, &a2], 9500, 600).unwrap();
        assert_eq!((m.last_ms, m.hits), (9000, 8));
    }

    #[test]
    fn a_later_generation_supersedes_and_expired_incarnations_take_no_part() {
        let old = e(0, 1000, 1, "east/vs1", 2000, 4);
        let new = e(1, 3000, 2, "west/vs1", 3000, 1);
        assert_eq!(merge([&old, &new], 3500, 600).unwrap().vs, "west/vs1");
        // The old one expired at 2000 + 1000: a fresh generation 0 elsewhere wins.
        let fresh = e(0, 5000, 3, "west/vs2", 5000, 1);
        assert_eq!(merge([&old, &fresh], 5000, 1).unwrap().vs, "west/vs2");
        assert_eq!(merge([&old], 5000, 1), None);
    }
}
