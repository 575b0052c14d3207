//! Response rate limiting for the queries that reach userspace (UDP), with
//! the same GCRA as the XDP program (`edns_common::rrl_allow`): per source
//! prefix, a burst, then `responses_per_second`; limited queries are
//! dropped except every `slip`-th, which gets a TC=1 answer. TCP is not
//! limited: its source is proven by the handshake, as is a query's with our
//! valid server cookie.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use edns_common::{rrl_allow, rrl_key, RrlBucket};
use serde::Serialize;

use crate::model::RrlConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Answer,
    /// Answer with TC=1 and no data.
    Slip,
    Drop,
}

#[derive(Default, Serialize)]
pub struct RrlStats {
    pub dropped: AtomicU64,
    pub slipped: AtomicU64,
}

pub struct Limiter {
    cfg: RrlConfig,
    interval: u64,
    tolerance: u64,
    buckets: Mutex<HashMap<[u8; 16], RrlBucket>>,
    pub stats: RrlStats,
}

impl Limiter {
    pub fn new(cfg: RrlConfig) -> Limiter {
        Limiter { cfg, interval: cfg.interval_ns(), tolerance: cfg.tolerance_ns(), buckets: Mutex::new(HashMap::new()), stats: RrlStats::default() }
    }

    /// Whether a UDP query from `src` at `now_ns` (the controller's clock, `store::now_ns`) is answered.
    pub fn admit(&self, src: IpAddr, now_ns: u64) -> Admit {
        let key = rrl_key(&crate::model::ip16(src), self.cfg.ipv4_prefix, self.cfg.ipv6_prefix);
        let mut b = self.buckets.lock().unwrap();
        if !b.contains_key(&key) && b.len() >= self.cfg.capacity as usize {
            // Full: forget prefixes that are not being limited now.
            b.retain(|_, v| v.tat_ns > now_ns);
            if b.len() >= self.cfg.capacity as usize {
                b.clear();
            }
        }
        let bucket = b.entry(key).or_insert(RrlBucket { tat_ns: 0, limited: 0 });
        match rrl_allow(bucket.tat_ns, now_ns, self.interval, self.tolerance) {
            Some(tat) => {
                bucket.tat_ns = tat;
                Admit::Answer
            }
            None => {
                bucket.limited += 1;
                if self.cfg.slip != 0 && bucket.limited % self.cfg.slip as u64 == 0 {
                    self.stats.slipped.fetch_add(1, Ordering::Relaxed);
                    Admit::Slip
                } else {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    Admit::Drop
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_gets_its_burst_then_drops_and_slips_and_another_prefix_is_untouched() {
        let l = Limiter::new(RrlConfig { responses_per_second: 10, burst: 3, slip: 2, ipv4_prefix: 24, ipv6_prefix: 56, capacity: 100 });
        let now = 10_000_000_000;
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let same_24: IpAddr = "192.0.2.200".parse().unwrap();
        let got: Vec<Admit> = (0..7).map(|i| l.admit(if i % 2 == 0 { a } else { same_24 }, now)).collect();
        use Admit::*;
        assert_eq!(got, [Answer, Answer, Answer, Drop, Slip, Drop, Slip]);
        assert_eq!(l.admit("192.0.3.1".parse().unwrap(), now), Answer);
        assert_eq!(l.admit(a, now + 100_000_000), Answer, "a tenth of a second later, one more");
    }
}
